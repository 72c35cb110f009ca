"""
One node's record and history, ``salt-run edge.node`` (see
``docs/howto/fleet-report.rst``): what the fleet report says of a node,
with its transitions, the last hour's samples and its hourly rows, times
as ISO 8601 UTC.
"""

import time

from saltext_edge.fleet import conf as _conf
from saltext_edge.fleet import record as _record
from saltext_edge.fleet import rows as _rows
from saltext_edge.fleet import sites as _sites
from saltext_edge.fleet import status as _status
from saltext_edge.fleet.nodeview import iso, uplink_view


def node(opts, minion_id, store=None, now=None):
    """
    Return one node's record and history (``salt-run edge.node``), times as
    ISO 8601 UTC, or ``None`` when the master knows nothing of ``minion_id``.
    The record is the running engine's (``answered_by``: ``engine <master
    id>``), else the stored one (``answered_by``: ``stored record``, and ``warning``: one line
    saying so, with the record's age; :func:`saltext_edge.fleet.live.read`).
    """
    from saltext_edge.fleet import live as _live

    now = now if now is not None else time.time()
    source, store, note = _live.read(opts, "node", minion_id, store=store, now=now)
    states = _sites.admission_states(_sites.keys(opts))
    rec = store.load(minion_id)
    if rec is None and minion_id not in states:
        return None
    index = _sites.node_index(opts)
    conf = _conf.from_opts(opts)
    name = _sites.site_of(minion_id, index, rec)
    rec = rec or {}
    if not rec.get("last_seen"):
        status = "never_seen"
    elif getattr(store, "live", False) and rec.get("status") in _status.STATUSES:
        status = rec["status"]
    else:
        status = _status.classify(rec, _conf.for_site(conf, name), now)
    hours = [_rows.load(_rows.HourRow, h) for h in store.hours(minion_id)] if rec else []
    hour_now = int(now // _record.HOUR) * _record.HOUR
    samples = [_rows.load(_rows.Sample, s) for s in rec.get("samples") or []]
    late_s, offline_s = _status.limits(rec, _conf.for_site(conf, name))
    claim = rec.get("claim")
    refusal = rec.get("refusal")
    offset = rec.get("clock_offset_s")
    ret = {
        "id": minion_id,
        "site": name,
        "site_from_heartbeat": rec.get("site"),
        "status": status,
        "last_seen": iso(rec.get("last_seen")),
        "last_seen_kind": rec.get("last_kind"),
        "source": rec.get("source"),
        "seen_by": rec.get("seen_by"),
        "first_seen": iso(rec.get("first_seen")),
        "status_since": iso(rec.get("status_since")) if rec else None,
        "late_after_s": round(late_s, 1),
        "offline_after_s": round(offline_s, 1),
        "period_s": rec.get("period"),
        "seq": rec.get("seq"),
        "uptime_s": rec.get("uptime_s"),
        "uplink": uplink_view(rec, status),
        "admission": _sites.admission_of(minion_id, states),
        "admitted_by": (index.get(minion_id) or {}).get("admitted_by"),
        "flapping": bool(rec) and _status.flapping(rec, conf, now),
        "unverified_claim": {"at": iso(claim["ts"]), "kind": claim["kind"]} if claim else None,
        # master receive time - the node's send time (positive: its clock is behind)
        "clock_offset_s": offset,
        "clock_warning": offset is not None and abs(offset) > conf["clock_warn"],
        "last_refusal": (
            {"at": iso(refusal.get("ts")), "reason": refusal.get("reason")}
            if isinstance(refusal, dict)
            else None
        ),
        "transitions": [{"at": iso(t[0]), "status": t[1]} for t in rec.get("transitions") or []],
        "trend": {
            "1h": _record.trend([s for s in samples if s.at >= now - 3600]),
            "24h": _record.hours_trend(
                [h for h in hours if h.hour >= now - 86400]
                + [_record.aggregate_hour(0, [s for s in samples if s.at >= hour_now])]
            ),
        },
        "samples": [dict(s._asdict(), at=iso(s.at)) for s in samples if s.at >= now - 3600],
        "hours": [
            {
                "at": iso(h.hour),
                "samples": h.samples,
                "rtt_ms_median": h.rtt_ms_median,
                "rtt_ms_p95": h.rtt_ms_p95,
                "loss_pct": h.loss_pct,
                "heartbeats": h.heartbeats,
                "worst_quality": h.worst_quality,
            }
            for h in hours
        ],
    }
    ret["answered_by"] = source
    if note:
        ret["warning"] = note
    return ret
