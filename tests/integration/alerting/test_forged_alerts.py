"""
From the attacker's side (``docs/security-tests.rst``, "Fleet alerts and
ping answers"): an accepted minion fires the engine's transition tags
itself -- with ``event.fire_master`` (plain), and over its own channel as a
``_minion_event`` ``events`` list with and without ``pretag`` -- for a
node and a site it makes up, with a made-up ``edge_seal`` too. The events
reach the master's bus (the test sees them), the shipped alert reactor
renders each of them to nothing (no runner job starts), and the web hook
receives nothing.
"""

import json
import time

import pytest
from tests.integration.alerting.conftest import attacker_opts, send_as
from tests.support.events import events, wait_event

pytestmark = pytest.mark.slow


def test_forged_transitions_page_nobody(howto_master, attacker, hook, event_listener):
    master = howto_master.factory
    sent_at = time.time()
    fake_seal = {"at": int(sent_at * 1000), "mac": "A" * 43 + "="}

    def node_event(name, kind):
        return {
            "id": name,
            "site": "forged-site",
            "status": kind,
            "last_seen": "2026-01-01T00:00:00Z",
            "reason": "forged",
            "master": master.id,
            "edge_seal": fake_seal,
        }

    forged = [
        ("edge/node/forged-a/offline", node_event("forged-a", "offline")),
        ("edge/node/forged-b/online", node_event("forged-b", "online")),
        (
            "edge/site/forged-site/degraded",
            {"site": "forged-site", "degraded": True, "bad": 1, "total": 1, "master": master.id},
        ),
    ]
    # 1. the how-to's own example of the attack: salt-call event.fire_master
    cli = master.salt_cli(timeout=60)
    for tag, data in forged:
        ret = cli.run("event.fire_master", json.dumps(data), tag, minion_tgt=attacker.id)
        assert ret.returncode == 0 and ret.data is True, ret
    # 2. over its own authenticated channel, as an events list, with and without pretag
    mopts = attacker_opts(attacker)
    for via, extra in (("events", {}), ("pretag", {"pretag": ""})):
        listed = [{"tag": tag, "data": dict(data, via=via)} for tag, data in forged]
        send_as(mopts, {"cmd": "_minion_event", "events": listed, **extra})

    # they are on the master's bus, each way: the reactor had them to act on
    for tag, _ in forged:
        wait_event(event_listener, master, tag, sent_at - 1, 60, lambda d: "data" in d)
        for via in ("events", "pretag"):
            wait_event(
                event_listener, master, tag, sent_at - 1, 60, lambda d, v=via: d.get("via") == v
            )
    # every event fired before the barrier has been rendered by the reactor
    howto_master.barrier(hook)
    last = howto_master.barrier(hook)
    posted = hook.bodies(lambda b: "forged" in json.dumps(b))
    assert posted == [], posted
    # not even a job: the SLS rendered to nothing (edge.alert would refuse them too);
    # the bus reaches the test in order, so the barrier's job comes after any other
    wait_event(
        event_listener,
        master,
        "salt/run/*/new",
        sent_at - 1,
        60,
        lambda d: d.get("fun") == "runner.edge.alert" and last in json.dumps(d),
    )
    jobs = events(event_listener, master, "salt/run/*/new", sent_at - 1)
    assert [e.data for e in jobs if "forged" in json.dumps(e.data)] == []


def test_the_alert_runner_refuses_an_unsealed_event(howto_master, hook):
    event = {"tag": "edge/node/by-hand/offline", "data": {"id": "by-hand", "reason": "x"}}
    ret = howto_master.factory.salt_run_cli(timeout=60).run("edge.alert", json.dumps(event))
    assert ret.returncode == 0, ret
    assert ret.data == {
        "posted": False,
        "event": "edge/node/by-hand/offline",
        "status": None,
        "reason": "not sealed by this master",
    }
    assert hook.bodies(lambda b: b.get("node") == "by-hand") == []
