"""
The catalogue of the fleet's Prometheus metrics and the ``edge:metrics``
master option that configures their server (metric reference in
docs/ref/metrics.rst, dashboards in docs/howto/grafana.rst).

Cardinality. Per-node series carry only ``id`` and ``site`` labels (never a
status or quality label, which would multiply series and churn them on every
transition): status and uplink quality are numeric gauges. With the default
``per_node: true`` a node costs at most 8 series (those without an uplink
measurement cost 3, one more once a heartbeat gave its clock offset), so
20,000 nodes are at most 160,000 series; per-site
series are O(sites x 5). ``per_node: false`` keeps only the per-site,
admission and engine series for fleets where that is too many.
"""

import ipaddress

from saltext_edge import config as _config
from saltext_edge.errors import EdgeError

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9345
NO_SITE = "(no site)"

STATUSES = ("online", "late", "offline", "never_seen")

# numeric encodings of the two per-node enumerations (docs/ref/metrics.rst)
STATUS_CODE = {"never_seen": 0, "offline": 1, "late": 2, "online": 3}
QUALITY_CODE = {"down": 0, "poor": 1, "fair": 2, "good": 3}

# every metric family the collector serves: name -> (type, labels, help)
METRICS = {
    "edge_node_up": (
        "gauge",
        ("id", "site"),
        "1 while the node is online or late, 0 once it is offline or was never seen",
    ),
    "edge_node_status": (
        "gauge",
        ("id", "site"),
        "Node status: 3 online, 2 late, 1 offline, 0 never seen",
    ),
    "edge_node_last_seen_timestamp_seconds": (
        "gauge",
        ("id", "site"),
        "Unix time of the node's last sign of life (absent if never seen)",
    ),
    "edge_node_uplink_rtt_ms": (
        "gauge",
        ("id", "site"),
        "Latest uplink round-trip time to the master, milliseconds",
    ),
    "edge_node_uplink_jitter_ms": (
        "gauge",
        ("id", "site"),
        "Latest uplink jitter, milliseconds",
    ),
    "edge_node_uplink_loss_pct": (
        "gauge",
        ("id", "site"),
        "Latest uplink probe loss, percent",
    ),
    "edge_node_uplink_quality": (
        "gauge",
        ("id", "site"),
        "Latest uplink quality: 3 good, 2 fair, 1 poor, 0 down (absent if unknown)",
    ),
    "edge_node_clock_offset_seconds": (
        "gauge",
        ("id", "site"),
        "Master receive time minus the node's heartbeat send time, median of its last"
        " heartbeats, seconds (positive: the node's clock is behind; absent before a heartbeat)",
    ),
    "edge_nodes": (
        "gauge",
        ("site", "status"),
        "Nodes per site and status (online, late, offline, never_seen)",
    ),
    "edge_site_uplink_quality_nodes": (
        "gauge",
        ("site", "quality"),
        "Nodes per site and latest uplink quality (good, fair, poor, down, unknown)",
    ),
    "edge_site_uplink_rtt_ms_median": (
        "gauge",
        ("site",),
        "Median of the latest uplink RTT of the site's nodes, milliseconds",
    ),
    "edge_site_uplink_loss_pct_median": (
        "gauge",
        ("site",),
        "Median of the latest uplink loss of the site's nodes, percent",
    ),
    "edge_admission_decisions_total": (
        "counter",
        ("decision", "reason"),
        "Admission decisions by decision and reason",
    ),
    "edge_heartbeats_refused_total": (
        "counter",
        ("reason",),
        "Heartbeats the engine refused since it started, by reason (oversize, malformed,"
        " bad_id, unknown_key, bad_signature, replay)",
    ),
    "edge_engine_events_total": (
        "counter",
        (),
        "Events the edge_fleet engine has handled since it started",
    ),
    "edge_engine_lag_seconds": (
        "gauge",
        (),
        "How far the engine's event handling is behind the event bus, seconds",
    ),
    "edge_engine_store_errors_total": (
        "counter",
        (),
        "Failed writes of the fleet record to the master's cache",
    ),
    "edge_engine_start_time_seconds": (
        "gauge",
        (),
        "Unix time the edge_fleet engine started",
    ),
    "edge_metrics_snapshot_ok": (
        "gauge",
        (),
        "1 when the engine's snapshot could be read for this scrape, else 0",
    ),
}


class MetricsConfigError(EdgeError, ValueError):
    """The ``edge:metrics`` master option is invalid (the message says how)."""


def config(opts):
    """
    Read and validate the master option ``edge: {metrics: ...}``.

    ``edge: {metrics: false}`` disables the metrics server; absent or
    ``true`` means the defaults; a dict may set ``address`` (an IP literal or
    ``localhost``; default ``127.0.0.1`` -- never all interfaces unless set
    explicitly), ``port`` (1-65535, default 9345) and ``per_node`` (default
    true; false keeps only per-site, admission and engine series).

    Returns ``None`` when disabled, else
    ``{"address": str, "port": int, "per_node": bool}``.
    Raises :class:`MetricsConfigError` with a clear message on bad input.
    """
    conf = _config.edge_conf(opts, error=MetricsConfigError).get("metrics", True)
    if conf is False:
        return None
    if conf is True or conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise MetricsConfigError(
            "edge:metrics must be false (disabled) or a mapping with address and port, "
            f"not {type(conf).__name__}"
        )
    unknown = set(conf) - {"address", "port", "per_node", "enabled"}
    if unknown:
        raise MetricsConfigError(
            "edge:metrics: unknown option(s) "
            + ", ".join(sorted(map(str, unknown)))
            + " (known: address, port, per_node, enabled)"
        )
    if conf.get("enabled", True) is False:
        return None
    address = conf.get("address", DEFAULT_ADDRESS)
    if not isinstance(address, str) or not address:
        raise MetricsConfigError("edge:metrics:address must be an IP address such as 127.0.0.1")
    if address != "localhost":
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise MetricsConfigError(
                f"edge:metrics:address {address!r} is not an IP address "
                "(use 127.0.0.1 for this host only, or the pod/host address to expose it)"
            ) from None
    port = conf.get("port", DEFAULT_PORT)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise MetricsConfigError(
            f"edge:metrics:port must be a TCP port 1-65535, not {port!r} "
            "(set edge:metrics: false to disable the metrics server)"
        )
    per_node = conf.get("per_node", True)
    if not isinstance(per_node, bool):
        raise MetricsConfigError("edge:metrics:per_node must be true or false")
    return {"address": address, "port": port, "per_node": per_node}
