"""
Which masters this minion has, which one it is attached to, and how each
answers (``edge.check_master``; see ``docs/howto/diagnose.rst``).

Plain library code: functions take the minion ``opts`` and return
JSON-friendly data; network failures are data, bad arguments raise
:class:`saltext_edge.uplink.args.DiagArgumentError`. Which masters are
configured and on which ports is :mod:`saltext_edge.uplink.targets`.
"""

import time
import urllib.parse

from saltext_edge.uplink.args import (
    DEFAULT_TIMEOUT,
    DiagArgumentError,
    ProbeArgumentError,
    parse_target,
    validate_count,
    validate_seconds,
)
from saltext_edge.uplink.dns import resolve_many
from saltext_edge.uplink.probe import probe
from saltext_edge.uplink.quality import UPLINK_KEYS, worst
from saltext_edge.uplink.targets import configured_masters, is_local, master_targets


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
    local = is_local(opts)
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


def check_master(opts, masters=None, count=1, timeout=DEFAULT_TIMEOUT, budget=3.0, thresholds=None):
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
    budget = validate_seconds(budget, "budget")
    count = validate_count(count)
    timeout = validate_seconds(timeout, "timeout")
    if masters is None:
        masters = configured_masters(opts)
    elif isinstance(masters, str):
        masters = [m for m in masters.split(",") if m.strip()]
    try:
        plan = master_targets([str(m).strip() for m in masters], opts)
    except ProbeArgumentError as err:
        raise DiagArgumentError(str(err)) from err
    active = active_master(opts)

    hosts = [host for _label, host, _ports in plan]
    dns = resolve_many(hosts, min(timeout, budget / 2.0)) if hosts else {}
    targets = [(host, port) for _label, host, ports in plan for _role, port in ports]
    remaining = max(0.05, budget - (time.perf_counter() - started))
    result = (
        probe(
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
                    act_host = parse_target(active["master"], (1,))[0][0]
                except ProbeArgumentError:
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
                "quality": worst(p["quality"] for p in port_rows),
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
