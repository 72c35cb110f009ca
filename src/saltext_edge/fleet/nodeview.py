"""
The node snapshot shared with the metrics collector and the fleet page
(see ``docs/ref/engine.rst``, "Snapshot")::

    {"nodes": {ID: NODE}, "engine": {"events_seen", "lag_seconds",
     "store_errors", "started_at", "heartbeats_refused"},
     "admissions": {(decision, reason): count}}

    NODE = {"id", "site", "status", "last_seen_ts", "last_seen_kind",
            "uplink": {"quality", "rtt_ms", "jitter_ms", "loss_pct"[, "stale"]} | None,
            "admitted_by", "clock_offset_s"}

``clock_offset_s``: the master's receive time minus the node's ``sent_at``
(median of its last heartbeats; positive when the node's clock is behind),
``None`` before its first heartbeat. ``engine`` also holds
``heartbeats_refused``: ``{reason: count}`` since the engine started.

Epoch floats are fine here; runner returns use :func:`iso` instead.
"""

import datetime

from saltext_edge.fleet import status as _status


def iso(epoch):
    """Return ``epoch`` as ISO 8601 UTC (``2026-12-02T10:00:00Z``), ``None`` for ``None``."""
    if epoch is None:
        return None
    return (
        datetime.datetime.fromtimestamp(float(epoch), tz=datetime.timezone.utc)
        .replace(microsecond=0)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def stamp_epoch(stamp):
    """Return a Salt event ``_stamp`` (ISO, UTC, no zone) as epoch seconds, ``None`` when unparsable."""
    try:
        return (
            datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
        )
    except (TypeError, ValueError):
        return None


def admission_counts(index):
    """Return ``{(decision, reason): count}`` over an admission index."""
    counts = {}
    for entry in index.values():
        key = (entry.get("decision"), entry.get("reason"))
        counts[key] = counts.get(key, 0) + 1
    return counts


#: statuses whose last uplink measurement still describes the uplink
FRESH = ("online", "late")


def uplink_view(rec, status=None):
    """
    Return ``{quality, rtt_ms, jitter_ms, loss_pct}`` of the record's last
    uplink, or ``None``. For a node whose ``status`` is not online or late
    the last figures are kept but marked ``"stale": True`` and the quality
    is ``unknown``: an offline node's uplink is not known to be good.
    """
    uplink = (rec or {}).get("uplink")
    if not isinstance(uplink, dict):
        return None
    view = {k: uplink.get(k) for k in ("quality", "rtt_ms", "jitter_ms", "loss_pct")}
    if status is not None and status not in FRESH:
        view.update(quality="unknown", stale=True)
    return view


def node_view(minion_id, rec, site, status, index):
    """Return the snapshot's NODE dict for ``minion_id``."""
    rec = rec or {}
    status = status if status in _status.STATUSES else "never_seen"
    return {
        "id": minion_id,
        "site": site,
        "status": status,
        "last_seen_ts": rec.get("last_seen"),
        "last_seen_kind": rec.get("last_kind"),
        "uplink": uplink_view(rec, status),
        "admitted_by": (index.get(minion_id) or {}).get("admitted_by"),
        "clock_offset_s": rec.get("clock_offset_s"),
    }


def assemble(records, accepted, index, site_of, status_of, engine):
    """
    Return the snapshot of ``records`` (``{id: record}``) and the ``accepted``
    ids without a record (``never_seen``): ``site_of(id, rec)`` and
    ``status_of(rec)`` name each node's site and status; ``engine`` is the
    engine's health mapping.
    """
    nodes = {}
    for minion_id, rec in records.items():
        nodes[minion_id] = node_view(
            minion_id, rec, site_of(minion_id, rec), status_of(minion_id, rec), index
        )
    for minion_id in accepted:
        if minion_id not in nodes:
            nodes[minion_id] = node_view(
                minion_id, None, site_of(minion_id, None), "never_seen", index
            )
    return {"nodes": nodes, "engine": engine, "admissions": admission_counts(index)}
