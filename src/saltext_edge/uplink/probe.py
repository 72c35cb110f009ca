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

Imports as little as the rest of :mod:`saltext_edge.uplink`.
"""

import errno
import selectors
import socket
import time

from saltext_edge.uplink.args import (
    DEFAULT_BUDGET,
    DEFAULT_COUNT,
    DEFAULT_PORTS,
    DEFAULT_TIMEOUT,
    ProbeArgumentError,
    merge_thresholds,
    normalize_targets,
    validate_count,
    validate_seconds,
)
from saltext_edge.uplink.dns import resolve_many
from saltext_edge.uplink.quality import (
    _round,
    aggregate,
    classify,
    format_target,
    summarize,
    utc_now_iso,
)

ZMTP_SIGNATURE_LEN = 10
#: What a test listener (or any ZMTP 3 peer) sends first.
ZMTP_SIGNATURE = b"\xff" + b"\x00" * 7 + b"\x01" + b"\x7f"


def is_zmtp_greeting(data):
    """True when ``data`` starts with a ZMTP 3 signature (0xFF ... 0x7F)."""
    return len(data) >= ZMTP_SIGNATURE_LEN and data[0] == 0xFF and data[9] == 0x7F


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
