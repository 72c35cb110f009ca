"""
Field lab, scenario 7 (docs/howto/field-lab.rst): a lossy uplink. One node
of the two of site ``pair-1`` loses 20 % of its packets each way (nftables
``numgen random`` in the NAT's forward chain): its heartbeats report the
loss and a ``poor`` or ``down`` uplink, ``edge.report`` shows the site's
qualities and ``degraded`` (half the site is on a bad link), and
``edge/site/pair-1/degraded`` fires once while the loss lasts; ``recovered``
follows once the link is clean again.
"""

import time

import pytest
from tests.field import conftest as _fc
from tests.integration.fleet.conftest import events, heartbeat_of, wait_event

pytestmark = pytest.mark.slow

SITE = "pair-1"
LOSS_PCT = 20
OBSERVE_S = 20


def _uplink(event):
    return (event.data.get("data") or event.data).get("uplink") or {}


def test_lossy_link_poor_uplink_site_degraded_once(lab, lab_master, lab_run, pair, event_listener):
    node = pair["enforced"]
    _fc.heard(event_listener, lab_master, node)
    start = time.time()
    lab.loss(node.netns, LOSS_PCT)
    try:
        degraded = wait_event(event_listener, lab_master, f"edge/site/{SITE}/degraded", start, 60)
        assert node.id in degraded.data["poor_uplink"], degraded.data
        ret = lab_run.run("edge.report")
        assert ret.returncode == 0, ret
        site = ret.data["sites"][SITE]
        assert site["degraded"] is True, site
        assert site["quality"]["poor"] + site["quality"]["down"] >= 1, site
        # the loss goes on: no second degraded, no recovered meanwhile
        _fc.heard(
            event_listener, lab_master, node, degraded.stamp.timestamp() + OBSERVE_S, OBSERVE_S + 30
        )
    finally:
        lab.clear(node.netns)
    cleared = time.time()
    site_events = events(event_listener, lab_master, f"edge/site/{SITE}/*", start)
    assert [e.tag for e in site_events if e.stamp.timestamp() < cleared] == [
        f"edge/site/{SITE}/degraded"
    ], site_events
    beats = [
        _uplink(e)
        for e in events(event_listener, lab_master, "edge/heartbeat", start, heartbeat_of(node.id))
    ]
    qualities = [b.get("quality") for b in beats]
    print(f"field-lab: {LOSS_PCT} % loss -> heartbeat qualities {qualities}")
    assert any(q in ("poor", "down") for q in qualities), qualities
    assert sum(1 for b in beats if (b.get("loss_pct") or 0) > 0) >= len(beats) / 2, beats
    wait_event(event_listener, lab_master, f"edge/site/{SITE}/recovered", cleared, 60)
