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
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

try:
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.core import GaugeMetricFamily
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
QUALITIES = ("good", "fair", "poor", "down", "unknown")
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
            "edge:metrics: unknown option(s) " + ", ".join(sorted(map(str, unknown)))
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


class FleetCollector:
    """
    A prometheus-client custom collector over the engine's latest snapshot.

    ``snapshot_fn()`` must return the snapshot without blocking (the engine
    keeps it in memory); :meth:`collect` reads it once per scrape.
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
        except Exception as exc:  # pylint: disable=broad-except
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.warning("edge metrics: cannot read the fleet snapshot: %s", exc)
            return None

    def collect(self):
        """Yield the metric families of the current snapshot (see :data:`METRICS`)."""
        snap = self._snapshot()
        fams = {name: _family(name) for name in METRICS}
        fams["edge_metrics_snapshot_ok"].add_metric([], 0.0 if snap is None else 1.0)
        if snap is not None:
            self._fill(snap, fams)
        for name, fam in fams.items():
            if fam.samples or name == "edge_metrics_snapshot_ok":
                yield fam

    def _fill(self, snap, fams):
        nodes = snap.get("nodes") or {}
        per_node = self.per_node
        # per-node sample lists are built directly (Sample tuples): at
        # thousands of nodes add_metric's per-call overhead is measurable
        up_s = fams["edge_node_up"].samples
        st_s = fams["edge_node_status"].samples
        seen_s = fams["edge_node_last_seen_timestamp_seconds"].samples
        rtt_s = fams["edge_node_uplink_rtt_ms"].samples
        jit_s = fams["edge_node_uplink_jitter_ms"].samples
        loss_s = fams["edge_node_uplink_loss_pct"].samples
        q_s = fams["edge_node_uplink_quality"].samples
        by_site = {}
        for node_id, node in nodes.items():
            if not isinstance(node, dict):
                continue
            site = node.get("site") or NO_SITE
            status = node.get("status")
            if status not in STATUS_CODE:
                status = "never_seen"
            uplink = node.get("uplink") or {}
            quality = uplink.get("quality") if isinstance(uplink, dict) else None
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
            rtt = loss = None
            if isinstance(uplink, dict) and uplink:
                rtt = _num(uplink.get("rtt_ms"))
                loss = _num(uplink.get("loss_pct"))
                if rtt is not None:
                    agg["rtt"].append(rtt)
                if loss is not None:
                    agg["loss"].append(loss)
            if not per_node:
                continue
            labels = {"id": str(node.get("id") or node_id), "site": site}
            up_s.append(Sample("edge_node_up", labels, 1.0 if status in ("online", "late") else 0.0, None, None))
            st_s.append(Sample("edge_node_status", labels, float(STATUS_CODE[status]), None, None))
            seen = _num(node.get("last_seen_ts"))
            if seen is not None:
                seen_s.append(Sample("edge_node_last_seen_timestamp_seconds", labels, seen, None, None))
            if rtt is not None:
                rtt_s.append(Sample("edge_node_uplink_rtt_ms", labels, rtt, None, None))
            if isinstance(uplink, dict) and uplink:
                jitter = _num(uplink.get("jitter_ms"))
                if jitter is not None:
                    jit_s.append(Sample("edge_node_uplink_jitter_ms", labels, jitter, None, None))
                if loss is not None:
                    loss_s.append(Sample("edge_node_uplink_loss_pct", labels, loss, None, None))
            if quality != "unknown":
                q_s.append(Sample("edge_node_uplink_quality", labels, float(QUALITY_CODE[quality]), None, None))
        for site in sorted(by_site):
            agg = by_site[site]
            for status in STATUSES:
                fams["edge_nodes"].add_metric([site, status], agg["status"][status])
            for quality in QUALITIES:
                fams["edge_site_uplink_quality_nodes"].add_metric([site, quality], agg["quality"][quality])
            if agg["rtt"]:
                fams["edge_site_uplink_rtt_ms_median"].add_metric([site], statistics.median(agg["rtt"]))
            if agg["loss"]:
                fams["edge_site_uplink_loss_pct_median"].add_metric([site], statistics.median(agg["loss"]))
        for key, count in sorted((snap.get("admissions") or {}).items(), key=lambda kv: str(kv[0])):
            if isinstance(key, (tuple, list)) and len(key) == 2:
                decision, reason = key
            else:
                decision, reason = key, None
            value = _num(count)
            if value is None:
                continue
            fams["edge_admission_decisions_total"].add_metric(
                [str(decision), "" if reason is None else str(reason)], value
            )
        engine = snap.get("engine") or {}
        for name, key in (
            ("edge_engine_events_total", "events_seen"),
            ("edge_engine_lag_seconds", "lag_seconds"),
            ("edge_engine_store_errors_total", "store_errors"),
            ("edge_engine_start_time_seconds", "started_at"),
        ):
            value = _num(engine.get(key))
            if value is not None:
                fams[name].add_metric([], value)


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
    faster :func:`render_text` over the same collector.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(snapshot_fn, per_node=per_node))
    if process:
        ProcessCollector(registry=registry)
    return registry


def _escape_value(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_text(families):
    """
    Return the Prometheus text exposition format (0.0.4) of ``families``
    (metric families from :meth:`FleetCollector.collect`) as ``bytes``.

    The same format as prometheus-client's ``generate_latest``, about four
    times faster on per-node series: the label string of a node is escaped
    once and reused for all its series (the collector shares one labels
    dict per node), and values are written with ``repr``.
    """
    out = []
    memo = {}
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        out.append(f"# HELP {name} {fam.documentation}\n# TYPE {name} {fam.type}\n")
        for sample in fam.samples:
            labels = sample.labels
            if labels:
                entry = memo.get(id(labels))
                if entry is None:
                    text = (
                        "{"
                        + ",".join(f'{k}="{_escape_value(str(v))}"' for k, v in sorted(labels.items()))
                        + "}"
                    )
                    # keep the dict alive while its id() is a key
                    memo[id(labels)] = (text, labels)
                else:
                    text = entry[0]
            else:
                text = ""
            out.append(f"{sample.name}{text} {float(sample.value)!r}\n")
    return "".join(out).encode("utf-8")


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape (a slow scraper never holds up another)."""

    daemon_threads = True
    allow_reuse_address = True


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
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
        body = render_text(collector.collect())
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
        raise MetricsConfigError("prometheus-client is not installed: pip install prometheus-client")
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
