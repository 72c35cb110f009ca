"""
A stolen node, from the thief's side (issue 26, item 6), against the
enrollment package's real master (shipped reactor, ``auto_admit``,
``require_enrollment``, ``on_invalid: keep``) and real salt-minions.

The node was admitted by a one-time enrollment key; the thief holds its key
pair and the token it signed in with. The operator revokes the node,
rebuilds it with a new key pair and a new enrollment key, and lifts the
revocation. Whatever the thief does meanwhile (sign in while the rebuilt
node's key is pending: Salt denies it and the ``denied`` path sees a token
that verifies; or sign in first, so its key is the one pending), the stolen
key is never admitted again for that id, and the rebuilt node is.
"""

import time

from saltfactories.utils import random_string
from tests.support.waits import wait_until

from adversarial.conftest import (
    BusRecorder,
    gen_keypair,
    key_cache,
    key_states,
    minion_opts_for,
    pending_minion_factory,
    raw_sign_in,
    salt_run,
    spki_digest,
)
from saltext_edge import admission

from .conftest import create_enrollment, v2_token

DECIDE_TIMEOUT = 120


def _state(opts, minion_id):
    return key_states(opts).get(minion_id, (None, None))


def _enrolled_node(master, minion_id, pair, key_path):
    """A real salt-minion holding ``pair`` and an enrollment key file (not started)."""
    overrides = {"autosign_grains": ["edge_token"], "edge": {"enrollment_key_file": str(key_path)}}
    return pending_minion_factory(master, minion_id, pair[0], pair[1], overrides=overrides)


def _same(pub_a, pub_b):
    return isinstance(pub_a, str) and isinstance(pub_b, str) and pub_a.strip() == pub_b.strip()


def _admitted(enr_master, enr_opts, tmp_path, mid, pair):
    """A real node ``mid`` holding ``pair`` and a new one-time key, run until admitted; returns the key string."""
    _, key_text, key_path, _ = create_enrollment(enr_master, tmp_path)
    node = _enrolled_node(enr_master, mid, pair, key_path)
    with node.started(start_timeout=60):
        assert wait_until(lambda: _state(enr_opts, mid)[0] == "accepted", DECIDE_TIMEOUT)
    assert _same(_state(enr_opts, mid)[1], pair[1])
    return key_text


def _admit_then_steal(enr_master, enr_opts, tmp_path, prefix):
    """Admit a real node with a one-time key; return ``(id, stolen pair, the token it used)``."""
    mid = random_string(prefix)
    stolen = gen_keypair()
    key_text = _admitted(enr_master, enr_opts, tmp_path, mid, stolen)
    return mid, stolen, v2_token(key_text, mid, stolen[1])


def _revoke(enr_master, mid, *args):
    code, ret, out, err = salt_run(enr_master, *args, mid)
    assert code == 0, (out + err)[-2000:]
    return ret


def _decision(opts, mid):
    return admission.list_decisions(opts).get(mid, {})


def test_stolen_key_pair_never_readmitted_through_the_denied_path(enr_master, enr_opts, tmp_path):
    """
    The red team's attack: the rebuilt node's key is pending (refused while
    the id was revoked); the operator lifts the revocation; before the
    rebuilt node signs in again the thief signs in with the stolen pair and
    the old, spent token. Salt denies it (another key is pending) and its
    ``denied`` event carries a token that verifies for the stolen key. The
    pending key is not replaced, nothing is admitted, and the rebuilt node
    is admitted at its next sign-in.
    """
    mid, stolen, old_token = _admit_then_steal(enr_master, enr_opts, tmp_path, "enr-thief-d-")
    ret = _revoke(enr_master, mid, "edge.revoke_node")
    assert ret["key_removed"] == "accepted"
    assert ret["revoked_keys"] == [spki_digest(stolen[1])]

    rebuilt = gen_keypair()
    _, _, new_key_path, _ = create_enrollment(enr_master, tmp_path)
    node = _enrolled_node(enr_master, mid, rebuilt, new_key_path)
    with node.started(start_timeout=60):
        assert wait_until(
            lambda: _decision(enr_opts, mid).get("reason") == "revoked_node", DECIDE_TIMEOUT
        )
    assert _state(enr_opts, mid)[0] == "pending" and _same(_state(enr_opts, mid)[1], rebuilt[1])

    ret = _revoke(enr_master, mid, "edge.unrevoke_node")
    assert ret["revoked"] is False
    assert ret["revoked_keys"] == [spki_digest(stolen[1])]
    assert ret["will_admit"]["sha256"] == spki_digest(rebuilt[1])

    bus = BusRecorder(enr_opts).start()
    thief = minion_opts_for(enr_master, mid, *stolen)
    raw_sign_in(thief, pub=stolen[1], token=old_token)
    # the master fired the thief's denied event; the reactor had it
    assert wait_until(
        lambda: [
            d
            for _t, d in bus.tagged("salt/auth")
            if d.get("id") == mid and d.get("act") == "denied"
        ],
        30,
    )
    time.sleep(2)  # the code before replaced the pending key and admitted it within a second
    state, pub = _state(enr_opts, mid)
    assert state == "pending" and _same(pub, rebuilt[1]), "the thief's key replaced the rebuilt one"
    # and again: still denied by Salt, still nothing changes
    for _ in range(2):
        raw_sign_in(thief, pub=stolen[1], token=old_token)

    with node.started(start_timeout=60):
        assert wait_until(lambda: _state(enr_opts, mid)[0] == "accepted", DECIDE_TIMEOUT)
    bus.stop()
    assert _same(_state(enr_opts, mid)[1], rebuilt[1])
    accepted = [d for _t, d in bus.tagged("edge/admission/accepted") if d.get("id") == mid]
    assert len(accepted) == 1, accepted
    # the thief, once more, against the rebuilt node's accepted key
    raw_sign_in(thief, pub=stolen[1], token=old_token)
    time.sleep(1)
    assert _same(_state(enr_opts, mid)[1], rebuilt[1])
    assert spki_digest(stolen[1]) in admission.node_index(enr_opts)[mid]["revoked_keys"]


def test_stolen_key_pending_first_is_refused_and_the_rebuilt_node_takes_the_id(
    enr_master, enr_opts, tmp_path
):
    """
    The thief signs in right after the revocation, so the stolen key is the
    one pending under the id. Lifting the revocation says no admissible key
    is pending; the thief's next sign-in (``pend``) is decided again and
    refused ``revoked_key``; the rebuilt node (denied by Salt: the stolen key
    is pending) proves itself and takes the id.
    """
    mid, stolen, old_token = _admit_then_steal(enr_master, enr_opts, tmp_path, "enr-thief-p-")
    _revoke(enr_master, mid, "edge.revoke_node")
    thief = minion_opts_for(enr_master, mid, *stolen)
    raw_sign_in(thief, pub=stolen[1], token=old_token)
    assert wait_until(
        lambda: _decision(enr_opts, mid).get("reason") == "revoked_node", DECIDE_TIMEOUT
    )
    ret = _revoke(enr_master, mid, "edge.unrevoke_node")
    assert ret["will_admit"] is None and ret["revoked_keys"] == [spki_digest(stolen[1])]

    raw_sign_in(thief, pub=stolen[1], token=old_token)
    assert wait_until(
        lambda: _decision(enr_opts, mid).get("reason") == "revoked_key", DECIDE_TIMEOUT
    )
    assert _state(enr_opts, mid)[0] == "pending"

    _admitted(enr_master, enr_opts, tmp_path, mid, gen_keypair())
    entry = admission.node_index(enr_opts)[mid]
    assert entry["admitted_by"].startswith("enrollment:") and not entry["revoked"]
    assert key_cache(enr_opts).fetch("keys", mid)["state"] == "accepted"
