"""
The parts of the fleet page (:mod:`saltext_edge.view.page`): value
formatting, the labels and order of node states, a site's history sparkline,
a node's table row and a site's expandable block.

Everything that comes from the fleet (node ids, site names, reasons, ...)
is HTML-escaped: ids and site names are chosen by whoever runs a node.
"""

import datetime
import html

from saltext_edge.uplink.quality import QUALITIES
from saltext_edge.view.numbers import as_float

STATUSES = ("offline", "late", "never_seen", "online")

ADMISSIONS = ("accepted", "pending", "refused", "revoked")
# icon + word for every state: colour is never the only signal
STATUS_LABEL = {
    "online": ("\u2714", "online"),
    "late": ("\u25d0", "late"),
    "offline": ("\u2716", "offline"),
    "never_seen": ("\u25cb", "never seen"),
}
QUALITY_LABEL = {
    "good": ("\u25cf", "good"),
    "fair": ("\u25d1", "fair"),
    "poor": ("\u25bc", "poor"),
    "down": ("\u2716", "down"),
    "unknown": ("?", "unknown"),
}
STATUS_CLASS = {"online": "on", "late": "late", "offline": "off", "never_seen": "never"}
STATUS_ORDER = {"offline": 0, "late": 1, "never_seen": 2, "online": 3}
QUALITY_ORDER = {"down": 0, "poor": 1, "fair": 2, "unknown": 3, "good": 4}


def escape(value):
    """HTML-escape anything (attribute-safe)."""
    return html.escape("" if value is None else str(value), quote=True)


def as_int(value):
    """An int, or 0 for anything missing or not a number (counts in a report)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _fmt(value, unit="", digits=1):
    value = as_float(value, finite=False)
    if value is None:
        return "\u2013"
    return f"{value:.{digits}f}{unit}"


def parse_iso(text):
    """A datetime from an ISO 8601 string (``Z`` allowed), or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ago(then, now):
    """'5 min' etc. between two ISO strings (None when either is missing)."""
    a, b = parse_iso(then), parse_iso(now)
    if a is None or b is None:
        return None
    secs = (b - a).total_seconds()
    if secs < 0:
        return None
    if secs < 90:
        return f"{int(secs)} s"
    if secs < 5400:
        return f"{int(secs // 60)} min"
    if secs < 172800:
        return f"{secs / 3600:.1f} h"
    return f"{int(secs // 86400)} d"


def time_tag(iso):
    """A ``<time>`` element for an ISO timestamp (the page's script localises it), or "never"."""
    if not iso:
        return '<span class="none">never</span>'
    return f'<time datetime="{escape(iso)}">{escape(iso)}</time>'


def site_severity(name, site):
    """
    Return the sort key of a site: worst first. Degraded, then the share of
    offline nodes, late nodes, poor or down uplinks, never-seen nodes, then
    the name.
    """
    total = sum(as_int(site.get(s)) for s in STATUSES) or 1
    quality = site.get("quality") or {}
    return (
        0 if site.get("degraded") else 1,
        -as_int(site.get("offline")) / total,
        -as_int(site.get("late")) / total,
        -(as_int(quality.get("poor")) + as_int(quality.get("down"))) / total,
        -as_int(site.get("never_seen")) / total,
        str(name),
    )


def _node_key(item):
    node_id, node = item
    node = node if isinstance(node, dict) else {}
    uplink = node.get("uplink") if isinstance(node.get("uplink"), dict) else {}
    return (
        STATUS_ORDER.get(node.get("status"), 2),
        0 if node.get("flapping") else 1,
        QUALITY_ORDER.get(uplink.get("quality"), 3),
        str(node_id),
    )


def sparkline(history, width=120, height=28):
    """
    Return an inline SVG of a site's hourly history (``[{"at", "online",
    "offline", "rtt_ms_median"}]``): the share of nodes online (solid) and
    the median RTT scaled to its own range (dashed), with a text
    description for screen readers and as a tooltip; ``""`` when there are
    fewer than two points.
    """
    points = [p for p in (history or []) if isinstance(p, dict)][-24:]
    if len(points) < 2:
        return ""
    step = (width - 2) / (len(points) - 1)

    def line(values, lo, hi):
        span = (hi - lo) or 1.0
        out = []
        for i, v in enumerate(values):
            if v is None:
                continue
            y = height - 2 - (v - lo) / span * (height - 4)
            out.append(f"{1 + i * step:.1f},{y:.1f}")
        return " ".join(out)

    shares = []
    for p in points:
        on, off = as_int(p.get("online")), as_int(p.get("offline"))
        shares.append(on / (on + off) if on + off else None)
    rtts = [as_float(p.get("rtt_ms_median"), finite=False) for p in points]
    known_rtt = [r for r in rtts if r is not None]
    known_share = [s for s in shares if s is not None]
    desc = f"last {len(points)} hours"
    if known_share:
        desc += f": online {min(known_share) * 100:.0f}-{max(known_share) * 100:.0f} %"
    if known_rtt:
        desc += f", median RTT {min(known_rtt):.0f}-{max(known_rtt):.0f} ms"
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(desc)}"><title>{escape(desc)}</title>'
    ]
    if known_share:
        parts.append(
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
            f'points="{line(shares, 0.0, 1.0)}"/>'
        )
    if known_rtt:
        parts.append(
            f'<polyline fill="none" stroke="#0969da" stroke-width="1" stroke-dasharray="3 2" '
            f'points="{line(rtts, min(known_rtt), max(known_rtt))}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _status_span(status, count=None):
    icon, word = STATUS_LABEL.get(status, ("?", str(status)))
    cls = STATUS_CLASS.get(status, "unk")
    text = f"{icon} {word}" if count is None else f"{icon} {count} {word}"
    return f'<span class="{cls}" data-status="{escape(status)}">{escape(text)}</span>'


def _quality_bar(quality):
    total = sum(as_int(quality.get(q)) for q in QUALITIES)
    if not total:
        return ""
    cells = "".join(
        f'<i class="{q}" style="width:{as_int(quality.get(q)) * 100 / total:.2f}%"></i>'
        for q in QUALITIES
        if as_int(quality.get(q))
    )
    return f'<span class="bar" aria-hidden="true">{cells}</span>'


def _trend(trend):
    parts = []
    for window in ("1h", "24h"):
        t = (trend or {}).get(window) or {}
        if not any(
            as_float(t.get(k), finite=False) is not None
            for k in ("rtt_ms_median", "rtt_ms_p95", "loss_pct")
        ):
            continue
        parts.append(
            f"{window}: RTT {_fmt(t.get('rtt_ms_median'), ' ms', 0)} median, "
            f"{_fmt(t.get('rtt_ms_p95'), ' ms', 0)} p95, loss {_fmt(t.get('loss_pct'), ' %')}"
        )
    return "; ".join(parts)


def _node_row(node_id, node, generated_at):
    node = node if isinstance(node, dict) else {}
    status = node.get("status")
    uplink = node.get("uplink") if isinstance(node.get("uplink"), dict) else {}
    quality = uplink.get("quality") or "unknown"
    q_icon, q_word = QUALITY_LABEL.get(quality, ("?", str(quality)))
    q_cls = quality if quality in QUALITY_LABEL else "unk"
    ago = _ago(node.get("last_seen"), generated_at)
    flap = "\u21c5 flapping" if node.get("flapping") else ""
    admission = node.get("admission") or ""
    adm_cls = "" if admission in ("accepted", "") else ' class="off"'
    # a node that is not online shows its last measurement, marked as such
    stale = " <small>(last)</small>" if uplink and status != "online" else ""
    s_icon, s_word = STATUS_LABEL.get(status, ("?", str(status)))
    s_cls = STATUS_CLASS.get(status, "unk")
    # compact on purpose: 5,000 rows stay well under 2 MB (docs/benchmarks.rst)
    return (
        f"<tr><td>{escape(node_id)}</td>"
        f'<td class="{s_cls}">{s_icon} {escape(s_word)}</td>'
        f"<td>{time_tag(node.get('last_seen'))}{f' <small>{escape(ago)}</small>' if ago else ''}</td>"
        f"<td>{escape(node.get('last_seen_kind') or '')}</td>"
        f'<td class="{q_cls}">{escape(q_icon)} {escape(q_word)}{stale}</td>'
        f"<td>{_fmt(uplink.get('rtt_ms'))}</td>"
        f"<td>{_fmt(uplink.get('jitter_ms'))}</td>"
        f"<td>{_fmt(uplink.get('loss_pct'))}</td>"
        f"<td>{flap}</td>"
        f"<td{adm_cls}>{escape(admission)}</td>"
        f"<td>{escape(node.get('admitted_by') or '')}</td></tr>"
    )


def site_block(name, site, generated_at, is_open=False):
    """One site as an expandable ``<details>``: counts, uplink, trend, sparkline, its nodes."""
    nodes = site.get("nodes") if isinstance(site.get("nodes"), dict) else {}
    counts = {s: as_int(site.get(s)) for s in STATUSES}
    total = sum(counts.values())
    quality = site.get("quality") if isinstance(site.get("quality"), dict) else {}
    admissions = {}
    for node in nodes.values():
        if isinstance(node, dict) and node.get("admission") not in (None, "accepted"):
            admissions[node["admission"]] = admissions.get(node["admission"], 0) + 1
    degraded = bool(site.get("degraded"))
    out = [
        f'<details class="site{" degraded" if degraded else ""}" data-site="{escape(name)}"{" open" if is_open else ""}>',
        f'<summary><span class="name">{escape(name)}</span>',
        f'<span class="total">{total} node{"s" if total != 1 else ""}</span>',
    ]
    if degraded:
        out.append('<span class="deg">\u26a0 degraded</span>')
    out.append(
        '<span class="counts">'
        + "".join(
            _status_span(s, counts[s])
            for s in ("online", "late", "offline", "never_seen")
            if counts[s] or s == "online"
        )
        + "</span>"
    )
    out.append(
        '<span class="qual">'
        + _quality_bar(quality)
        + "".join(
            f'<span class="{q}">{escape(QUALITY_LABEL[q][0])} {as_int(quality.get(q))} {q}</span>'
            for q in QUALITIES
            if as_int(quality.get(q))
        )
        + "</span>"
    )
    if admissions:
        out.append(
            '<span class="adm off">'
            + ", ".join(f"{n} {escape(a)}" for a, n in sorted(admissions.items()))
            + "</span>"
        )
    trend = _trend(site.get("trend"))
    if trend:
        out.append(f'<span class="trend">{escape(trend)}</span>')
    out.append(sparkline(site.get("history")))
    out.append("</summary>")
    listed = len(nodes)
    if nodes:
        out.append(
            '<div class="scroll"><table><thead><tr><th>node</th><th>status</th><th>last seen (age)</th>'
            "<th>by</th><th>uplink</th><th>RTT ms</th><th>jitter ms</th><th>loss %</th>"
            "<th></th><th>admission</th><th>admitted by</th></tr></thead><tbody>"
        )
        out.extend(
            _node_row(nid, node, generated_at) for nid, node in sorted(nodes.items(), key=_node_key)
        )
        out.append("</tbody></table></div>")
    if listed < total:
        out.append(
            f'<p class="note">{total - listed} node(s) not listed (online nodes are left out '
            "unless the report is made with <code>details=True</code>).</p>"
        )
    out.append("</details>")
    return "".join(out)
