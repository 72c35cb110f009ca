"""
Settings of the fleet engine, from the master config ``edge: {fleet: {...}}``
(see ``docs/configuration.rst`` and ``docs/ref/engine.rst``).

Pure: no Salt, no I/O. Bad values raise :class:`ValueError` with a message
that names the setting; the engine refuses to start on them (fail closed,
nothing is lost: the record stays as it is).
"""

import numbers

from saltext_edge import config as _config

DEFAULTS = {
    # heartbeat period assumed for a node that never told us its own
    "interval": 60.0,
    # missed heartbeats before a node is late / offline
    "late_after": 2,
    "offline_after": 5,
    # share (0..1] of a site's nodes offline or on a poor/down uplink that
    # makes the site degraded; sites with fewer nodes than min_nodes never are
    "degraded_share": 0.5,
    "degraded_min_nodes": 1,
    # seconds after engine start during which no transition is fired
    # (None: the default offline threshold, offline_after * interval, and at
    # least GRACE_MIN: minions take a while to reconnect to a restarted master)
    "grace": None,
    # seconds between two writes of the record
    "flush_interval": 15.0,
    # raw samples kept per node (seconds), hourly aggregates kept (days)
    "raw_seconds": 7200,
    "hourly_days": 30,
    # offline transitions within flap_window seconds that make a node flapping
    "flap_count": 3,
    "flap_window": 86400,
    # count minion_start / minion_ping / salt/auth as signs of life although
    # any accepted minion can forge them (docs/ref/engine.rst, "Signs of life and trust")
    "trust_unsigned": False,
    # warn (log once per node per hour, ``clock_warning`` in edge.node) when a
    # node's clock is further than this from the master's; heartbeats are
    # taken whatever the node's clock says (docs/ref/engine.rst, "Replay and clocks")
    "clock_warn": 300.0,
    # per-site overrides of interval / late_after / offline_after / degraded_*
    "sites": {},
}

GRACE_MIN = 120.0

_SITE_KEYS = ("interval", "late_after", "offline_after", "degraded_share", "degraded_min_nodes")


def _number(name, value, minimum, maximum, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"edge:fleet:{name} must be a number, got {value!r}")
    if integer and int(value) != value:
        raise ValueError(f"edge:fleet:{name} must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"edge:fleet:{name} must be between {minimum} and {maximum}")
    return int(value) if integer else float(value)


def _check(name, value):
    if name == "interval":
        return _number(name, value, 0.2, 86400)
    if name in ("late_after", "offline_after"):
        return _number(name, value, 1, 1000, integer=True)
    if name == "degraded_share":
        return _number(name, value, 0.01, 1.0)
    if name == "degraded_min_nodes":
        return _number(name, value, 1, 10**6, integer=True)
    raise ValueError(f"edge:fleet: unknown setting {name!r}")


def from_opts(opts):
    """
    Return the effective fleet settings of the master options ``opts``
    (:func:`parse` of the ``edge:`` mapping :mod:`saltext_edge.config` reads).
    Raises :class:`ValueError` on a bad value, an unknown key or an ``edge:``
    that is not a mapping.
    """
    return parse(_config.edge_conf(opts))


def parse(edge_conf):
    """
    Return the effective fleet settings (a dict with every key of
    :data:`DEFAULTS`) from the master's ``edge`` config mapping.
    Raises :class:`ValueError` on a bad value or an unknown key.
    """
    edge_conf = edge_conf if isinstance(edge_conf, dict) else {}
    user = edge_conf.get("fleet") or {}
    if not isinstance(user, dict):
        raise ValueError("edge:fleet must be a mapping")
    conf = dict(DEFAULTS)
    if "max_skew" in user:
        # the old name of clock_warn (it used to refuse heartbeats)
        if "clock_warn" in user:
            raise ValueError("edge:fleet: set clock_warn only (max_skew is its old name)")
        user = {("clock_warn" if k == "max_skew" else k): v for k, v in user.items()}
    for key, value in user.items():
        if key not in DEFAULTS:
            raise ValueError(f"edge:fleet: unknown setting {key!r}")
        if key in _SITE_KEYS:
            conf[key] = _check(key, value)
        elif key == "grace":
            conf[key] = None if value is None else _number(key, value, 0, 86400)
        elif key in ("flush_interval", "clock_warn"):
            conf[key] = _number(key, value, 0.1, 86400)
        elif key == "raw_seconds":
            conf[key] = _number(key, value, 3600, 7 * 86400, integer=True)
        elif key == "hourly_days":
            conf[key] = _number(key, value, 1, 366, integer=True)
        elif key == "flap_count":
            conf[key] = _number(key, value, 1, 1000, integer=True)
        elif key == "flap_window":
            conf[key] = _number(key, value, 60, 30 * 86400)
        elif key == "trust_unsigned":
            if not isinstance(value, bool):
                raise ValueError("edge:fleet:trust_unsigned must be true or false")
            conf[key] = value
        elif key == "sites":
            if not isinstance(value, dict):
                raise ValueError("edge:fleet:sites must be a mapping of site: {setting: value}")
            sites = {}
            for site, over in value.items():
                if not isinstance(over, dict):
                    raise ValueError(f"edge:fleet:sites:{site} must be a mapping")
                sites[str(site)] = {k: _check(k, v) for k, v in over.items()}
            conf[key] = sites
    if conf["offline_after"] <= conf["late_after"]:
        raise ValueError("edge:fleet:offline_after must be greater than late_after")
    for site, over in conf["sites"].items():
        late = over.get("late_after", conf["late_after"])
        off = over.get("offline_after", conf["offline_after"])
        if off <= late:
            raise ValueError(
                f"edge:fleet:sites:{site}: offline_after must be greater than late_after"
            )
    return conf


def for_site(conf, site):
    """Return ``{interval, late_after, offline_after, degraded_share, degraded_min_nodes}`` for ``site``."""
    ret = {k: conf[k] for k in _SITE_KEYS}
    ret.update((conf.get("sites") or {}).get(site or "", {}))
    return ret


def grace(conf):
    """Seconds after engine start during which no transition is fired."""
    if conf.get("grace") is not None:
        return conf["grace"]
    return max(conf["offline_after"] * conf["interval"], GRACE_MIN)
