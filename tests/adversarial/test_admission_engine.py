"""
The admission engine (``engines: [edge_admission]``) against a real
salt-master configured as ``saltext-edge master-config --write`` configures
it: the engine and the shipped ``salt/auth`` reactor both present (the
reactor then leaves sign-ins to the engine). Forged ``salt/auth`` events,
hostile grain values and revoked keys, batched together as a storm would
batch them, and a real minion.
"""

import os
import time

import pytest
from tests.daemons import answers_ping
from tests.support.waits import wait_until

from saltext_edge import admission

from .conftest import (
    REVOKED_SITE,
    ROTATED_OUT,
    SECRET,
    SITE,
    BusRecorder,
    edge_conf,
    fake_auth,
    key_states,
    make_token,
    master_opts,
    pending_minion_factory,
    place_pending,
    reactor_sls,
    site_key,
    spki_digest,
    start_master,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine_master(salt_factories):
    factory = start_master(
        salt_factories,
        "adv-engine-",
        overrides={
            "reactor": [{"salt/auth": [str(reactor_sls())]}],
            "engines": [{"edge_admission": {}}],
            "edge": edge_conf(auto_admit=True, revoked_sites=[REVOKED_SITE]),
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def eopts(engine_master, key_pool):
    opts = master_opts(engine_master)
    # the engine subscribes once the master is up: sign a control node in
    # until it is heard (a single event right after the start could be missed)
    mid = f"eng-ctl-{os.urandom(3).hex()}"
    pub = key_pool[0][1]
    place_pending(opts, mid, pub)

    def heard():
        fake_auth(opts, mid, pub, make_token(SECRET, SITE, mid, pub))
        return wait_until(lambda: key_states(opts)[mid][0] == "accepted", 2)

    assert wait_until(heard, 60, interval=0.1), "the admission engine never admitted a node"
    return opts


def _decisions(bus, mid):
    return [
        (d.get("decision"), d.get("reason"))
        for _t, d in bus.tagged("edge/admission/")
        if isinstance(d, dict) and d.get("id") == mid
    ]


def test_engine_and_reactor_admit_a_real_node_once(engine_master, eopts, key_pool):
    """
    A brand-new real minion with a site-key token is admitted and answers
    ``test.ping``; with the engine and the reactor both configured it is
    decided exactly once (one ``edge/admission/accepted``, one ``salt/key``
    accept), by the engine.
    """
    mid = f"eng-node-{os.urandom(3).hex()}"
    priv, pub = key_pool[1]
    bus = BusRecorder(eopts).start()
    node = pending_minion_factory(
        engine_master,
        mid,
        priv,
        pub,
        overrides={
            "autosign_grains": ["edge_token"],
            "edge": {"site": SITE, "site_key": site_key(SECRET, SITE)},
        },
    )
    with node.started(start_timeout=60):
        assert wait_until(lambda: key_states(eopts).get(mid, (None,))[0] == "accepted", 60)
        assert answers_ping(engine_master, mid, within=60)
    bus.stop()
    assert _decisions(bus, mid) == [("accepted", None)]
    accepts = [
        d for _t, d in bus.tagged("salt/key") if d.get("id") == mid and d.get("act") == "accept"
    ]
    assert len(accepts) == 1
    assert admission.node_index(eopts)[mid]["admitted_by"] == f"token:{SITE}"


def test_forged_sign_ins_batched_with_real_ones(eopts, key_pool):
    """
    One burst, as a storm batches it: for a pending node, a forged sign-in
    with the attacker's key and a token valid for that key, one with the
    node's key and a bad token, then the node's own; for a second node only
    the forged one. The node is admitted with its own key; the second is not
    decided at all (the key presented is not the one pending) and keeps its
    key; the attacker's key is stored nowhere.
    """
    victim, lone = (f"eng-v-{os.urandom(3).hex()}" for _ in range(2))
    v_pub, l_pub, att_pub = key_pool[2][1], key_pool[3][1], key_pool[4][1]
    place_pending(eopts, victim, v_pub)
    place_pending(eopts, lone, l_pub)
    bus = BusRecorder(eopts).start()
    import salt.utils.event

    with salt.utils.event.get_master_event(eopts, eopts["sock_dir"], listen=False) as ev:
        fake_auth(eopts, victim, att_pub, make_token(SECRET, SITE, victim, att_pub), event=ev)
        fake_auth(eopts, lone, att_pub, make_token(SECRET, SITE, lone, att_pub), event=ev)
        fake_auth(eopts, victim, v_pub, make_token(ROTATED_OUT, SITE, victim, v_pub), event=ev)
        fake_auth(eopts, victim, v_pub, make_token(SECRET, SITE, victim, v_pub), event=ev)
        for value in (["v1", SITE], {"a": 1}, "v1:" + SITE + ":" + "b" * 100000):
            fake_auth(eopts, lone, l_pub, value, event=ev)
    assert wait_until(lambda: key_states(eopts)[victim][0] == "accepted", 60)
    time.sleep(1.5)  # the lone node's forged sign-in has had its chance
    bus.stop()
    states = key_states(eopts)
    assert states[victim][1].strip() == v_pub.strip()
    assert states[lone] == ("pending", l_pub)
    assert ("accepted", None) in _decisions(bus, victim)
    assert [d for d in _decisions(bus, victim) if d[0] == "accepted"] == [("accepted", None)]
    # the forged key: no decision; the malformed string token: refused, kept
    assert _decisions(bus, lone) in ([], [("refused", "malformed_token")])


def test_revoked_key_refused_by_the_engine(eopts, key_pool):
    """A key revoked for an id is refused (``revoked_key``) after the revocation is lifted; a new key is admitted."""
    mid = f"eng-rk-{os.urandom(3).hex()}"
    stolen, rebuilt = key_pool[5][1], key_pool[6][1]
    place_pending(eopts, mid, stolen)
    ret = admission.revoke_node(eopts, mid)
    assert ret["revoked_keys"] == [spki_digest(stolen)]
    admission.revoke_node(eopts, mid, revoked=False)
    place_pending(eopts, mid, stolen)
    bus = BusRecorder(eopts).start()
    fake_auth(eopts, mid, stolen, make_token(SECRET, SITE, mid, stolen))
    assert wait_until(lambda: _decisions(bus, mid), 60)
    assert _decisions(bus, mid) == [("refused", "revoked_key")]
    # the rebuilt node, denied by Salt (the stolen key is pending), proves itself
    fake_auth(eopts, mid, rebuilt, make_token(SECRET, SITE, mid, rebuilt), act="denied")
    assert wait_until(lambda: key_states(eopts)[mid][0] == "accepted", 60)
    bus.stop()
    assert key_states(eopts)[mid][1].strip() == rebuilt.strip()
