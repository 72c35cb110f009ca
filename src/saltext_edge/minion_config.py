"""
Library behind the state ``edge.minion_config`` (``docs/howto/keep-settings.rst``;
the contract is in ``docs/design.rst``). Pure logic plus careful file I/O; no
Salt loader dunders. The state runs parse -> plan -> apply -> report:

* :meth:`Request.parse` validates every parameter (raises
  :class:`MinionConfigError` before anything touches the disk) and
  :func:`build_plan` renders the drop-in deterministically;
* :func:`compare` tells what differs on disk (drop-in text, secret file content
  and mode) with a unified diff of the drop-in, and :func:`find_conflicts`
  what other minion configuration files set differently;
* :func:`apply` writes atomically (:func:`saltext_edge.fileio.atomic_write`);
  the secret file is created ``0600`` from the start;
* :func:`changes` and :func:`comment` shape the state's report; the restart
  is :mod:`saltext_edge.minion_restart`'s job.

The site key / shared secret never appears in the drop-in, a diff, a return,
a comment, a repr or a log line: only :func:`saltext_edge.tokens.key_fingerprint` of it.
"""

import difflib
import hmac
import logging
import os
import stat

import yaml

from saltext_edge import settings as _settings
from saltext_edge import tokens as _token
from saltext_edge.fileio import atomic_write
from saltext_edge.minion_conflicts import HIDDEN
from saltext_edge.minion_request import CORE_KEYS, Request, _has_port, _normalise

log = logging.getLogger(__name__)

HEADER = (
    "# Managed by Salt: state edge.minion_config (saltext-edge).\n"
    "# Manual changes are overwritten on the next state run.\n"
)


# --------------------------------------------------------------------------
# the plan: the options the drop-in holds
# --------------------------------------------------------------------------
def minion_options(request, recommended=None):
    """
    The options the drop-in sets for ``request``, in file order. Returns
    ``(data, overridden, notes)``: ``overridden`` lists recommended NAT
    options that ``extra`` replaces with other values.
    """
    # the NAT keep-alive / reconnect settings of saltext_edge.settings (the
    # audit checks the same values); retry_dns is adjusted below
    recommended = _settings.RECOMMENDED if recommended is None else recommended
    extra, notes = request.extra, []
    if request.failover:
        data = {"master": list(request.masters), "master_type": "failover"}
    else:
        data = {"master": request.masters[0], "master_type": "str"}
    data["master_alive_interval"] = request.master_alive_interval
    overridden = []
    for key, value in recommended.items() if request.nat_keepalive else ():
        if key in CORE_KEYS:
            continue
        if key in extra:
            if extra[key] != value:
                overridden.append(key)
            continue
        # Salt requires retry_dns: 0 with master_type: failover (it forces 0
        # and logs CRITICAL otherwise): a master name that does not resolve
        # must send the minion to the next master.
        data[key] = 0 if key == "retry_dns" and request.failover else value
    if any(_has_port(entry) for entry in request.masters) and "publish_port" not in extra:
        notes.append(
            "a master address carries a port: if the masters' publish port is not 4505, "
            "set extra publish_port, which the master_alive_interval check watches"
        )
    enrolls = request.secret is not None and request.secret.kind == "enrollment_key"
    if request.site is not None or enrolls:
        data["autosign_grains"] = ["edge_token"]
        # a node whose id is squatted is denied until the master frees the
        # id; Salt's minion exits on a denial unless told to retry
        data["rejected_retry"] = True
        # sign in again soon (the master admits a node within a few tenths
        # of a second of its first sign-in), backing off while pending:
        # docs/benchmarks.rst
        for key, value in _settings.RECOMMENDED_ENROLL.items():
            if key not in extra:
                data[key] = value
        edge = {"site": request.site} if request.site is not None else {}
        if request.secret is not None:
            edge[request.secret.kind + "_file"] = request.secret.path
        data["edge"] = edge
    for key in sorted(extra):
        data[key] = _normalise(extra[key])
    if overridden:
        notes.append("extra overrides the recommended " + ", ".join(sorted(overridden)))
    return data, sorted(overridden), notes


def plan_from(request, recommended=None):
    """
    The plan for a :class:`Request` (a dict): ``path``, ``content`` (drop-in
    text), ``data`` (the options written), ``secret`` (``None`` or
    ``{"path", "kind", "value", "fingerprint"}``), ``overridden``
    (recommended NAT options replaced by ``extra``), ``notes`` (list of str).
    """
    data, overridden, notes = minion_options(request, recommended)
    return {
        "path": request.path,
        "content": render(data),
        "data": data,
        "secret": request.secret.as_dict() if request.secret else None,
        "overridden": overridden,
        "notes": list(request.notes) + notes,
    }


def build_plan(name, masters, recommended=None, **params):
    """
    Validate the state's parameters (see :meth:`Request.parse`) and return
    the plan of :func:`plan_from`. Raises :class:`MinionConfigError` with a
    clear message on bad input.
    """
    return plan_from(Request.parse(name, masters, **params), recommended)


class _Dumper(yaml.SafeDumper):
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


def _fingerprint_of(value):
    """The fingerprint of a key file's content: of ``K_enr`` for an enrollment key (as the runner shows it)."""
    from saltext_edge import enrollment as _enr  # synced copies import lazily

    try:
        return _token.key_fingerprint(_enr.parse_key(value)[2])
    except _enr.EnrollmentError:
        return _token.key_fingerprint(value)


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
# the state's report
# --------------------------------------------------------------------------
def secret_change(info):
    """The ``secret_file`` entry of the state's changes for :func:`compare`'s ``secret`` (or None)."""
    if info is None or not info["action"]:
        return None
    out = {"path": info["path"], "mode": "0600", "fingerprint": info["fingerprint"]}
    if info["action"] == "create":
        out["old"] = None
        out["new"] = HIDDEN
    elif info["action"] == "update":
        out["old"] = f"{HIDDEN} (fingerprint {info['old_fingerprint']})"
        out["new"] = f"{HIDDEN} (fingerprint {info['fingerprint']})"
    else:
        out["old"] = "wrong mode or owner"
        out["new"] = "mode 0600, owned by the minion's user"
    return out


def changes(state):
    """The state's ``changes`` for a :func:`compare` result: ``diff`` and ``secret_file``."""
    out = {}
    if state["dropin"]:
        out["diff"] = state["diff"] or "New file"
    secret = secret_change(state["secret"])
    if secret:
        out["secret_file"] = secret
    return out


def intended(path, state):
    """What applying would do, as phrases (``create PATH``, ``write the secret file ...``)."""
    what = []
    if state["dropin"]:
        what.append(("create " if state["new_file"] else "update ") + path)
    secret = secret_change(state["secret"])
    if secret:
        what.append(f"write the secret file {secret['path']} (0600)")
    return what


def comment(head, notes=(), warnings=()):
    """The state's comment: ``head``, the notes, then the conflicting settings."""
    parts = [head, *notes]
    if warnings:
        parts.append("Conflicting settings elsewhere in the minion config:")
        parts.extend("  " + line for line in warnings)
    return "\n".join(parts)
