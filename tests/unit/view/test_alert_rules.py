"""
The example Prometheus alert rules (deploy/grafana/edge-alert-rules.yml):
valid for ``promtool check rules``, and, under ``promtool test rules``, a
site alerts exactly when the engine calls it degraded (``site_health``),
fed the series the real collector serves for the same nodes.
"""

import shutil
import subprocess

import pytest
import yaml
from tests.unit.view.test_fleet_metrics import REPO

from saltext_edge.fleet import conf as fconf
from saltext_edge.fleet import status as fstatus
from saltext_edge.fleet.nodeview import node_view
from saltext_edge.view.metrics_collector import FleetCollector

RULES = REPO / "deploy" / "grafana" / "edge-alert-rules.yml"
NOW = 1_800_000_000.0

pytestmark = pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)

# site -> nodes as (status, last uplink quality)
SITES = {
    "half-offline": [("offline", "good"), ("online", "good")],
    "third-offline": [("offline", "good"), ("online", "good"), ("online", "good")],
    "half-poor": [("online", "poor"), ("late", "good")],
    "offline-was-poor": [("offline", "poor"), ("online", "good"), ("online", "good")],
    "one-seen-offline": [("offline", "good"), ("never_seen", None)],
    "never-seen": [("never_seen", None), ("never_seen", None)],
}


def _records():
    out = {}
    for site, nodes in SITES.items():
        for idx, (status, quality) in enumerate(nodes):
            out[f"{site}-{idx}"] = {
                "id": f"{site}-{idx}",
                "site": site,
                "status": status,
                "last_seen": None if status == "never_seen" else NOW - 10,
                "uplink": {"quality": quality, "rtt_ms": 10.0} if quality else None,
            }
    return out


def _promtool(*args):
    res = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_rules_are_valid():
    _promtool("check", "rules", str(RULES))


def test_rule_threshold_is_the_engines():
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    expr = rules["EdgeSiteDegraded"]["expr"]
    assert expr.rstrip().endswith(f">= {fconf.parse({})['degraded_share']}"), expr


def test_a_site_alerts_exactly_when_the_engine_calls_it_degraded(tmp_path):
    records = _records()
    site_conf = fconf.for_site(fconf.parse({}), None)
    expected = {
        site: fstatus.site_health([r for r in records.values() if r["site"] == site], site_conf)[0]
        for site in SITES
    }
    # the case: 1 of 2 nodes offline is degraded
    assert expected["half-offline"] and not expected["third-offline"]
    snap = {
        "nodes": {
            mid: node_view(mid, rec, rec["site"], rec["status"], {}) for mid, rec in records.items()
        }
    }
    series = []
    for line in FleetCollector(lambda: snap, per_node=False).exposition().decode().splitlines():
        if line.startswith(("edge_nodes{", "edge_site_uplink_quality_nodes{")):
            name_labels, value = line.rsplit(" ", 1)
            series.append({"series": name_labels, "values": f"{float(value):g}x10"})
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    (degraded,) = [r for r in rules if r["alert"] == "EdgeSiteDegraded"]
    exp_alerts = [
        {
            "exp_labels": {"site": site, **degraded["labels"]},
            "exp_annotations": {
                k: v.replace("{{ $labels.site }}", site) for k, v in degraded["annotations"].items()
            },
        }
        for site, is_bad in sorted(expected.items())
        if is_bad
    ]
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "EdgeSiteDegraded", "exp_alerts": exp_alerts}
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(spec))
    _promtool("test", "rules", str(path))
