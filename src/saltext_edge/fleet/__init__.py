"""
Fleet health behind NAT (see ``docs/ref/engine.rst`` and
``docs/howto/site-goes-dark.rst``): the record the ``edge_fleet`` engine keeps
of every node's signs of life and uplink, status and transitions, and the
minion settings of the ``edge_heartbeat`` beacon.

Modules: :mod:`.conf` (settings), :mod:`.record` (per-node record and
history), :mod:`.status` (online / late / offline, transitions),
:mod:`.evidence` (what counts as a sign of life), :mod:`.signing` (signed
heartbeats), :mod:`.store` (``salt.cache``), :mod:`.sites` (site lookup),
:mod:`.engine` (the engine's state machine), :mod:`.nodeview` (snapshot),
:mod:`.heartbeat` (minion side).
"""

HEARTBEAT_TAG = "edge/heartbeat"
DEFAULT_INTERVAL = 60


def beacon_settings(interval=DEFAULT_INTERVAL, jitter=0.1, enabled=True):
    """
    Return the minion options that turn the ``edge_heartbeat`` beacon on:
    ``{"beacons": {"edge_heartbeat": [{"period": interval}, {"jitter": jitter}]}}``
    (``{"beacons": {"edge_heartbeat": [{"enabled": False}]}}`` with ``enabled=False``).
    Raises :class:`ValueError` on an interval outside 1..86400 s or a jitter outside 0..0.5.
    """
    if not enabled:
        return {"beacons": {"edge_heartbeat": [{"enabled": False}]}}
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not 1 <= interval <= 86400
    ):
        raise ValueError("the heartbeat interval must be 1-86400 seconds")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 0.5:
        raise ValueError("the heartbeat jitter must be a fraction between 0 and 0.5")
    return {"beacons": {"edge_heartbeat": [{"period": interval}, {"jitter": jitter}]}}


def snapshot(opts_or_cache, now=None):
    """
    Return the node snapshot built from the stored record (see
    :func:`saltext_edge.fleet.nodeview.snapshot`): ``{"nodes": {ID: NODE},
    "engine": {...}, "admissions": {(decision, reason): count}}``.
    """
    # imported here: the minion side (beacon, grain) imports this package
    # and needs none of the master-side modules
    from saltext_edge.fleet import nodeview as _snapshot

    return _snapshot.snapshot(opts_or_cache, now=now)


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
    merged = {}
    for item in conf if isinstance(conf, list) else [conf]:
        if isinstance(item, dict):
            merged.update(item)
    return merged.get("enabled", True) is not False
