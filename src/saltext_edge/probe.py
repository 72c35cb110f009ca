"""
Uplink probing for edge nodes (``docs/design.rst``, ``docs/howto/diagnose.rst``).

What is measured: for each target ``host:port`` the time from the start of a
TCP connect until the first 10 bytes of the ZeroMQ (ZMTP 3) greeting arrive.
A Salt master's ZeroMQ sockets on 4505 (publish) and 4506 (return) send that
signature (``0xFF``, 8 padding bytes, ``0x7F``) as soon as a connection is
established, so the sample covers the whole path to the master process. A
bare TCP connect only proves that something (a load balancer, a NAT box, the
local kernel on loopback) completed a handshake; it is available as
``mode="connect"`` for non-ZeroMQ targets.

All targets are probed at once from one thread with non-blocking sockets and
a selector; name resolution runs in daemon threads with a bounded wait. The
whole probe, resolution included, ends by ``budget`` seconds whatever the
network does (black-holed targets included), so it is safe on the minion's
start-up path. Nothing here does any I/O at import time.

This module imports only the standard library: it is also shipped to minions
through ``_utils/`` and imported by synced grains and execution modules.
"""

import datetime
import errno
import ipaddress
import math
import selectors
import socket
import statistics
import threading
import time

#: uplink qualities, best first (also the order of the fleet report's counts)
QUALITIES = ("good", "fair", "poor", "down", "unknown")
#: the fields of a probe result that make the ``edge_uplink`` grain
UPLINK_KEYS = ("quality", "rtt_ms", "jitter_ms", "loss_pct", "target", "checked_at")
# rank used to pick "worst port of a master" and "best master of a list"
_RANK = {"good": 0, "fair": 1, "poor": 2, "down": 3, "unknown": 4}

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

ZMTP_SIGNATURE_LEN = 10
#: What a test listener (or any ZMTP 3 peer) sends first.
ZMTP_SIGNATURE = b"\xff" + b"\x00" * 7 + b"\x01" + b"\x7f"


class ProbeArgumentError(ValueError):
    """Bad arguments (not network failures, which are reported as data)."""


class DiagArgumentError(ValueError):
    """Bad arguments to a diagnostic (network failures are returned as data instead)."""


def uplink_targets(opts, conf=None):
    """
    The ``(host, port)`` pairs the uplink is probed against when no targets
    are given, for the ``edge_uplink`` grain and ``edge.uplink`` alike:
    ``edge:uplink:targets`` (bare hosts on ``edge:uplink:ports``, default
    4505 and 4506), else every configured master on its publish and return
    ports; ``[]`` for a masterless minion. ``conf`` is the ``edge:uplink``
    mapping. Raises :class:`ProbeArgumentError` on a malformed target.
    """
    from saltext_edge import masters as _masters  # noqa: PLC0415 - masters imports this module

    conf = conf or {}
    if conf.get("targets"):
        return normalize_targets(conf["targets"], conf.get("ports") or DEFAULT_PORTS)
    local = opts.get("file_client") == "local" and not opts.get("use_master_when_local")
    if local or opts.get("master_type") == "disable":
        return []
    pairs = []
    for _label, host, ports in _masters.master_targets(_masters.configured_masters(opts), opts):
        for _role, port in ports:
            if (host, port) not in pairs:
                pairs.append((host, port))
    return pairs


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


# --------------------------------------------------------------------------
# statistics and classification (pure)
# --------------------------------------------------------------------------


def _round(value, digits=3):
    return None if value is None else round(float(value), digits)


def summarize(samples):
    """
    Summarize a list of samples: each a float (milliseconds) or ``None``
    (lost). Returns ``sent``, ``received``, ``loss_pct``, ``rtt_ms``
    (median), ``jitter_ms`` (mean absolute difference of consecutive answered
    samples, ``None`` with fewer than two), ``min_ms``, ``max_ms``.
    """
    sent = len(samples)
    ok = [float(s) for s in samples if s is not None]
    received = len(ok)
    loss = (100.0 * (sent - received) / sent) if sent else None
    jitter = None
    if received >= 2:
        jitter = statistics.fmean(abs(b - a) for a, b in zip(ok, ok[1:]))
    return {
        "sent": sent,
        "received": received,
        "loss_pct": _round(loss, 1),
        "rtt_ms": _round(statistics.median(ok)) if ok else None,
        "jitter_ms": _round(jitter),
        "min_ms": _round(min(ok)) if ok else None,
        "max_ms": _round(max(ok)) if ok else None,
    }


def classify(summary, thresholds=None):
    """Quality of one target's :func:`summarize` result."""
    limits = thresholds if thresholds is not None else DEFAULT_THRESHOLDS
    sent = summary.get("sent") or 0
    if sent == 0:
        return "unknown"
    received = summary.get("received") or 0
    loss = summary.get("loss_pct") or 0.0
    if received == 0 or loss >= limits["down"]["loss_pct"]:
        return "down"
    rtt = summary.get("rtt_ms") or 0.0
    jitter = summary.get("jitter_ms")
    for level in ("good", "fair"):
        lim = limits[level]
        if (
            rtt <= lim["rtt_ms"]
            and (jitter is None or jitter <= lim["jitter_ms"])
            and loss <= lim["loss_pct"]
        ):
            return level
    return "poor"


def worst(qualities):
    """Worst quality of an iterable ('unknown' when empty)."""
    qualities = list(qualities)
    if not qualities:
        return "unknown"
    known = [q for q in qualities if q != "unknown"]
    if not known:
        return "unknown"
    return max(known, key=_RANK.__getitem__)


def best(qualities):
    """Best quality of an iterable ('unknown' when empty)."""
    qualities = list(qualities)
    if not qualities:
        return "unknown"
    return min(qualities, key=_RANK.__getitem__)


def is_zmtp_greeting(data):
    """True when ``data`` starts with a ZMTP 3 signature (0xFF ... 0x7F)."""
    return len(data) >= ZMTP_SIGNATURE_LEN and data[0] == 0xFF and data[9] == 0x7F


def aggregate(results):
    """
    One verdict from per-target results: targets are grouped by host (a
    master needs both its ports, so a host is as good as its worst port); a
    minion needs one reachable master, so the verdict is the best host. The
    representative target is that host's worst port.
    """
    by_host = {}
    for res in results:
        by_host.setdefault(res["host"], []).append(res)
    if not by_host:
        return {"quality": "unknown", "target": None, "rtt_ms": None, "jitter_ms": None,
                "loss_pct": None}
    host_reps = []
    for _host, items in by_host.items():
        rep = max(
            items,
            key=lambda r: (_RANK[r["quality"]] if r["quality"] != "unknown" else -1,
                           r.get("rtt_ms") or 0.0),
        )
        host_reps.append(rep)
    chosen = min(host_reps, key=lambda r: (_RANK[r["quality"]], r.get("rtt_ms") or 0.0))
    return {
        "quality": chosen["quality"],
        "target": chosen["target"],
        "rtt_ms": chosen.get("rtt_ms"),
        "jitter_ms": chosen.get("jitter_ms"),
        "loss_pct": chosen.get("loss_pct"),
    }


def format_target(host, port):
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def utc_now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# name resolution with a bounded wait
# --------------------------------------------------------------------------


def _is_ip_literal(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_reserved_invalid(host):
    """
    True for names under the ``invalid`` TLD. RFC 6761 §6.4: name resolution
    APIs "SHOULD recognize these names as special and SHOULD always return
    immediately with a negative response"; we do, so no query leaves the host.
    """
    name = host.rstrip(".").lower()
    return name == "invalid" or name.endswith(".invalid")


def _getaddrinfo(host, port):
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen, out = set(), []
    for family, _type, _proto, _canon, sockaddr in infos:
        key = (family, sockaddr[0])
        if key not in seen:
            seen.add(key)
            out.append((family, sockaddr))
    return out


def _resolution(host, addrinfos, started, error=None, error_class=None):
    return {
        "host": host,
        "addresses": [sockaddr[0] for _f, sockaddr in addrinfos],
        "addrinfo": addrinfos,
        "time_ms": _round((time.perf_counter() - started) * 1000.0),
        "error": error,
        "error_class": error_class,
    }


def resolve_many(hosts, timeout):
    """
    Resolve several host names in parallel; return ``{host: result}`` within
    ``timeout`` seconds. Each result has ``addresses`` (list of strings),
    ``addrinfo`` (list of ``(family, sockaddr)``), ``time_ms``, ``error`` and
    ``error_class`` (``dns`` when the name does not resolve, ``timeout`` when
    the resolver did not answer in time). Lookups run in daemon threads, so a
    hung resolver never holds up the caller or interpreter exit.
    """
    results = {}
    pending = {}
    started = time.perf_counter()
    for host in dict.fromkeys(hosts):
        if _is_ip_literal(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sockaddr = (host, 0, 0, 0) if family == socket.AF_INET6 else (host, 0)
            results[host] = _resolution(host, [(family, sockaddr)], started)
            continue
        if is_reserved_invalid(host):
            results[host] = _resolution(
                host, [], started, f"{host}: name does not resolve (RFC 6761 .invalid)", "dns"
            )
            continue
        box = {}
        done = threading.Event()

        def _work(h=host, b=box, d=done):
            t0 = time.perf_counter()
            try:
                b["infos"] = _getaddrinfo(h, None)
            except (OSError, UnicodeError) as err:
                b["error"] = err
            b["time"] = time.perf_counter() - t0
            d.set()

        thread = threading.Thread(target=_work, name=f"edge-dns-{host}", daemon=True)
        thread.start()
        pending[host] = (box, done)
    deadline = started + max(0.0, timeout)
    for host, (box, done) in pending.items():
        done.wait(max(0.0, deadline - time.perf_counter()))
        if not done.is_set():
            results[host] = _resolution(
                host, [], started,
                f"{host}: resolver did not answer within {timeout:.3g} s", "timeout",
            )
            continue
        if "error" in box:
            err = box["error"]
            msg = getattr(err, "strerror", None) or str(err)
            res = _resolution(host, [], started, f"{host}: {msg}", "dns")
        else:
            res = _resolution(host, box["infos"], started)
        res["time_ms"] = _round(box["time"] * 1000.0)
        results[host] = res
    return results


# --------------------------------------------------------------------------
# the prober
# --------------------------------------------------------------------------


class _Target:
    __slots__ = ("host", "port", "family", "sockaddr", "samples", "errors", "left", "dns")

    def __init__(self, host, port, count):
        self.host = host
        self.port = port
        self.family = None
        self.sockaddr = None
        self.samples = []
        self.errors = {}
        self.left = count
        self.dns = None


class _Sample:
    __slots__ = ("target", "sock", "t0", "deadline", "phase", "buf")

    def __init__(self, target, sock, t0, deadline):
        self.target = target
        self.sock = sock
        self.t0 = t0
        self.deadline = deadline
        self.phase = "connect"
        self.buf = b""


def _err_name(code):
    return {
        errno.ECONNREFUSED: "refused",
        errno.ETIMEDOUT: "timeout",
        errno.EHOSTUNREACH: "unreachable",
        errno.ENETUNREACH: "unreachable",
        errno.ECONNRESET: "reset",
    }.get(code, errno.errorcode.get(code, str(code)).lower())


def probe(
    targets,
    count=DEFAULT_COUNT,
    timeout=DEFAULT_TIMEOUT,
    budget=DEFAULT_BUDGET,
    thresholds=None,
    default_ports=DEFAULT_PORTS,
    mode="zmtp",
    interval=0.0,
    resolved=None,
):
    """
    Probe ``targets`` in parallel and classify the uplink.

    :param targets: target specs, see :func:`normalize_targets`.
    :param count: samples per target (1..100), taken one after the other.
    :param timeout: seconds one sample may take (shortened so that the
        remaining samples still fit into the budget).
    :param budget: hard limit in seconds for the whole call, resolution
        included.
    :param thresholds: see :func:`merge_thresholds`.
    :param mode: ``zmtp`` (time connect + ZMTP greeting) or ``connect``.
    :param interval: pause in seconds between samples of one target.
    :param resolved: ``{host: result}`` of :func:`resolve_many` to reuse
        (hosts missing from it are resolved here).

    Returns a dict: ``quality``, ``rtt_ms``, ``jitter_ms``, ``loss_pct``,
    ``target`` (the verdict of :func:`aggregate`), ``checked_at`` (UTC ISO
    8601), ``elapsed_ms``, ``mode``, ``count``, ``budget_s`` and ``targets``
    (per target: ``target``, ``host``, ``port``, ``address``, ``dns_ms``,
    ``samples_ms``, the :func:`summarize` fields, ``quality``, ``errors``
    (reason -> number of lost samples)). Network failures are data, never
    exceptions; bad arguments raise :class:`ProbeArgumentError`.
    """
    started = time.perf_counter()
    count = validate_count(count)
    timeout = validate_seconds(timeout, "timeout")
    budget = validate_seconds(budget, "budget")
    limits = merge_thresholds(thresholds)
    if mode not in ("zmtp", "connect"):
        raise ProbeArgumentError(f"mode must be 'zmtp' or 'connect', not {mode!r}")
    interval = max(0.0, float(interval or 0.0))
    pairs = normalize_targets(targets, default_ports)
    deadline = started + budget
    checked_at = utc_now_iso()

    tlist = [_Target(h, p, count) for h, p in pairs]
    if tlist:
        # resolution may use at most half the budget; the rest is for samples
        dns = dict(resolved or {})
        todo = [t.host for t in tlist if t.host not in dns]
        if todo:
            dns.update(resolve_many(todo, min(timeout, budget / 2.0)))
        for t in tlist:
            res = dns[t.host]
            t.dns = res
            if res["error"]:
                t.errors["dns" if res["error_class"] == "dns" else "dns_timeout"] = count
                t.samples = [None] * count
                t.left = 0
            else:
                t.family, sockaddr = res["addrinfo"][0]
                t.sockaddr = (sockaddr[0], t.port) + tuple(sockaddr[2:])
        _run_samples(tlist, timeout, deadline, mode, interval)

    results = []
    for t in tlist:
        summ = summarize(t.samples)
        res = {
            "target": format_target(t.host, t.port),
            "host": t.host,
            "port": t.port,
            "address": t.sockaddr[0] if t.sockaddr else None,
            "dns_ms": t.dns["time_ms"] if t.dns else None,
            "samples_ms": [_round(s) for s in t.samples],
        }
        res.update(summ)
        res["quality"] = classify(summ, limits)
        res["errors"] = dict(t.errors)
        if t.dns and t.dns["error"]:
            res["error"] = t.dns["error"]
        results.append(res)

    verdict = aggregate(results)
    verdict.update(
        {
            "checked_at": checked_at,
            "elapsed_ms": _round((time.perf_counter() - started) * 1000.0, 1),
            "mode": mode,
            "count": count,
            "budget_s": budget,
            "targets": results,
        }
    )
    return verdict


def _run_samples(tlist, timeout, deadline, mode, interval):
    sel = selectors.DefaultSelector()
    active = {}  # fileno -> _Sample
    waiting = []  # (start_at, target) for the next sample of a target

    def record(sample, value, reason=None):
        try:
            sel.unregister(sample.sock)
        except (KeyError, ValueError):
            pass
        active.pop(sample.sock.fileno(), None)
        try:
            sample.sock.close()
        except OSError:
            pass
        tgt = sample.target
        tgt.samples.append(value)
        if reason:
            tgt.errors[reason] = tgt.errors.get(reason, 0) + 1
        if tgt.left > 0:
            waiting.append((time.perf_counter() + interval, tgt))

    def start(tgt):
        now = time.perf_counter()
        remaining = deadline - now
        slots = tgt.left
        tgt.left -= 1
        per_sample = min(timeout, remaining / max(1, slots))
        try:
            sock = socket.socket(tgt.family, socket.SOCK_STREAM)
        except OSError as err:
            tgt.samples.append(None)
            reason = _err_name(err.errno) if err.errno else "socket"
            tgt.errors[reason] = tgt.errors.get(reason, 0) + 1
            if tgt.left > 0:
                waiting.append((now, tgt))
            return
        sock.setblocking(False)
        t0 = time.perf_counter()
        sample = _Sample(tgt, sock, t0, t0 + per_sample)
        code = sock.connect_ex(tgt.sockaddr)
        active[sock.fileno()] = sample
        if code in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            sel.register(sock, selectors.EVENT_WRITE, sample)
        else:
            record(sample, None, _err_name(code))

    for tgt in tlist:
        if tgt.left > 0:
            waiting.append((0.0, tgt))

    try:
        while True:
            now = time.perf_counter()
            for item in [w for w in waiting if w[0] <= now]:
                waiting.remove(item)
                if now < deadline:
                    start(item[1])
                else:
                    tgt = item[1]
                    tgt.left = 0
            if not active and not waiting:
                break
            now = time.perf_counter()
            if now >= deadline:
                break
            wake = [deadline] + [s.deadline for s in active.values()] + [w[0] for w in waiting]
            wait = max(0.0, min(wake) - now)
            events = sel.select(wait) if active else (time.sleep(wait) or [])
            for key, _mask in events:
                sample = key.data
                if sample.sock.fileno() not in active:
                    continue
                if sample.phase == "connect":
                    code = sample.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        record(sample, None, _err_name(code))
                        continue
                    if mode == "connect":
                        record(sample, (time.perf_counter() - sample.t0) * 1000.0)
                        continue
                    sample.phase = "read"
                    sel.modify(sample.sock, selectors.EVENT_READ, sample)
                    continue
                try:
                    chunk = sample.sock.recv(ZMTP_SIGNATURE_LEN - len(sample.buf))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as err:
                    record(sample, None, _err_name(err.errno) if err.errno else "recv")
                    continue
                if not chunk:
                    # accepted then closed with no greeting: a load balancer
                    # or NAT without a live master behind it
                    record(sample, None, "closed_without_greeting")
                    continue
                sample.buf += chunk
                if len(sample.buf) >= ZMTP_SIGNATURE_LEN:
                    if is_zmtp_greeting(sample.buf):
                        record(sample, (time.perf_counter() - sample.t0) * 1000.0)
                    else:
                        record(sample, None, "not_zmtp")
            now = time.perf_counter()
            for sample in [s for s in active.values() if s.deadline <= now]:
                record(sample, None, "timeout")
    finally:
        # budget exhausted: whatever is still in flight is lost
        for sample in list(active.values()):
            sample.target.left = 0
            record(sample, None, "budget")
        for _at, tgt in waiting:
            tgt.left = 0
        sel.close()
