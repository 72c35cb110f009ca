"""
Field lab, scenario 3 (docs/howto/field-lab.rst): nodes whose clocks are
wrong -- 2 hours behind, 10 minutes ahead, and one that says 1970 --
libfaketime on the minion's whole process tree (``LD_PRELOAD`` in its
environment, inherited by every process it starts; its monotonic clock stays
real). Each answers jobs behind the NAT; each must be reported **online**
from its heartbeats with its clock offset shown (``edge.node``,
``edge.report`` details, ``edge_node_clock_offset_seconds``), and a
heartbeat captured from the bus and re-fired later by the node's own key is
refused, counted by reason (``edge_heartbeats_refused_total``).
"""

import json
import time
import urllib.request

import pytest
import salt.config
from tests.daemons import answers_ping
from tests.field import conftest as _fc
from tests.integration.fleet.conftest import wait_record
from tests.support.waits import wait_until

from adversarial.conftest import forge_events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _fc.have_faketime(), reason="field lab: libfaketime is not installed"),
]

SITE = "clock-1"
# FAKETIME values and the clock offset each means: the master's receive time
# minus the node's sent_at (docs/ref/engine.rst, "Replay and clocks"):
# positive when the node's clock is behind
CLOCKS = {
    "behind-2h": ("-2h", 7200),
    "ahead-10m": ("+10m", -600),
    "year-1970": ("@1970-01-02 00:00:00", None),
}


@pytest.fixture(scope="module")
def clock_nodes(lab_node):
    nodes = {
        name: lab_node(SITE, clock=fake, prefix=f"lab-{name}-")
        for name, (fake, _) in CLOCKS.items()
    }
    with _fc.running(nodes):
        yield nodes


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def metric(text, name, **labels):
    """The value of sample ``name`` whose labels include ``labels`` (None when absent)."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(item in line for item in want):
            return float(line.rsplit(" ", 1)[1])
    return None


def offsets_in(obj):
    """Every number under a key naming a clock offset, anywhere in ``obj``."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if "offset" in str(key) and isinstance(value, (int, float)):
                found.append(value)
            else:
                found.extend(offsets_in(value))
    elif isinstance(obj, list):
        for value in obj:
            found.extend(offsets_in(value))
    return found


def test_wrong_clocks_answer_jobs(lab_master, clock_nodes):
    """The lab's own check: libfaketime is on the nodes and they work behind the NAT (passes today)."""
    cli = lab_master.salt_cli(timeout=60)
    for name, factory in clock_nodes.items():
        assert answers_ping(lab_master, factory.id, within=60), name
        ret = cli.run("cmd.run", "date -u +%Y", minion_tgt=factory.id)
        assert ret.returncode == 0, ret
        year = int(ret.data)
        if name == "year-1970":
            assert year == 1970, ret.data
        else:
            assert year >= 2025, ret.data


def test_wrong_clocks_online_with_offset(lab_master, clock_nodes, metrics_port, event_listener):
    run = lab_master.salt_run_cli(timeout=120)
    for name, factory in clock_nodes.items():
        _fc.heard(event_listener, lab_master, factory)
        # online from heartbeats (a job return counts too: not enough)
        wait_record(
            lab_master,
            factory.id,
            lambda r: r.get("status") == "online" and r.get("last_kind") == "heartbeat",
            30,
        )
        ret = run.run("edge.node", factory.id)
        assert ret.returncode == 0, ret
        assert ret.data["status"] == "online", (name, ret.data)
        assert ret.data["last_seen_kind"] == "heartbeat", (name, ret.data)
        expected = CLOCKS[name][1]
        shown = offsets_in(ret.data)
        assert shown, (name, ret.data)
        if expected is None:
            assert shown[0] > 50 * 365 * 86400, (name, shown)
        else:
            assert abs(shown[0] - expected) < 60, (name, shown)
    ret = run.run("edge.report", "details=True")
    assert ret.returncode == 0, ret
    nodes = ret.data["sites"][SITE]["nodes"]
    for factory in clock_nodes.values():
        assert nodes[factory.id]["status"] == "online", nodes
        assert offsets_in(nodes[factory.id]), nodes[factory.id]
    text = scrape(metrics_port)
    for name, factory in clock_nodes.items():
        value = metric(text, "edge_node_clock_offset_seconds", id=factory.id)
        assert value is not None, (name, "edge_node_clock_offset_seconds")
        expected = CLOCKS[name][1]
        if expected is not None:
            assert abs(value - expected) < 60, (name, value)


def test_replayed_heartbeat_is_refused_and_counted(
    lab, lab_master, clock_nodes, metrics_port, event_listener
):
    factory = clock_nodes["behind-2h"]
    beat = _fc.heard(event_listener, lab_master, factory)
    captured = beat.data.get("data", beat.data)
    # a later heartbeat is accepted first, so the captured one is old news
    later = time.time()
    _fc.heard(event_listener, lab_master, factory, later, 30, lambda p: p["seq"] > captured["seq"])
    wait_record(lab_master, factory.id, lambda r: (r.get("seq") or 0) > captured["seq"], 30)
    before = metric(scrape(metrics_port), "edge_heartbeats_refused_total", reason="replay") or 0

    # re-fired with the node's own key, from the root namespace
    mopts = salt.config.minion_config(factory.config["conf_file"])
    mopts["master_ip"] = lab.master_a
    mopts["master_uri"] = f"tcp://{lab.master_a}:{mopts['master_port']}"
    forge_events(mopts, [("edge/heartbeat", captured)])

    assert wait_until(
        lambda: (
            (metric(scrape(metrics_port), "edge_heartbeats_refused_total", reason="replay") or 0)
            > before
        ),
        30,
    ), "the replay was not counted"
    ret = lab_master.salt_run_cli(timeout=120).run("edge.node", factory.id)
    assert ret.returncode == 0, ret
    assert "replay" in json.dumps(ret.data), ret.data
    assert ret.data["seq"] != captured["seq"], ret.data
