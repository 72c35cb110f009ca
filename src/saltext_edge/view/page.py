"""
The fleet page: one self-contained HTML file rendered from the fleet report
(``salt-run edge.report html=PATH``; docs/howto/grafana.rst).

Sites x status x uplink quality x admission state, the worst sites first,
each site expandable to its nodes (``<details>``), last seen in the viewer's
local time (a few lines of inline JavaScript; the ISO 8601 UTC text stays as
the fallback), a small 24-hour history per site (inline SVG). No external
script, font, stylesheet or request: a Content-Security-Policy in the page
forbids them, and allows only the page's own script by its hash.

The blocks the page is made of are in :mod:`saltext_edge.view.page_parts`;
every value from the report is HTML-escaped there and here. They are Python
strings, not a Jinja2 template (Jinja2 ships with Salt): the same node rows
from an autoescaping Jinja2 template took 175 ms for 5,000 nodes against
32 ms here, and the node rows are most of a page's render time.
"""

import base64
import hashlib
import os

from saltext_edge.fileio import atomic_write
from saltext_edge.view.page_parts import (
    STATUS_LABEL,
    as_int,
    escape,
    site_block,
    site_severity,
    time_tag,
)

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


def render(report):
    """
    Render the fleet report (the dict ``salt-run edge.report`` returns) as
    one self-contained HTML document.

    Returns the page as a ``str``: totals, then one expandable block per
    site (worst first, see :func:`~saltext_edge.view.page_parts.site_severity`)
    with its status counts, uplink quality, admission states of its listed
    nodes, RTT/loss trend and history sparkline, and its nodes; then
    pending, refused and flapping nodes. Missing keys render as empty; every
    value from the report is HTML-escaped.
    """
    report = report if isinstance(report, dict) else {}
    generated_at = report.get("generated_at")
    totals = report.get("totals") if isinstance(report.get("totals"), dict) else {}
    sites = report.get("sites") if isinstance(report.get("sites"), dict) else {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Edge fleet \u2013 {escape(generated_at or '')}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Edge fleet</h1>",
        f'<p class="meta">Report of {time_tag(generated_at)} \u00b7 {len(sites)} site(s) \u00b7 '
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
        count = as_int(totals.get(key))
        out.append(
            f'<div class="tot" data-total="{key}"><b class="{cls if count else "none"}">{count}</b>'
            f"{escape(icon)} {label}</div>"
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
        trouble = site.get("degraded") or any(as_int(site.get(k)) for k in ("offline", "late"))
        out.append(site_block(name, site, generated_at, is_open=idx == 0 and bool(trouble)))
    pending = report.get("pending") or []
    refused = report.get("refused") or {}
    flapping = report.get("flapping") or []
    if pending:
        out.append(f'<h2>\u22ef Keys pending ({len(pending)})</h2><ul class="ids">')
        out.extend(f"<li>{escape(i)}</li>" for i in sorted(map(str, pending)))
        out.append("</ul>")
    if isinstance(refused, dict) and refused:
        out.append(f'<h2>\u2298 Keys refused ({len(refused)})</h2><ul class="ids">')
        out.extend(
            f"<li>{escape(i)} \u2013 {escape(r)}</li>"
            for i, r in sorted(refused.items(), key=lambda kv: str(kv[0]))
        )
        out.append("</ul>")
    if flapping:
        out.append(f'<h2>\u21c5 Flapping nodes ({len(flapping)})</h2><ul class="ids">')
        out.extend(f"<li>{escape(i)}</li>" for i in sorted(map(str, flapping)))
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
    atomic_write(path, render(report).encode("utf-8"), 0o644)
    return path
