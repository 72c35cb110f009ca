"""
Which masters this minion has, which one it is attached to, and how each
answers (``edge.check_master``; see ``docs/howto/diagnose.rst``).

Plain library code: functions take the minion ``opts`` and return
JSON-friendly data; network failures are data, bad arguments raise
:class:`saltext_edge.probe.DiagArgumentError`.
"""

import sys
import time
import urllib.parse

from saltext_edge import probe as _probe
from saltext_edge.probe import DiagArgumentError

#: the uplink fields of a probe result that a master check reports
UPLINK_KEYS = _probe.UPLINK_KEYS


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


def active_master(opts):
    """
    Which master this minion is attached to, as far as its opts tell: a
    running minion (or salt-call) that has connected holds the chosen master
    in ``master`` (a string; for failover the full list moves to
    ``master_list``) and its resolved URI in ``master_uri``. Returns
    ``{"master", "master_uri", "master_ip", "source"}``; ``master`` is None
    when no connection was made (e.g. ``salt-call --local``).
    """
    master = opts.get("master")
    connected = bool(opts.get("master_uri")) and isinstance(master, str) and master != ""
    local = opts.get("file_client") == "local" and not opts.get("use_master_when_local")
    if local or not connected:
        return {
            "master": None,
            "master_uri": None,
            "master_ip": None,
            "source": "local mode" if local else "not connected",
        }
    return {
        "master": master,
        "master_uri": opts.get("master_uri"),
        "master_ip": opts.get("master_ip"),
        "source": "opts.master"
        + (" (failover list in master_list)" if opts.get("master_list") else ""),
    }


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
    ret_port = _probe.validate_port(opts.get("master_port") or 4506)
    pub = opts.get("publish_port")
    if not pub:
        pub = _learned_publish_port(opts) or 4505
    return _probe.validate_port(pub), ret_port


def master_targets(masters, opts):
    """
    ``[(label, host, [(role, port), ...]), ...]`` for each master string
    (``host``, ``host:port`` overriding the return port, ``[v6]:port``).
    """
    pub_port, ret_port = _master_ports(opts)
    out = []
    for entry in masters:
        pairs = _probe.parse_target(entry, default_ports=(ret_port,))
        host, port = pairs[0]
        out.append((entry, host, [("publish", pub_port), ("return", port)]))
    return out


def check_master(
    opts, masters=None, count=1, timeout=_probe.DEFAULT_TIMEOUT, budget=3.0, thresholds=None
):
    """
    Per master: DNS answer and time, reachability and latency of the publish
    (4505) and return (4506) ports measured up to the ZeroMQ greeting, and
    which master is active. All masters and ports are probed at once.

    Returns ``{"masters": [...], "active": {...}, "master_type", "reachable",
    "quality", "uplink": {...}, "elapsed_ms", "budget_s"}``; each master has
    ``master``, ``host``, ``dns`` (``addresses``, ``time_ms``, ``error``,
    ``error_class``), ``ports`` (list of ``role``, ``port``, ``reachable``,
    ``rtt_ms``, ``quality``, ``loss_pct``, ``error``), ``reachable`` (both
    ports answered), ``quality`` and ``active``.
    """
    started = time.perf_counter()
    budget = _probe.validate_seconds(budget, "budget")
    count = _probe.validate_count(count)
    timeout = _probe.validate_seconds(timeout, "timeout")
    if masters is None:
        masters = configured_masters(opts)
    elif isinstance(masters, str):
        masters = [m for m in masters.split(",") if m.strip()]
    try:
        plan = master_targets([str(m).strip() for m in masters], opts)
    except _probe.ProbeArgumentError as err:
        raise DiagArgumentError(str(err)) from err
    active = active_master(opts)

    hosts = [host for _label, host, _ports in plan]
    dns = _probe.resolve_many(hosts, min(timeout, budget / 2.0)) if hosts else {}
    targets = [(host, port) for _label, host, ports in plan for _role, port in ports]
    remaining = max(0.05, budget - (time.perf_counter() - started))
    result = (
        _probe.probe(
            targets,
            count=count,
            timeout=timeout,
            budget=remaining,
            thresholds=thresholds,
            resolved=dns,
        )
        if targets
        else None
    )
    by_target = {(t["host"], t["port"]): t for t in (result["targets"] if result else [])}

    out_masters = []
    for label, host, ports in plan:
        res = dns.get(host, {})
        port_rows = []
        for role, port in ports:
            t = by_target.get((host, port), {})
            errors = t.get("errors") or {}
            port_rows.append(
                {
                    "role": role,
                    "port": port,
                    "reachable": bool(t.get("received")),
                    "rtt_ms": t.get("rtt_ms"),
                    "loss_pct": t.get("loss_pct"),
                    "quality": t.get("quality", "unknown"),
                    "error": (", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or None),
                }
            )
        is_active = False
        if active["master"]:
            if active["master"] == label:
                is_active = True
            else:
                # Salt strips ":port" from opts["master"] into master_port;
                # the port of master_uri tells same-host masters apart
                try:
                    act_host = _probe.parse_target(active["master"], (1,))[0][0]
                except _probe.ProbeArgumentError:
                    act_host = active["master"]
                uri_port = None
                try:
                    uri_port = urllib.parse.urlsplit(active["master_uri"] or "").port
                except ValueError:
                    pass
                ret_port = dict(ports)["return"]
                is_active = act_host == host and uri_port in (None, ret_port)
        out_masters.append(
            {
                "master": label,
                "host": host,
                "dns": {
                    "addresses": res.get("addresses", []),
                    "time_ms": res.get("time_ms"),
                    "error": res.get("error"),
                    "error_class": res.get("error_class"),
                },
                "ports": port_rows,
                "reachable": all(p["reachable"] for p in port_rows),
                "quality": _probe.worst(p["quality"] for p in port_rows),
                "active": is_active,
            }
        )
    uplink = None
    if result:
        uplink = {k: result[k] for k in UPLINK_KEYS}
    return {
        "masters": out_masters,
        "active": active,
        "master_type": opts.get("master_type"),
        "reachable": sum(1 for m in out_masters if m["reachable"]),
        "quality": uplink["quality"] if uplink else "unknown",
        "uplink": uplink,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        "budget_s": budget,
    }
