"""
The HTTP server of the fleet's Prometheus metrics (``/metrics``; master
option ``edge:metrics``, docs/howto/grafana.rst).

The ``edge_fleet`` engine keeps the latest fleet snapshot in memory and hands
:func:`serve` a function that returns it; a scrape turns that snapshot into
metrics in the HTTP server's own thread. A scrape does no I/O and takes no
lock the engine holds, so it never blocks the engine's event handling.

The server is prometheus-client's (``ThreadingWSGIServer``, one thread per
scrape, as its ``start_wsgi_server`` uses). The WSGI app is ours, not
prometheus-client's ``make_wsgi_app``: that one renders through
``generate_latest``, 420 ms per gzip'd scrape of 5,000 nodes against 30-60 ms
for :meth:`~saltext_edge.view.metrics_collector.FleetCollector.exposition`
(docs/benchmarks.rst; the budget is 200 ms).
"""

import gzip
import logging
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from saltext_edge.view.metrics_catalogue import DEFAULT_PORT, MetricsConfigError, config
from saltext_edge.view.metrics_collector import HAS_PROMETHEUS, FleetCollector

if HAS_PROMETHEUS:
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.exposition import ThreadingWSGIServer
    from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)


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
    :class:`~saltext_edge.view.metrics_catalogue.MetricsConfigError` when
    the address or port is invalid and ``OSError`` (with the address in the
    message) when it cannot listen.
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

    class Server(ThreadingWSGIServer):
        """One thread per scrape (a slow scraper never holds up another)."""

        allow_reuse_address = True
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
    (see :func:`~saltext_edge.view.metrics_catalogue.config`). Returns the
    :class:`MetricsServer`, or ``None`` when metrics are disabled. Raises
    :class:`~saltext_edge.view.metrics_catalogue.MetricsConfigError` on bad
    configuration and ``OSError`` when the port cannot be bound.
    """
    conf = config(opts)
    if conf is None:
        log.info("edge metrics: disabled by edge:metrics: false")
        return None
    return serve(conf["address"], conf["port"], snapshot_fn, per_node=conf["per_node"])
