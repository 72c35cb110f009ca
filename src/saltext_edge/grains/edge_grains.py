"""
Edge grains (DESIGN.md §4):

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
        thresholds: {good: {rtt_ms: 100, jitter_ms: 30, loss_pct: 0},
                     fair: {rtt_ms: 300, jitter_ms: 100, loss_pct: 20}}

Grains run on the minion's start-up path: the probe ends within ``budget``
seconds even when every target is black-holed, nothing runs at import time,
and no error escapes (a bad config logs a warning and gives ``unknown``).
Masterless runs (``file_client: local``) and ``master_type: disable`` probe
only explicitly configured targets.
"""

import logging

try:
    from saltext_edge import diag as _diag
    from saltext_edge import probe as _probe
    from saltext_edge.tokens import SITE_RE as _SITE_RE

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

log = logging.getLogger(__name__)

_UPLINK_KEYS = ("quality", "rtt_ms", "jitter_ms", "loss_pct", "target", "checked_at")


def __virtual__():
    if not HAS_LIB:
        return (False, "edge grains: the saltext_edge library is missing")
    return True


def _edge_conf():
    conf = __opts__.get("edge")  # pylint: disable=undefined-variable
    return conf if isinstance(conf, dict) else {}


def _enrollment_site():
    """The site named by the node's enrollment key (docs/enrollment.rst), or None."""
    conf = _edge_conf()
    if conf.get("enrollment_key") is None and conf.get("enrollment_key_file") is None:
        return None
    try:
        from saltext_edge import enrollment as _enr  # pylint: disable=import-outside-toplevel
        from saltext_edge import shared_secret as _secrets  # pylint: disable=import-outside-toplevel

        key_text = _secrets.minion_enrollment_key(__opts__)  # pylint: disable=undefined-variable
        return _enr.parse_key(key_text)[0] if key_text else None
    except Exception:  # pylint: disable=broad-except
        return None  # the edge_token grain logs why (without the key)


def edge_site():
    """
    The site of this edge node, from ``edge: {site: ...}`` in the minion
    config, else from its enrollment key. Returns ``{"edge_site": str}`` or ``{}``.
    """
    site = _edge_conf().get("site")
    if site is None:
        site = _enrollment_site()
    if site is None:
        return {}
    if not isinstance(site, str) or not _SITE_RE.match(site):
        log.warning("edge_site grain: ignoring invalid edge:site %r", site)
        return {}
    return {"edge_site": site}


def _unknown(reason):
    log.debug("edge_uplink grain: quality unknown: %s", reason)
    return {
        "edge_uplink": {
            "quality": "unknown",
            "rtt_ms": None,
            "jitter_ms": None,
            "loss_pct": None,
            "target": None,
            "checked_at": _probe.utc_now_iso(),
        }
    }


def _targets(opts, conf):
    if conf.get("targets"):
        return _probe.normalize_targets(conf["targets"], conf.get("ports") or _probe.DEFAULT_PORTS)
    local = opts.get("file_client") == "local" and not opts.get("use_master_when_local")
    if local or opts.get("master_type") == "disable":
        return []
    pairs = []
    for _label, host, ports in _diag.master_targets(_diag.configured_masters(opts), opts):
        for _role, port in ports:
            if (host, port) not in pairs:
                pairs.append((host, port))
    return pairs


def edge_uplink():
    """Probe the uplink to the master(s) within a hard time budget."""
    opts = __opts__  # pylint: disable=undefined-variable
    try:
        conf = _edge_conf().get("uplink") or {}
        if not isinstance(conf, dict):
            raise _probe.ProbeArgumentError("edge:uplink must be a mapping")
        if conf.get("enabled", True) is False:
            return _unknown("disabled by edge:uplink:enabled")
        targets = _targets(opts, conf)
        if not targets:
            return _unknown("no targets (masterless or no master configured)")
        log.debug("edge_uplink grain: probing %d target(s)", len(targets))
        result = _probe.probe(
            targets,
            count=conf.get("count", _probe.DEFAULT_COUNT),
            timeout=conf.get("timeout", _probe.DEFAULT_TIMEOUT),
            budget=conf.get("budget", _probe.DEFAULT_BUDGET),
            thresholds=conf.get("thresholds"),
        )
    except (ValueError, TypeError) as err:
        log.warning("edge_uplink grain: bad edge:uplink configuration: %s", err)
        return _unknown(str(err))
    except Exception as err:  # pylint: disable=broad-except
        # a grain must never break minion start-up
        log.warning("edge_uplink grain: probe failed: %s", err, exc_info=True)
        return _unknown(str(err))
    return {"edge_uplink": {key: result.get(key) for key in _UPLINK_KEYS}}
