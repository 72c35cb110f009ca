"""
The parameters of the state ``edge.minion_config``, validated into a
:class:`Request` before anything touches the disk (``docs/howto/keep-settings.rst``).
Every error is a :class:`MinionConfigError` whose message names the
parameter and never holds secret material.
"""

import dataclasses
import ipaddress
import os
import re

from saltext_edge import tokens as _token
from saltext_edge.errors import EdgeError

#: options the state itself sets; ``extra`` may not set them
CORE_KEYS = ("master", "master_type", "master_alive_interval", "autosign_grains", "edge")

_HOST_LABEL_RE = re.compile(r"\A(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


class MinionConfigError(EdgeError, ValueError):
    """Bad input to the state. The message never contains secret material."""


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
    if port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535):
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


# --------------------------------------------------------------------------
# the validated request
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Secret:
    """The site key or shared secret to store; its value is in no repr."""

    kind: str  # "site_key", "shared_secret" or "enrollment_key"
    value: str = dataclasses.field(repr=False)
    path: str = ""
    fingerprint: str = ""

    def as_dict(self):
        """The plan's ``secret`` entry: ``{"kind", "value", "path", "fingerprint"}``."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Request:
    """The state's parameters, validated: build it with :meth:`parse`."""

    path: str
    masters: tuple
    master_alive_interval: int = 30
    failover: bool = True
    nat_keepalive: bool = True
    site: str | None = None
    secret: Secret | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()

    @classmethod
    def parse(
        cls,
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
        enrollment_key=None,
    ):
        """
        Validate the state's parameters (documented on the state) and return
        a :class:`Request`. Raises :class:`MinionConfigError` with a clear
        message on bad input.
        """
        notes = []
        _check_name(name, notes)
        clean = _check_masters(masters)
        _check_switches(failover, nat_keepalive, master_alive_interval, clean)
        secret = _check_secret(name, site, site_key, shared_secret, secret_file, enrollment_key)
        return cls(
            path=name,
            masters=tuple(clean),
            master_alive_interval=master_alive_interval,
            failover=failover,
            nat_keepalive=nat_keepalive,
            site=site,
            secret=secret,
            extra=_check_extra(extra),
            notes=tuple(notes),
        )


def _check_name(name, notes):
    """An absolute path of a *.conf file (Salt includes minion.d/*.conf)."""
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
        notes.append(f"{name} is not in a 'minion.d' directory; make sure the minion includes it")


def _check_masters(masters):
    if isinstance(masters, str):
        raise MinionConfigError("masters must be a list of host[:port] strings, not a string")
    if not isinstance(masters, (list, tuple)) or not masters:
        raise MinionConfigError("masters must be a non-empty list of host[:port] strings")
    clean = [validate_host_port(entry) for entry in masters]
    lowered = [entry.lower() for entry in clean]
    dupes = sorted({entry for entry in lowered if lowered.count(entry) > 1})
    if dupes:
        raise MinionConfigError(f"masters lists {', '.join(dupes)} more than once")
    return clean


def _check_switches(failover, nat_keepalive, master_alive_interval, masters):
    if not isinstance(failover, bool):
        raise MinionConfigError("failover must be true or false")
    if not isinstance(nat_keepalive, bool):
        raise MinionConfigError("nat_keepalive must be true or false")
    if not _is_int(master_alive_interval) or not 1 <= master_alive_interval <= 86400:
        raise MinionConfigError(
            "master_alive_interval must be an integer number of seconds, 1-86400"
        )
    if not failover and len(masters) != 1:
        raise MinionConfigError(
            "failover=False takes exactly one master (master_type: str); "
            f"got {len(masters)} - use failover=True for a master list"
        )


def _check_secret(name, site, site_key, shared_secret, secret_file, enrollment_key=None):
    """
    Validate site, the secret and where it goes; return a :class:`Secret` or
    None. An ``enrollment_key`` (docs/enrollment.rst) is stored like a site
    key; its fingerprint is of ``K_enr``, as the runner shows it.
    """
    if site is not None:
        try:
            _token.validate_site(site)
        except _token.TokenError as err:
            raise MinionConfigError(f"site: {err}") from None
    if site_key is not None and shared_secret is not None:
        raise MinionConfigError("give site_key or shared_secret, not both")
    if enrollment_key is not None and (site_key is not None or shared_secret is not None):
        raise MinionConfigError("give enrollment_key or a site_key/shared_secret, not both")
    kind, value, fingerprint = None, None, None
    if enrollment_key is not None:
        kind, value, fingerprint = _check_enrollment_key(enrollment_key, site)
    elif site_key is not None:
        if site is None:
            raise MinionConfigError("site_key needs site (a site key belongs to one site)")
        try:
            kind, value = "site_key", _token.validate_site_key(site_key)
        except _token.TokenError as err:
            raise MinionConfigError(f"site_key: {err}") from None
    elif shared_secret is not None:
        if site is None:
            raise MinionConfigError("shared_secret needs site (the site key is derived for it)")
        kind, value = "shared_secret", _check_shared_secret(shared_secret)
    if secret_file is not None:
        if not isinstance(secret_file, str) or not os.path.isabs(secret_file):
            raise MinionConfigError("secret_file must be an absolute path")
        if secret_file.endswith(".conf") and os.path.basename(os.path.dirname(secret_file)) == (
            "minion.d"
        ):
            raise MinionConfigError("secret_file must not be a minion.d/*.conf file")
    if kind is None:
        return None
    path = secret_file or default_secret_file(name)
    if os.path.abspath(path) == os.path.abspath(name):
        raise MinionConfigError("secret_file must differ from the drop-in path")
    return Secret(kind, value, path, fingerprint or _token.key_fingerprint(value))


def _check_enrollment_key(enrollment_key, site):
    """Return ``("enrollment_key", value, fingerprint)`` for a well-formed key of ``site``."""
    from saltext_edge import enrollment as _enr  # synced copies import lazily

    try:
        key_site, _, key = _enr.parse_key(enrollment_key)
    except _enr.EnrollmentError as err:
        raise MinionConfigError(f"enrollment_key: {err}") from None
    if site is not None and site != key_site:
        raise MinionConfigError(
            f"enrollment_key is for site {key_site!r}, not {site!r} (drop site: the key names it)"
        )
    return "enrollment_key", enrollment_key.strip(), _token.key_fingerprint(key)


def _check_shared_secret(shared_secret):
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
    return shared_secret


def _check_extra(extra):
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise MinionConfigError("extra must be a dictionary of minion options")
    _check_plain(extra, "extra")
    if any(not key for key in extra):
        raise MinionConfigError("extra: empty option name")
    core = sorted(key for key in extra if key in CORE_KEYS)
    if core:
        raise MinionConfigError(
            f"extra sets {', '.join(core)}, which this state manages; "
            "use the state's own parameters (masters, failover, master_alive_interval, site, ...)"
        )
    return dict(extra)
