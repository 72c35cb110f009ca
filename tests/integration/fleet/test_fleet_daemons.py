"""
Fleet health with real daemons (docs/howto/site-goes-dark.rst): one master
running the ``edge_fleet`` engine, minions running the ``edge_heartbeat``
beacon every 2 s (late after 2 missed heartbeats, offline after 5).

* a heartbeat makes a node online; ``edge.node`` and ``edge.report`` say so,
  with ISO 8601 times and no epoch floats;
* a node whose master-facing source address (127.0.0.7) is not among its own
  ``ipv4`` grains (what NAT does) is online all the same;
* a SIGKILLed node goes late, then offline within its thresholds; its
  ``offline`` event fires once; restarted, it is back online (event);
* another accepted minion cannot make a dead node look alive (forged
  heartbeat signed with its own key, forged start event);
* a master restart fires no transition for live nodes, and no second
  ``offline`` for a node already reported offline.
"""

import json
import time

import pytest
from tests.daemons import peers, sigkill
from tests.integration.fleet.conftest import PERIOD, heartbeat_of, new_minion, wait_record
from tests.support.events import events, wait_event
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

# late after 2 periods + slack (0.1 * 2 + 0.5 budget + 1), offline after 5 periods + slack
SLACK = PERIOD * 0.1 + 0.5 + 1.0
LATE_S = 2 * PERIOD + SLACK
OFFLINE_S = 5 * PERIOD + SLACK
# the engine classifies once a second and the record is flushed once a second
TOLERANCE = 3.0
GRACE_S = 45


def _no_epoch_floats(obj, path="ret"):
    if isinstance(obj, float):
        assert obj < 1e8, f"{path} looks like an epoch float: {obj}"
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _no_epoch_floats(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _no_epoch_floats(value, f"{path}[{i}]")


@pytest.fixture(scope="module")
def node_a(fleet_master):
    factory = new_minion(fleet_master, "north", prefix="fleet-a-")
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def node_nat(fleet_master):
    # connects to the master from 127.0.0.7, an address none of its grains report
    factory = new_minion(
        fleet_master, "north", prefix="fleet-nat-", extra={"source_address": "127.0.0.7"}
    )
    with factory.started(start_timeout=120):
        yield factory


def test_heartbeat_online_and_report(fleet_master, fleet_run, node_a, node_nat, event_listener):
    start = time.time() - 120
    for node in (node_a, node_nat):
        event = wait_event(
            event_listener, fleet_master, "edge/heartbeat", start, 60, heartbeat_of(node.id)
        )
        payload = event.data["data"]
        assert event.data["id"] == node.id
        assert payload["site"] == "north"
        assert isinstance(payload["seq"], int) and payload["seq"] >= 1
        assert payload["uplink"]["quality"] in ("good", "fair", "poor", "down", "unknown")
        assert payload["sig"] and "minion.pem" not in json.dumps(payload)
        wait_record(fleet_master, node.id, lambda r: r.get("status") == "online", 30)

    ret = fleet_run.run("edge.node", node_a.id)
    assert ret.returncode == 0, ret
    data = ret.data
    assert data["status"] == "online", data
    assert data["last_seen_kind"] == "heartbeat"
    assert data["site"] == "north"
    assert data["last_seen"].endswith("Z") and "T" in data["last_seen"]
    assert data["uplink"]["quality"] in ("good", "fair")
    assert data["samples"], data
    _no_epoch_floats(data)

    ret = fleet_run.run("edge.report", "details=True")
    assert ret.returncode == 0, ret
    rep = ret.data
    north = rep["sites"]["north"]
    assert north["online"] == 2, rep
    assert north["nodes"][node_nat.id]["status"] == "online"
    assert north["trend"]["1h"]["rtt_ms_median"] is not None
    assert rep["generated_at"].endswith("Z")
    assert fleet_master.id in rep["engines"]
    _no_epoch_floats(rep)

    # the table output is readable: one row per site
    ret = fleet_run.run("edge.report", "--out=table")
    assert ret.returncode == 0, ret
    assert "north" in ret.stdout and "online" in ret.stdout


def test_nat_node_source_address_differs_from_grains(fleet_master, node_nat, salt_factories):
    cli = fleet_master.salt_cli(timeout=60)
    ret = cli.run("grains.get", "ipv4", minion_tgt=node_nat.id)
    assert ret.returncode == 0, ret
    assert "127.0.0.7" not in ret.data, ret.data
    # the master does see it from 127.0.0.7 (its established connection on the ret port)
    seen = peers(fleet_master)
    assert "127.0.0.7" in seen, seen
    # the grains.get return above counts too; then its heartbeats go on
    wait_record(
        fleet_master,
        node_nat.id,
        lambda r: r.get("status") == "online" and r.get("last_kind") == "heartbeat",
        30,
    )


def test_sigkill_late_then_offline_once_then_back(fleet_master, event_listener):
    node = new_minion(fleet_master, "south", prefix="fleet-k-")
    with node.started(start_timeout=120):
        beat = wait_event(
            event_listener,
            fleet_master,
            "edge/heartbeat",
            time.time() - 60,
            60,
            heartbeat_of(node.id),
        )
        wait_record(fleet_master, node.id, lambda r: r.get("status") == "online", 30)
        killed_at = time.time()
        sigkill(node)
    rec = wait_record(
        fleet_master, node.id, lambda r: r.get("status") in ("late", "offline"), LATE_S + 10
    )
    assert rec["status"] == "late", rec
    late_seen = time.time()
    last_seen = rec["last_seen"]
    offline = wait_event(
        event_listener, fleet_master, f"edge/node/{node.id}/offline", killed_at, OFFLINE_S + 15
    )
    fired = offline.stamp.timestamp()
    assert fired >= late_seen - 1.0
    # within the threshold: not before OFFLINE_S after the last heartbeat, not much after it
    assert OFFLINE_S - 1.0 <= fired - last_seen <= OFFLINE_S + TOLERANCE, (
        fired - last_seen,
        OFFLINE_S,
    )
    assert offline.data["site"] == "south"
    assert offline.data["last_seen"].endswith("Z")
    assert "missed" in offline.data["reason"]
    # its site has one node, all offline: degraded
    wait_event(event_listener, fleet_master, "edge/site/south/degraded", killed_at, 15)
    # the reactor of the how-to turned both into alerts
    alert = wait_event(event_listener, fleet_master, f"edge/alert/{node.id}", killed_at, 30)
    body = alert.data.get("data", alert.data)
    assert body["what"] == f"edge/node/{node.id}/offline", alert.data
    assert "missed" in body["reason"]
    wait_event(event_listener, fleet_master, "edge/alert/south", killed_at, 30)

    restarted = time.time()
    with node.started(start_timeout=120):
        online = wait_event(
            event_listener, fleet_master, f"edge/node/{node.id}/online", restarted, 60
        )
        assert online.data["last_seen_kind"] == "heartbeat"
        wait_event(event_listener, fleet_master, "edge/site/south/recovered", restarted, 15)
    # exactly one offline event between the kill and the return
    offs = events(event_listener, fleet_master, f"edge/node/{node.id}/offline", killed_at)
    assert [e for e in offs if e.stamp <= online.stamp] == [offline], offs
    assert beat is not None


def _meta(master, key):
    import salt.config

    from saltext_edge.fleet import store as _store

    return _store.Store(salt.config.master_config(master.config_file)).meta(key)


@pytest.fixture(scope="module")
def dead_node(fleet_master, event_listener):
    """A node that sent heartbeats, was SIGKILLed and has been reported offline."""
    node = new_minion(fleet_master, "west", prefix="fleet-dead-")
    with node.started(start_timeout=120):
        wait_event(
            event_listener,
            fleet_master,
            "edge/heartbeat",
            time.time() - 60,
            60,
            heartbeat_of(node.id),
        )
        killed_at = time.time()
        sigkill(node)
    wait_event(
        event_listener, fleet_master, f"edge/node/{node.id}/offline", killed_at, OFFLINE_S + 15
    )
    return node


def test_forged_signs_of_life_do_not_revive_a_node(fleet_master, node_a, dead_node, event_listener):
    import base64

    from saltext_edge.fleet import signing
    from saltext_edge.uplink import heartbeat as _hb

    before = wait_record(fleet_master, dead_node.id, lambda r: r.get("status") == "offline", 10)
    rejected_before = int(
        _meta(fleet_master, f"engine.{fleet_master.id}").get("rejected_heartbeats") or 0
    )
    sent_at = time.time()
    cli = fleet_master.salt_cli(timeout=60)

    # 1. a heartbeat for the dead node's id, signed with node_a's own key
    payload = _hb.payload(
        {"id": dead_node.id, "edge": {"site": "west"}},
        {"quality": "good", "rtt_ms": 1.0, "jitter_ms": 0.1, "loss_pct": 0.0},
        seq=10**6,
        boot="forged",
        period=PERIOD,
        jitter=0.1,
        now=sent_at,
    )
    forged = signing.Signer(f"{node_a.config['pki_dir']}/minion.pem").sign(payload)
    assert base64.b64decode(forged["sig"])
    ret = cli.run(
        "event.fire_master",
        f"data={json.dumps(forged)}",
        "tag=edge/heartbeat",
        minion_tgt=node_a.id,
    )
    assert ret.returncode == 0 and ret.data is True, ret

    # 2. start and job-return events in the dead node's name, through the
    #    ``events`` list of a _minion_event (the master re-fires them as is)
    preload = {
        "events": [
            {
                "tag": f"salt/minion/{dead_node.id}/start",
                "data": {"id": dead_node.id, "cmd": "_minion_event"},
            },
            {"tag": "minion_start", "data": {"id": dead_node.id, "cmd": "_minion_event"}},
            {
                "tag": f"salt/job/20260101000000000000/ret/{dead_node.id}",
                "data": {
                    "id": dead_node.id,
                    "jid": "20260101000000000000",
                    "return": True,
                    "fun": "test.ping",
                },
            },
            {"tag": "edge/heartbeat", "data": dict(forged, id=dead_node.id)},
        ]
    }
    ret = cli.run(
        "event.fire_master",
        "data={}",
        "tag=edge/forged",
        f"preload={json.dumps(preload)}",
        minion_tgt=node_a.id,
    )
    assert ret.returncode == 0, ret
    wait_event(event_listener, fleet_master, f"salt/minion/{dead_node.id}/start", sent_at - 1, 30)

    # the engine saw them: two rejected heartbeats, an unverified claim on the record
    wait_until(
        lambda: (
            int(_meta(fleet_master, f"engine.{fleet_master.id}").get("rejected_heartbeats") or 0)
            >= rejected_before + 2
        ),
        30,
        interval=0.2,
        what="the engine to reject the forged heartbeats",
    )
    rec = wait_record(
        fleet_master, dead_node.id, lambda r: (r.get("claim") or {}).get("ts", 0) >= sent_at - 1, 30
    )
    assert rec["claim"]["kind"] in ("minion_start", "job_return")
    assert rec["status"] == "offline", rec
    assert rec["last_seen"] == before["last_seen"]
    assert not events(event_listener, fleet_master, f"edge/node/{dead_node.id}/online", sent_at - 1)


def test_job_return_is_only_a_claim(fleet_master, event_listener):
    # no beacon: a job return proves nothing (any accepted minion can make the
    # master fire one for any id, docs/ref/engine.rst): shown, not trusted
    node = new_minion(fleet_master, "east", prefix="fleet-job-", extra={"beacons": {}})
    with node.started(start_timeout=120):
        cli = fleet_master.salt_cli(timeout=60)
        ret = cli.run("test.ping", minion_tgt=node.id)
        assert ret.returncode == 0 and ret.data is True, ret
        rec = wait_record(
            fleet_master, node.id, lambda r: (r.get("claim") or {}).get("kind") == "job_return", 30
        )
        assert rec["status"] == "never_seen" and rec["last_seen"] is None, rec


def test_master_restart_fires_no_false_transitions(
    fleet_master, node_a, node_nat, dead_node, event_listener
):
    wait_record(fleet_master, node_a.id, lambda r: r.get("status") == "online", 30)
    wait_record(fleet_master, node_nat.id, lambda r: r.get("status") == "online", 30)
    # a grace period longer than the minions need to reconnect to a restarted
    # master (the default is the offline threshold, at least 120 s)
    import yaml

    with open(fleet_master.config_file, encoding="utf-8") as fh_:
        config = yaml.safe_load(fh_)
    config["edge"]["fleet"]["grace"] = GRACE_S
    with open(fleet_master.config_file, "w", encoding="utf-8") as fh_:
        yaml.safe_dump(config, fh_)
    stopped = time.time()
    fleet_master.terminate()
    # the master stays down longer than the offline threshold: the nodes'
    # last heartbeats are older than that when it comes back (this sleep
    # makes the outage; it is not evidence of anything)
    time.sleep(OFFLINE_S + 1)
    fleet_master.start(start_timeout=120)
    # the new engine's first write of the record (its start time and node count)

    def restarted():
        info = _meta(fleet_master, f"engine.{fleet_master.id}")
        return info if (info.get("started_at") or 0) > stopped else None

    info = wait_until(restarted, 60, interval=0.2, what="the engine to start again")
    assert info["nodes"] >= 3, info
    # wait (on heartbeats) until more than a whole offline window has passed
    # since the engine started: any false transition would have fired by then
    horizon = info["started_at"] + max(GRACE_S, OFFLINE_S) + TOLERANCE
    for node in (node_a, node_nat):
        wait_event(
            event_listener,
            fleet_master,
            "edge/heartbeat",
            horizon,
            GRACE_S + OFFLINE_S + 60,
            heartbeat_of(node.id),
        )
    # nodes that really stopped before the restart (other tests') may be
    # reported now; the live ones and the one already reported must not be
    watched = {node_a.id, node_nat.id, dead_node.id}
    transitions = [
        e
        for e in events(event_listener, fleet_master, "edge/node/*", stopped)
        if e.tag.split("/")[2] in watched
    ]
    assert transitions == [], [(e.tag, e.data.get("reason")) for e in transitions]
    assert wait_record(fleet_master, dead_node.id, lambda r: True, 5)["status"] == "offline"
