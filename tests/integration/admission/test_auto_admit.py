"""
Automatic mode: reactor + ``edge: {auto_admit: true}``. A brand-new minion
with the right site key answers ``test.ping`` within a few
``acceptance_wait_time`` periods with no human step; a stranger is refused
and (``on_invalid: reject``) rejected.
"""

import time

import pytest
from tests.daemons import answers_ping
from tests.support.waits import wait_until

from saltext_edge import admission
from saltext_edge import tokens as edge_token

from .conftest import (
    ACCEPTANCE_WAIT,
    key_lists,
    make_master,
    new_minion,
    terminate_all,
)

SITE = "lab-1"


@pytest.fixture(scope="module")
def master(salt_factories, master_defaults, fleet_secret):
    factory = make_master(
        salt_factories,
        master_defaults,
        fleet_secret,
        {"auto_admit": True, "on_invalid": "reject", "site_ids": {SITE: ["auto-*"]}},
    )
    with factory.started():
        yield factory


def test_auto_admit_good_minion(master, fleet_secret, event_listener):
    k_site = edge_token.site_key(fleet_secret, SITE)
    minion = new_minion(master, "auto-", {"site": SITE, "site_key": k_site})
    start = time.monotonic()
    with minion.started():
        # the minion starts only once accepted: started() returning already
        # proves admission; then it must answer
        wait_until(
            lambda: answers_ping(master, minion.id),
            30 * ACCEPTANCE_WAIT,
            interval=1,
            what="test.ping",
        )
        elapsed = time.monotonic() - start
        assert minion.id in key_lists(master).get("minions", [])
        decision = admission.list_decisions(master.config)[minion.id]
        assert decision["decision"] == "accepted" and decision["site"] == SITE
    # generous bound (shared CI machines): minion start-up plus a few
    # acceptance_wait_time periods
    assert elapsed < 120, elapsed
    events = [
        ev
        for ev in event_listener.get_events(
            [(master.id, "edge/admission/accepted")], after_time=time.time() - 120
        )
        if ev.data.get("id") == minion.id
    ]
    assert events and "token" not in events[0].data


def test_auto_refuses_and_rejects(master, wrong_secret, fleet_secret, event_listener):
    wrong = new_minion(
        master, "auto-", {"site": SITE, "site_key": edge_token.site_key(wrong_secret, SITE)}
    )
    # right key, but the id does not match edge:site_ids for the site
    stray = new_minion(
        master, "stray-", {"site": SITE, "site_key": edge_token.site_key(fleet_secret, SITE)}
    )
    wrong.start()
    stray.start()
    try:

        def rejected():
            keys = key_lists(master).get("minions_rejected", [])
            return wrong.id in keys and stray.id in keys

        wait_until(rejected, 120, interval=0.5, what="both strangers rejected")
        decisions = admission.list_decisions(master.config)
        assert decisions[wrong.id]["reason"] == "bad_token"
        assert decisions[stray.id]["reason"] == "id_not_allowed"
        accepted = key_lists(master).get("minions", [])
        assert wrong.id not in accepted and stray.id not in accepted
    finally:
        terminate_all([wrong, stray])
