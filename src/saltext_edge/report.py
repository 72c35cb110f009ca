"""
The fleet report (see ``docs/howto/fleet-report.rst``): per site, how many
nodes are online / late / offline / never seen, last seen as ISO 8601 UTC,
uplink quality and trend, flapping nodes, pending and refused keys.

It answers from the running ``edge_fleet`` engine's memory (the state the
metrics are served from; :mod:`saltext_edge.fleet.live`), from the record
the engine keeps through ``salt.cache`` (:mod:`saltext_edge.fleet.store`)
only when no engine answers, and contacts no node; with ``ping=True`` the
nodes are asked for a signed liveness proof (:mod:`saltext_edge.fleet.proof`)
first; the proven ones count as signs of life. No epoch floats in what it
returns.

:func:`assemble` is the pure part (unit-tested); :func:`build` reads the
inputs and calls it. One node's view (``salt-run edge.node``) is
:mod:`saltext_edge.node_report`.
"""

import contextlib
import fnmatch
import logging
import time

from saltext_edge.fleet import conf as _conf
from saltext_edge.fleet import record as _record
from saltext_edge.fleet import rows as _rows
from saltext_edge.fleet import sites as _sites
from saltext_edge.fleet import status as _status
from saltext_edge.fleet.nodeview import iso, uplink_view

log = logging.getLogger(__name__)

PROGRESS_TAG = "edge/report/progress"
PROGRESS_EVERY = 1000
QUALITIES = _record.QUALITIES
NO_SITE = "(no site)"
TOTAL = "TOTAL"
_COUNTS = ("online", "late", "offline", "never_seen")


def _empty_site():
    return {
        **dict.fromkeys(_COUNTS, 0),
        "degraded": False,
        "quality": dict.fromkeys(QUALITIES, 0),
        "trend": {},
        "history": [],
        "nodes": {},
    }


def _site_rows_trend(rows, now, extra_samples):
    """24 h trend of a site: its hourly rows of the last day plus the current hour's raw samples."""
    cut = now - 86400
    hourly = [r.as_hour_row() for r in rows if r.hour >= cut]
    current = int(now // _record.HOUR) * _record.HOUR
    fresh = [s for s in extra_samples if s[_rows.AT] >= current]
    if fresh:
        hourly.append(_record.aggregate_hour(current, fresh))
    return _record.hours_trend(hourly)


def assemble(
    records,
    keys,
    index,
    conf,
    site_meta=None,
    now=None,
    site=None,
    details=False,
    progress=None,
    live=False,
):
    """
    Build the report (pure: no Salt, no I/O).

    :param records: ``{id: record}`` from the store.
    :param keys: ``salt.key.Key.list_keys()`` shape.
    :param index: :func:`saltext_edge.fleet.sites.node_index` shape.
    :param conf: :func:`saltext_edge.fleet.conf.parse` settings.
    :param site_meta: the engine's ``sites`` meta entry (hourly site rows, degraded flags).
    :param site: only sites matching this glob. ``details``: list every node.
    :param live: the records are the running engine's (their ``status`` is
        the engine's, the one the metrics serve); else each node is
        classified at ``now`` from its last sign of life.

    Returns the report dict documented in ``docs/howto/fleet-report.rst``.
    """
    now = now if now is not None else time.time()
    site_meta = site_meta or {}
    keys_state = _sites.admission_states(keys)

    def wanted(name):
        return site is None or fnmatch.fnmatchcase(name, site)

    sites = {}
    samples_by_site = {}
    recs_by_site = {}
    flapping = []
    ids = set(keys.get("minions", [])) | set(records)
    for done, mid in enumerate(sorted(ids), 1):
        if progress and done % PROGRESS_EVERY == 0:
            progress("nodes", done=done, total=len(ids))
        rec = records.get(mid)
        admission = _sites.admission_of(mid, keys_state)
        if rec is None and admission != "accepted":
            continue
        name = _sites.site_of(mid, index, rec)
        label = name or NO_SITE
        if not wanted(label):
            continue
        site_conf = _conf.for_site(conf, name)
        status = _status_of(rec, site_conf, now, live)
        if rec is not None:
            rec = dict(rec, status=status)
        data = sites.setdefault(label, _empty_site())
        data[status] += 1
        uplink = uplink_view(rec, status)
        data["quality"][uplink["quality"] if uplink else "unknown"] += 1
        flaps = bool(rec) and _status.flapping(rec, conf, now)
        if flaps:
            flapping.append(mid)
        if rec is not None:
            recs_by_site.setdefault(label, []).append(rec)
            samples_by_site.setdefault(label, []).extend(rec.get("samples") or ())
        if details or status != "online" or flaps or admission != "accepted":
            data["nodes"][mid] = {
                "status": status,
                "last_seen": iso(rec.get("last_seen")) if rec else None,
                "last_seen_kind": rec.get("last_kind") if rec else None,
                "uplink": uplink,
                "flapping": flaps,
                "admission": admission,
                "admitted_by": (index.get(mid) or {}).get("admitted_by"),
                "clock_offset_s": rec.get("clock_offset_s") if rec else None,
            }

    hours_meta = site_meta.get("hours") or {}
    for label, data in sites.items():
        site_conf = _conf.for_site(conf, None if label == NO_SITE else label)
        was = bool((site_meta.get("degraded") or {}).get(label))
        data["degraded"] = _status.site_health(recs_by_site.get(label, []), site_conf, was)[0]
        samples = samples_by_site.get(label, [])
        site_rows = [
            _rows.load(_rows.SiteHourRow, r)
            for r in hours_meta.get(label if label != NO_SITE else "", [])
        ]
        data["trend"] = {
            "1h": _record.trend([s for s in samples if s[_rows.AT] >= now - 3600]),
            "24h": _site_rows_trend(site_rows, now, samples),
        }
        rows = sorted(r for r in site_rows if r.hour >= now - 86400)
        data["history"] = [
            {
                "at": iso(r.hour),
                "online": r.online,
                "offline": r.offline,
                "rtt_ms_median": r.rtt_ms_median,
            }
            for r in rows[-24:]
        ]

    pending = sorted(m for m in keys.get("minions_pre", []) if wanted(_label_of(m, index, records)))
    refused = {}
    for mid in pending[:]:
        entry = index.get(mid) or {}
        if entry.get("decision") == "refused":
            refused[mid] = entry.get("reason") or "refused by admission"
            pending.remove(mid)
    for state, default in (
        ("minions_rejected", "key rejected"),
        ("minions_denied", "key denied: a different key is accepted for this id"),
    ):
        for mid in keys.get(state, []):
            if wanted(_label_of(mid, index, records)):
                entry = index.get(mid) or {}
                reason = entry.get("reason") if entry.get("decision") == "refused" else None
                refused[mid] = reason or default

    all_samples = [
        x for samples in samples_by_site.values() for x in samples if x[_rows.AT] >= now - 3600
    ]
    totals = {k: sum(s[k] for s in sites.values()) for k in _COUNTS}
    totals.update({"pending": len(pending), "refused": len(refused), "sites": len(sites)})
    ordered = dict(sorted(sites.items(), key=lambda kv: (kv[0] == NO_SITE, kv[0])))
    return {
        "generated_at": iso(now),
        "site_filter": site,
        "totals": totals,
        "summary": [_summary_row(n, d) for n, d in ordered.items()]
        + [_summary_total(totals, ordered, _record.trend(all_samples))],
        "sites": ordered,
        "pending": pending,
        "refused": dict(sorted(refused.items())),
        "flapping": sorted(flapping),
    }


def _status_of(rec, site_conf, now, live):
    if rec is None:
        return "never_seen"
    if live and rec.get("status") in _status.STATUSES:
        return rec["status"]
    return _status.classify(rec, site_conf, now)


def _label_of(mid, index, records):
    return _sites.site_of(mid, index, records.get(mid)) or NO_SITE


def _summary_row(name, data):
    return {
        "site": name,
        **{k: data[k] for k in _COUNTS},
        "degraded": data["degraded"],
        **{f"uplink_{q}": data["quality"][q] for q in QUALITIES},
        "rtt_ms_median_1h": data["trend"]["1h"]["rtt_ms_median"],
        "rtt_ms_p95_1h": data["trend"]["1h"]["rtt_ms_p95"],
        "loss_pct_1h": data["trend"]["1h"]["loss_pct"],
    }


def _summary_total(totals, sites, trend_1h):
    row = {
        "site": TOTAL,
        **{k: totals[k] for k in _COUNTS},
        "degraded": any(d["degraded"] for d in sites.values()),
    }
    for q in QUALITIES:
        row[f"uplink_{q}"] = sum(d["quality"][q] for d in sites.values())
    row.update(
        {
            "rtt_ms_median_1h": trend_1h["rtt_ms_median"],
            "rtt_ms_p95_1h": trend_1h["rtt_ms_p95"],
            "loss_pct_1h": trend_1h["loss_pct"],
        }
    )
    return row


# --------------------------------------------------------------------------
# gathering on the master
# --------------------------------------------------------------------------


def _ping_targets(accepted, index, site):
    """The accepted ids to ask for a proof: all, or those whose site matches the ``site`` glob."""
    if site is None:
        return list(accepted)
    return [m for m in accepted if fnmatch.fnmatchcase(_sites.site_of(m, index, None) or "", site)]


def _ping(opts, minions, timeout):
    """
    Ask ``minions`` for a liveness proof (:func:`saltext_edge.fleet.proof.prove`:
    a plain ``test.ping`` return can be forged by any accepted minion). Returns
    ``{id: "proven" | "unproven" | "silent"}``; the proven ids are also sent to
    the ``edge_fleet`` engine as signs of life (``edge/fleet/proven``).
    """
    from saltext_edge.fleet import proof as _proof

    return _proof.prove(opts, minions, timeout)


def event_progress(opts):
    """
    Return a ``progress(stage, **data)`` callable firing ``edge/report/progress``
    events on the master event bus (errors are logged, never raised); call
    ``progress.close()`` at the end.
    """
    state = {"event": None}

    def progress(stage, **data):
        try:
            if state["event"] is None:
                import salt.utils.event

                state["event"] = salt.utils.event.get_master_event(
                    opts, opts["sock_dir"], listen=False
                )
            state["event"].fire_event(dict(data, stage=stage), PROGRESS_TAG)
        except Exception as exc:
            log.debug("edge.report: progress event not sent: %s", exc)

    def close():
        if state["event"] is not None:
            with contextlib.suppress(Exception):  # best effort on the way out
                state["event"].destroy()

    progress.close = close
    return progress


def _engines_view(store, now):
    out = {}
    for master, info in store.engines().items():
        flushed = info.get("flushed_at")
        out[master] = {
            "started_at": iso(info.get("started_at")),
            "flushed_at": iso(flushed),
            "nodes": info.get("nodes"),
            "refused_heartbeats": info.get("refused_heartbeats") or {},
            "stale": flushed is None or now - flushed > 300,
        }
    return out


def build(
    opts, ping=False, site=None, timeout=None, details=False, progress=None, store=None, now=None
):
    """
    Ask the running ``edge_fleet`` engine for its state (the stored record
    when none answers: :func:`saltext_edge.fleet.live.read`), read the keys
    and admission index on the master and return :func:`assemble`'s report
    plus ``answered_by`` (``engine <master id>`` or ``stored record``), ``engines``
    (each master's engine: when it started and last wrote the record),
    ``elapsed_s``, ``warning`` (one line) when no engine answered and, with
    ``ping=True``, ``ping`` (``{"timeout_s", "answered", "silent": [ids],
    "unproven": [ids]}``: ``answered`` counts verified proofs only,
    ``unproven`` lists ids for which something came back that was no valid
    proof).
    """
    from saltext_edge.fleet import live as _live

    started = time.time()
    now = now if now is not None else started

    def step(stage, **data):
        if progress:
            progress(stage, elapsed_s=round(time.time() - started, 3), **data)

    keys = _sites.keys(opts)
    step("keys", accepted=len(keys["minions"]), pending=len(keys["minions_pre"]))
    index = _sites.node_index(opts)
    conf = _conf.from_opts(opts)
    answers = None
    if ping:
        # first, so that the proven nodes count as signs of life in this report
        targets = _ping_targets(keys["minions"], index, site)
        timeout = int(timeout or opts.get("timeout", 5) or 5)
        step("ping", minions=len(targets), timeout_s=timeout)
        answers = _ping(opts, targets, timeout)
        now = max(now, time.time())
    source, store, note = _live.read(opts, store=store, now=now)
    records = store.load_all()
    step("record", nodes=len(records), source=source)
    live = getattr(store, "live", False)
    if answers:
        for mid in (m for m, v in answers.items() if v == "proven"):
            rec = records.get(mid) or _record.new(mid, now)
            _record.seen(rec, "proof", now, source="edge.report ping=True")
            # classified here from the proof, not taken from the engine's status
            records[mid] = {k: v for k, v in rec.items() if k != "status"}
    report = assemble(
        records,
        keys,
        index,
        conf,
        site_meta=store.meta("sites"),
        now=now,
        site=site,
        details=details,
        progress=step,
        live=live,
    )
    report["answered_by"] = source
    report["engines"] = _engines_view(store, now)
    if note:
        report["warning"] = note
    if answers is not None:
        report["ping"] = {
            "timeout_s": timeout,
            "answered": sum(1 for v in answers.values() if v == "proven"),
            "silent": sorted(m for m, v in answers.items() if v == "silent"),
            "unproven": sorted(m for m, v in answers.items() if v == "unproven"),
        }
    report["elapsed_s"] = round(time.time() - started, 3)
    step("done", elapsed_s_total=report["elapsed_s"])
    return report
