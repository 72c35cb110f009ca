"""
Library behind the state ``edge.minion_config`` (DESIGN.md §6). Pure logic
plus careful file I/O; no Salt loader dunders.

* :func:`build_plan` validates every parameter and renders the drop-in
  deterministically (raises :class:`MinionConfigError` on bad input, before
  anything touches the disk);
* :func:`compare` tells what differs on disk (drop-in text, secret file content
  and mode) and gives a unified diff of the drop-in;
* :func:`apply` writes atomically: temp file in the same directory, fsync,
  ``os.replace``; the secret file is created ``0600`` from the start;
* :func:`find_conflicts` reads the main minion file and the other
  ``minion.d/*.conf`` files and reports managed options set to other values;
* :func:`schedule_restart` starts a detached helper that waits for the
  reporting job to finish, then restarts the minion.

The site key / shared secret never appears in the drop-in, a diff, a return,
a comment or a log line: only :func:`saltext_edge.tokens.key_fingerprint` of it.
"""

import copy
import difflib
import hmac
import ipaddress
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile

import yaml

from saltext_edge import diag as _diag
from saltext_edge import tokens as _token

log = logging.getLogger(__name__)

# The recommended NAT keep-alive / reconnect settings (and why each matters)
# are defined once, in saltext_edge.diag, so the audit and this state agree.
# build_plan writes them with one adjustment: retry_dns is 0 with
# master_type: failover, because Salt forces that (and logs CRITICAL) so that
# an unresolvable master sends the minion to the next one.
RECOMMENDED = _diag.RECOMMENDED

#: options the state itself sets; ``extra`` may not set them
CORE_KEYS = ("master", "master_type", "master_alive_interval", "autosign_grains", "edge")

HIDDEN = "<hidden>"
HEADER = (
    "# Managed by Salt: state edge.minion_config (saltext-edge).\n"
    "# Manual changes are overwritten on the next state run.\n"
)

_HOST_LABEL_RE = re.compile(r"\A(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_CREDENTIAL_KEYS = ("site_key", "site_key_file", "shared_secret", "shared_secret_file",
                    "enrollment_key", "enrollment_key_file")
_SECRET_KEY_HINTS = ("secret", "password", "passwd", "site_key", "enrollment_key", "token", "private")


class MinionConfigError(ValueError):
    """Bad input to the state. The message never contains secret material."""


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def validate_host_port(entry):
    """
    Return ``entry`` (stripped) if it is ``host`` or ``host:port`` with host a
    DNS name, an IPv4 address or an IPv6 address (``[v6]:port`` with a port),
    else raise :class:`MinionConfigError`.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise MinionConfigError(f"master address {entry!r} is not a non-empty string")
    text = entry.strip()
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise MinionConfigError(f"master address {text!r}: unterminated '[' in IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise MinionConfigError(f"master address {text!r}: junk after ']'")
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as err:
            raise MinionConfigError(f"master address {text!r}: not an IPv6 address") from err
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)
        except ValueError as err:
            raise MinionConfigError(
                f"master address {text!r}: not host[:port] (write IPv6 with a port as [addr]:port)"
            ) from err
        return text
    else:
        if ":" in text:
            host, port = text.split(":", 1)
        if not _valid_hostname(host):
            raise MinionConfigError(f"master address {text!r}: {host!r} is not a valid host name")
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise MinionConfigError(f"master address {text!r}: port must be 1-65535")
    return text


def _has_port(entry):
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def _valid_hostname(host):
    if not host or len(host) > 253:
        return False
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        return False  # looks like a broken IPv4 address
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(_HOST_LABEL_RE.match(label) for label in labels)


def _check_plain(value, where, depth=0):
    """Only YAML-safe plain data may go into the drop-in."""
    if depth > 20:
        raise MinionConfigError(f"{where}: nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MinionConfigError(f"{where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}", depth + 1)
        return
    raise MinionConfigError(f"{where}: unsupported value type {type(value).__name__}")


def _normalise(value):
    """Sorted dicts, lists for tuples: deterministic YAML."""
    if isinstance(value, dict):
        return {key: _normalise(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_normalise(item) for item in value]
    return value


def default_secret_file(name):
    """
    Where the secret goes when no path is given: ``<config dir>/edge/<stem>.key``
    (a sibling of ``minion.d``, so Salt never reads it as configuration).
    """
    stem = os.path.splitext(os.path.basename(name))[0] or "edge"
    config_dir = os.path.dirname(os.path.dirname(os.path.abspath(name)))
    return os.path.join(config_dir, "edge", stem + ".key")


def _fingerprint_of(value):
    """The fingerprint of a key file's content: of ``K_enr`` for an enrollment key (as the runner shows it)."""
    from saltext_edge import enrollment as _enr  # pylint: disable=import-outside-toplevel

    try:
        return _token.key_fingerprint(_enr.parse_key(value)[2])
    except _enr.EnrollmentError:
        return _token.key_fingerprint(value)


def build_plan(
    name,
    masters,
    master_alive_interval=30,
    failover=True,
    site=None,
    site_key=None,
    shared_secret=None,
    nat_keepalive=True,
    extra=None,
    secret_file=None,
    recommended=None,
    enrollment_key=None,
):
    """
    Validate the state's parameters and return the plan (a dict):

    ``path``, ``content`` (drop-in text), ``data`` (the options written),
    ``secret`` (``None`` or ``{"path", "kind", "value", "fingerprint"}``;
    ``enrollment_key`` is stored like ``site_key``, docs/enrollment.rst),
    ``overridden`` (recommended NAT options replaced by ``extra``),
    ``notes`` (list of str).

    Raises :class:`MinionConfigError` with a clear message on bad input.
    """
    recommended = RECOMMENDED if recommended is None else recommended
    notes = []

    # name: an absolute path of a *.conf file (Salt includes minion.d/*.conf)
    if not isinstance(name, str) or not name.strip():
        raise MinionConfigError("name must be the path of the drop-in file")
    if not os.path.isabs(name):
        raise MinionConfigError(f"name {name!r} must be an absolute path")
    if not name.endswith(".conf"):
        raise MinionConfigError(
            f"name {name!r} must end in '.conf' (the minion only reads minion.d/*.conf)"
        )
    if os.path.isdir(name):
        raise MinionConfigError(f"name {name!r} is a directory")
    if os.path.basename(os.path.dirname(name)) != "minion.d":
        notes.append(
            f"{name} is not in a 'minion.d' directory; make sure the minion includes it"
        )

    # masters
    if isinstance(masters, str):
        raise MinionConfigError("masters must be a list of host[:port] strings, not a string")
    if not isinstance(masters, (list, tuple)) or not masters:
        raise MinionConfigError("masters must be a non-empty list of host[:port] strings")
    clean = [validate_host_port(entry) for entry in masters]
    lowered = [entry.lower() for entry in clean]
    dupes = sorted({entry for entry in lowered if lowered.count(entry) > 1})
    if dupes:
        raise MinionConfigError(f"masters lists {', '.join(dupes)} more than once")

    if not isinstance(failover, bool):
        raise MinionConfigError("failover must be true or false")
    if not isinstance(nat_keepalive, bool):
        raise MinionConfigError("nat_keepalive must be true or false")
    if not _is_int(master_alive_interval) or not 1 <= master_alive_interval <= 86400:
        raise MinionConfigError("master_alive_interval must be an integer number of seconds, 1-86400")
    if not failover and len(clean) != 1:
        raise MinionConfigError(
            "failover=False takes exactly one master (master_type: str); "
            f"got {len(clean)} - use failover=True for a master list"
        )

    # enrollment
    if site is not None:
        try:
            _token.validate_site(site)
        except _token.TokenError as err:
            raise MinionConfigError(f"site: {err}") from None
    secret = None
    if site_key is not None and shared_secret is not None:
        raise MinionConfigError("give site_key or shared_secret, not both")
    if enrollment_key is not None and (site_key is not None or shared_secret is not None):
        raise MinionConfigError("give enrollment_key or a site_key/shared_secret, not both")
    if enrollment_key is not None:
        from saltext_edge import enrollment as _enr  # pylint: disable=import-outside-toplevel

        try:
            key_site, _, key = _enr.parse_key(enrollment_key)
        except _enr.EnrollmentError as err:
            raise MinionConfigError(f"enrollment_key: {err}") from None
        if site is not None and site != key_site:
            raise MinionConfigError(
                f"enrollment_key is for site {key_site!r}, not {site!r} (drop site: the key names it)"
            )
        secret = {"kind": "enrollment_key", "value": enrollment_key.strip(),
                  "fingerprint": _token.key_fingerprint(key)}
    elif site_key is not None:
        if site is None:
            raise MinionConfigError("site_key needs site (a site key belongs to one site)")
        try:
            value = _token.validate_site_key(site_key)
        except _token.TokenError as err:
            raise MinionConfigError(f"site_key: {err}") from None
        secret = {"kind": "site_key", "value": value}
    elif shared_secret is not None:
        if site is None:
            raise MinionConfigError("shared_secret needs site (the site key is derived for it)")
        if not isinstance(shared_secret, str):
            raise MinionConfigError("shared_secret must be a string")
        if len(shared_secret) < _token.MIN_SECRET_LEN:
            raise MinionConfigError(
                f"shared_secret is too short: at least {_token.MIN_SECRET_LEN} characters"
            )
        if shared_secret != shared_secret.strip() or "\n" in shared_secret:
            raise MinionConfigError(
                "shared_secret must not start or end with whitespace or contain newlines"
            )
        secret = {"kind": "shared_secret", "value": shared_secret}
    if secret_file is not None:
        if not isinstance(secret_file, str) or not os.path.isabs(secret_file):
            raise MinionConfigError("secret_file must be an absolute path")
        if secret_file.endswith(".conf") and os.path.basename(os.path.dirname(secret_file)) == (
            "minion.d"
        ):
            raise MinionConfigError("secret_file must not be a minion.d/*.conf file")
    if secret is not None:
        secret["path"] = secret_file or default_secret_file(name)
        if os.path.abspath(secret["path"]) == os.path.abspath(name):
            raise MinionConfigError("secret_file must differ from the drop-in path")
        secret.setdefault("fingerprint", _token.key_fingerprint(secret["value"]))

    # extra
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise MinionConfigError("extra must be a dictionary of minion options")
    _check_plain(extra, "extra")
    for key in extra:
        if not key:
            raise MinionConfigError("extra: empty option name")
    core = sorted(key for key in extra if key in CORE_KEYS)
    if core:
        raise MinionConfigError(
            f"extra sets {', '.join(core)}, which this state manages; "
            "use the state's own parameters (masters, failover, master_alive_interval, site, ...)"
        )

    data = {}
    if failover:
        data["master"] = list(clean)
        data["master_type"] = "failover"
    else:
        data["master"] = clean[0]
        data["master_type"] = "str"
    data["master_alive_interval"] = master_alive_interval
    overridden = []
    if nat_keepalive:
        for key, value in recommended.items():
            if key in ("master_alive_interval",) or key in CORE_KEYS:
                continue
            if key in extra:
                if extra[key] != value:
                    overridden.append(key)
                continue
            if key == "retry_dns" and failover:
                # Salt requires retry_dns: 0 with master_type: failover (it
                # forces 0 and logs CRITICAL otherwise): a master name that
                # does not resolve must send the minion to the next master.
                value = 0
            data[key] = value
    if any(_has_port(entry) for entry in clean) and "publish_port" not in extra:
        notes.append(
            "a master address carries a port: if the masters' publish port is not 4505, "
            "set extra publish_port, which the master_alive_interval check watches"
        )
    if site is not None or enrollment_key is not None:
        data["autosign_grains"] = ["edge_token"]
        # a node whose id is squatted is denied until the master frees the
        # id; Salt's minion exits on a denial unless told to retry
        data["rejected_retry"] = True
        edge = {"site": site} if site is not None else {}
        if secret is not None:
            edge[secret["kind"] + "_file"] = secret["path"]
        data["edge"] = edge
    for key in sorted(extra):
        data[key] = _normalise(extra[key])
    if overridden:
        notes.append("extra overrides the recommended " + ", ".join(sorted(overridden)))

    return {
        "path": name,
        "content": render(data),
        "data": data,
        "secret": secret,
        "overridden": sorted(overridden),
        "notes": notes,
    }


class _Dumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def render(data):
    """Deterministic drop-in text (header comment + block YAML)."""
    body = yaml.dump(
        data, Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True
    )
    return HEADER + body


# --------------------------------------------------------------------------
# comparing with the disk
# --------------------------------------------------------------------------
def _read_text(path):
    try:
        with open(path, encoding="utf-8") as fh_:
            return fh_.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        with open(path, encoding="utf-8", errors="replace") as fh_:
            return fh_.read()


def diff_text(old, new, path):
    """Unified diff of the drop-in (``old`` None for a new file)."""
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=path if old is not None else "/dev/null",
        tofile=path,
    )
    return "".join(lines)


def compare(plan):
    """
    Return what would change: ``{"dropin": bool, "diff": str, "secret": None |
    {"path", "action": "create"|"update"|"chmod"|None, "fingerprint", "old_fingerprint"}}``.
    Nothing secret is in the result.
    """
    old = _read_text(plan["path"])
    result = {
        "dropin": old != plan["content"],
        "new_file": old is None,
        "diff": diff_text(old, plan["content"], plan["path"]) if old != plan["content"] else "",
        "secret": None,
    }
    secret = plan["secret"]
    if secret is not None:
        info = {
            "path": secret["path"],
            "action": None,
            "fingerprint": secret["fingerprint"],
            "old_fingerprint": None,
        }
        try:
            st_ = os.lstat(secret["path"])
        except FileNotFoundError:
            st_ = None
        if st_ is None:
            info["action"] = "create"
        elif not stat.S_ISREG(st_.st_mode):
            info["action"] = "update"
            info["old_fingerprint"] = "not a regular file"
        else:
            with open(secret["path"], "rb") as fh_:
                current = fh_.read()
            if not hmac.compare_digest(current, secret["value"].encode("utf-8")):
                info["action"] = "update"
                info["old_fingerprint"] = (
                    _fingerprint_of(current.strip()) if current.strip() else "empty"
                )
            elif stat.S_IMODE(st_.st_mode) != 0o600 or st_.st_uid != os.geteuid():
                info["action"] = "chmod"
        result["secret"] = info
    return result


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def atomic_write(path, data, mode):
    """
    Write ``data`` (bytes) to ``path`` atomically: a temporary file in the same
    directory, created with ``mode`` from the start (``mkstemp`` makes it
    0600, then ``fchmod`` to ``mode``), fsync'd, then ``os.replace``'d over
    ``path``; the directory is fsync'd afterwards.
    """
    directory = os.path.dirname(path) or "."
    fd_, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd_, mode)
        with os.fdopen(fd_, "wb") as fh_:
            fh_.write(data)
            fh_.flush()
            os.fsync(fh_.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def apply(plan, state=None):
    """
    Make the disk match ``plan``; return the :func:`compare` result that was
    acted on. The secret file is written before the drop-in that points to it.
    """
    state = state or compare(plan)
    secret = plan["secret"]
    info = state["secret"]
    if secret is not None and info["action"]:
        directory = os.path.dirname(secret["path"])
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        if info["action"] == "chmod":
            os.chmod(secret["path"], 0o600)
        else:
            atomic_write(secret["path"], secret["value"].encode("utf-8"), 0o600)
    if state["dropin"]:
        directory = os.path.dirname(plan["path"])
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o755)
        atomic_write(plan["path"], plan["content"].encode("utf-8"), 0o644)
    return state


# --------------------------------------------------------------------------
# conflicts elsewhere in the minion configuration
# --------------------------------------------------------------------------
def mask(value, key=""):
    """Hide values of secret-looking keys (recursively) before showing them."""
    lowered = key.lower()
    if value is None:
        return None
    if (
        any(hint in lowered for hint in _SECRET_KEY_HINTS)
        and not lowered.endswith("_file")
        and not isinstance(value, (dict, list))
    ):
        return HIDDEN
    if isinstance(value, dict):
        return {str(k): mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item, key) for item in value]
    return value


def config_files(name, main_config=None):
    """
    The other files that make up the minion's configuration, in the order
    Salt reads them: the main file, then ``minion.d/*.conf`` sorted.
    Returns ``[(path, position)]`` where position is ``"main"``, ``"before"``
    or ``"after"`` (relative to the drop-in, which wins over earlier files).
    """
    dropin_dir = os.path.dirname(os.path.abspath(name))
    if main_config is None:
        main_config = os.path.join(os.path.dirname(dropin_dir), "minion")
    files = []
    if main_config and os.path.isfile(main_config):
        files.append((main_config, "main"))
    try:
        entries = sorted(os.listdir(dropin_dir))
    except OSError:
        entries = []
    base = os.path.basename(name)
    for entry in entries:
        if not entry.endswith(".conf") or entry == base:
            continue
        path = os.path.join(dropin_dir, entry)
        if os.path.isfile(path):
            files.append((path, "before" if entry < base else "after"))
    return files


def find_conflicts(plan, main_config=None):
    """
    Return ``(conflicts, problems)``: each conflict is ``{"file", "option",
    "value", "managed", "effective"}`` where ``effective`` says whose value the
    minion ends up with (``"drop-in"``, ``"other file"`` or ``"merged"``);
    problems are files that could not be read or parsed. Values of
    secret-looking options are masked.
    """
    conflicts, problems = [], []
    managed = plan["data"]
    for path, position in config_files(plan["path"], main_config):
        try:
            with open(path, encoding="utf-8") as fh_:
                loaded = yaml.safe_load(fh_)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            problems.append(f"{path}: cannot be read as YAML ({err.__class__.__name__})")
            continue
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            problems.append(f"{path}: not a mapping of options")
            continue
        for option, ours in managed.items():
            if option not in loaded:
                continue
            theirs = loaded[option]
            if option == "edge" and isinstance(theirs, dict) and isinstance(ours, dict):
                items = []
                for sub in sorted(theirs, key=str):
                    if sub in ours:
                        if theirs[sub] != ours[sub]:
                            items.append((f"edge:{sub}", theirs[sub], ours[sub]))
                    elif sub in _CREDENTIAL_KEYS:
                        items.append((f"edge:{sub}", theirs[sub], None))
            elif theirs != ours:
                items = [(option, theirs, ours)]
            else:
                items = []
            for label, value, mine in items:
                if position == "main":
                    effective = "drop-in"
                elif position == "after" and not isinstance(mine, (list, dict)):
                    effective = "other file"
                elif isinstance(mine, (list, dict)) or isinstance(value, (list, dict)):
                    effective = "merged"
                else:
                    effective = "drop-in"
                leaf = label.split(":")[-1]
                conflicts.append(
                    {
                        "file": path,
                        "option": label,
                        "value": mask(value, leaf),
                        "managed": mask(mine, leaf),
                        "effective": effective,
                    }
                )
    return conflicts, problems


def describe_conflicts(conflicts):
    """One line per conflict, for the state's comment."""
    lines = []
    for item in conflicts:
        how = {
            "drop-in": "the drop-in wins",
            "other file": "that file wins over the drop-in",
            "merged": "Salt merges lists/dicts across minion.d files",
        }[item["effective"]]
        lines.append(
            f"{item['option']} is {json.dumps(item['value'], default=str)} in {item['file']} "
            f"(managed: {json.dumps(item['managed'], default=str)}; {how})"
        )
    return lines


# --------------------------------------------------------------------------
# restart
# --------------------------------------------------------------------------
# Runs detached (own session, no inherited descriptors) with ``python -c``, so
# it needs nothing from this package: a synced copy has no importable library
# outside the loader.
RESTART_HELPER = r"""
import json, os, signal, subprocess, sys, time
cfg = json.loads(sys.argv[1])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
deadline = time.time() + cfg["wait_timeout"]
while time.time() < deadline:
    busy = False
    if cfg.get("job_pid") and alive(cfg["job_pid"]):
        busy = True
    if any(os.path.exists(path) for path in cfg.get("proc_files") or ()):
        busy = True
    if not busy:
        break
    time.sleep(0.2)
time.sleep(cfg["grace"])
method = cfg["method"]
if method == "command":
    subprocess.call(cfg["command"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
    sys.exit(0)
if method == "systemd":
    subprocess.call([cfg["systemctl"], "restart", cfg["unit"]], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.exit(0)
def starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
pids = cfg["pids"]  # [supervisor-or-daemon, daemon]: the first gets the signal
for pid, start in zip(pids, cfg["starttimes"]):
    if alive(pid) and starttime(pid) != start:
        sys.exit(3)  # pid reused: not the process we were asked to restart
if not any(alive(pid) for pid in pids):
    sys.exit(4)  # already gone: someone else stopped it
os.kill(pids[0], signal.SIGTERM)
end = time.time() + cfg["stop_timeout"]
while any(alive(pid) for pid in pids) and time.time() < end:
    time.sleep(0.2)
for pid in pids:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
end = time.time() + 10
while any(alive(pid) for pid in pids) and time.time() < end:
    time.sleep(0.2)
# a stopped daemon whose parent has not reaped it yet still "runs" for
# Salt's pidfile check: drop a pidfile that names a process we saw stop
if cfg.get("pidfile"):
    head, tail = os.path.split(cfg["pidfile"])
    for path in (cfg["pidfile"], os.path.join(head, "process_responsibility_" + tail)):
        try:
            with open(path) as fh:
                text = fh.read().strip()
            owner = json.loads(text)["pid"] if text.startswith("{") else int(text)
            if owner in pids and not alive(owner):
                os.unlink(path)
        except (OSError, ValueError, TypeError, KeyError):
            pass
subprocess.Popen(cfg["argv"], cwd=cfg["cwd"], stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 start_new_session=True, close_fds=True)
"""


def _proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh_:
            return [arg.decode() for arg in fh_.read().split(b"\0") if arg]
    except OSError:
        return None


def _systemd_unit(pid):
    """
    The systemd system service whose own cgroup holds ``pid``, else None.
    Only a leaf ``/system.slice/NAME.service`` counts: a process in a user
    session or under ``user@UID.service`` is not run by a minion unit.
    """
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh_:
            for line in fh_:
                path = line.strip().split(":", 2)[-1]
                parts = [part for part in path.split("/") if part]
                if (
                    len(parts) == 2
                    and parts[0] == "system.slice"
                    and parts[1].endswith(".service")
                ):
                    return parts[1]
    except OSError:
        pass
    return None


def _read_pid(pidfile):
    try:
        with open(pidfile, encoding="utf-8") as fh_:
            return int(fh_.read().strip())
    except (OSError, ValueError):
        return None


def _looks_like_minion(argv):
    return bool(argv) and any("salt-minion" in arg or "salt_minion" in arg for arg in argv[:3])


def _proc_stat(pid):
    """``(ppid, starttime)`` of ``pid`` from /proc, or ``(None, None)``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh_:
            fields = fh_.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, ValueError, IndexError):
        return None, None


def find_minion_process(opts, grains_pid=None):
    """
    Return the pids of the running salt-minion daemon as a list: ``[daemon]``
    or ``[keep-alive supervisor, daemon]``; empty when none is found. Looks at
    the minion's pidfile, then (inside the daemon) the ``pid`` grain.
    """
    candidates = []
    pidfile = opts.get("pidfile")
    if pidfile:
        candidates.append(_read_pid(pidfile))
    if grains_pid and opts.get("__cli") != "salt-call":
        candidates.append(grains_pid)
    for pid in candidates:
        if not pid or not _looks_like_minion(_proc_argv(pid)):
            continue
        ppid, _ = _proc_stat(pid)
        if ppid and ppid > 1 and _looks_like_minion(_proc_argv(ppid)):
            return [ppid, pid]  # the keep-alive supervisor first
        return [pid]
    return []


def plan_restart(opts, grains_pid=None, daemon_argv=None):
    """
    Decide how to restart the minion. Returns a dict with ``method``
    (``command`` | ``systemd`` | ``reexec`` | ``None``) and a human
    ``description``; for ``None``, ``description`` says why not.

    ``daemon_argv`` is the daemon's real command line (``[sys.executable] +
    sys.argv`` seen from a job forked by the daemon); ``/proc/PID/cmdline``
    cannot be trusted for it because Salt rewrites its process titles.
    """
    command = opts.get("minion_restart_command")
    if command:
        if isinstance(command, str):
            command = command.split()
        return {
            "method": "command",
            "command": list(command),
            "description": "minion_restart_command " + " ".join(command),
        }
    pids = find_minion_process(opts, grains_pid)
    if not pids:
        return {
            "method": None,
            "description": "no running salt-minion daemon found; "
            "the new settings apply when the minion next starts",
        }
    unit = _systemd_unit(pids[-1])
    systemctl = _which("systemctl")
    if unit and unit != "init.scope" and systemctl and os.path.isdir("/run/systemd/system"):
        return {
            "method": "systemd",
            "unit": unit,
            "systemctl": systemctl,
            "description": f"systemctl restart {unit}",
        }
    if not daemon_argv:
        return {
            "method": None,
            "description": f"salt-minion pid {pids[-1]} runs without a service manager and "
            "its command line is only known inside the daemon; restart it by hand, run "
            "this state through the daemon, or set minion_restart_command",
        }
    try:
        cwd = os.readlink(f"/proc/{pids[-1]}/cwd")
    except OSError:
        cwd = "/"
    return {
        "method": "reexec",
        "pid": pids[-1],
        "pids": pids,
        "starttimes": [_proc_stat(pid)[1] for pid in pids],
        "argv": list(daemon_argv),
        "pidfile": opts.get("pidfile"),
        "cwd": cwd,
        "description": f"stop salt-minion pid {pids[0]} and start it again with the same "
        "command line",
    }


def _which(cmd):
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) + [
        "/usr/bin",
        "/bin",
    ]:
        path = os.path.join(directory, cmd)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def schedule_restart(restart, job_pid=None, proc_files=None, wait_timeout=300, grace=1.0):
    """
    Start the detached restart helper for ``restart`` (from :func:`plan_restart`).
    It waits (at most ``wait_timeout`` seconds) until ``job_pid`` has exited
    and every path in ``proc_files`` is gone (the job that reports the change
    has sent its return), then restarts. Returns the helper's pid.
    """
    cfg = copy.deepcopy(restart)
    cfg.update(
        {
            "job_pid": job_pid,
            "proc_files": list(proc_files or ()),
            "wait_timeout": wait_timeout,
            "grace": grace,
            "stop_timeout": 30,
        }
    )
    cfg.pop("description", None)
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-c", RESTART_HELPER, json.dumps(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        cwd="/",
    )
    return proc.pid
