"""
The per-node record the fleet engine keeps, and its bounded uplink history
(see ``docs/ref/engine.rst``, "Record and history"). Pure: no Salt, no I/O.

A record is a plain dict (it goes through ``salt.cache`` as msgpack)::

    {"id", "site", "first_seen", "last_seen", "last_kind", "source",
     "period", "jitter", "seq", "boot", "uptime_s", "uplink",
     "samples": [Sample, ...],          # raw, last raw_seconds (rows: saltext_edge.fleet.rows)
     "hours_last": hour_ts of the last hourly row made,
     "status", "status_since", "alerted", "transitions": [[ts, status], ...],
     "claim": {"ts", "kind"}, "seen_by",
     "boots": [[generation, boot_n, seq, ts], ...],   # replay rule, at most MAX_GENERATIONS
     "clock": [offset_s, ...], "clock_offset_s",       # master time - sent_at, last CLOCK_SAMPLES
     "refusal": {"ts", "reason"}}                      # last refused heartbeat

Replay rule (see ``docs/ref/engine.rst``, "Replay and clocks"): a signed
heartbeat is taken iff its ``(boot_n, seq)`` is greater than the highest
recorded for its boot generation, or its generation is not among the
node's last :data:`MAX_GENERATIONS`. No wall clock is involved.

History: every heartbeat's figures are kept raw for ``raw_seconds`` (2 h by
default: the 1 h trend needs the full last hour, and an hour is closed into
an aggregate only after it ended), then one aggregate per hour for
``hourly_days`` (30 days, 720 rows). At a 60 s period that is at most 120 raw
rows + 720 hourly rows per node. Hourly rows (:class:`~saltext_edge.fleet.rows.HourRow`)
are stored apart from the live record (they change once an hour).
"""

import math
import re

from saltext_edge.fleet.rows import AT, LOSS_PCT, QUALITY, RTT_MS, HourRow, Sample, load, stored
from saltext_edge.tokens import SITE_RE
from saltext_edge.uplink.quality import QUALITIES, worst

_QUALITY = {q: q for q in QUALITIES}
KINDS = ("heartbeat", "job_return", "minion_start", "minion_ping", "auth")
#: raw sample rows kept at most, whatever the period (bounds memory at 1 s periods)
MAX_SAMPLES = 1000
MAX_TRANSITIONS = 50
HOUR = 3600
#: boot generations remembered per node (the replay rule); a generation
#: changes only when the node loses its heartbeat state file
MAX_GENERATIONS = 8
#: clock offsets kept per node (the shown offset is their median)
CLOCK_SAMPLES = 5
#: ``boot`` of a current beacon: ``<generation>:<boot number>``
_BOOT_RE = re.compile(r"\A([0-9a-f]{8,32}):(\d{1,18})\Z")


def new(minion_id, now=None):
    """Return an empty record for ``minion_id``."""
    return {
        "id": minion_id,
        "site": None,
        "first_seen": now,
        "last_seen": None,
        "last_kind": None,
        "source": None,
        "period": None,
        "jitter": None,
        "seq": None,
        "boot": None,
        "uptime_s": None,
        "uplink": None,
        "samples": [],
        "hours_last": None,
        "budget": None,
        "status": "never_seen",
        "status_since": now,
        "alerted": None,
        "transitions": [],
        "claim": None,
        "seen_by": None,
        "boots": [],
        "clock": [],
        "clock_offset_s": None,
        "refusal": None,
    }


def _num(value, lo=0.0, hi=1e7):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if math.isnan(value) or not lo <= value <= hi:
        return None
    return round(value, 3)


def clean_uplink(uplink):
    """Return ``{quality, rtt_ms, jitter_ms, loss_pct, checked_at}`` with only sane values, or ``None``."""
    if not isinstance(uplink, dict):
        return None
    quality = uplink.get("quality")
    checked = uplink.get("checked_at")
    return {
        # the shared constant, not the node's string: one object for all rows
        "quality": _QUALITY.get(quality, "unknown") if isinstance(quality, str) else "unknown",
        "rtt_ms": _num(uplink.get("rtt_ms")),
        "jitter_ms": _num(uplink.get("jitter_ms")),
        "loss_pct": _num(uplink.get("loss_pct"), 0.0, 100.0),
        "checked_at": checked if isinstance(checked, str) and len(checked) <= 40 else None,
    }


def seen(rec, kind, now, source=None, master=None):
    """Mark a trusted sign of life of ``kind`` at ``now`` (never moves ``last_seen`` back)."""
    if rec["last_seen"] is None or now >= rec["last_seen"]:
        rec["last_seen"] = now
        rec["last_kind"] = kind
        rec["source"] = source
        rec["seen_by"] = master
    if rec["first_seen"] is None:
        rec["first_seen"] = now


def claim(rec, kind, now):
    """Note an unverified sign of life (kept for operators, does not change the status)."""
    rec["claim"] = {"ts": now, "kind": kind}


def boot_key(boot):
    """
    Return ``(generation, boot_n)`` of a heartbeat's ``boot``: a current
    beacon sends ``<generation>:<n>`` (``n`` grows at every start of the
    minion); any other string (older beacons: one per start) is its own
    generation with ``n = 0``.
    """
    match = _BOOT_RE.match(boot) if isinstance(boot, str) else None
    if match:
        return match.group(1), int(match.group(2))
    return str(boot)[:64], 0


def _boot_rows(rec):
    rows = rec.get("boots")
    if rows:
        return rows
    # a record written before the replay rule: its last boot and seq
    if isinstance(rec.get("boot"), str) and isinstance(rec.get("seq"), int):
        gen, boot_n = boot_key(rec["boot"])
        return [[gen, boot_n, rec["seq"], rec.get("last_seen") or 0]]
    return []


def replayed(rec, payload):
    """
    Return ``True`` when the (signed, well-formed) heartbeat ``payload`` is
    not newer than what ``rec`` holds for its boot generation: its
    ``(boot_n, seq)`` is not greater than the highest recorded. A
    generation the record does not hold is new.
    """
    gen, boot_n = boot_key(payload.get("boot"))
    seq = payload.get("seq")
    for row in _boot_rows(rec):
        if row[0] == gen:
            return (boot_n, seq) <= (row[1], row[2])
    return False


def note_boot(rec, payload, now):
    """Record ``payload``'s ``(boot_n, seq)`` as the highest of its generation (at most :data:`MAX_GENERATIONS` kept)."""
    gen, boot_n = boot_key(payload.get("boot"))
    rows = [list(r) for r in _boot_rows(rec) if r[0] != gen]
    rows.append([gen, boot_n, payload.get("seq"), round(now, 3)])
    rec["boots"] = sorted(rows, key=lambda r: r[3])[-MAX_GENERATIONS:]


def merge_boots(rows_a, rows_b):
    """Return the union of two ``boots`` lists: per generation the highest ``(boot_n, seq)``, the latest kept."""
    best = {}
    for row in (rows_a or []) + (rows_b or []):
        have = best.get(row[0])
        if have is None or (row[1], row[2]) > (have[1], have[2]):
            best[row[0]] = [row[0], row[1], row[2], max(row[3], have[3] if have else 0)]
        else:
            have[3] = max(have[3], row[3])
    return sorted(best.values(), key=lambda r: r[3])[-MAX_GENERATIONS:]


def note_clock(rec, sent_at, now):
    """Record the clock offset ``now - sent_at`` (master receive time minus the node's send time); return the median shown."""
    offsets = (list(rec.get("clock") or []) + [round(now - sent_at, 3)])[-CLOCK_SAMPLES:]
    rec["clock"] = offsets
    rec["clock_offset_s"] = median(offsets)
    return rec["clock_offset_s"]


def refused(rec, reason, now):
    """Note the node's last refused heartbeat (time and reason)."""
    rec["refusal"] = {"ts": round(now, 3), "reason": reason}


def heartbeat(rec, payload, now, raw_seconds=7200, master=None):
    """
    Apply a verified, well-formed heartbeat ``payload`` received at ``now``:
    last seen, site, period, sequence, boot generation, clock offset, uplink
    and one raw sample. Returns ``True`` when the payload is a replay (see
    :func:`replayed`: nothing is changed then).
    """
    if replayed(rec, payload):
        return True
    boot, seq = _boot(payload.get("boot")), payload.get("seq")
    note_boot(rec, payload, now)
    note_clock(rec, payload["sent_at"], now)
    seen(rec, "heartbeat", now, source=f"heartbeat seq {seq}", master=master)
    site = payload.get("site")
    if isinstance(site, str) and SITE_RE.match(site):
        rec["site"] = site
    rec["period"] = _num(payload.get("period"), 0.2, 86400)
    rec["jitter"] = _num(payload.get("jitter"), 0.0, 1.0)
    rec["seq"] = seq
    rec["boot"] = boot
    rec["uptime_s"] = _num(payload.get("uptime_s"), 0.0, 1e10)
    rec["budget"] = _num(payload.get("budget"), 0.0, 60.0)
    uplink = clean_uplink(payload.get("uplink"))
    rec["uplink"] = uplink
    if uplink is not None:
        rec["samples"].append(
            stored(
                Sample(
                    round(now, 3),
                    uplink["rtt_ms"],
                    uplink["jitter_ms"],
                    uplink["loss_pct"],
                    uplink["quality"],
                )
            )
        )
    trim(rec, now, raw_seconds)
    return False


def _boot(value):
    """The node's boot marker as stored: a short string or a finite number, else ``None``."""
    if isinstance(value, str):
        return value if 0 < len(value) <= 64 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def trim(rec, now, raw_seconds):
    """Drop raw samples older than ``raw_seconds`` (and beyond :data:`MAX_SAMPLES`)."""
    cut = now - raw_seconds
    samples = rec["samples"]
    if samples and (samples[0][AT] < cut or len(samples) > MAX_SAMPLES):
        rec["samples"] = [s for s in samples if s[AT] >= cut][-MAX_SAMPLES:]


def percentile(values, pct):
    """Return the nearest-rank ``pct`` percentile of ``values`` (``None`` when empty)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(vals)))
    return vals[rank - 1]


def median(values):
    """Return the median of the non-``None`` ``values`` (``None`` when empty)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else round((vals[mid - 1] + vals[mid]) / 2.0, 3)


def trend(samples):
    """Return ``{rtt_ms_median, rtt_ms_p95, loss_pct}`` of raw sample rows (values ``None`` when empty)."""
    rtts = [s[RTT_MS] for s in samples]
    losses = [s[LOSS_PCT] for s in samples if s[LOSS_PCT] is not None]
    return {
        "rtt_ms_median": median(rtts),
        "rtt_ms_p95": percentile(rtts, 95),
        "loss_pct": round(sum(losses) / len(losses), 3) if losses else None,
    }


def aggregate_hour(hour_ts, samples):
    """Return the stored :class:`~saltext_edge.fleet.rows.HourRow` of the raw ``samples`` of hour ``hour_ts``."""
    tr = trend(samples)
    return stored(
        HourRow(
            hour=hour_ts,
            samples=sum(1 for s in samples if s[RTT_MS] is not None),
            rtt_ms_median=tr["rtt_ms_median"],
            rtt_ms_p95=tr["rtt_ms_p95"],
            loss_pct=tr["loss_pct"],
            heartbeats=len(samples),
            worst_quality=worst(s[QUALITY] for s in samples),
        )
    )


def close_hours(rec, now):
    """
    Aggregate every finished hour of raw samples not aggregated yet; return
    the new hourly rows (oldest first) and remember the last in ``hours_last``.
    """
    current = int(now // HOUR) * HOUR
    last = rec.get("hours_last")
    by_hour = {}
    for sample in rec["samples"]:
        hour = int(sample[AT] // HOUR) * HOUR
        if hour < current and (last is None or hour > last):
            by_hour.setdefault(hour, []).append(sample)
    rows = [aggregate_hour(hour, by_hour[hour]) for hour in sorted(by_hour)]
    if rows:
        rec["hours_last"] = rows[-1][0]  # HourRow.hour
    return rows


def merge_hours(rows_a, rows_b, keep):
    """Return the union by hour of two lists of hourly rows, the last ``keep`` of them."""
    hours = {}
    for row in (rows_a or []) + (rows_b or []):
        hours.setdefault(row[0], row)
    return [hours[k] for k in sorted(hours)][-keep:]


def hours_trend(rows):
    """
    Return ``{rtt_ms_median, rtt_ms_p95, loss_pct}`` over hourly rows: the
    median weighted by samples of the hourly medians, the largest hourly
    p95, the loss mean weighted by samples (approximations, see the docs).
    """
    weighted = []
    p95s = []
    loss_num = loss_den = 0.0
    for row in rows:
        row = load(HourRow, row)
        n = row.samples or 0
        if row.rtt_ms_median is not None and n:
            weighted.extend([row.rtt_ms_median] * min(n, 10000))
        if row.rtt_ms_p95 is not None:
            p95s.append(row.rtt_ms_p95)
        if row.loss_pct is not None and row.heartbeats:
            loss_num += row.loss_pct * row.heartbeats
            loss_den += row.heartbeats
    return {
        "rtt_ms_median": median(weighted),
        "rtt_ms_p95": max(p95s) if p95s else None,
        "loss_pct": round(loss_num / loss_den, 3) if loss_den else None,
    }


def merge(mine, theirs):
    """
    Merge two records of one node written by two masters: the one that saw
    the node last wins the scalar fields; raw samples, hourly rows and
    transitions are the union (by time). Pure; returns a new dict.
    """
    if not theirs:
        return mine
    if not mine:
        return theirs
    newer = mine
    if (theirs.get("last_seen") or 0) > (mine.get("last_seen") or 0):
        newer = theirs
    out = dict(newer)
    out["samples"] = _union(mine.get("samples"), theirs.get("samples"))[-MAX_SAMPLES:]
    lasts = [r.get("hours_last") for r in (mine, theirs) if r.get("hours_last") is not None]
    out["hours_last"] = max(lasts) if lasts else None
    out["transitions"] = _union(mine.get("transitions"), theirs.get("transitions"))[
        -MAX_TRANSITIONS:
    ]
    firsts = [r.get("first_seen") for r in (mine, theirs) if r.get("first_seen") is not None]
    out["first_seen"] = min(firsts) if firsts else None
    out["boots"] = merge_boots(_boot_rows(mine), _boot_rows(theirs))
    refusals = [r.get("refusal") for r in (mine, theirs) if isinstance(r.get("refusal"), dict)]
    out["refusal"] = max(refusals, key=lambda r: r.get("ts") or 0) if refusals else None
    return out


def _union(rows_a, rows_b):
    # rows_a's copy of a row both hold is kept: the engine passes its own
    # record first, whose rows share their strings (memory, see the docs)
    seen_rows = {}
    for row in (rows_b or []) + (rows_a or []):
        seen_rows[(row[0], row[1] if len(row) > 1 else None)] = row
    return [seen_rows[k] for k in sorted(seen_rows, key=lambda k: (k[0], str(k[1])))]
