"""
Field lab, scenarios 1 and 2 (docs/howto/field-lab.rst): a node behind a
real masquerading NAT is admitted by its site's enrollment key, the master
sees it as the NAT's address, its grains are right, and ``edge.report``
(no ping) shows it online from its heartbeats -- measured beside Salt's own
``manage.present`` and ``presence_events``.
"""

import time

import pytest
from tests.daemons import answers_ping, peers
from tests.field import conftest as _fc
from tests.field import lab as _lab
from tests.integration.fleet.conftest import wait_record
from tests.support.events import wait_event

pytestmark = pytest.mark.slow

SITE = "pair-1"


@pytest.fixture(scope="module")
def nat_node(pair):
    """The node with the enforced settings (started by ``pair``)."""
    return pair["enforced"]


def test_admitted_through_nat_by_enrollment_key(lab, lab_master, lab_run, nat_node):
    # admitted by the key (its start event came through: salt-factories waited for it)
    ret = lab_run.run("edge.node", nat_node.id)
    assert ret.returncode == 0, ret
    assert ret.data["admission"] == "accepted", ret.data
    assert ret.data["admitted_by"].startswith("enrollment:"), ret.data
    assert ret.data["site"] == SITE
    # the master sees the NAT's address on its ports, never the node's own
    seen = peers(lab_master)
    node_address = lab.nodes[nat_node.netns]["address"]
    assert lab.nat_uplink in seen, seen
    assert node_address not in seen, seen
    # its grains: the node's own address, its site, its uplink to the master
    cli = lab_master.salt_cli(timeout=60)
    ret = cli.run("grains.item", "ipv4", "edge_site", "edge_uplink", minion_tgt=nat_node.id)
    assert ret.returncode == 0, ret
    grains = ret.data
    assert node_address in grains["ipv4"] and lab.nat_uplink not in grains["ipv4"], grains
    assert grains["edge_site"] == SITE
    assert grains["edge_uplink"]["quality"] in ("good", "fair"), grains["edge_uplink"]
    assert grains["edge_uplink"]["target"].startswith(lab.master_a), grains["edge_uplink"]


def test_presence_from_heartbeats_beside_salt_presence(
    lab_master, lab_run, nat_node, event_listener
):
    """``edge.report`` asks nobody; Salt's ``manage.present`` reads the master's connections."""
    _fc.heard(event_listener, lab_master, nat_node)
    wait_record(lab_master, nat_node.id, lambda r: r.get("status") == "online", 30)
    started = time.monotonic()
    ret = lab_run.run("edge.report", "details=True")
    report_s = time.monotonic() - started
    assert ret.returncode == 0, ret
    assert ret.data["sites"][SITE]["nodes"][nat_node.id]["status"] == "online", ret.data

    # Salt's own view (salt/utils/minions.py, connected_ids): the peers of
    # the publish port matched against each minion's ipv4 grains. Behind
    # NAT the peer is the NAT's address, in no node's grains: nobody is
    # present, and presence_events (same function) never lists the node
    started = time.monotonic()
    ret = lab_run.run("manage.present")
    present_s = time.monotonic() - started
    assert ret.returncode == 0, ret
    assert nat_node.id not in ret.data, ret.data
    after = time.time()
    presence = wait_event(event_listener, lab_master, "salt/presence/present", after, 30)
    assert nat_node.id not in presence.data["present"], presence.data
    # ... while it answers jobs, through the same NAT
    assert answers_ping(lab_master, nat_node.id, within=30)
    # the quickstart's "within about ten seconds": from the start of the
    # minion process to its start event on the master (admitted by its
    # enrollment key, connected), through the NAT
    started_s = _lab.FIGURES["started_s"][nat_node.id]
    print(
        f"field-lab: minion start to admitted and connected {started_s:.1f} s; "
        f"edge.report {report_s:.2f} s (online), manage.present {present_s:.2f} s (absent)"
    )
