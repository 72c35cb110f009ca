"""
Uplink quality from probe samples (pure): statistics of a target's samples,
the good / fair / poor / down classification against thresholds, the one
rank of the qualities, and the verdict over several targets.
"""

import datetime
import statistics

from saltext_edge.uplink.args import DEFAULT_THRESHOLDS

#: uplink qualities, best first (also the order of the fleet report's counts)
QUALITIES = ("good", "fair", "poor", "down", "unknown")
#: the one rank of the qualities, best (0) to worst; ``unknown`` ranks last
#: for :func:`best` and is skipped by :func:`worst` (nothing known is not bad)
RANK = {quality: rank for rank, quality in enumerate(QUALITIES)}
#: the fields of a probe result that make the ``edge_uplink`` grain (and the
#: uplink of a master check, of a heartbeat and of the stored measurement)
UPLINK_KEYS = ("quality", "rtt_ms", "jitter_ms", "loss_pct", "target", "checked_at")


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


def _known(quality):
    return quality in RANK and quality != "unknown"


def worst(qualities):
    """
    Return the worst known quality of an iterable, ``unknown`` when none is
    known (empty, every one ``unknown``, or not a quality at all).
    """
    known = [q for q in qualities if _known(q)]
    return max(known, key=RANK.__getitem__) if known else "unknown"


def best(qualities):
    """Return the best quality of an iterable (``unknown`` when empty)."""
    qualities = list(qualities)
    if not qualities:
        return "unknown"
    return min(qualities, key=RANK.__getitem__)


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
                RANK[r["quality"]] if _known(r["quality"]) else -1,
                r.get("rtt_ms") or 0.0,
            ),
        )
        host_reps.append(rep)
    chosen = min(host_reps, key=lambda r: (RANK[r["quality"]], r.get("rtt_ms") or 0.0))
    return {
        "quality": chosen["quality"],
        "target": chosen["target"],
        "rtt_ms": chosen.get("rtt_ms"),
        "jitter_ms": chosen.get("jitter_ms"),
        "loss_pct": chosen.get("loss_pct"),
    }


def format_target(host, port):
    """Return ``host:port`` (``[v6]:port`` for an IPv6 address)."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def utc_now_iso():
    """Return the current UTC time as ISO 8601 to the second (``...Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
