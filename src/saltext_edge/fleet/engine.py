"""
The fleet engine's state machine (see ``docs/ref/engine.rst``): takes events
from the master bus, keeps the record in memory, classifies nodes once per
tick, fires transition events, writes the record in batches and keeps the
snapshot the metrics server reads. No thread of its own: the Salt engine
module (``engines/edge_fleet.py``) feeds it events and calls :meth:`tick`.
"""

import heapq
import logging
import threading
import time

from saltext_edge import eventauth as _eventauth
from saltext_edge.fleet import conf as _conf
from saltext_edge.fleet import evidence as _evidence
from saltext_edge.fleet import record as _record
from saltext_edge.fleet import signing as _signing
from saltext_edge.fleet import sites as _sites
from saltext_edge.fleet import status as _status
from saltext_edge.fleet import store as _store
from saltext_edge.fleet.nodeview import assemble, iso, stamp_epoch

log = logging.getLogger(__name__)

SITES_REFRESH_S = 60.0
SNAPSHOT_EVERY_S = 5.0
#: seconds between two sweeps over every node (between sweeps only the nodes
#: whose next threshold has passed are classified again)
SWEEP_EVERY_S = 60.0
#: hourly-row writes per flush at most (the rest wait for the next flush)
HOUR_WRITES_PER_FLUSH = 500
MAX_SITE_ROWS = 30 * 24


class FleetEngine:
    """
    ``fire(tag, data)`` puts an event on the master bus; ``clock()`` is the
    wall clock (epoch seconds); ``index_fn(opts)`` returns the admission
    index (:func:`saltext_edge.fleet.sites.node_index`).
    """

    def __init__(
        self,
        opts,
        conf=None,
        store=None,
        keyring=None,
        fire=None,
        clock=time.time,
        index_fn=None,
        keys_fn=None,
    ):
        self.opts = opts
        self.conf = conf if conf is not None else _conf.parse(opts.get("edge"))
        self.store = store if store is not None else _store.Store(opts)
        self.keyring = keyring if keyring is not None else _signing.KeyRing(opts)
        self.fire = fire or (lambda tag, data: None)
        self.clock = clock
        self.index_fn = index_fn or _sites.node_index
        self.keys_fn = keys_fn or (lambda o: _sites.keys(o)["minions"])
        self.accepted = set()
        self.master_id = str(opts.get("id") or "master")
        self.classifier = _evidence.Classifier(
            self.keyring.verify,
            clock,
            max_skew=self.conf["max_skew"],
            trust_unsigned=self.conf["trust_unsigned"],
            verify_event=lambda tag, data: _eventauth.verify(opts, tag, data),
        )
        now = clock()
        self.started_at = now
        self.grace_until = now + _conf.grace(self.conf)
        self.records = self.store.load_all()
        self.sites_meta = self.store.meta("sites")
        self.sites_meta.setdefault("degraded", {})
        self.sites_meta.setdefault("hours", {})
        self._site_confs = {}
        # (time, id): when each node's status can next change
        self._due = []
        self._due_at = {}
        self._quality = {}
        self._sites_dirty = set()
        self._last_sweep = None
        self._grace_swept = False
        self.dirty = set()
        self.pending_hours = {}
        self.index = {}
        self.index_at = None
        self.last_flush = now
        self.last_hour = int(now // _record.HOUR)
        self.events_seen = 0
        self.claims = 0
        self.store_errors = 0
        self.lag = 0.0
        self._snapshot = None
        self._snapshot_at = None
        self._lock = threading.Lock()
        self.fired = {"offline": 0, "online": 0, "degraded": 0, "recovered": 0}

    # ---- input ----------------------------------------------------------

    def site(self, minion_id, rec=None):
        """Return the site of ``minion_id`` (verified first, see :mod:`saltext_edge.fleet.sites`)."""
        return _sites.site_of(
            minion_id, self.index, rec if rec is not None else self.records.get(minion_id)
        )

    def handle(self, tag, data):
        """Take one bus event; return the :class:`~saltext_edge.fleet.evidence.Evidence` it held or ``None``."""
        if tag == "salt/key" and isinstance(data, dict) and isinstance(data.get("id"), str):
            # a key was accepted, rejected or deleted: read it again next time
            self.keyring.forget(data["id"])
            return None
        ev = self.classifier.classify(tag, data)
        if ev is None:
            return None
        if isinstance(ev, list):
            # edge/fleet/proven: one trusted sign of life per proven id
            for one in ev:
                self.take(one, data)
            return ev
        return self.take(ev, data)

    def take(self, ev, data):
        """Apply one :class:`~saltext_edge.fleet.evidence.Evidence` of event ``data``; return it."""
        now = self.clock()
        self.events_seen += 1
        stamp = stamp_epoch(data.get("_stamp")) if isinstance(data, dict) else None
        if stamp is not None:
            self.lag = max(0.0, now - stamp)
        rec = self.records.get(ev.id)
        if not ev.trusted:
            self.claims += 1
            if rec is not None:
                _record.claim(rec, ev.kind, now)
                self.dirty.add(ev.id)
            return ev
        if rec is None:
            rec = self.records[ev.id] = _record.new(ev.id, now)
        if ev.kind == "heartbeat":
            if _record.heartbeat(
                rec, ev.payload, now, self.conf["raw_seconds"], master=self.master_id
            ):
                return ev
        else:
            _record.seen(rec, ev.kind, now, source=ev.source, master=self.master_id)
        self.dirty.add(ev.id)
        self._step(ev.id, rec, now)
        return ev

    # ---- classification and events -------------------------------------

    def in_grace(self, now=None):
        """Return ``True`` while transitions are held back after the engine started."""
        return (now if now is not None else self.clock()) < self.grace_until

    def _step(self, minion_id, rec, now):
        before = rec.get("status")
        site = self.site(minion_id, rec)
        site_conf = self._site_confs.get(site)
        if site_conf is None:
            site_conf = self._site_confs[site] = _conf.for_site(self.conf, site)
        quality = _status.uplink_quality(rec)
        fired = _status.step(
            rec, self.conf, now, self.started_at, self.in_grace(now), site=site, site_conf=site_conf
        )
        if rec.get("status") != before or quality != self._quality.get(minion_id):
            self.dirty.add(minion_id)
            self._sites_dirty.add(site)
            self._quality[minion_id] = quality
        self._schedule(minion_id, rec, site_conf)
        if fired:
            kind, why = fired
            self.dirty.add(minion_id)
            self.fired[kind] += 1
            self.fire(
                f"edge/node/{minion_id}/{kind}",
                {
                    "id": minion_id,
                    "site": site,
                    "status": kind,
                    "last_seen": iso(rec.get("last_seen")),
                    "last_seen_kind": rec.get("last_kind"),
                    "reason": why,
                    "master": self.master_id,
                },
            )

    def _schedule(self, minion_id, rec, site_conf):
        """Queue the time at which ``rec``'s status can next change (none once offline)."""
        last = rec.get("last_seen")
        if last is None or rec.get("status") == "offline":
            return
        since = last if rec.get("alerted") == "offline" else max(last, self.started_at)
        late_s, offline_s = _status.limits(rec, site_conf)
        due = since + (late_s if rec.get("status") == "online" else offline_s) + 0.001
        if self._due_at.get(minion_id) != due:
            self._due_at[minion_id] = due
            heapq.heappush(self._due, (due, minion_id))

    def _sites_step(self, now, everything=False):
        if not self._sites_dirty and not everything:
            return
        wanted = None if everything else self._sites_dirty
        self._sites_dirty = set()
        by_site = {}
        for minion_id, rec in self.records.items():
            site = self.site(minion_id, rec)
            if wanted is None or site in wanted:
                by_site.setdefault(site, []).append(rec)
        degraded = self.sites_meta["degraded"]
        grace = self.in_grace(now)
        if grace:
            # judged again once the grace period is over
            self._sites_dirty.update(by_site)
        for site, recs in by_site.items():
            if site is None:
                continue
            site_conf = _conf.for_site(self.conf, site)
            is_bad, bad, total = _status.site_health(recs, site_conf)
            was = bool(degraded.get(site))
            if is_bad == was or grace:
                continue
            degraded[site] = is_bad
            kind = "degraded" if is_bad else "recovered"
            self.fired[kind] += 1
            self.fire(
                f"edge/site/{site}/{kind}",
                {
                    "site": site,
                    "degraded": is_bad,
                    "bad": bad,
                    "total": total,
                    "share": round(bad / total, 3) if total else 0.0,
                    "threshold": site_conf["degraded_share"],
                    "offline": sorted(r["id"] for r in recs if r.get("status") == "offline")[:50],
                    "poor_uplink": sorted(
                        r["id"] for r in recs if _status.uplink_quality(r) in _status.BAD_UPLINK
                    )[:50],
                    "master": self.master_id,
                },
            )
            self._meta_dirty = True

    def _close_hour(self, now):
        site_samples = {}
        site_counts = {}
        hour_ts = (int(now // _record.HOUR) - 1) * _record.HOUR
        for minion_id, rec in self.records.items():
            site = self.site(minion_id, rec) or ""
            counts = site_counts.setdefault(site, {"online": 0, "late": 0, "offline": 0})
            if rec.get("status") in counts:
                counts[rec["status"]] += 1
            site_samples.setdefault(site, []).extend(
                s for s in rec.get("samples") or () if hour_ts <= s[0] < hour_ts + _record.HOUR
            )
            rows = _record.close_hours(rec, now)
            if rows:
                self.pending_hours.setdefault(minion_id, []).extend(rows)
                self.dirty.add(minion_id)
        hours = self.sites_meta["hours"]
        for site, counts in site_counts.items():
            tr = _record.trend(site_samples.get(site, []))
            row = [
                hour_ts,
                counts["online"],
                counts["late"],
                counts["offline"],
                tr["rtt_ms_median"],
                tr["rtt_ms_p95"],
                tr["loss_pct"],
                len(site_samples.get(site, [])),
            ]
            rows = [r for r in hours.get(site, []) if r[0] != hour_ts] + [row]
            hours[site] = rows[-MAX_SITE_ROWS:]
        self._meta_dirty = True

    def tick(self, now=None):
        """
        Once a second or so: refresh the site index, classify every node,
        fire transitions, close finished hours, flush when due, refresh the
        snapshot. Returns the number of events fired.
        """
        now = now if now is not None else self.clock()
        if self.index_at is None or now - self.index_at >= SITES_REFRESH_S:
            self.index = self.index_fn(self.opts)
            self.accepted = set(self.keys_fn(self.opts))
            self.index_at = now
        fired_before = sum(self.fired.values())
        sweep = self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY_S
        if not self._grace_swept and not self.in_grace(now):
            # transitions held back during the grace period fire now
            sweep = self._grace_swept = True
        if sweep:
            self._last_sweep = now
            self._due = []
            self._due_at = {}
            for minion_id, rec in list(self.records.items()):
                self._step(minion_id, rec, now)
        else:
            while self._due and self._due[0][0] <= now:
                due, minion_id = heapq.heappop(self._due)
                if self._due_at.get(minion_id) != due:
                    continue  # superseded by a later sign of life
                del self._due_at[minion_id]
                rec = self.records.get(minion_id)
                if rec is not None:
                    self._step(minion_id, rec, now)
        self._sites_step(now, everything=sweep)
        if int(now // _record.HOUR) != self.last_hour:
            self.last_hour = int(now // _record.HOUR)
            self._close_hour(now)
        if now - self.last_flush >= self.conf["flush_interval"]:
            self.flush(now)
        if self._snapshot_at is None or now - self._snapshot_at >= SNAPSHOT_EVERY_S:
            self.refresh_snapshot(now)
        return sum(self.fired.values()) - fired_before

    # ---- storage --------------------------------------------------------

    _meta_dirty = False

    def flush(self, now=None):
        """Write the changed records, hourly rows and site meta. Returns the number of records written."""
        now = now if now is not None else self.clock()
        self.last_flush = now
        ids = list(self.dirty)
        self.dirty = set()
        for minion_id in ids:
            _record.trim(self.records[minion_id], now, self.conf["raw_seconds"])
        merged, errors = self.store.write_records(
            {i: self.records[i] for i in ids if i in self.records}, _record.merge
        )
        self.store_errors += errors
        for minion_id, rec in merged.items():
            # keep this engine's own alert memory; adopt the rest
            mine = self.records.get(minion_id)
            if mine is not None and mine is not rec:
                rec = dict(rec, alerted=mine.get("alerted"), status=mine.get("status"))
            self.records[minion_id] = rec
        if errors:
            self.dirty.update(i for i in ids if i not in merged)
        keep = int(self.conf["hourly_days"] * 24)
        for minion_id in list(self.pending_hours)[:HOUR_WRITES_PER_FLUSH]:
            rows = self.pending_hours.pop(minion_id)
            try:
                self.store.add_hours(minion_id, rows, _record.merge_hours, keep)
            except _store.StoreError as exc:
                self.store_errors += 1
                log.warning("edge_fleet: %s", exc)
                self.pending_hours[minion_id] = rows
        try:
            if self._meta_dirty:
                stored = self.store.meta("sites")
                for site, rows in (stored.get("hours") or {}).items():
                    self.sites_meta["hours"][site] = _record.merge_hours(
                        rows, self.sites_meta["hours"].get(site, []), MAX_SITE_ROWS
                    )
                self.store.set_meta("sites", self.sites_meta)
                self._meta_dirty = False
            self.store.set_meta(
                f"engine.{self.master_id}",
                {
                    "started_at": self.started_at,
                    "flushed_at": now,
                    "events_seen": self.events_seen,
                    "nodes": len(self.records),
                    "rejected_heartbeats": self.classifier.rejected,
                    "unverified_claims": self.claims,
                },
            )
        except _store.StoreError as exc:
            self.store_errors += 1
            log.warning("edge_fleet: %s", exc)
        return len(ids)

    # ---- snapshot -------------------------------------------------------

    def refresh_snapshot(self, now=None):
        """Rebuild the snapshot (see :func:`saltext_edge.fleet.snapshot`) from memory."""
        now = now if now is not None else self.clock()
        snap = assemble(
            self.records,
            self.accepted,
            self.index,
            self.site,
            lambda _id, rec: rec.get("status"),
            {
                "events_seen": self.events_seen,
                "lag_seconds": round(self.lag, 3),
                "store_errors": self.store_errors,
                "started_at": self.started_at,
            },
        )
        with self._lock:
            self._snapshot = snap
            self._snapshot_at = now
        return snap

    def snapshot(self):
        """Return the latest snapshot (never blocks on the event loop; safe from another thread)."""
        with self._lock:
            snap = self._snapshot
        return snap if snap is not None else self.refresh_snapshot()
