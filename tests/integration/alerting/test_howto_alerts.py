"""
``docs/howto/site-goes-dark.rst`` taken literally (see conftest.py): a master
set up with its blocks and ``saltext-edge master-config --write``, a node of
the page's site SIGKILLed, and the alerting web hook (an HTTP listener on
127.0.0.1) receives exactly one alert for the node's ``offline`` and one for
its site's ``degraded``, as the page promises; ``--check`` printed the lists
Salt really uses. Also the cron line of ``docs/howto/grafana.rst``, run.
"""

import os

import pytest
from tests.integration.as_shipped.test_quickstart import marked_blocks

pytestmark = pytest.mark.slow


def test_every_marked_block_is_used():
    # conftest.py uses these (minion, engine, alerts-on); this file runs cron
    assert list(marked_blocks("howto/site-goes-dark.rst")) == ["minion", "engine", "alerts-on"]
    assert list(marked_blocks("howto/grafana.rst")) == ["cron"]


def test_check_prints_the_effective_lists(howto_master):
    out = howto_master.check.stdout
    lines = out.splitlines()
    dropin = os.path.join("master.d", "edge.conf")

    def line_of(text):
        (found,) = [line for line in lines if text in line]
        return found

    assert dropin in line_of('"salt/auth"')
    for tag in ("node/*/offline", "node/*/online", "site/*/degraded", "site/*/recovered"):
        assert line_of(f'"edge/{tag}"').endswith(dropin)
        assert "edge_alert.sls" in line_of(f'"edge/{tag}"')
    assert line_of('{"edge_fleet": {}}').endswith(os.path.join("master.d", "edge-fleet.conf"))
    assert line_of('"pytest"').endswith(os.path.join("master.d", "00-factories.conf"))
    # nothing to note: engine, alert reactor and URL are all there
    assert "note:" not in howto_master.check.stderr, howto_master.check.stderr


def test_a_dead_node_pages_once_for_offline_and_once_for_degraded(howto_master, killed_node, hook):
    node, _ = killed_node
    site = "sh-3"
    offline = hook.wait(lambda b: b.get("node") == node.id, 90)
    degraded = hook.wait(lambda b: b.get("event") == f"edge/site/{site}/degraded", 30)
    # every event fired so far has been through the reactor: no second alert came
    howto_master.barrier(hook)
    assert hook.bodies(lambda b: b.get("node") == node.id) == offline
    assert len(offline) == 1, offline
    # (the reactor's runner jobs run in a thread pool: posts may come in either order)
    by_event = sorted(hook.bodies(lambda b: b.get("site") == site), key=lambda b: b["event"])
    assert by_event == sorted(offline + degraded, key=lambda b: b["event"])
    assert len(degraded) == 1, degraded
    (off,) = offline
    assert off["event"] == f"edge/node/{node.id}/offline" and off["kind"] == "offline"
    assert off["site"] == site and off["last_seen"].endswith("Z")
    assert "missed" in off["reason"] and off["master"] == howto_master.factory.id
    assert degraded[0]["offline"] == [node.id]
    # the documented body is JSON, posted with its content type; the seal is not in it
    assert {p["type"] for p in hook.posts} == {"application/json"}
    assert {p["path"] for p in hook.posts} == {"/hooks/edge"}
    assert all("edge_seal" not in p["body"] for p in hook.posts)


def test_the_documented_cron_line_runs(howto_master, tmp_path):
    (cron,) = marked_blocks("howto/grafana.rst")["cron"].strip().splitlines()
    command = cron.split(None, 5)[5]  # what cron runs: after the five time fields
    page = howto_master.page
    target = tmp_path / "fleet.html"
    ok = page.run(command.replace("/srv/www/edge/fleet.html", str(target)))
    # nothing at all, so cron mails nothing (stderr included: cron mails it too)
    assert ok.returncode == 0 and ok.stdout == ok.stderr == "", ok.stdout + ok.stderr
    assert target.read_text().lstrip().lower().startswith("<!doctype html")
    # a failure prints one line (cron mails it)
    bad = page.run(command.replace("/srv/www/edge/fleet.html", "relative/fleet.html"))
    assert bad.returncode == 1
    lines = (bad.stdout + bad.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("edge.report: html must be an absolute file path"), lines
