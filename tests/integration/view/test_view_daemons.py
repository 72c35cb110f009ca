"""
The fleet view end to end with real daemons: a real Prometheus server
scrapes the ``edge_fleet`` engine of a real master with three real minions;
PromQL through Prometheus' HTTP API counts the nodes and sees a SIGKILLed
one go down; every Grafana dashboard query runs in that Prometheus; the
fleet page written by ``salt-run edge.report html=PATH`` is opened in
headless Chromium and shows what the JSON report says.
"""

import html.parser
import json
import os
import pathlib
import re
import shutil

import pytest
from tests.support.waits import wait_until

from .conftest import SITES, chromium

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "edge-fleet-dashboard.json"


def ours(prom, promql, ids):
    """Query ``promql`` and keep only series of our minions: {id: value}."""
    return {labels["id"]: value for labels, value in prom.query(promql) if labels.get("id") in ids}


def test_prometheus_counts_the_nodes(prometheus, all_online):
    ids = set(all_online.values())
    # the node count, as PromQL over what Prometheus scraped from the engine:
    # every node the master serves (a node that is not ours is a test leaking
    # into another test's key store, and the message names it)
    seen = []

    def three_nodes():
        seen[:] = prometheus.query("edge_node_up")
        return prometheus.query("count(edge_node_up)") == [({}, 3.0)]

    try:
        wait_until(three_nodes, 120, what="3 nodes in Prometheus", retry_on=(OSError,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; edge_node_up as last scraped: {seen}") from None
    wait_until(
        lambda: prometheus.query("sum(edge_node_up)") == [({}, 3.0)],
        120,
        what="3 nodes up in Prometheus",
        retry_on=(OSError,),
    )
    assert ours(prometheus, "edge_node_status", ids) == dict.fromkeys(ids, 3.0)
    per_site = {
        labels["site"]: value
        for labels, value in prometheus.query('sum by (site) (edge_nodes{status="online"})')
    }
    assert per_site == {"view-a": 2.0, "view-b": 1.0}
    # every node has reported an uplink measurement and its last-seen time
    assert set(ours(prometheus, "edge_node_uplink_rtt_ms", ids)) == ids
    assert set(ours(prometheus, "edge_node_last_seen_timestamp_seconds", ids)) == ids
    # the engine's own health is there too
    (events,) = prometheus.query("edge_engine_events_total")
    assert events[1] > 0


def test_killed_node_shows_down_in_prometheus(prometheus, all_online, killed_node):
    ids = set(all_online.values())
    # the engine fired edge/node/<id>/offline (the fixture waited for it); the
    # next scrapes carry it to Prometheus
    wait_until(
        lambda: ours(prometheus, "edge_node_up", ids).get(killed_node) == 0.0,
        30,
        what="the killed node down in Prometheus",
        retry_on=(OSError,),
    )
    up = ours(prometheus, "edge_node_up", ids)
    assert up == {i: (0.0 if i == killed_node else 1.0) for i in ids}
    assert ours(prometheus, "edge_node_status", ids)[killed_node] == 1.0  # offline
    assert prometheus.query("sum(edge_node_up)") == [({}, 2.0)]
    assert prometheus.query('sum(edge_nodes{site="view-b", status="offline"})') == [({}, 1.0)]


def _dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for panel in panels:
            exprs.extend(
                (panel["title"], t["expr"]) for t in panel.get("targets", []) if t.get("expr")
            )
            walk(panel.get("panels", []))

    walk(dash["panels"])
    return exprs


def test_every_dashboard_query_runs_in_prometheus(prometheus, all_online, killed_node):
    node = all_online["a1"]
    empty = []
    for title, expr in _dashboard_exprs():
        expr = (
            expr.replace("$__rate_interval", "1m")
            .replace('site=~"$site"', 'site=~"view-a|view-b"')
            .replace("$node", node)
        )
        assert "$" not in expr, expr
        result = prometheus.query(expr)  # asserts status == success
        if not result:
            empty.append((title, expr))
    # admission counters and store errors may legitimately be empty on this
    # master (nobody was admitted by token); every fleet query has data
    for title, expr in empty:
        assert "admission" in expr or "store_errors" in expr, (title, expr)


class _Dom(html.parser.HTMLParser):
    """What a person sees: per site summary text, node rows, the time texts."""

    def __init__(self):
        super().__init__()
        self.sites = {}  # site -> summary text
        self.rows = {}  # node id -> [cell texts]
        self.times = []  # (datetime attr, shown text)
        self.root_attrs = {}
        self._site = None
        self._in_summary = False
        self._row = None
        self._cell = None
        self._time = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.root_attrs = attrs
        elif tag == "details":
            self._site = attrs.get("data-site")
            self.sites[self._site] = ""
        elif tag == "summary":
            self._in_summary = True
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "time":
            self._time = [attrs.get("datetime"), ""]

    def handle_endtag(self, tag):
        if tag == "summary":
            self._in_summary = False
        elif tag == "td" and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows[self._row[0]] = self._row
            self._row = None
        elif tag == "time" and self._time:
            self.times.append(tuple(self._time))
            self._time = None

    def handle_data(self, data):
        if self._in_summary and self._site is not None:
            self.sites[self._site] += data
        if self._cell is not None:
            self._cell += data
        if self._time is not None:
            self._time[1] += data


def test_fleet_page_in_chromium(view_master, all_online, killed_node, tmp_path):
    page = tmp_path / "fleet.html"
    ret = view_master.salt_run_cli(timeout=120).run(
        "edge.report", "details=True", f"html={page}", "--out=json"
    )
    assert ret.returncode == 0, ret
    assert ret.data["html"] == str(page)
    assert oct(page.stat().st_mode & 0o777) == "0o644"
    # the JSON the runner returned comes from the same report as the page
    # (a second report could differ if a node went late in between)
    summary = {row["site"]: row for row in ret.data["summary"]}
    # dump the DOM after the page's script ran, in a timezone far from UTC
    proc = chromium(str(page), "--dump-dom", "--window-size=1280,900", tz="Asia/Kolkata")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    ours_sites = set(SITES.values())
    assert ours_sites <= set(dom.sites), dom.sites
    for site in ours_sites:
        text = dom.sites[site]
        counts = summary[site]
        # the counts a person reads in each site's summary match the JSON report
        assert f"\u2714 {counts['online']} online" in text, text
        for status, word in (
            ("late", "late"),
            ("offline", "offline"),
            ("never_seen", "never seen"),
        ):
            if counts[status]:
                assert f"{counts[status]} {word}" in text, text
            else:
                assert f" {word}" not in text.replace("online", ""), text
    assert summary["view-b"]["offline"] == 1
    assert "\u2716 1 offline" in dom.sites["view-b"]
    # the killed node's row says offline in words (and with an icon)
    assert dom.rows[killed_node][1] == "\u2716 offline", dom.rows[killed_node]
    shown = {dom.rows[i][1] for i in all_online.values() if i != killed_node}
    if summary["view-a"]["online"] == 2:
        assert shown == {"\u2714 online"}, shown
    # last seen converted to the viewer's local time (UTC+05:30), not the ISO text
    shown = [text for iso, text in dom.times if iso and iso.endswith("Z")]
    assert shown and not any(re.match(r"\d{4}-\d\d-\d\dT", t) for t in shown), shown
    assert "UTC+05:30" in proc.stdout
    # a screenshot a person would see, kept as a test artefact
    shot = tmp_path / "fleet-page.png"
    proc = chromium(str(page), f"--screenshot={shot}", "--window-size=1280,900")
    assert proc.returncode == 0 and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    print(f"\nfleet page screenshot: {shot}")
    if os.environ.get("EDGE_UPDATE_DOCS_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "_static" / "fleet-page.png")


def test_report_html_bad_path_is_refused_clearly(view_master, tmp_path):
    run = view_master.salt_run_cli(timeout=120)
    ret = run.run("edge.report", "html=relative/fleet.html")
    assert ret.returncode != 0, ret
    assert "html must be an absolute file path" in ret.stdout + ret.stderr, ret
    missing = tmp_path / "no-such-dir" / "fleet.html"
    ret = run.run("edge.report", f"html={missing}")
    assert ret.returncode != 0, ret
    assert f"the directory {missing.parent} does not exist" in ret.stdout + ret.stderr, ret
    assert not missing.parent.exists()
