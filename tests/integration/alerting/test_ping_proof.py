"""
``salt-run edge.report ping=True`` counts only proofs (saltext_edge.fleet.proof),
from the attacker's side: while the runner waits, an accepted minion that saw
the publication (jid and challenge) forges the dead node's answers -- a proof
signed with its own key through ``_syndic_return`` over its own channel, and a
plain ``True`` (what ``test.ping`` returns) as a ``_minion_event`` with
``pretag`` -- and the master does fire them as the dead node's returns. The
report counts the dead node as ``unproven``, not answered; the live nodes'
signed answers are counted, and only they are sent to the engine in the
sealed ``edge/fleet/proven`` event, which the engine takes as a sign of life.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from tests.integration.alerting.conftest import attacker_opts, howto_minion, send_as
from tests.integration.fleet.conftest import wait_record
from tests.support.events import wait_event

from saltext_edge.fleet import proof, signing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quiet_node(howto_master):
    """A live node without the beacon: only job returns and proofs speak for it."""
    factory = howto_minion(howto_master.factory, "sh-4", "quiet-", beacon=False)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def forged_ping(howto_master, attacker, killed_node, quiet_node, event_listener):
    """
    Run ``edge.report ping=True`` while the attacker forges the dead node's
    answers; return ``(ping section, edge/fleet/proven event)``.
    """
    master = howto_master.factory
    dead, _ = killed_node
    wait_record(master, dead.id, lambda r: r.get("status") == "offline", 90)
    started = time.time()
    runner = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "salt-run"),
            "-c",
            master.config_dir,
            "edge.report",
            "ping=True",
            "timeout=20",
            "--out=json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # what every minion receives: the publication, with its jid and challenge
        new = wait_event(
            event_listener,
            master,
            "salt/job/*/new",
            started - 1,
            60,
            lambda d: d.get("fun") == "edge.prove",
        )
        jid = new.data["jid"]
        (kwargs,) = [a for a in new.data["arg"] if isinstance(a, dict)]
        challenge = kwargs["challenge"]
        assert dead.id in new.data["minions"]
        forged = proof.answer(
            {"id": dead.id},
            challenge,
            signer=signing.Signer(os.path.join(attacker.config["pki_dir"], "minion.pem")),
        )
        mopts = attacker_opts(attacker)
        send_as(
            mopts,
            {
                "cmd": "_syndic_return",
                "load": [
                    {
                        "id": attacker.id,
                        "jid": jid,
                        "fun": "edge.prove",
                        "return": {dead.id: {"return": forged, "retcode": 0, "success": True}},
                    }
                ],
            },
        )
        send_as(
            mopts,
            {
                "cmd": "_minion_event",
                "pretag": "",
                "events": [
                    {
                        "tag": f"salt/job/{jid}/ret/{dead.id}",
                        "data": {"id": dead.id, "jid": jid, "fun": "edge.prove", "return": True},
                    }
                ],
            },
        )
        # the master fired them as the dead node's returns of that very job
        wait_event(event_listener, master, f"salt/job/{jid}/ret/{dead.id}", started - 1, 30)
        out, err = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, out + err
    proven = wait_event(event_listener, master, "edge/fleet/proven", started, 30)
    # the engine has taken everything up to the proof once the quiet node's proof is in
    wait_record(master, quiet_node.id, lambda r: r.get("last_kind") == "proof", 30)
    return json.loads(out)["ping"], proven


def test_forged_answers_for_a_dead_node_are_not_counted(
    forged_ping, howto_master, attacker, killed_node, quiet_node
):
    ping, proven = forged_ping
    dead, _ = killed_node
    assert ping["unproven"] == [dead.id], ping
    assert dead.id not in ping["silent"]
    assert ping["answered"] == 2, ping  # the attacker's own answer and the quiet node's
    assert proven.data["ids"] == sorted([attacker.id, quiet_node.id]), proven.data
    assert proven.data["edge_seal"]["mac"]
    # the engine took the proof as the quiet node's sign of life (forged_ping waited
    # for it), and nothing of it for the dead node
    rec = wait_record(howto_master.factory, dead.id, lambda r: True, 5)
    assert rec.get("last_kind") != "proof", rec


def test_forged_returns_leave_the_dead_node_offline(forged_ping, howto_master, killed_node):
    dead, _ = killed_node
    rec = wait_record(howto_master.factory, dead.id, lambda r: True, 5)
    assert rec["status"] == "offline", (rec["status"], rec.get("last_kind"))
