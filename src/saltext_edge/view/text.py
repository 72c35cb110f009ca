"""
The fleet as an operator reads it on a terminal: what the ``edge`` outputter
prints (``salt-run edge.report --out=edge``; docs/howto/fleet-report.rst).

:func:`render` takes what an ``edge`` runner function returned and gives
back the text, or ``None`` when it does not know the shape (the outputter
then falls back to ``nested``). Pure: no Salt, no I/O. Node ids, site
names and reasons come from the fleet: control characters are escaped so a
name cannot move the cursor or fake a line.
"""

from saltext_edge.fleet.status import STATUSES as COUNTS
from saltext_edge.view.numbers import as_float
from saltext_edge.view.page_parts import QUALITIES, as_int, site_severity

#: the site table's columns, in this order: (header, summary row key)
SITE_COLUMNS = (
    ("SITE", "site"),
    ("NODES", "nodes"),
    ("ONLINE", "online"),
    ("LATE", "late"),
    ("OFFLINE", "offline"),
    ("NEVER", "never_seen"),
    ("DEGRADED", "degraded"),
    ("GOOD", "uplink_good"),
    ("FAIR", "uplink_fair"),
    ("POOR", "uplink_poor"),
    ("DOWN", "uplink_down"),
    ("UNKNOWN", "uplink_unknown"),
    ("RTT_MS", "rtt_ms_median_1h"),
    ("P95_MS", "rtt_ms_p95_1h"),
    ("LOSS_%", "loss_pct_1h"),
)
NODE_COLUMNS = ("NODE", "SITE", "STATUS", "LAST SEEN", "BY", "UPLINK", "ADMISSION")
ENROLLMENT_COLUMNS = ("ID", "SITE", "STATUS", "USES", "LEFT", "EXPIRES", "CREATOR", "IDS", "NOTE")
_STATUS_ORDER = {"offline": 0, "late": 1, "never_seen": 2, "online": 3}
MAX_FIELD = 80


def clean(value):
    """Return ``value`` as one line of printable text (control characters escaped, at most 80 characters)."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 3] + "..."


def _num(value, digits=1):
    value = as_float(value, finite=False)
    return "-" if value is None else f"{value:.{digits}f}"


def table(header, rows, right=()):
    """Return ``rows`` (lists of str) under ``header`` as aligned columns; columns in ``right`` are right-aligned."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = []
    for row in [list(header), *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def totals_line(report):
    """The first line of a report: when, from what, and the totals."""
    totals = report.get("totals") if isinstance(report.get("totals"), dict) else {}
    source = report.get("answered_by")
    head = f"Edge fleet at {clean(report.get('generated_at'))}"
    if source:
        head += f" (from the {clean(source)})"
    parts = [f"{as_int(totals.get('sites'))} site(s)"]
    parts += [f"{as_int(totals.get(k))} {k.replace('_', ' ')}" for k in COUNTS]
    parts += [
        f"{as_int(totals.get('pending'))} key(s) pending",
        f"{as_int(totals.get('refused'))} refused",
    ]
    return f"{head}: " + ", ".join(parts)


def _site_cell(row, key):
    if key == "site":
        return clean(row.get("site"))
    if key == "nodes":
        return str(sum(as_int(row.get(k)) for k in COUNTS))
    if key == "degraded":
        return "DEGRADED" if row.get("degraded") else "-"
    if key.endswith("_1h"):
        return _num(row.get(key), 2 if key == "loss_pct_1h" else 1)
    return str(as_int(row.get(key)))


def site_rows(summary):
    """Return the site table's lines: one row per site worst first, then ``TOTAL``."""
    rows = [r for r in summary or () if isinstance(r, dict)]
    total = [r for r in rows if r.get("site") == "TOTAL"]
    sites = [r for r in rows if r.get("site") != "TOTAL"]

    def severity(row):
        site = dict(row, quality={q: row.get(f"uplink_{q}") for q in QUALITIES})
        return site_severity(row.get("site"), site)

    ordered = sorted(sites, key=severity) + total
    cells = [[_site_cell(r, key) for _, key in SITE_COLUMNS] for r in ordered]
    return table([h for h, _ in SITE_COLUMNS], cells, right=set(range(1, len(SITE_COLUMNS))) - {6})


def _uplink(uplink):
    if not isinstance(uplink, dict):
        return "unknown"
    text = clean(uplink.get("quality") or "unknown")
    if uplink.get("stale"):
        text += " (stale)"
    rtt = as_float(uplink.get("rtt_ms"), finite=False)
    if rtt is not None:
        text += f" {rtt:.0f} ms"
    loss = as_float(uplink.get("loss_pct"), finite=False)
    if loss:
        text += f" {loss:g}% loss"
    return text


def node_rows(report):
    """Return the table of the nodes the report lists that are not online (worst first)."""
    rows = []
    for site, data in (report.get("sites") or {}).items():
        if not isinstance(data, dict):
            continue
        for node_id, node in (data.get("nodes") or {}).items():
            if not isinstance(node, dict):
                continue
            if node.get("status") == "online":
                continue
            status = clean(node.get("status"))
            if node.get("flapping"):
                status += " flapping"
            rows.append(
                (
                    _STATUS_ORDER.get(node.get("status"), 2),
                    str(node_id),
                    [
                        clean(node_id),
                        clean(site),
                        status,
                        clean(node.get("last_seen") or "never"),
                        clean(node.get("last_seen_kind") or "-"),
                        _uplink(node.get("uplink")),
                        clean(node.get("admission")),
                    ],
                )
            )
    rows.sort(key=lambda r: (r[0], r[1]))
    return table(NODE_COLUMNS, [r[2] for r in rows]) if rows else []


def report_text(report):
    """Return the text of an ``edge.report`` return (also its ``html=PATH`` form)."""
    lines = [totals_line(report)]
    if report.get("warning"):
        lines.append(f"WARNING: {clean(report['warning'])}")
    if report.get("html"):
        lines.append(f"Fleet page written: {clean(report['html'])}")
    lines += ["", *site_rows(report.get("summary"))]
    nodes = node_rows(report)
    if nodes:
        lines += ["", "Nodes not online:", *nodes]
    elif "sites" in report:
        lines += ["", "Nodes not online: none."]
    unkeyed = sorted(
        str(node_id)
        for data in (report.get("sites") or {}).values()
        if isinstance(data, dict)
        for node_id, node in (data.get("nodes") or {}).items()
        if isinstance(node, dict)
        and node.get("status") == "online"
        and node.get("admission") not in (None, "accepted")
    )
    if unkeyed:
        lines += [
            "",
            f"Online without an accepted key ({len(unkeyed)}): " + ", ".join(map(clean, unkeyed)),
        ]
    for key, title in (("pending", "Keys pending"), ("flapping", "Flapping")):
        ids = report.get(key) or []
        if ids:
            lines += ["", f"{title} ({len(ids)}): " + ", ".join(clean(i) for i in ids)]
    refused = report.get("refused") or {}
    if isinstance(refused, dict) and refused:
        lines += ["", f"Keys refused ({len(refused)}):"]
        lines += [f"  {clean(i)}: {clean(r)}" for i, r in sorted(refused.items())]
    ping = report.get("ping")
    if isinstance(ping, dict):
        line = f"Ping ({as_int(ping.get('timeout_s'))} s): {as_int(ping.get('answered'))} answered"
        for key in ("silent", "unproven"):
            ids = ping.get(key) or []
            if key in ping:
                line += f", {len(ids)} {key}" + (
                    ": " + ", ".join(clean(i) for i in ids) if ids else ""
                )
        lines += ["", line]
    return "\n".join(lines)


def node_text(node):
    """Return the text of an ``edge.node`` return."""
    uplink = node.get("uplink")
    trend = node.get("trend") or {}
    lines = [
        f"{clean(node.get('id'))} (site {clean(node.get('site') or '-')}): {clean(node.get('status'))}"
        f" since {clean(node.get('status_since') or '-')}"
        + (f" (from the {clean(node['answered_by'])})" if node.get("answered_by") else "")
    ]
    if node.get("warning"):
        lines.append(f"WARNING: {clean(node['warning'])}")
    lines += [
        f"  last seen     {clean(node.get('last_seen') or 'never')}"
        f" by {clean(node.get('last_seen_kind') or '-')} ({clean(node.get('source') or '-')}, seen by {clean(node.get('seen_by') or '-')})",
        f"  admission     {clean(node.get('admission'))}"
        f", admitted by {clean(node.get('admitted_by') or '-')}"
        f", flapping {'yes' if node.get('flapping') else 'no'}",
        f"  thresholds    late after {_num(node.get('late_after_s'))} s,"
        f" offline after {_num(node.get('offline_after_s'))} s"
        f" (period {_num(node.get('period_s'))} s)",
        f"  uplink        {_uplink(uplink)}",
    ]
    for window in ("1h", "24h"):
        t = trend.get(window) or {}
        lines.append(
            f"  trend {window:<7} RTT {_num(t.get('rtt_ms_median'))} ms median,"
            f" {_num(t.get('rtt_ms_p95'))} ms p95, loss {_num(t.get('loss_pct'), 3)} %"
        )
    claim = node.get("unverified_claim")
    if isinstance(claim, dict):
        lines.append(
            f"  unverified    {clean(claim.get('kind'))} at {clean(claim.get('at'))} (not counted)"
        )
    transitions = [t for t in node.get("transitions") or () if isinstance(t, dict)][-5:]
    if transitions:
        lines.append(
            "  transitions   "
            + ", ".join(f"{clean(t.get('status'))} {clean(t.get('at'))}" for t in transitions)
        )
    return "\n".join(lines)


def enrollments_text(entries):
    """Return the text of an ``edge.enrollment_keys`` return (one row per enrollment)."""
    if not entries:
        return "No enrollment keys."
    rows = [
        [
            clean(e.get("id")),
            clean(e.get("site")),
            clean(e.get("status")),
            str(as_int(e.get("uses"))),
            str(as_int(e.get("uses_left"))),
            clean(e.get("expires_at")),
            clean(e.get("creator")),
            clean(e.get("ids") or "*"),
            clean(e.get("note") or ""),
        ]
        for e in entries
    ]
    return "\n".join(table(ENROLLMENT_COLUMNS, rows, right={3, 4}))


def _is_enrollment(entry):
    return isinstance(entry, dict) and {"id", "site", "uses_left", "expires_at"} <= set(entry)


def render(data):
    """
    Return the text for what an ``edge`` runner function returned: a report
    (``edge.report``, also with ``html=PATH``), a node (``edge.node``), the
    enrollment listing (``edge.enrollment_keys``), a one-line message (an
    error, ``quiet=True``'s empty success) as is; ``None`` for anything
    else.
    """
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and "totals" in data and "summary" in data:
        return report_text(data)
    if isinstance(data, dict) and {"id", "status", "transitions", "admission"} <= set(data):
        return node_text(data)
    if isinstance(data, list) and all(_is_enrollment(e) for e in data):
        return enrollments_text(data)
    return None
