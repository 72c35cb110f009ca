"""
The metrics collector over a fleet snapshot, the ``edge:metrics`` option,
the HTTP server on loopback, and the Grafana dashboard's queries against the
metric names a real collector serves. Prometheus scraping a real master's
engine: tests/integration/view/.
"""

import gzip
import json
import pathlib
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from saltext_edge.view import metrics_catalogue, metrics_collector, metrics_server

REPO = pathlib.Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "edge-fleet-dashboard.json"
NOW = 1_796_000_000.0


def node(node_id, site, status, seen=NOW - 10, uplink="good", rtt=20.0):
    return {
        "id": node_id,
        "site": site,
        "status": status,
        "last_seen_ts": seen,
        "last_seen_kind": "heartbeat" if seen else None,
        "uplink": None
        if uplink is None
        else {"quality": uplink, "rtt_ms": rtt, "jitter_ms": 1.5, "loss_pct": 0.0},
        "admitted_by": "edge_token",
    }


def snapshot():
    nodes = [
        dict(node("a1", "alpha", "online", rtt=10.0), clock_offset_s=7200.5),
        node("a2", "alpha", "online", rtt=30.0, uplink="fair"),
        node("a3", "alpha", "late", rtt=50.0, uplink="poor"),
        node("a4", "alpha", "offline", seen=NOW - 9000, uplink="down", rtt=None),
        node("b1", "beta", "online"),
        node("n1", None, "never_seen", seen=None, uplink=None),
        node('odd"id\\with\nnewline', "beta", "online"),
    ]
    return {
        "nodes": {n["id"]: n for n in nodes},
        "engine": {
            "events_seen": 1234,
            "lag_seconds": 0.25,
            "store_errors": 2,
            "started_at": NOW - 3600,
            "heartbeats_refused": {"replay": 3, "bad_id": 7, "unknown_key": 0},
        },
        "admissions": {
            ("accepted", None): 40,
            ("refused", "bad_token"): 3,
            ("refused", "key_changed"): 1,
        },
    }


def samples(snap, per_node=True):
    """{(name, frozenset(labels)): value} parsed back from the served text."""
    collector = metrics_collector.FleetCollector(lambda: snap, per_node=per_node)
    text = collector.exposition().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


def test_values_per_node_site_admission_engine():
    found = samples(snapshot())
    assert val(found, "edge_node_up", id="a1", site="alpha") == 1
    assert val(found, "edge_node_up", id="a3", site="alpha") == 1  # late is not down yet
    assert val(found, "edge_node_up", id="a4", site="alpha") == 0
    assert val(found, "edge_node_up", id="n1", site="(no site)") == 0
    assert val(found, "edge_node_status", id="a3", site="alpha") == 2
    assert val(found, "edge_node_status", id="a4", site="alpha") == 1
    assert val(found, "edge_node_last_seen_timestamp_seconds", id="a1", site="alpha") == NOW - 10
    assert (
        "edge_node_last_seen_timestamp_seconds",
        frozenset({("id", "n1"), ("site", "(no site)")}),
    ) not in found
    assert val(found, "edge_node_uplink_rtt_ms", id="a2", site="alpha") == 30.0
    assert val(found, "edge_node_uplink_quality", id="a2", site="alpha") == 2
    assert val(found, "edge_node_uplink_quality", id="a4", site="alpha") == 0
    assert val(found, "edge_node_uplink_jitter_ms", id="a1", site="alpha") == 1.5
    assert val(found, "edge_node_uplink_loss_pct", id="a1", site="alpha") == 0.0
    # label values with quote, backslash and newline survive the round trip
    assert val(found, "edge_node_up", id='odd"id\\with\nnewline', site="beta") == 1
    # per site and status, quality
    assert val(found, "edge_nodes", site="alpha", status="online") == 2
    assert val(found, "edge_nodes", site="alpha", status="late") == 1
    assert val(found, "edge_nodes", site="alpha", status="offline") == 1
    assert val(found, "edge_nodes", site="alpha", status="never_seen") == 0
    assert val(found, "edge_nodes", site="(no site)", status="never_seen") == 1
    assert val(found, "edge_site_uplink_quality_nodes", site="alpha", quality="down") == 1
    assert val(found, "edge_site_uplink_quality_nodes", site="(no site)", quality="unknown") == 1
    assert val(found, "edge_site_uplink_rtt_ms_median", site="alpha") == 30.0
    # admission by decision and reason (no reason: empty label)
    assert val(found, "edge_admission_decisions_total", decision="accepted", reason="") == 40
    assert val(found, "edge_admission_decisions_total", decision="refused", reason="bad_token") == 3
    # engine health
    assert val(found, "edge_engine_events_total") == 1234
    assert val(found, "edge_engine_lag_seconds") == 0.25
    assert val(found, "edge_engine_store_errors_total") == 2
    assert val(found, "edge_engine_start_time_seconds") == NOW - 3600
    assert val(found, "edge_metrics_snapshot_ok") == 1
    # refused heartbeats by reason; a node's clock offset (absent before a heartbeat)
    assert val(found, "edge_heartbeats_refused_total", reason="replay") == 3
    assert val(found, "edge_heartbeats_refused_total", reason="bad_id") == 7
    assert val(found, "edge_heartbeats_refused_total", reason="unknown_key") == 0
    assert val(found, "edge_node_clock_offset_seconds", id="a1", site="alpha") == 7200.5
    assert (
        "edge_node_clock_offset_seconds",
        frozenset({("id", "b1"), ("site", "beta")}),
    ) not in found


def test_per_node_false_keeps_only_aggregates():
    names = {name for name, _ in samples(snapshot(), per_node=False)}
    assert not any(n.startswith("edge_node_") for n in names)
    assert {
        "edge_nodes",
        "edge_site_uplink_quality_nodes",
        "edge_admission_decisions_total",
    } <= names


def test_fast_text_equals_prometheus_client_output():
    snap = snapshot()
    registry = metrics_collector.registry_for(lambda: snap, process=False)
    theirs = {
        (s.name, frozenset(s.labels.items()), s.value)
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    ours = {(n, labels, v) for (n, labels), v in samples(snap).items()}
    assert ours == theirs


def test_unreadable_snapshot_is_reported_not_raised():
    def broken():
        raise RuntimeError("engine not ready")

    collector = metrics_collector.FleetCollector(broken)
    text = collector.exposition().decode()
    assert [f.name for f in collector.collect()] == ["edge_metrics_snapshot_ok"]
    assert "edge_metrics_snapshot_ok 0.0" in text
    assert "edge_node_up" not in text


@pytest.mark.parametrize(
    "conf, expected",
    [
        ({}, {"address": "127.0.0.1", "port": 9345, "per_node": True}),
        ({"edge": {}}, {"address": "127.0.0.1", "port": 9345, "per_node": True}),
        ({"edge": {"metrics": True}}, {"address": "127.0.0.1", "port": 9345, "per_node": True}),
        ({"edge": {"metrics": False}}, None),
        ({"edge": {"metrics": {"enabled": False}}}, None),
        (
            {"edge": {"metrics": {"port": "9400"}}},
            {"address": "127.0.0.1", "port": 9400, "per_node": True},
        ),
        (
            {"edge": {"metrics": {"address": "0.0.0.0", "per_node": False}}},
            {"address": "0.0.0.0", "port": 9345, "per_node": False},
        ),
        (
            {"edge": {"metrics": {"address": "::1"}}},
            {"address": "::1", "port": 9345, "per_node": True},
        ),
    ],
)
def test_config(conf, expected):
    assert metrics_catalogue.config(conf) == expected


@pytest.mark.parametrize(
    "metrics, words",
    [
        ({"port": 0}, "1-65535"),
        ({"port": 70000}, "1-65535"),
        ({"port": True}, "1-65535"),
        ({"address": "metrics.example"}, "not an IP address"),
        ({"address": ""}, "IP address"),
        ({"adress": "127.0.0.1"}, "unknown option(s) adress"),
        ({"per_node": "yes"}, "true or false"),
        ("on", "false (disabled) or a mapping"),
    ],
)
def test_config_errors_are_clear(metrics, words):
    with pytest.raises(metrics_catalogue.MetricsConfigError, match=re.escape(words)):
        metrics_catalogue.config({"edge": {"metrics": metrics}})


def _get(url, gzip_ok=False):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return resp.status, resp.headers, body.decode()


def test_serve_on_loopback_and_close():
    snap = snapshot()
    server = metrics_server.serve("127.0.0.1", 0, lambda: snap)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, headers, body = _get(server.url)
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'edge_node_up{id="a1",site="alpha"} 1.0' in body
        assert "process_resident_memory_bytes" in body  # the engine process's own health
        status, headers, zbody = _get(server.url, gzip_ok=True)
        assert headers["Content-Encoding"] == "gzip"
        # the same fleet series (process_* ones move between two requests)
        assert [line for line in zbody.splitlines() if "edge_" in line] == [
            line for line in body.splitlines() if "edge_" in line
        ]
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(server.url.replace("/metrics", "/elsewhere"))
        assert err.value.code == 404
        # the listening socket is on loopback only
        assert server.address == "127.0.0.1"
        # a second server on the same port fails with the address in the message
        with pytest.raises(OSError, match=f"127.0.0.1:{server.port}"):
            metrics_server.serve("127.0.0.1", server.port, lambda: snap)
    finally:
        server.close()
        server.close()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


def test_start_respects_disabled():
    assert metrics_server.start({"edge": {"metrics": False}}, dict) is None


# --------------------------------------------------------------------------
# the Grafana dashboard queries only what the collector serves
# --------------------------------------------------------------------------


def _dashboard_queries():
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        if var.get("type") == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return dash, exprs


def served_names():
    """Every sample name a real collector serves for a full snapshot."""
    collector = metrics_collector.FleetCollector(snapshot)
    names = set()
    for fam in collector.collect():
        names.update(s.name for s in fam.samples)
    return names


def test_dashboard_queries_only_served_metrics():
    dash, exprs = _dashboard_queries()
    assert dash["uid"] and exprs
    served = served_names()
    used = set()
    for expr in exprs:
        used.update(re.findall(r"\bedge_[a-z_]+\b", expr))
    assert used, exprs
    assert used <= served, sorted(used - served)
    # and the dashboard covers the fleet, a site's nodes, one node, admission, the engine
    for name in (
        "edge_nodes",
        "edge_node_status",
        "edge_node_uplink_rtt_ms",
        "edge_node_uplink_jitter_ms",
        "edge_node_uplink_loss_pct",
        "edge_admission_decisions_total",
        "edge_engine_events_total",
    ):
        assert name in used, name
    # every query reads the data source chosen in Grafana's import dialog
    # (__inputs), never a fixed instance, and every input is used
    sources = []

    def walk(panels):
        for panel in panels:
            if panel.get("type") != "row":
                sources.append(panel.get("datasource"))
            sources.extend(t.get("datasource") for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(dash["panels"])
    sources += [v.get("datasource") for v in dash["templating"]["list"] if v["type"] == "query"]
    assert sources and all(
        s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources
    ), sources
    text = DASHBOARD.read_text()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    assert all(f"${{{i['name']}}}" in text for i in dash["__inputs"])


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)
def test_dashboard_queries_are_valid_promql(tmp_path):
    _, exprs = _dashboard_queries()
    rules = []
    for idx, expr in enumerate(exprs):
        if expr.startswith("label_values("):
            inner = expr[len("label_values(") : expr.rindex(",")]
            expr = inner
        expr = (
            expr.replace("$__rate_interval", "5m").replace("$site", "alpha").replace("$node", "a1")
        )
        rules.append({"record": f"edge:dashboard_query_{idx}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_kubernetes_exposes_metrics_to_the_cluster_only():
    docs = list(yaml.safe_load_all((REPO / "deploy/kubernetes/metrics-service.yaml").read_text()))
    (svc,) = [d for d in docs if d]
    assert svc["kind"] == "Service" and svc["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in svc["spec"]["ports"]] == [metrics_catalogue.DEFAULT_PORT]
    master = [
        d
        for d in yaml.safe_load_all((REPO / "deploy/kubernetes/salt-master.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ][0]
    labels = master["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["metadata"]["namespace"] == master["metadata"]["namespace"]
    # no LoadBalancer or NodePort carries the metrics port
    for doc in yaml.safe_load_all((REPO / "deploy/kubernetes/salt-master.yaml").read_text()):
        if doc and doc["kind"] == "Service":
            assert metrics_catalogue.DEFAULT_PORT not in [p["port"] for p in doc["spec"]["ports"]]
