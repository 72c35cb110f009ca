"""
Edge grains (docs/design.rst; reference in docs/ref/grains.rst):

* ``edge_site`` -- the site name from the minion config ``edge: {site: ...}``
  (1-64 of ``[A-Za-z0-9._-]``); unset when absent or invalid.
* ``edge_uplink`` -- ``{quality, rtt_ms, jitter_ms, loss_pct, target,
  checked_at}``: the masters' publish and return ports timed up to their
  ZeroMQ greeting, all at once, classified good / fair / poor / down
  (unknown when nothing was probed).

Minion config (all optional)::

    edge:
      site: sh-3
      uplink:
        enabled: true          # false: no probe, quality unknown
        targets: [host, "host:4506", "[2001:db8::1]:4505"]  # default: the masters
        count: 3               # samples per target
        timeout: 1.0           # seconds per sample (shortened to fit the budget)
        budget: 2.0            # hard limit for the whole grain, seconds
        ttl: 180               # seconds a stored measurement stays fresh
        thresholds: {good: {rtt_ms: 100, jitter_ms: 30, loss_pct: 0},
                     fair: {rtt_ms: 300, jitter_ms: 100, loss_pct: 20}}

The latest measurement is kept in ``<cachedir>/edge/uplink.json`` (written
atomically by the ``edge_heartbeat`` beacon and by this grain); while it is
younger than ``edge:uplink:ttl`` seconds (default 180) the grain returns it
without probing, so ``salt-call`` does not pay the probe budget.

Grains run on the minion's start-up path: the probe ends within ``budget``
seconds even when every target is black-holed, nothing runs at import time,
and no error escapes (a bad config logs a warning and gives ``unknown``).
Masterless runs (``file_client: local``) and ``master_type: disable`` probe
only explicitly configured targets.
"""

import logging

try:
    from saltext_edge import config as _config
    from saltext_edge import shared_secret as _secrets
    from saltext_edge.uplink import measure as _measure
    from saltext_edge.uplink.quality import UPLINK_KEYS

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

log = logging.getLogger(__name__)


def __virtual__():
    if not HAS_LIB:
        return (False, "edge grains: the saltext_edge library is missing")
    return True


def edge_site():
    """
    The site of this edge node, from ``edge: {site: ...}`` in the minion
    config, else from its enrollment key
    (:func:`saltext_edge.shared_secret.node_site`, which the heartbeat
    reports too). Returns ``{"edge_site": str}`` or ``{}``.
    """
    site = _secrets.node_site(__opts__)
    if site is None:
        configured = _config.minion_edge(__opts__).site
        if configured is not None:
            log.warning("edge_site grain: ignoring invalid edge:site %r", str(configured)[:80])
        return {}
    return {"edge_site": site}


def edge_uplink():
    """
    Return ``{"edge_uplink": {quality, rtt_ms, jitter_ms, loss_pct, target,
    checked_at}}``: the latest measurement stored by the ``edge_heartbeat``
    beacon (or an earlier grains load) when it is younger than
    ``edge:uplink:ttl`` seconds (default 180), else a new probe within the
    budget (stored for the next load). Never raises.
    """
    opts = __opts__
    try:
        fresh = _measure.load_fresh(opts)
    except Exception as err:
        log.debug("edge_uplink grain: stored measurement unreadable: %s", err)
        fresh = None
    if fresh is not None:
        return {"edge_uplink": fresh}
    uplink = _measure.measure(opts)
    if uplink.get("target") is not None or uplink.get("quality") != "unknown":
        _measure.save(opts, uplink)
    return {"edge_uplink": {key: uplink.get(key) for key in UPLINK_KEYS}}
