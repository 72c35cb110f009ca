"""
The heartbeat of an edge minion, the one home of its idea (``docs/ref/beacons.rst``):
its event tag, the ``edge_heartbeat`` beacon's settings and their limits,
the (unsigned) payload and the boot number that orders a node's heartbeats
across restarts. The beacon measures the uplink with :mod:`.measure`; the
master side reads the tag from here (:mod:`saltext_edge.fleet.evidence`).
"""

import json
import logging
import os
import random
import time

from saltext_edge import shared_secret as _secrets
from saltext_edge.fileio import atomic_write
from saltext_edge.uplink import measure as _measure

log = logging.getLogger(__name__)

#: the event a heartbeat is sent as (``event.fire_master``)
TAG = "edge/heartbeat"
PAYLOAD_VERSION = 2
#: the beacon's settings, their defaults and their limits (both ends included)
DEFAULTS = {"period": 60.0, "jitter": 0.1, "first_after": 5.0}
LIMITS = {"period": (1.0, 86400.0), "jitter": (0.0, 0.5), "first_after": (0.0, 3600.0)}
#: settings Salt's beacon loop itself reads (not checked here)
SALT_SETTINGS = ("enabled", "interval", "disable_during_state_run")
#: the beacon's boot generation and boot number (the master's replay rule)
BOOT_FILE = "heartbeat-boot.json"


def settings(config):
    """Return the beacon's configuration (a list of one-key mappings, or a mapping) merged into one dict."""
    merged = {}
    if isinstance(config, dict):
        merged.update(config)
    else:
        for item in config or []:
            if isinstance(item, dict):
                merged.update(item)
    return merged


def check(key, value):
    """
    Return ``None`` when ``value`` is within :data:`LIMITS` for setting
    ``key``, else a one-line reason (``"period must be a number between 1
    and 86400"``). Raises ``KeyError`` for a setting not in :data:`LIMITS`.
    """
    low, high = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return f"{key} must be a number between {low:g} and {high:g}"
    return None


def beacon_settings(interval=int(DEFAULTS["period"]), jitter=DEFAULTS["jitter"], enabled=True):
    """
    Return the minion options that turn the ``edge_heartbeat`` beacon on:
    ``{"beacons": {"edge_heartbeat": [{"period": interval}, {"jitter": jitter}]}}``
    (``{"beacons": {"edge_heartbeat": [{"enabled": False}]}}`` with ``enabled=False``).
    Raises :class:`ValueError` on an interval or a jitter outside :data:`LIMITS`.
    """
    if not enabled:
        return {"beacons": {"edge_heartbeat": [{"enabled": False}]}}
    for key, value in (("period", interval), ("jitter", jitter)):
        reason = check(key, value)
        if reason:
            raise ValueError(f"the heartbeat {reason}")
    return {"beacons": {"edge_heartbeat": [{"period": interval}, {"jitter": jitter}]}}


def beacon_enabled(minion_opts):
    """
    Return ``True`` when the minion options (``__opts__`` or a parsed minion
    config) turn the ``edge_heartbeat`` beacon on, ``False`` when it is
    absent or disabled (for ``edge.config_audit``).
    """
    beacons = minion_opts.get("beacons") if isinstance(minion_opts, dict) else None
    if not isinstance(beacons, dict) or beacons.get("enabled") is False:
        return False
    conf = beacons.get("edge_heartbeat")
    if conf is None:
        return False
    return settings(conf if isinstance(conf, list) else [conf]).get("enabled", True) is not False


def host_uptime():
    """Return the host's uptime in seconds (``/proc/uptime``), ``None`` when unknown."""
    try:
        with open("/proc/uptime", encoding="ascii") as fh_:
            return round(float(fh_.read().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


def payload(opts, uplink, seq, boot, period, jitter, now=None):
    """Return the (unsigned) heartbeat payload: id, site, seq, boot, uptime, period, uplink figures, sent_at."""
    return {
        "v": PAYLOAD_VERSION,
        "id": opts["id"],
        "site": _secrets.node_site(opts),
        "seq": int(seq),
        "boot": boot,
        "uptime_s": host_uptime(),
        "sent_at": round(now if now is not None else time.time(), 3),
        "period": float(period),
        "jitter": float(jitter),
        "budget": _measure.budget(opts),
        "uplink": {
            k: uplink.get(k) for k in ("quality", "rtt_ms", "jitter_ms", "loss_pct", "checked_at")
        },
    }


def next_boot(opts):
    """
    Return this start's ``boot``: ``<generation>:<n>``. The generation (16
    hex digits, random) and the boot number ``n`` are kept in
    ``<cachedir>/edge/heartbeat-boot.json``; ``n`` grows by one at each
    start, so the master can order this node's heartbeats across restarts
    without trusting its clock (``docs/ref/engine.rst``, "Replay and
    clocks"). A missing or unreadable file starts a new generation; when it
    cannot be written each start is a generation of its own (still safe,
    see the docs' limits).
    """
    path = os.path.join(os.path.dirname(_measure.cache_path(opts)), BOOT_FILE)
    try:
        with open(path, encoding="utf-8") as fh_:
            state = json.load(fh_)
        gen, number = state["gen"], state["n"]
        if (
            not isinstance(gen, str)
            or len(gen) != 16
            or not all(c in "0123456789abcdef" for c in gen)
            or isinstance(number, bool)
            or not isinstance(number, int)
            or not 0 <= number < 10**17
        ):
            raise ValueError("bad heartbeat boot state")
    except (OSError, ValueError, KeyError, TypeError):
        gen, number = os.urandom(8).hex(), 0
    number += 1
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, json.dumps({"gen": gen, "n": number}).encode("utf-8"), 0o600)
    except OSError as exc:
        log.warning("edge_heartbeat: cannot keep the boot number in %s: %s", path, exc)
        gen, number = os.urandom(8).hex(), 1
    return f"{gen}:{number}"


def next_due(due, period, jitter, rand=random.random):
    """Return the next due time after ``due``: ``period`` seconds later, +/- ``jitter`` of it."""
    return due + period * (1.0 + jitter * (2.0 * rand() - 1.0))
