"""
Prometheus metrics of the fleet record (docs/howto/grafana.rst, metric
reference in docs/ref/metrics.rst).

The ``edge_fleet`` engine keeps the latest fleet snapshot in memory and hands
:func:`serve` a function that returns it; a scrape turns that snapshot into
metrics in the HTTP server's own thread. A scrape does no I/O and takes no
lock the engine holds, so it never blocks the engine's event handling.

Snapshot (what ``saltext_edge.fleet.snapshot`` returns)::

    {"nodes": {ID: {"id", "site", "status", "last_seen_ts", "last_seen_kind",
                    "uplink": {"quality", "rtt_ms", "jitter_ms", "loss_pct"} | None,
                    "admitted_by"}},
     "engine": {"events_seen", "lag_seconds", "store_errors", "started_at"},
     "admissions": {(decision, reason): count}}

Cardinality. Per-node series carry only ``id`` and ``site`` labels (never a
status or quality label, which would multiply series and churn them on every
transition): status and uplink quality are numeric gauges. With the default
``per_node: true`` a node costs at most 7 series (those without an uplink
measurement cost 3), so 20,000 nodes are at most 140,000 series; per-site
series are O(sites x 5). ``per_node: false`` keeps only the per-site,
admission and engine series for fleets where that is too many.
"""

import gzip
import ipaddress
import logging
import socket
import statistics
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

try:
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.samples import Sample

    HAS_PROMETHEUS = True
except ImportError:  # pragma: no cover
    HAS_PROMETHEUS = False

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9345
NO_SITE = "(no site)"

STATUSES = ("online", "late", "offline", "never_seen")
from saltext_edge.uplink_quality import QUALITIES  # noqa: E402  (one definition)

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


class MetricsConfigError(ValueError):
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
    edge = (opts or {}).get("edge") or {}
    if not isinstance(edge, dict):
        raise MetricsConfigError("edge: must be a mapping in the master config")
    conf = edge.get("metrics", True)
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


def _num(value):
    """A finite float, or None for anything that is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value != value or value in (float("inf"), float("-inf")):  # NaN/inf
        return None
    return value


def _escape_value(value):
    """Escape a label value for the text format (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


# per-node families in the order they are served, and which column of a
# digest row (see FleetCollector.digest) each one reads
_NODE_FAMILIES = (
    ("edge_node_up", 2),
    ("edge_node_status", 3),
    ("edge_node_last_seen_timestamp_seconds", 4),
    ("edge_node_uplink_rtt_ms", 5),
    ("edge_node_uplink_jitter_ms", 6),
    ("edge_node_uplink_loss_pct", 7),
    ("edge_node_uplink_quality", 8),
)


class FleetCollector:
    """
    A prometheus-client custom collector over the engine's latest snapshot.

    ``snapshot_fn()`` must return the snapshot without blocking (the engine
    keeps it in memory). :meth:`collect` serves prometheus-client's API;
    :meth:`exposition` writes the same samples straight to the text format
    (what the HTTP server uses: about three times faster at thousands of
    nodes, see docs/benchmarks.rst). Both read :meth:`digest`.
    """

    def __init__(self, snapshot_fn, per_node=True):
        self.snapshot_fn = snapshot_fn
        self.per_node = per_node
        self._last_error_log = 0.0

    def describe(self):
        """Return the metric families (without samples), for registration checks."""
        return [_family(name) for name in METRICS]

    def _snapshot(self):
        try:
            snap = self.snapshot_fn()
            if not isinstance(snap, dict):
                raise TypeError(f"snapshot is a {type(snap).__name__}, not a dict")
            return snap
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.warning("edge metrics: cannot read the fleet snapshot: %s", exc)
            return None

    def digest(self, snap):
        """
        Return ``(rows, sites, admissions, engine)`` from a snapshot: one row
        per node ``(id, site, up, status_code, last_seen, rtt, jitter, loss,
        quality_code)`` (``None`` for what is unknown; no rows with
        ``per_node=False``), per-site ``{"status": counts, "quality":
        counts, "rtt": median, "loss": median}``, ``[(decision, reason,
        count)]`` and ``{family name: value}`` of the engine's health.
        """
        nodes = snap.get("nodes") or {}
        per_node = self.per_node
        rows = []
        by_site = {}
        for node_id, node in nodes.items():
            if not isinstance(node, dict):
                continue
            site = node.get("site") or NO_SITE
            status = node.get("status")
            if status not in STATUS_CODE:
                status = "never_seen"
            uplink = node.get("uplink")
            if not isinstance(uplink, dict):
                uplink = None
            quality = uplink.get("quality") if uplink else None
            if quality not in QUALITY_CODE:
                quality = "unknown"
            agg = by_site.get(site)
            if agg is None:
                agg = by_site[site] = {
                    "status": dict.fromkeys(STATUSES, 0),
                    "quality": dict.fromkeys(QUALITIES, 0),
                    "rtt": [],
                    "loss": [],
                }
            agg["status"][status] += 1
            agg["quality"][quality] += 1
            rtt = jitter = loss = None
            if uplink:
                rtt = _num(uplink.get("rtt_ms"))
                jitter = _num(uplink.get("jitter_ms"))
                loss = _num(uplink.get("loss_pct"))
                if rtt is not None:
                    agg["rtt"].append(rtt)
                if loss is not None:
                    agg["loss"].append(loss)
            if per_node:
                rows.append(
                    (
                        str(node.get("id") or node_id),
                        site,
                        1.0 if status in ("online", "late") else 0.0,
                        float(STATUS_CODE[status]),
                        _num(node.get("last_seen_ts")),
                        rtt,
                        jitter,
                        loss,
                        None if quality == "unknown" else float(QUALITY_CODE[quality]),
                    )
                )
        sites = {}
        for site in sorted(by_site):
            agg = by_site[site]
            sites[site] = {
                "status": agg["status"],
                "quality": agg["quality"],
                "rtt": statistics.median(agg["rtt"]) if agg["rtt"] else None,
                "loss": statistics.median(agg["loss"]) if agg["loss"] else None,
            }
        admissions = []
        for key, count in sorted((snap.get("admissions") or {}).items(), key=lambda kv: str(kv[0])):
            if isinstance(key, (tuple, list)) and len(key) == 2:
                decision, reason = key
            else:
                decision, reason = key, None
            value = _num(count)
            if value is not None:
                admissions.append((str(decision), "" if reason is None else str(reason), value))
        engine_conf = snap.get("engine") or {}
        engine = {}
        for name, key in (
            ("edge_engine_events_total", "events_seen"),
            ("edge_engine_lag_seconds", "lag_seconds"),
            ("edge_engine_store_errors_total", "store_errors"),
            ("edge_engine_start_time_seconds", "started_at"),
        ):
            value = _num(engine_conf.get(key)) if isinstance(engine_conf, dict) else None
            if value is not None:
                engine[name] = value
        return rows, sites, admissions, engine

    def collect(self):
        """Yield the metric families of the current snapshot (see :data:`METRICS`)."""
        snap = self._snapshot()
        fams = {name: _family(name) for name in METRICS}
        fams["edge_metrics_snapshot_ok"].add_metric([], 0.0 if snap is None else 1.0)
        if snap is not None:
            rows, sites, admissions, engine = self.digest(snap)
            for name, col in _NODE_FAMILIES:
                samples = fams[name].samples
                for row in rows:
                    if row[col] is not None:
                        samples.append(
                            Sample(name, {"id": row[0], "site": row[1]}, row[col], None, None)
                        )
            for site, agg in sites.items():
                for status in STATUSES:
                    fams["edge_nodes"].add_metric([site, status], agg["status"][status])
                for quality in QUALITIES:
                    fams["edge_site_uplink_quality_nodes"].add_metric(
                        [site, quality], agg["quality"][quality]
                    )
                if agg["rtt"] is not None:
                    fams["edge_site_uplink_rtt_ms_median"].add_metric([site], agg["rtt"])
                if agg["loss"] is not None:
                    fams["edge_site_uplink_loss_pct_median"].add_metric([site], agg["loss"])
            for decision, reason, value in admissions:
                fams["edge_admission_decisions_total"].add_metric([decision, reason], value)
            for name, value in engine.items():
                fams[name].add_metric([], value)
        for fam in fams.values():
            if fam.samples:
                yield fam

    def exposition(self):
        """
        Return the current snapshot's metrics in the Prometheus text format
        (0.0.4) as ``bytes``: the same samples as :meth:`collect`, written
        directly (one escaped label string per node, shared by its series).
        """
        snap = self._snapshot()
        lines = {name: [] for name in METRICS}
        if snap is not None:
            rows, sites, admissions, engine = self.digest(snap)
            node_lines = [lines[name] for name, _ in _NODE_FAMILIES]
            cols = [col for _, col in _NODE_FAMILIES]
            names = [name for name, _ in _NODE_FAMILIES]
            site_text = {}
            for row in rows:
                site = row[1]
                esc_site = site_text.get(site)
                if esc_site is None:
                    esc_site = site_text[site] = _escape_value(site)
                labels = f'{{id="{_escape_value(row[0])}",site="{esc_site}"}} '
                for out, col, name in zip(node_lines, cols, names):
                    value = row[col]
                    if value is not None:
                        out.append(f"{name}{labels}{value!r}\n")
            for site, agg in sites.items():
                esc = _escape_value(site)
                for status in STATUSES:
                    lines["edge_nodes"].append(
                        f'edge_nodes{{site="{esc}",status="{status}"}} {float(agg["status"][status])!r}\n'
                    )
                for quality in QUALITIES:
                    lines["edge_site_uplink_quality_nodes"].append(
                        f'edge_site_uplink_quality_nodes{{quality="{quality}",site="{esc}"}} '
                        f"{float(agg['quality'][quality])!r}\n"
                    )
                if agg["rtt"] is not None:
                    lines["edge_site_uplink_rtt_ms_median"].append(
                        f'edge_site_uplink_rtt_ms_median{{site="{esc}"}} {float(agg["rtt"])!r}\n'
                    )
                if agg["loss"] is not None:
                    lines["edge_site_uplink_loss_pct_median"].append(
                        f'edge_site_uplink_loss_pct_median{{site="{esc}"}} {float(agg["loss"])!r}\n'
                    )
            for decision, reason, value in admissions:
                lines["edge_admission_decisions_total"].append(
                    f'edge_admission_decisions_total{{decision="{_escape_value(decision)}",'
                    f'reason="{_escape_value(reason)}"}} {value!r}\n'
                )
            for name, value in engine.items():
                lines[name].append(f"{name} {value!r}\n")
        lines["edge_metrics_snapshot_ok"].append(
            f"edge_metrics_snapshot_ok {0.0 if snap is None else 1.0}\n"
        )
        out = []
        for name, (kind, _, doc) in METRICS.items():
            if lines[name]:
                out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
                out.extend(lines[name])
        return "".join(out).encode("utf-8")


def _family(name):
    kind, labels, doc = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, labels=list(labels))


def registry_for(snapshot_fn, per_node=True, process=True):
    """
    Return a new ``CollectorRegistry`` holding a :class:`FleetCollector`
    over ``snapshot_fn`` (and the process collector of this process when
    ``process`` is true: the master engine's CPU and memory). Useful with
    prometheus-client's own ``generate_latest``; :func:`serve` uses the
    collector's faster :meth:`FleetCollector.exposition`.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(snapshot_fn, per_node=per_node))
    if process:
        ProcessCollector(registry=registry)
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape (a slow scraper never holds up another)."""

    daemon_threads = True
    allow_reuse_address = True


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Log nothing per request (a scrape every few seconds is not news)."""


def wsgi_app(collector, process_registry=None):
    """
    Return a WSGI app serving ``collector``'s metrics (plus those of
    ``process_registry``) at ``/metrics`` (and ``/``), gzip-compressed when
    the scraper accepts it; anything else is 404, anything but GET 405.
    """

    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO") or "/"
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; metrics are at /metrics\n"]
        body = collector.exposition()
        if process_registry is not None:
            body += generate_latest(process_registry)
        headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]
        if "gzip" in (environ.get("HTTP_ACCEPT_ENCODING") or ""):
            # level 1: a third of the time of the default level for a
            # slightly larger body (the body is regenerated per scrape)
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else body]

    return app


class MetricsServer:
    """Handle of a running metrics HTTP server: ``.address``, ``.port``, ``.url``, ``.close()``."""

    def __init__(self, httpd, thread):
        self._httpd = httpd
        self._thread = thread
        self._lock = threading.Lock()
        self.address, self.port = httpd.server_address[:2]

    @property
    def url(self):
        """The URL Prometheus scrapes (``http://ADDRESS:PORT/metrics``)."""
        host = f"[{self.address}]" if ":" in str(self.address) else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self):
        """Stop serving and release the port (idempotent)."""
        with self._lock:
            if self._httpd is None:
                return
            httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        httpd.server_close()
        self._thread.join(5)


def serve(address, port, snapshot_fn, per_node=True):
    """
    Serve Prometheus metrics of ``snapshot_fn()`` on ``http://address:port/metrics``
    from a daemon thread (a scrape runs in the server's threads, never in
    the caller's; ``snapshot_fn`` must return the engine's in-memory
    snapshot without blocking).

    ``port=0`` binds an ephemeral port (read it from the handle's ``.port``).
    Returns a :class:`MetricsServer` (call ``.close()`` to stop it). Raises
    :class:`MetricsConfigError` when the address or port is invalid and
    ``OSError`` (with the address in the message) when it cannot listen.
    """
    if not HAS_PROMETHEUS:  # pragma: no cover
        raise MetricsConfigError(
            "prometheus-client is not installed: pip install prometheus-client"
        )
    # port 0 (an ephemeral port, read it from the handle) is for tests and
    # tools; the master option edge:metrics:port must name a real port
    checked = config({"edge": {"metrics": {"address": address, "port": port or DEFAULT_PORT}}})
    checked["port"] = 0 if port == 0 else checked["port"]
    collector = FleetCollector(snapshot_fn, per_node=per_node)
    process_registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=process_registry)

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in checked["address"] else socket.AF_INET

    try:
        httpd = make_server(
            checked["address"],
            checked["port"],
            wsgi_app(collector, process_registry),
            Server,
            handler_class=_SilentHandler,
        )
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"edge metrics: cannot listen on {checked['address']}:{checked['port']}: {exc.strerror}",
        ) from None
    thread = threading.Thread(target=httpd.serve_forever, name="edge-metrics", daemon=True)
    thread.start()
    server = MetricsServer(httpd, thread)
    log.info("edge metrics: serving %s", server.url)
    return server


def start(opts, snapshot_fn):
    """
    Start the metrics server as the master option ``edge:metrics`` says
    (see :func:`config`). Returns the :class:`MetricsServer`, or ``None``
    when metrics are disabled. Raises :class:`MetricsConfigError` on bad
    configuration and ``OSError`` when the port cannot be bound.
    """
    conf = config(opts)
    if conf is None:
        log.info("edge metrics: disabled by edge:metrics: false")
        return None
    return serve(conf["address"], conf["port"], snapshot_fn, per_node=conf["per_node"])
