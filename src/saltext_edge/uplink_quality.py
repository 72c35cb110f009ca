"""
Uplink quality from probe samples (pure): statistics of a target's samples,
the good / fair / poor / down classification against thresholds, and the
verdict over several targets. Standard library only.
"""

import datetime
import statistics

from saltext_edge.probe_args import DEFAULT_THRESHOLDS

#: uplink qualities, best first (also the order of the fleet report's counts)
QUALITIES = ("good", "fair", "poor", "down", "unknown")
#: the fields of a probe result that make the ``edge_uplink`` grain
UPLINK_KEYS = ("quality", "rtt_ms", "jitter_ms", "loss_pct", "target", "checked_at")
# rank used to pick "worst port of a master" and "best master of a list"
_RANK = {"good": 0, "fair": 1, "poor": 2, "down": 3, "unknown": 4}


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
        return {
            "quality": "unknown",
            "target": None,
            "rtt_ms": None,
            "jitter_ms": None,
            "loss_pct": None,
        }
    host_reps = []
    for _host, items in by_host.items():
        rep = max(
            items,
            key=lambda r: (
                _RANK[r["quality"]] if r["quality"] != "unknown" else -1,
                r.get("rtt_ms") or 0.0,
            ),
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
