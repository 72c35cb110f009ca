"""
The uplink measured on an edge minion and kept for the ``edge_uplink``
grain (``docs/ref/grains.rst``, ``docs/ref/beacons.rst``): one probe of the
configured targets within ``edge:uplink:budget``, and the latest measurement
in a small file under the minion's cachedir (written atomically) so that the
grain can answer without probing while it is fresh.
"""

import json
import logging
import os
import time

from saltext_edge import config as _config
from saltext_edge.fileio import atomic_write
from saltext_edge.uplink import probe as _probe
from saltext_edge.uplink.quality import UPLINK_KEYS
from saltext_edge.uplink.targets import targets

log = logging.getLogger(__name__)

CACHE_DIR = "edge"
CACHE_FILE = "uplink.json"
DEFAULT_TTL = 180.0


def uplink_conf(opts):
    """Return ``edge:uplink`` (a mapping). Raises :class:`ValueError` when it is not one."""
    conf = _config.edge_conf(opts, lenient=True).get("uplink") or {}
    if not isinstance(conf, dict):
        raise _probe.ProbeArgumentError("edge:uplink must be a mapping")
    return conf


def unknown(reason):
    """Return an ``unknown`` uplink measurement (``reason`` is logged at debug level)."""
    log.debug("edge uplink: quality unknown: %s", reason)
    return {
        "quality": "unknown",
        "rtt_ms": None,
        "jitter_ms": None,
        "loss_pct": None,
        "target": None,
        "checked_at": _probe.utc_now_iso(),
    }


def budget(opts):
    """Return the probe budget in seconds (``edge:uplink:budget``, default 2)."""
    try:
        return float(uplink_conf(opts).get("budget", _probe.DEFAULT_BUDGET))
    except (TypeError, ValueError):
        return _probe.DEFAULT_BUDGET


def measure(opts):
    """
    Probe the uplink within ``edge:uplink:budget`` seconds and return
    ``{quality, rtt_ms, jitter_ms, loss_pct, target, checked_at}``; never
    raises (a bad config or a failure gives ``unknown`` and a warning).
    """
    try:
        conf = uplink_conf(opts)
        if conf.get("enabled", True) is False:
            return unknown("disabled by edge:uplink:enabled")
        pairs = targets(opts, conf)
        if not pairs:
            return unknown("no targets (masterless or no master configured)")
        result = _probe.probe(
            pairs,
            count=conf.get("count", _probe.DEFAULT_COUNT),
            timeout=conf.get("timeout", _probe.DEFAULT_TIMEOUT),
            budget=conf.get("budget", _probe.DEFAULT_BUDGET),
            thresholds=conf.get("thresholds"),
        )
    except (ValueError, TypeError) as err:
        log.warning("edge uplink: bad edge:uplink configuration: %s", err)
        return unknown(str(err))
    except Exception as err:
        log.warning("edge uplink: probe failed: %s", err, exc_info=True)
        return unknown(str(err))
    return {key: result.get(key) for key in UPLINK_KEYS}


def cache_path(opts):
    """Return the path of the measurement file (``<cachedir>/edge/uplink.json``)."""
    return os.path.join(opts.get("cachedir") or "/var/cache/salt/minion", CACHE_DIR, CACHE_FILE)


def save(opts, uplink, now=None):
    """
    Write ``uplink`` with the time it was measured to the measurement file,
    atomically (a temporary file in the same directory renamed over it).
    Returns ``True`` on success; errors are logged, never raised.
    """
    path = cache_path(opts)
    record = {"measured_at": now if now is not None else time.time(), "uplink": uplink}
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # a cache, rewritten every period: never partial, not fsync'd
        atomic_write(path, json.dumps(record).encode("utf-8"), 0o644, durable=False)
    except OSError as exc:
        log.warning("edge uplink: cannot write %s: %s", path, exc)
        return False
    return True


def ttl(opts):
    """Return how long a stored measurement stays fresh, seconds (``edge:uplink:ttl``, default 180)."""
    try:
        value = float(uplink_conf(opts).get("ttl", DEFAULT_TTL))
    except (TypeError, ValueError):
        return DEFAULT_TTL
    return value if value >= 0 else DEFAULT_TTL


def load_fresh(opts, now=None, max_age=None):
    """Return the stored measurement when it is younger than ``max_age`` (default :func:`ttl`), else ``None``."""
    now = now if now is not None else time.time()
    max_age = ttl(opts) if max_age is None else max_age
    try:
        with open(cache_path(opts), encoding="utf-8") as fh_:
            record = json.load(fh_)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("uplink"), dict):
        return None
    measured = record.get("measured_at")
    if not isinstance(measured, (int, float)) or not 0 <= now - measured <= max_age:
        return None
    uplink = record["uplink"]
    return {key: uplink.get(key) for key in UPLINK_KEYS}
