"""
What the uplink is probed against (``docs/configuration.rst``): the
configured masters on their publish and return ports, or
``edge:uplink:targets``. Pure: reads the minion ``opts`` (and, for the
publish port a master announced, Salt's in-memory credentials); bad targets
raise :class:`~saltext_edge.uplink.args.ProbeArgumentError`.
"""

import sys

from saltext_edge.uplink.args import DEFAULT_PORTS, normalize_targets, parse_target, validate_port


def is_local(opts):
    """Return ``True`` for a masterless run (``file_client: local`` without ``use_master_when_local``)."""
    return opts.get("file_client") == "local" and not opts.get("use_master_when_local")


def configured_masters(opts):
    """
    The minion's configured masters as a list of strings, in order: the
    ``master_list`` Salt keeps for a failover minion once it has connected,
    else ``master`` (a string or a list).
    """
    masters = opts.get("master_list") or opts.get("master")
    if masters is None:
        return []
    if isinstance(masters, str):
        masters = [masters]
    out = []
    for entry in masters:
        if isinstance(entry, str) and entry.strip() and entry.strip() not in out:
            out.append(entry.strip())
    return out


def _learned_publish_port(opts):
    """
    The publish port the master announced when this minion authenticated
    (Salt keeps it in ``salt.crypt.AsyncAuth.creds_map`` in the minion's
    memory; job processes forked from the minion inherit it). None if unknown.
    """
    crypt = sys.modules.get("salt.crypt")
    try:
        creds_map = crypt.AsyncAuth.creds_map if crypt else {}
        found = []
        for key, creds in list(creds_map.items()):
            port = creds.get("publish_port") if isinstance(creds, dict) else None
            if port:
                found.append((key, int(port)))
        uri = opts.get("master_uri")
        for key, port in found:
            if uri and uri in repr(key):
                return port
        if len({port for _key, port in found}) == 1:
            return found[0][1]
    except Exception:  # Salt internals of another version: unknown is fine
        return None
    return None


def _master_ports(opts):
    """
    ``(publish_port, return_port)`` of the master: the minion's
    ``publish_port`` when set (needed anyway for a non-default master publish
    port), else what the master announced at authentication, else 4505.
    """
    ret_port = validate_port(opts.get("master_port") or 4506)
    pub = opts.get("publish_port")
    if not pub:
        pub = _learned_publish_port(opts) or 4505
    return validate_port(pub), ret_port


def master_targets(masters, opts):
    """
    ``[(label, host, [(role, port), ...]), ...]`` for each master string
    (``host``, ``host:port`` overriding the return port, ``[v6]:port``).
    """
    pub_port, ret_port = _master_ports(opts)
    out = []
    for entry in masters:
        pairs = parse_target(entry, default_ports=(ret_port,))
        host, port = pairs[0]
        out.append((entry, host, [("publish", pub_port), ("return", port)]))
    return out


def targets(opts, conf=None):
    """
    Return the ``[(host, port)]`` pairs the uplink is probed against when no
    targets are given, for the ``edge_uplink`` grain, the heartbeat and
    ``edge.uplink`` alike: ``edge:uplink:targets`` (bare hosts on
    ``edge:uplink:ports``, default 4505 and 4506), else every configured
    master on its publish and return ports; ``[]`` for a masterless minion
    or ``master_type: disable``. ``conf`` is the ``edge:uplink`` mapping.
    Raises :class:`~saltext_edge.uplink.args.ProbeArgumentError` on a
    malformed target.
    """
    conf = conf or {}
    if conf.get("targets"):
        return normalize_targets(conf["targets"], conf.get("ports") or DEFAULT_PORTS)
    if is_local(opts) or opts.get("master_type") == "disable":
        return []
    pairs = []
    for _label, host, ports in master_targets(configured_masters(opts), opts):
        for _role, port in ports:
            if (host, port) not in pairs:
                pairs.append((host, port))
    return pairs
