"""
The fleet engine's state machine (see ``docs/ref/engine.rst``): takes events
from the master bus, keeps the record in memory, classifies nodes once per
tick, fires transition events, writes the record in batches and keeps the
snapshot the metrics server reads. No thread of its own: the Salt engine
module (``engines/edge_fleet.py``) feeds it events and calls :meth:`tick`.
"""

import collections
import heapq
import logging
import queue
import threading
import time

from saltext_edge import eventauth as _eventauth
from saltext_edge.fleet import conf as _conf
from saltext_edge.fleet import evidence as _evidence
from saltext_edge.fleet import record as _record
from saltext_edge.fleet import rows as _rows
from saltext_edge.fleet import signing as _signing
from saltext_edge.fleet import sites as _sites
from saltext_edge.fleet import status as _status
from saltext_edge.fleet import store as _store
from saltext_edge.fleet.nodeview import assemble, iso, stamp_epoch
from saltext_edge.fleet.signing import shown

log = logging.getLogger(__name__)

SITES_REFRESH_S = 60.0
SNAPSHOT_EVERY_S = 5.0
#: seconds between two sweeps over every node (between sweeps only the nodes
#: whose next threshold has passed are classified again)
SWEEP_EVERY_S = 60.0
#: hourly-row writes per flush at most (the rest wait for the next flush)
HOUR_WRITES_PER_FLUSH = 500
MAX_SITE_ROWS = 30 * 24
#: what each refusal reason means, in the log line
REFUSAL_HELP = {
    "malformed": "seq, boot, sent_at or sig missing or of the wrong type",
    "unknown_key": "no accepted key for this id",
    "bad_signature": "not signed by the accepted key of this id",
    "replay": "not newer than a heartbeat already taken from this boot",
}
#: log lines about one node and one reason: at most one per this many seconds
LOG_NODE_EVERY_S = 3600.0
#: (node, reason) pairs remembered for that at most
LOG_KEYS_MAX = 40000
#: log lines per minute at most about heartbeats that name no known node
LOG_UNKNOWN_PER_MIN = 10
#: per-site settings cached at most (sites come from heartbeats)
MAX_SITE_CONFS = 4096
#: tags the engine reads (everything else on the bus is skipped unread)
WANTED = (
    _evidence.HEARTBEAT_TAG,
    "salt/job/",
    "salt/minion/",
    "minion_start",
    "minion_ping",
    "salt/auth",
    "salt/key",
    "edge/fleet/",
)
#: the largest event queued (a heartbeat is about 1 kB) and the queue's total
MAX_EVENT_BYTES = 64 * 1024
INBOX_BYTES = 16 * 1024 * 1024
#: what the marker queued for an oversize event counts against the inbox
OVERSIZE_COST = 256


def wanted(tag):
    """Return ``True`` when events tagged ``tag`` may matter to the engine (of jobs, only returns)."""
    if not isinstance(tag, str) or not tag.startswith(WANTED):
        return False
    return not tag.startswith("salt/job/") or "/ret/" in tag


def peek_tag(raw):
    """Return the tag of a raw Salt event (``tag\\n\\n<msgpack>``) without unpacking its data."""
    head = raw[:1024].partition(b"\n\n")[0] if isinstance(raw, bytes) else b""
    return head.decode("utf-8", "replace")


def oversize(tag, size):
    """Return the small item queued instead of an event bigger than :data:`MAX_EVENT_BYTES`."""
    return (tag, {"_oversize": int(size)})


class Inbox:
    """
    The queue between the bus handler and the engine's thread, bounded in
    bytes: :meth:`offer` skips events not :func:`wanted` or larger than
    :data:`MAX_EVENT_BYTES`, and at most :data:`INBOX_BYTES` of raw events
    wait. :meth:`put` (the ``queue.Queue`` call) queues the engine's own
    requests (``saltext_edge.fleet.live``), which count nothing.
    """

    def __init__(self, max_bytes=INBOX_BYTES, max_event=MAX_EVENT_BYTES):
        self.max_bytes = max_bytes
        self.max_event = max_event
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self.bytes = 0
        self.skipped = 0
        self.dropped = 0

    def offer(self, tag, size, item):
        """Queue the bus event ``item`` (``size`` raw bytes); ``False`` when it was skipped or the inbox is full."""
        if not wanted(tag) or size > self.max_event:
            self.skipped += 1
            return False
        with self._lock:
            if self.bytes + size > self.max_bytes:
                self.dropped += 1
                return False
            self.bytes += size
        self._queue.put((size, item))
        return True

    def put(self, item, block=True, timeout=None):
        """Queue one of the engine's own items (``queue.Queue.put``; never full)."""
        self._queue.put((0, item), block, timeout)

    def get(self, block=True, timeout=None):
        """Return the next item; raises ``queue.Empty`` after ``timeout`` seconds."""
        size, item = self._queue.get(block, timeout)
        if size:
            with self._lock:
                self.bytes -= size
        return item


class LogLimiter:
    """
    Rate limits for log lines about minion-controlled input: one line per
    ``(node, reason)`` per :data:`LOG_NODE_EVERY_S` (at most
    :data:`LOG_KEYS_MAX` pairs remembered), and at most
    :data:`LOG_UNKNOWN_PER_MIN` lines a minute about unknown ids, whatever
    their number (the rest are counted and summed up in one line).
    """

    def __init__(self, every=LOG_NODE_EVERY_S, max_keys=LOG_KEYS_MAX, per_min=LOG_UNKNOWN_PER_MIN):
        self.every = every
        self.max_keys = max_keys
        self.per_min = per_min
        self._last = collections.OrderedDict()
        self._minute = None
        self._count = 0
        self.suppressed = 0

    def node(self, key, now):
        """Return ``True`` when a line about ``key`` (``(id, reason)``) may be logged now."""
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        while self._last:
            first = next(iter(self._last.values()))
            if now - first < self.every:
                break
            self._last.popitem(last=False)
        return True

    def unknown(self, now):
        """
        Return ``(may_log, suppressed_before)``: whether a line about an
        unknown id may be logged now, and how many were held back in the
        previous minute (to be said once).
        """
        minute = int(now // 60)
        held = 0
        if minute != self._minute:
            held, self.suppressed = self.suppressed, 0
            self._minute, self._count = minute, 0
        if self._count >= self.per_min:
            self.suppressed += 1
            return False, held
        self._count += 1
        return True, held

    def size(self):
        """Return the number of ``(node, reason)`` pairs remembered."""
        return len(self._last)


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
        self.conf = conf if conf is not None else _conf.from_opts(opts)
        self.store = store if store is not None else _store.Store(opts)
        self.keyring = keyring if keyring is not None else _signing.KeyRing(opts)
        self.fire = fire or (lambda tag, data: None)
        self.clock = clock
        self.index_fn = index_fn or _sites.node_index
        self.keys_fn = keys_fn or (lambda o: _sites.keys(o)["minions"])
        self.accepted = set()
        self.master_id = str(opts.get("id") or "master")
        self.classifier = _evidence.Classifier(
            self.keyring,
            trust_unsigned=self.conf["trust_unsigned"],
            verify_event=lambda tag, data: _eventauth.verify(opts, tag, data),
        )
        self.limiter = LogLimiter()
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
        """
        Take one bus event; return the :class:`~saltext_edge.fleet.evidence.Evidence`
        it held, a :class:`~saltext_edge.fleet.evidence.Refusal` (a refused
        heartbeat) or ``None``.
        """
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
        """
        Apply one :class:`~saltext_edge.fleet.evidence.Evidence` (or
        :class:`~saltext_edge.fleet.evidence.Refusal`) of event ``data``;
        return it (a replayed heartbeat: its refusal).
        """
        now = self.clock()
        self.events_seen += 1
        stamp = stamp_epoch(data.get("_stamp")) if isinstance(data, dict) else None
        if stamp is not None:
            self.lag = max(0.0, now - stamp)
        if isinstance(ev, _evidence.Refusal):
            self._refused(ev, now)
            return ev
        rec = self.records.get(ev.id)
        if rec is None:
            if ev.kind != "heartbeat" and self.keyring.get(ev.id) is None:
                # a claim makes a record only for an accepted key (bounded by the key store)
                return None
            rec = self.records[ev.id] = _record.new(ev.id, now)
        if not ev.trusted:
            self.claims += 1
            _record.claim(rec, ev.kind, now)
            self.dirty.add(ev.id)
            return ev
        if ev.kind == "heartbeat":
            if _record.heartbeat(
                rec, ev.payload, now, self.conf["raw_seconds"], master=self.master_id
            ):
                ref = self.classifier.refuse("replay", ev.id, True)
                self._refused(ref, now)
                return ref
            self._check_clock(ev.id, rec, now)
        else:
            _record.seen(rec, ev.kind, now, source=ev.source, master=self.master_id)
        self.dirty.add(ev.id)
        self._step(ev.id, rec, now)
        return ev

    def _refused(self, ref, now):
        """Note a refused heartbeat: on the record of a known node, and in the log (rate-limited)."""
        if ref.known and ref.id is not None:
            rec = self.records.get(ref.id)
            if rec is None:
                # an accepted key whose heartbeats are all refused: show it
                rec = self.records[ref.id] = _record.new(ref.id, now)
            _record.refused(rec, ref.reason, now)
            self.dirty.add(ref.id)
            if self.limiter.node((ref.id, ref.reason), now):
                log.warning(
                    "edge_fleet: heartbeat of %s refused: %s (%s; logged once an hour per node and reason)",
                    shown(ref.id),
                    ref.reason,
                    REFUSAL_HELP.get(ref.reason, ""),
                )
            return
        may, held = self.limiter.unknown(now)
        if held:
            log.warning(
                "edge_fleet: %d more heartbeat(s) naming no accepted key were refused in the last minute (not logged one by one)",
                held,
            )
        if may:
            log.warning(
                "edge_fleet: heartbeat refused: %s for %s (at most %d such lines a minute)",
                ref.reason,
                "an invalid id" if ref.id is None else shown(ref.id),
                self.limiter.per_min,
            )

    def _check_clock(self, minion_id, rec, now):
        offset = rec.get("clock_offset_s")
        if (
            offset is not None
            and abs(offset) > self.conf["clock_warn"]
            and self.limiter.node((minion_id, "clock"), now)
        ):
            log.warning(
                "edge_fleet: the clock of %s is %.0f s %s the master's (more than clock_warn, "
                "%.0f s); its heartbeats are taken all the same (logged once an hour)",
                shown(minion_id),
                abs(offset),
                "behind" if offset > 0 else "ahead of",
                self.conf["clock_warn"],
            )

    # ---- classification and events -------------------------------------

    def in_grace(self, now=None):
        """Return ``True`` while transitions are held back after the engine started."""
        return (now if now is not None else self.clock()) < self.grace_until

    def _step(self, minion_id, rec, now):
        before = rec.get("status")
        site = self.site(minion_id, rec)
        site_conf = self._site_confs.get(site)
        if site_conf is None:
            if len(self._site_confs) >= MAX_SITE_CONFS:
                self._site_confs.clear()
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
            if len(self._due) > 2 * len(self._due_at) + 1024:
                # superseded entries (a node heartbeating fast): keep one per node
                self._due = [(at, mid) for mid, at in self._due_at.items()]
                heapq.heapify(self._due)

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
            was = bool(degraded.get(site))
            is_bad, bad, total = _status.site_health(recs, site_conf, was)
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
                    "poor_uplink": sorted(r["id"] for r in recs if _status.uplink_bad(r, was))[:50],
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
            row = _rows.stored(
                _rows.SiteHourRow(
                    hour=hour_ts,
                    online=counts["online"],
                    late=counts["late"],
                    offline=counts["offline"],
                    rtt_ms_median=tr["rtt_ms_median"],
                    rtt_ms_p95=tr["rtt_ms_p95"],
                    loss_pct=tr["loss_pct"],
                    samples=len(site_samples.get(site, [])),
                )
            )
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
        raw_seconds = self.conf["raw_seconds"]

        def merge(mine, theirs):
            # what the store holds may have rows this engine trimmed since:
            # trim the union too, or the stored record grows to MAX_SAMPLES
            out = _record.merge(mine, theirs)
            _record.trim(out, now, raw_seconds)
            return out

        merged, errors = self.store.write_records(
            {i: self.records[i] for i in ids if i in self.records}, merge
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
                    "refused_heartbeats": dict(self.classifier.refused),
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
                "heartbeats_refused": dict(self.classifier.refused),
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
