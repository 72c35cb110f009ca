"""
Online / late / offline from the record, transitions, degraded sites and
flapping nodes (see ``docs/ref/engine.rst``, "Status"). Pure: no Salt, no I/O.

A node is expected to send a heartbeat every ``period`` seconds (what its
beacon says, else the site's ``interval``). Its age is the time since its
last trusted sign of life; the engine measures it from its own start when
that is later (a master that was down saw nothing, which is not the node's
fault: no false transitions after a restart). With
``slack = period * jitter + budget + 1 s`` (jitter and probe budget of the
beacon, one beacon loop)::

    age <= late_after * period + slack      online
    age <= offline_after * period + slack   late
    otherwise                               offline
"""

from saltext_edge.fleet import conf as _conf
from saltext_edge.fleet import record as _record

STATUSES = ("online", "late", "offline", "never_seen")
BAD_UPLINK = ("poor", "down")


def limits(rec, site_conf):
    """Return ``(late_s, offline_s)``: the ages at which ``rec`` becomes late and offline."""
    period = rec.get("period") or site_conf["interval"]
    jitter = rec.get("jitter") if rec.get("jitter") is not None else 0.1
    slack = period * jitter + float(rec.get("budget") or 2.0) + 1.0
    return (
        site_conf["late_after"] * period + slack,
        site_conf["offline_after"] * period + slack,
    )


def classify(rec, site_conf, now, started_at=None):
    """Return the status of ``rec`` at ``now`` (one of :data:`STATUSES`)."""
    last = rec.get("last_seen")
    if last is None:
        return "never_seen"
    since = max(last, started_at) if started_at is not None else last
    age = now - since
    late_s, offline_s = limits(rec, site_conf)
    if age <= late_s:
        return "online"
    if age <= offline_s:
        return "late"
    return "offline"


def reason(rec, status, now, site_conf):
    """Return a human sentence for why ``rec`` is ``status`` (used in events)."""
    last = rec.get("last_seen")
    period = rec.get("period") or site_conf["interval"]
    if status == "offline":
        if last is None:
            return "never seen"
        return (
            f"no sign of life for {int(now - last)} s "
            f"(more than {site_conf['offline_after']} heartbeats of {period:g} s missed)"
        )
    if status == "online":
        return f"{rec.get('last_kind') or 'sign of life'} received"
    if status == "late":
        return f"more than {site_conf['late_after']} heartbeats of {period:g} s missed"
    return "never seen"


def step(rec, conf, now, started_at=None, in_grace=False, site=None, site_conf=None):
    """
    Re-classify ``rec`` at ``now`` and return the transition event to fire,
    ``None`` or ``("offline"|"online", reason)``. Updates ``status``,
    ``status_since``, ``transitions`` and ``alerted`` in place. Each
    transition fires once: ``alerted`` remembers the last one fired, and it
    survives restarts because it is part of the stored record. During the
    grace period nothing fires (what is pending fires after it).
    """
    if site_conf is None:
        site_conf = _conf.for_site(conf, site if site is not None else rec.get("site"))
    if rec.get("alerted") == "offline":
        # reported offline before the engine (re)started: no new window for it
        started_at = None
    new = classify(rec, site_conf, now, started_at)
    if new != rec.get("status"):
        rec["status"] = new
        rec["status_since"] = now
        if new in ("online", "offline"):
            rec["transitions"] = (rec.get("transitions") or [])[
                -(_record.MAX_TRANSITIONS - 1) :
            ] + [[round(now, 3), new]]
    if in_grace:
        return None
    alerted = rec.get("alerted")
    if new == "offline" and alerted != "offline":
        rec["alerted"] = "offline"
        return ("offline", reason(rec, "offline", now, site_conf))
    if new == "online":
        if alerted == "offline":
            rec["alerted"] = "online"
            return ("online", reason(rec, "online", now, site_conf))
        if alerted is None:
            rec["alerted"] = "online"
    return None


def flapping(rec, conf, now):
    """Return ``True`` when ``rec`` went offline ``flap_count`` times or more within ``flap_window``."""
    cut = now - conf["flap_window"]
    count = sum(1 for t in rec.get("transitions") or () if t[0] >= cut and t[1] == "offline")
    return count >= conf["flap_count"]


def uplink_quality(rec):
    """Return the node's last uplink quality (``unknown`` when none)."""
    uplink = rec.get("uplink")
    return uplink.get("quality", "unknown") if isinstance(uplink, dict) else "unknown"


#: uplink samples (heartbeats) over which a node's link is judged for site
#: health (``docs/ref/engine.rst``, "Degraded sites")
HEALTH_WINDOW = 5


def recent_qualities(rec, window=HEALTH_WINDOW):
    """Return the qualities of the node's last ``window`` uplink samples, oldest first (its last uplink when it has no samples)."""
    rows = [s for s in rec.get("samples") or () if len(s) >= 5][-window:]
    if rows:
        return [s[4] for s in rows]
    return [uplink_quality(rec)] if rec.get("uplink") is not None else []


def uplink_bad(rec, degraded=False, window=HEALTH_WINDOW):
    """
    Return ``True`` when the node counts as on a bad (poor or down) link for
    its site's health. The rule has hysteresis: for a site that is not
    degraded (``degraded`` False), when at least half of its last ``window``
    samples are poor or down; for a degraded site, until none of them is.
    """
    qualities = recent_qualities(rec, window)
    bad = sum(1 for q in qualities if q in BAD_UPLINK)
    if degraded:
        return bad > 0
    return bool(qualities) and 2 * bad >= len(qualities)


def site_health(nodes, site_conf, degraded=False):
    """
    Return ``(degraded, bad, total)`` for the records ``nodes`` of one site,
    ``degraded`` given as the site's flag so far: ``bad`` counts nodes
    offline or (online/late) on a bad link by :func:`uplink_bad`, ``total``
    the nodes ever seen. The site is degraded when ``bad / total`` reaches
    ``degraded_share``; a degraded site recovers only when that holds no
    longer with the stricter rule :func:`uplink_bad` applies to it, so one
    good sample of a lossy link does not recover it, nor one bad sample of a
    clean link degrade it.
    """
    total = bad = 0
    for rec in nodes:
        status = rec.get("status")
        if status == "never_seen" or rec.get("last_seen") is None:
            continue
        total += 1
        if status == "offline" or uplink_bad(rec, degraded):
            bad += 1
    is_degraded = (
        total >= site_conf["degraded_min_nodes"]
        and total > 0
        and (bad / total >= site_conf["degraded_share"])
    )
    return is_degraded, bad, total
