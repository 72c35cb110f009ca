"""
The fleet page: one self-contained HTML file rendered from the fleet report
(``salt-run edge.report html=PATH``; docs/howto/grafana.rst).

Sites x status x uplink quality x admission state, the worst sites first,
each site expandable to its nodes (``<details>``), last seen in the viewer's
local time (a few lines of inline JavaScript; the ISO 8601 UTC text stays as
the fallback), a small 24-hour history per site (inline SVG). No external
script, font, stylesheet or request: a Content-Security-Policy in the page
forbids them, and allows only the page's own script by its hash.

Everything that comes from the fleet (node ids, site names, reasons, ...)
is HTML-escaped: ids and site names are chosen by whoever runs a node.
"""

import base64
import datetime
import hashlib
import html
import os
import tempfile

STATUSES = ("offline", "late", "never_seen", "online")
from saltext_edge.uplink_quality import QUALITIES  # noqa: E402  (one definition)

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

_CSS = """
:root{--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--muted:#57606a;--bg:#fff;--fg:#1f2328;--line:#d0d7de;--card:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--ok:#3fb950;--warn:#d29922;--bad:#f85149;--muted:#8b949e;--bg:#0d1117;--fg:#e6edf3;--line:#30363d;--card:#161b22}}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
h1{font-size:1.35rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.meta{color:var(--muted);margin:0 0 1rem}
.totals{display:flex;flex-wrap:wrap;gap:.5rem;margin-bottom:1rem}
.tot{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.4rem .7rem;min-width:7.5rem}
.tot b{display:block;font-size:1.4rem}
.on{color:var(--ok)}.late,.fair,.poor{color:var(--warn)}.off,.down,.never,.deg{color:var(--bad)}.unk,.none{color:var(--muted)}
details.site{border:1px solid var(--line);border-radius:6px;margin:.4rem 0;background:var(--card)}
details.site[open]{background:var(--bg)}
details.site.degraded{border-left:5px solid var(--bad)}
summary{cursor:pointer;padding:.5rem .7rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center}
summary .name{font-weight:600;min-width:9rem;word-break:break-all}
summary .counts span,summary .qual span{white-space:nowrap;margin-right:.6rem}
.bar{display:inline-flex;width:8rem;height:.6rem;border-radius:3px;overflow:hidden;background:var(--line);vertical-align:middle;margin-right:.5rem}
.bar i{display:block;height:100%}
.bar .good{background:var(--ok)}.bar .fair{background:#d4a72c}.bar .poor{background:#e16f24}.bar .down{background:var(--bad)}.bar .unknown{background:var(--muted)}
.trend{color:var(--muted);font-size:.9em}
svg.spark{vertical-align:middle}
.scroll{overflow-x:auto;padding:0 .7rem .7rem}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap}
td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:9rem}
td:nth-child(6),td:nth-child(7),td:nth-child(8){text-align:right;font-variant-numeric:tabular-nums}
td:nth-child(9){color:var(--warn)}
th{position:sticky;top:0;background:var(--bg)}
.note{color:var(--muted);font-size:.9em;margin:.3rem .7rem}
ul.ids{columns:16rem;padding-left:1.2rem}
@media (max-width:600px){body{padding:.5rem;font-size:14px}.tot{min-width:6rem;flex:1}summary .name{min-width:100%}.bar{width:6rem}}
"""

# Converts every <time datetime="...Z"> to the viewer's local time; the ISO
# UTC text is what shows without JavaScript.
_JS = (
    "(function(){var f;try{f=new Intl.DateTimeFormat(undefined,{dateStyle:'medium',"
    "timeStyle:'medium'})}catch(e){return}"
    "var ts=document.querySelectorAll('time[datetime]');"
    "for(var i=0;i<ts.length;i++){var t=ts[i],v=t.getAttribute('datetime'),d=new Date(v);"
    "if(!isNaN(d.getTime())){t.textContent=f.format(d);t.title=v+' (UTC)'}}"
    "var z=document.getElementById('tz');if(z){var o=-new Date().getTimezoneOffset(),"
    "s=o<0?'-':'+';o=Math.abs(o);z.textContent='Times are in your local time (UTC'+s+"
    "String(Math.floor(o/60)).padStart(2,'0')+':'+String(o%60).padStart(2,'0')+'); "
    "hover a time for UTC.'}"
    # how long the page took to parse and lay out in this browser (read by
    # the browser test and the benchmark: docs/benchmarks.rst)
    "var r=document.documentElement;r.setAttribute('data-parsed-ms',Math.round(performance.now()));"
    "addEventListener('load',function(){void document.body.offsetHeight;"
    "r.setAttribute('data-layout-ms',Math.round(performance.now()))})})();"
)
_JS_HASH = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_JS_HASH}'; base-uri 'none'; form-action 'none'"
)


def _e(value):
    """HTML-escape anything (attribute-safe)."""
    return html.escape("" if value is None else str(value), quote=True)


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value):
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None


def _fmt(value, unit="", digits=1):
    value = _float(value)
    if value is None:
        return "\u2013"
    return f"{value:.{digits}f}{unit}"


def _parse_iso(text):
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ago(then, now):
    """'5 min' etc. between two ISO strings (None when either is missing)."""
    a, b = _parse_iso(then), _parse_iso(now)
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


def _time(iso):
    if not iso:
        return '<span class="none">never</span>'
    return f'<time datetime="{_e(iso)}">{_e(iso)}</time>'


def site_severity(name, site):
    """
    Return the sort key of a site: worst first. Degraded, then the share of
    offline nodes, late nodes, poor or down uplinks, never-seen nodes, then
    the name.
    """
    total = sum(_int(site.get(s)) for s in STATUSES) or 1
    quality = site.get("quality") or {}
    return (
        0 if site.get("degraded") else 1,
        -_int(site.get("offline")) / total,
        -_int(site.get("late")) / total,
        -(_int(quality.get("poor")) + _int(quality.get("down"))) / total,
        -_int(site.get("never_seen")) / total,
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
        on, off = _int(p.get("online")), _int(p.get("offline"))
        shares.append(on / (on + off) if on + off else None)
    rtts = [_float(p.get("rtt_ms_median")) for p in points]
    known_rtt = [r for r in rtts if r is not None]
    known_share = [s for s in shares if s is not None]
    desc = f"last {len(points)} hours"
    if known_share:
        desc += f": online {min(known_share) * 100:.0f}-{max(known_share) * 100:.0f} %"
    if known_rtt:
        desc += f", median RTT {min(known_rtt):.0f}-{max(known_rtt):.0f} ms"
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(desc)}"><title>{_e(desc)}</title>'
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
    return f'<span class="{cls}" data-status="{_e(status)}">{_e(text)}</span>'


def _quality_bar(quality):
    total = sum(_int(quality.get(q)) for q in QUALITIES)
    if not total:
        return ""
    cells = "".join(
        f'<i class="{q}" style="width:{_int(quality.get(q)) * 100 / total:.2f}%"></i>'
        for q in QUALITIES
        if _int(quality.get(q))
    )
    return f'<span class="bar" aria-hidden="true">{cells}</span>'


def _trend(trend):
    parts = []
    for window in ("1h", "24h"):
        t = (trend or {}).get(window) or {}
        if not any(
            _float(t.get(k)) is not None for k in ("rtt_ms_median", "rtt_ms_p95", "loss_pct")
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
        f"<tr><td>{_e(node_id)}</td>"
        f'<td class="{s_cls}">{s_icon} {_e(s_word)}</td>'
        f"<td>{_time(node.get('last_seen'))}{f' <small>{_e(ago)}</small>' if ago else ''}</td>"
        f"<td>{_e(node.get('last_seen_kind') or '')}</td>"
        f'<td class="{q_cls}">{_e(q_icon)} {_e(q_word)}{stale}</td>'
        f"<td>{_fmt(uplink.get('rtt_ms'))}</td>"
        f"<td>{_fmt(uplink.get('jitter_ms'))}</td>"
        f"<td>{_fmt(uplink.get('loss_pct'))}</td>"
        f"<td>{flap}</td>"
        f"<td{adm_cls}>{_e(admission)}</td>"
        f"<td>{_e(node.get('admitted_by') or '')}</td></tr>"
    )


def _site_block(name, site, generated_at, is_open=False):
    nodes = site.get("nodes") if isinstance(site.get("nodes"), dict) else {}
    counts = {s: _int(site.get(s)) for s in STATUSES}
    total = sum(counts.values())
    quality = site.get("quality") if isinstance(site.get("quality"), dict) else {}
    admissions = {}
    for node in nodes.values():
        if isinstance(node, dict) and node.get("admission") not in (None, "accepted"):
            admissions[node["admission"]] = admissions.get(node["admission"], 0) + 1
    degraded = bool(site.get("degraded"))
    out = [
        f'<details class="site{" degraded" if degraded else ""}" data-site="{_e(name)}"{" open" if is_open else ""}>',
        f'<summary><span class="name">{_e(name)}</span>',
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
            f'<span class="{q}">{_e(QUALITY_LABEL[q][0])} {_int(quality.get(q))} {q}</span>'
            for q in QUALITIES
            if _int(quality.get(q))
        )
        + "</span>"
    )
    if admissions:
        out.append(
            '<span class="adm off">'
            + ", ".join(f"{n} {_e(a)}" for a, n in sorted(admissions.items()))
            + "</span>"
        )
    trend = _trend(site.get("trend"))
    if trend:
        out.append(f'<span class="trend">{_e(trend)}</span>')
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


def render(report):
    """
    Render the fleet report (the dict ``salt-run edge.report`` returns) as
    one self-contained HTML document.

    Returns the page as a ``str``: totals, then one expandable block per
    site (worst first, see :func:`site_severity`) with its status counts,
    uplink quality, admission states of its listed nodes, RTT/loss trend and
    history sparkline, and its nodes; then pending, refused and flapping
    nodes. Missing keys render as empty; every value from the report is
    HTML-escaped.
    """
    report = report if isinstance(report, dict) else {}
    generated_at = report.get("generated_at")
    totals = report.get("totals") if isinstance(report.get("totals"), dict) else {}
    sites = report.get("sites") if isinstance(report.get("sites"), dict) else {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Edge fleet \u2013 {_e(generated_at or '')}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Edge fleet</h1>",
        f'<p class="meta">Report of {_time(generated_at)} \u00b7 {len(sites)} site(s) \u00b7 '
        '<span id="tz">Times are in UTC.</span></p>',
        '<div class="totals">',
    ]
    for key, label, cls, icon in (
        ("online", "online", "on", STATUS_LABEL["online"][0]),
        ("late", "late", "late", STATUS_LABEL["late"][0]),
        ("offline", "offline", "off", STATUS_LABEL["offline"][0]),
        ("never_seen", "never seen", "never", STATUS_LABEL["never_seen"][0]),
        ("pending", "keys pending", "late", "\u22ef"),
        ("refused", "keys refused", "off", "\u2298"),
    ):
        count = _int(totals.get(key))
        out.append(
            f'<div class="tot" data-total="{key}"><b class="{cls if count else "none"}">{count}</b>'
            f"{_e(icon)} {label}</div>"
        )
    out.append("</div>")
    out.append("<h2>Sites, worst first</h2>")
    if not sites:
        out.append('<p class="note">No sites in this report.</p>')
    ordered = sorted(
        ((n, s) for n, s in sites.items() if isinstance(s, dict)), key=lambda kv: site_severity(*kv)
    )
    for idx, (name, site) in enumerate(ordered):
        # the worst site starts open when it has a problem to look at
        trouble = site.get("degraded") or any(_int(site.get(k)) for k in ("offline", "late"))
        out.append(_site_block(name, site, generated_at, is_open=idx == 0 and bool(trouble)))
    pending = report.get("pending") or []
    refused = report.get("refused") or {}
    flapping = report.get("flapping") or []
    if pending:
        out.append(f'<h2>\u22ef Keys pending ({len(pending)})</h2><ul class="ids">')
        out.extend(f"<li>{_e(i)}</li>" for i in sorted(map(str, pending)))
        out.append("</ul>")
    if isinstance(refused, dict) and refused:
        out.append(f'<h2>\u2298 Keys refused ({len(refused)})</h2><ul class="ids">')
        out.extend(
            f"<li>{_e(i)} \u2013 {_e(r)}</li>"
            for i, r in sorted(refused.items(), key=lambda kv: str(kv[0]))
        )
        out.append("</ul>")
    if flapping:
        out.append(f'<h2>\u21c5 Flapping nodes ({len(flapping)})</h2><ul class="ids">')
        out.extend(f"<li>{_e(i)}</li>" for i in sorted(map(str, flapping)))
        out.append("</ul>")
    out.append(
        '<p class="meta">Written by <code>salt-run edge.report html=PATH</code> (saltext-edge). '
        "Icons: \u2714 online, \u25d0 late, \u2716 offline, \u25cb never seen; uplink \u25cf good, "
        "\u25d1 fair, \u25bc poor, \u2716 down, ? unknown; \u21c5 flapping.</p>"
    )
    out.append(f"<script>{_JS}</script></body></html>\n")
    return "".join(out)


def write(report, path):
    """
    Render ``report`` and write it to ``path`` atomically (a temporary file
    in the same directory, then a rename), mode 0644.

    Returns the absolute path written. Raises ``OSError`` when the directory
    does not exist or is not writable (nothing is left behind).
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    text = render(report)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".fleet-page-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh_:
            fh_.write(text)
            fh_.flush()
            os.fsync(fh_.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def example_report(nodes=60, sites=6, seed=1, generated_at="2026-12-02T10:00:00Z"):
    """
    Return a made-up report with the shape of ``salt-run edge.report
    details=True`` (``nodes`` nodes spread over ``sites`` sites, a few of
    them late, offline, never seen, flapping, on poor uplinks or refused),
    deterministic for a given ``seed``. For previews, the benchmarks and
    the page's own tests; real pages come from :func:`render` of a real
    report.
    """
    import random

    rnd = random.Random(seed)
    now = _parse_iso(generated_at)
    report = {
        "generated_at": generated_at,
        "totals": dict.fromkeys(
            ("online", "late", "offline", "never_seen", "pending", "refused"), 0
        ),
        "sites": {},
        "pending": [],
        "refused": {},
        "flapping": [],
    }
    site_names = [f"site-{i:03d}" for i in range(sites)]
    for name in site_names:
        report["sites"][name] = {
            **dict.fromkeys(("online", "late", "offline", "never_seen"), 0),
            "degraded": False,
            "quality": dict.fromkeys(QUALITIES, 0),
            "trend": {},
            "history": [],
            "nodes": {},
        }
    for i in range(nodes):
        name = site_names[i % sites]
        site = report["sites"][name]
        bad_site = name == site_names[0]
        roll = rnd.random()
        if roll < (0.3 if bad_site else 0.02):
            status = "offline"
        elif roll < (0.4 if bad_site else 0.04):
            status = "late"
        elif roll < (0.42 if bad_site else 0.05):
            status = "never_seen"
        else:
            status = "online"
        quality = rnd.choice(("good",) * 6 + ("fair", "fair", "poor", "down"))
        rtt = round(rnd.uniform(8, 60) * (3 if quality in ("poor", "down") else 1), 1)
        seen = None
        if status != "never_seen":
            age = rnd.uniform(5, 50) if status == "online" else rnd.uniform(200, 5000)
            seen = (now - datetime.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
        node_id = f"edge-{name}-{i:05d}"
        flapping = rnd.random() < 0.01
        site["nodes"][node_id] = {
            "status": status,
            "last_seen": seen,
            "last_seen_kind": None
            if seen is None
            else rnd.choice(("heartbeat", "heartbeat", "job_return")),
            "uplink": None
            if status == "never_seen"
            else {
                "quality": quality,
                "rtt_ms": rtt,
                "jitter_ms": round(rnd.uniform(0.2, 6), 1),
                "loss_pct": 0.0 if quality in ("good", "fair") else round(rnd.uniform(1, 30), 1),
            },
            "flapping": flapping,
            "admission": "accepted",
            "admitted_by": "edge_token",
        }
        site[status] += 1
        site["quality"][quality if status != "never_seen" else "unknown"] += 1
        report["totals"][status] += 1
        if flapping:
            report["flapping"].append(node_id)
    for idx, name in enumerate(site_names):
        site = report["sites"][name]
        total = sum(site[s] for s in ("online", "late", "offline", "never_seen")) or 1
        site["degraded"] = site["offline"] / total >= 0.2
        base = 20 + idx
        site["trend"] = {
            "1h": {"rtt_ms_median": base, "rtt_ms_p95": base * 2.5, "loss_pct": 0.4},
            "24h": {"rtt_ms_median": base + 2, "rtt_ms_p95": base * 2.2, "loss_pct": 0.3},
        }
        for hour in range(24):
            at = (now - datetime.timedelta(hours=23 - hour)).strftime("%Y-%m-%dT%H:00:00Z")
            off = site["offline"] if hour > 20 else rnd.randint(0, 1)
            site["history"].append(
                {
                    "at": at,
                    "online": total - off,
                    "offline": off,
                    "rtt_ms_median": base + rnd.uniform(-5, 5),
                }
            )
    report["pending"] = [f"new-node-{i}" for i in range(2)]
    report["refused"] = {"stranger-1": "bad_token"}
    report["totals"]["pending"] = len(report["pending"])
    report["totals"]["refused"] = len(report["refused"])
    return report
