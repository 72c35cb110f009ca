"""
Field lab, scenario 7 (docs/howto/field-lab.rst): a lossy uplink. One node
of the two of site ``pair-1`` loses 20 % of its packets each way (nftables
``numgen random`` in the NAT's forward chain): its heartbeats report the
loss and a ``poor`` or ``down`` uplink, ``edge.report`` shows the site's
qualities and ``degraded`` (half the site is on a bad link),
``edge/site/pair-1/degraded`` fires **once** while the loss lasts (the
engine judges each node's link over its last samples, with hysteresis:
docs/ref/engine.rst, "Degraded sites"), and ``recovered`` follows once the
link is clean again.
"""

import time

import pytest
from tests.field import conftest as _fc
from tests.integration.fleet.conftest import heartbeat_of
from tests.support.events import events, wait_event

pytestmark = pytest.mark.slow

SITE = "pair-1"
LOSS_PCT = 20
OBSERVE_S = 20


def _uplink(event):
    return (event.data.get("data") or event.data).get("uplink") or {}


@pytest.fixture(scope="module")
def lossy(lab, lab_master, lab_run, pair, event_listener):
    """Run the loss once: what the tests look at (events, the report, the heartbeats' uplinks)."""
    node = pair["enforced"]
    _fc.heard(event_listener, lab_master, node)
    start = time.time()
    lab.loss(node.netns, LOSS_PCT)
    try:
        degraded = wait_event(event_listener, lab_master, f"edge/site/{SITE}/degraded", start, 60)
        ret = lab_run.run("edge.report")
        # the loss goes on for OBSERVE_S after the first degraded
        _fc.heard(
            event_listener, lab_master, node, degraded.stamp.timestamp() + OBSERVE_S, OBSERVE_S + 30
        )
    finally:
        lab.clear(node.netns)
    cleared = time.time()
    beats = events(event_listener, lab_master, "edge/heartbeat", start, heartbeat_of(node.id))
    return {
        "node": node,
        "degraded": degraded,
        "report": ret,
        "cleared": cleared,
        "site_events": [
            e
            for e in events(event_listener, lab_master, f"edge/site/{SITE}/*", start)
            if e.stamp.timestamp() < cleared
        ],
        "uplinks": [_uplink(e) for e in beats if e.stamp.timestamp() < cleared],
    }


def test_lossy_link_poor_uplink_site_degraded(lab_master, lossy, event_listener):
    assert lossy["node"].id in lossy["degraded"].data["poor_uplink"], lossy["degraded"].data
    ret = lossy["report"]
    assert ret.returncode == 0, ret
    site = ret.data["sites"][SITE]
    assert site["degraded"] is True, site
    assert site["quality"]["poor"] + site["quality"]["down"] >= 1, site
    qualities = [u.get("quality") for u in lossy["uplinks"]]
    print(f"field-lab: {LOSS_PCT} % loss -> heartbeat qualities {qualities}")
    assert sum(1 for q in qualities if q in ("poor", "down")) > len(qualities) / 2, qualities
    assert sum(1 for u in lossy["uplinks"] if (u.get("loss_pct") or 0) > 0) > len(qualities) / 2
    wait_event(event_listener, lab_master, f"edge/site/{SITE}/recovered", lossy["cleared"], 60)


def test_degraded_fires_once(lossy):
    tags = [e.tag.rsplit("/", 1)[1] for e in lossy["site_events"]]
    qualities = [u.get("quality") for u in lossy["uplinks"]]
    assert tags == ["degraded"], (tags, qualities)
