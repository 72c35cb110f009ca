"""
Fleet alerts (``docs/howto/site-goes-dark.rst``): one JSON ``POST`` to
``edge:alerts:url`` per transition the ``edge_fleet`` engine fires, and only
for events sealed by this master (:mod:`saltext_edge.eventauth`).

The shipped reactor ``edge_alert.sls`` checks the seal while it renders (a
forged event makes no job at all) and hands the event to the runner
``edge.alert``, which checks it again and posts with Salt's HTTP client
(``salt.utils.http.query``, what the ``http.query`` runner calls). The URL is
read here from the master config, never passed as a job argument: a web
hook URL often holds a secret (Slack, Teams), and a runner's arguments go to
the master's event bus and job cache. Nothing here logs the URL.
"""

import json
import logging

from saltext_edge import config as _config
from saltext_edge import eventauth as _eventauth
from saltext_edge.errors import EdgeError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
#: the fields of an alert, in this order; absent ones are null
FIELDS = ("event", "kind", "node", "site", "last_seen", "reason", "offline", "master")


class AlertError(EdgeError, ValueError):
    """The event handed to :func:`post` is not an event (one line, no secret)."""


def body(tag, data):
    """Return the alert document for event ``(tag, data)`` (a dict of :data:`FIELDS`)."""
    return {
        "event": tag,
        "kind": tag.rsplit("/", 1)[-1],
        "node": data.get("id"),
        "site": data.get("site"),
        "last_seen": data.get("last_seen"),
        "reason": data.get("reason"),
        "offline": data.get("offline"),
        "master": data.get("master"),
    }


def parse_event(event):
    """Return ``(tag, data)`` from ``event``: JSON text or a dict ``{"tag", "data"}``."""
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            raise AlertError("event is not JSON") from None
    if not isinstance(event, dict):
        raise AlertError('event must be {"tag": ..., "data": {...}}')
    tag, data = event.get("tag"), event.get("data")
    if not isinstance(tag, str) or not isinstance(data, dict):
        raise AlertError('event must be {"tag": ..., "data": {...}}')
    return tag, data


def settings(opts):
    """Return ``(url, timeout)`` from ``edge:alerts`` (``url`` ``None`` when unset)."""
    try:
        conf = _config.edge_section(opts, "alerts")
    except _config.EdgeConfigError as exc:
        raise AlertError(f"{exc} (url, timeout)") from None
    url = conf.get("url") or None
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise AlertError("edge:alerts:url must be an http:// or https:// URL")
    timeout = conf.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise AlertError("edge:alerts:timeout must be a number of seconds above 0")
    return url, float(timeout)


def post(opts, event, query=None):
    """
    Post the alert for ``event`` (see :func:`parse_event`) to ``edge:alerts:url``
    when it is sealed by this master. ``query``: ``salt.utils.http.query``.

    Returns a dict: ``posted`` (bool), ``event`` (the tag), ``status`` (the
    hook's HTTP status, ``None`` when it was not reached) and ``reason`` when
    nothing was posted (``not sealed by this master``, ``edge:alerts:url is
    not set``, ``the web hook answered ...``). Raises :class:`AlertError` for
    an ``event`` that is not one, or bad ``edge:alerts`` settings.
    """
    tag, data = parse_event(event)
    url, timeout = settings(opts)
    if not _eventauth.verify(opts, tag, data):
        return {
            "posted": False,
            "event": tag,
            "status": None,
            "reason": "not sealed by this master",
        }
    if url is None:
        return {
            "posted": False,
            "event": tag,
            "status": None,
            "reason": "edge:alerts:url is not set",
        }
    if query is None:
        import salt.utils.http

        query = salt.utils.http.query
    ret = query(
        url,
        method="POST",
        data=json.dumps(body(tag, data)),
        header_dict={"Content-Type": "application/json"},
        status=True,
        opts=opts,
        timeout=timeout,
        raise_error=False,
    )
    status = ret.get("status") if isinstance(ret, dict) else None
    if isinstance(status, int) and 200 <= status < 300:
        return {"posted": True, "event": tag, "status": status}
    reason = f"the web hook answered HTTP {status}" if status else "the web hook was not reached"
    log.error("edge.alert: %r: %s (edge:alerts:url)", tag[:300], reason)
    return {"posted": False, "event": tag, "status": status, "reason": reason}
