"""
Arguments of the uplink probe and the diagnostics, validated (pure): targets
(``host``, ``host:port``, ``[v6]:port``), counts, seconds and quality
thresholds. Bad arguments raise :class:`ProbeArgumentError`; network
failures are never raised but reported as data by the probes.
"""

import ipaddress
import math

from saltext_edge.errors import EdgeError

DEFAULT_PORTS = (4505, 4506)
DEFAULT_COUNT = 3
DEFAULT_TIMEOUT = 1.0
DEFAULT_BUDGET = 2.0
MAX_COUNT = 100

#: A sample set is ``good`` when every value is <= the ``good`` limits,
#: ``fair`` when every value is <= the ``fair`` limits, else ``poor``;
#: ``down`` when loss reaches ``down.loss_pct`` (default: nothing came back).
DEFAULT_THRESHOLDS = {
    "good": {"rtt_ms": 100.0, "jitter_ms": 30.0, "loss_pct": 0.0},
    "fair": {"rtt_ms": 300.0, "jitter_ms": 100.0, "loss_pct": 20.0},
    "down": {"loss_pct": 100.0},
}


class ProbeArgumentError(EdgeError, ValueError):
    """Bad arguments (not network failures, which are reported as data)."""


class DiagArgumentError(EdgeError, ValueError):
    """Bad arguments to a diagnostic (network failures are returned as data instead)."""


# --------------------------------------------------------------------------
# argument parsing and validation (pure)
# --------------------------------------------------------------------------


def validate_port(port):
    """Return ``port`` as an int in 1..65535 or raise :class:`ProbeArgumentError`."""
    if isinstance(port, bool):
        raise ProbeArgumentError(f"port must be an integer, not {port!r}")
    try:
        value = int(str(port).strip())
    except (TypeError, ValueError):
        raise ProbeArgumentError(f"port must be an integer, not {port!r}") from None
    if not 1 <= value <= 65535:
        raise ProbeArgumentError(f"port {value} is out of range 1-65535")
    return value


def _validate_host(host):
    if not isinstance(host, str) or not host.strip():
        raise ProbeArgumentError(f"empty or invalid host {host!r}")
    host = host.strip()
    if any(ch.isspace() for ch in host) or "/" in host or "@" in host:
        raise ProbeArgumentError(f"invalid host {host!r}")
    if len(host) > 253:
        raise ProbeArgumentError(f"host name too long ({len(host)} characters)")
    return host


def parse_target(spec, default_ports=DEFAULT_PORTS):
    """
    Parse one target into a list of ``(host, port)`` tuples.

    Accepted: ``"host"`` (expands to every default port), ``"host:port"``,
    ``"[v6addr]:port"``, a bare IPv6 address, ``(host, port)``, or
    ``{"host": ..., "port": ...}``. Raises :class:`ProbeArgumentError`.
    """
    if isinstance(spec, dict):
        if "host" not in spec:
            raise ProbeArgumentError(f"target {spec!r} has no 'host'")
        host = _validate_host(spec["host"])
        port = spec.get("port")
        if port is None:
            return [(host, validate_port(p)) for p in default_ports]
        return [(host, validate_port(port))]
    if isinstance(spec, (list, tuple)):
        if len(spec) != 2:
            raise ProbeArgumentError(f"target {spec!r} must be (host, port)")
        return [(_validate_host(spec[0]), validate_port(spec[1]))]
    if not isinstance(spec, str):
        raise ProbeArgumentError(f"target {spec!r} must be a string")
    text = spec.strip()
    if not text:
        raise ProbeArgumentError("empty target")
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ProbeArgumentError(f"unterminated '[' in target {spec!r}")
        host = text[1:end]
        rest = text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ProbeArgumentError(f"{host!r} in {spec!r} is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise ProbeArgumentError(f"cannot parse target {spec!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ProbeArgumentError(f"cannot parse target {spec!r}") from None
    host = _validate_host(host)
    if port is None:
        return [(host, validate_port(p)) for p in default_ports]
    return [(host, validate_port(port))]


def normalize_targets(targets, default_ports=DEFAULT_PORTS):
    """
    Turn ``targets`` (a string, a comma-separated string or a list of target
    specs) into a de-duplicated list of ``(host, port)`` keeping order.
    """
    if targets is None:
        return []
    ports = [validate_port(p) for p in (default_ports or DEFAULT_PORTS)]
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t.strip()]
    elif isinstance(targets, (dict, tuple)):
        targets = [targets]
    out = []
    for spec in targets:
        for item in parse_target(spec, ports):
            if item not in out:
                out.append(item)
    return out


def validate_count(count):
    if isinstance(count, bool):
        raise ProbeArgumentError(f"count must be an integer, not {count!r}")
    try:
        value = int(count)
    except (TypeError, ValueError):
        raise ProbeArgumentError(f"count must be an integer, not {count!r}") from None
    if value != count and not isinstance(count, str):
        raise ProbeArgumentError(f"count must be an integer, not {count!r}")
    if not 1 <= value <= MAX_COUNT:
        raise ProbeArgumentError(f"count must be between 1 and {MAX_COUNT}, not {value}")
    return value


def validate_seconds(value, name, maximum=3600.0):
    if isinstance(value, bool):
        raise ProbeArgumentError(f"{name} must be a number of seconds, not {value!r}")
    try:
        secs = float(value)
    except (TypeError, ValueError):
        raise ProbeArgumentError(f"{name} must be a number of seconds, not {value!r}") from None
    if math.isnan(secs) or secs <= 0 or secs > maximum:
        raise ProbeArgumentError(f"{name} must be > 0 and <= {maximum:g} seconds, not {value!r}")
    return secs


def merge_thresholds(user=None):
    """
    Overlay user thresholds (same shape as :data:`DEFAULT_THRESHOLDS`, any
    subset) on the defaults and validate them (numbers >= 0, fair >= good).
    """
    merged = {level: dict(limits) for level, limits in DEFAULT_THRESHOLDS.items()}
    if user is None:
        return merged
    if not isinstance(user, dict):
        raise ProbeArgumentError(f"thresholds must be a mapping, not {user!r}")
    for level, limits in user.items():
        if level not in merged:
            raise ProbeArgumentError(
                f"unknown threshold level {level!r} (use {', '.join(sorted(merged))})"
            )
        if not isinstance(limits, dict):
            raise ProbeArgumentError(f"thresholds[{level!r}] must be a mapping")
        for key, value in limits.items():
            if key not in merged[level]:
                raise ProbeArgumentError(
                    f"unknown threshold {level}.{key} (use {', '.join(sorted(merged[level]))})"
                )
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ProbeArgumentError(
                    f"threshold {level}.{key} must be a number, not {value!r}"
                ) from None
            if math.isnan(number) or number < 0:
                raise ProbeArgumentError(f"threshold {level}.{key} must be >= 0, not {value!r}")
            merged[level][key] = number
    for key in merged["good"]:
        if merged["fair"][key] < merged["good"][key]:
            raise ProbeArgumentError(
                f"threshold fair.{key} ({merged['fair'][key]:g}) is below "
                f"good.{key} ({merged['good'][key]:g})"
            )
    return merged
