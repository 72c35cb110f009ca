"""
Enrollment keys against real salt-masters and salt-minions
(docs/enrollment.rst): one-time keys, expiry, revocation during a storm of
sign-ins, two masters on one key store racing for a limited key, replayed
tokens and ``edge:require_enrollment``.

Sign-ins are either real minions (``edge:enrollment_key_file``) or, for the
storms, pending keys placed in Salt's key store exactly as
``salt/master.py`` does plus the ``salt/auth`` event the master fires for
them (the adversarial suite's helpers): the reactor, the key store and the
admission code under test are the real ones.
"""

import json
import os
import threading
import time

import pytest
from saltfactories.utils import random_string
from tests.support.waits import wait_until

from adversarial.conftest import (
    SECRET,
    BusRecorder,
    fake_auth,
    key_cache,
    key_states,
    make_token,
    master_opts,
    place_pending,
    salt_run,
)
from saltext_edge import admission, enrollment, enrollment_admin

from .conftest import SITE, create_enrollment, enrolling_minion, enrollment_key_of, v2_token

DECIDE_TIMEOUT = 120


def _state(opts, minion_id):
    return key_states(opts).get(minion_id, (None, None))[0]


def _decision(opts_list, minion_id):
    """The latest decision of ``minion_id`` on any of the masters (or {})."""
    found = {}
    for opts in opts_list:
        dec = admission.list_decisions(opts).get(minion_id)
        if dec and (not found or dec.get("time", 0) > found.get("time", 0)):
            found = dec
    return found


def _decided(opts_list, ids):
    return all(_decision(opts_list, m).get("decision") in ("accepted", "refused") for m in ids)


def _record(opts, enr_id):
    return enrollment.store(opts).get(enr_id)


def _sign_in(opts, minion_id, pub, token, event=None):
    place_pending(opts, minion_id, pub)
    fake_auth(opts, minion_id, pub, token, event=event)


def _no_secret_in(texts, *secrets):
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_runner_returns_no_key_and_writes_a_private_file(enr_master, enr_opts, tmp_path):
    data, key_text, path, output = create_enrollment(
        enr_master, tmp_path, uses=2, expires="2h", note="rack B"
    )
    assert set(data) >= {
        "id",
        "site",
        "uses",
        "uses_left",
        "expires_at",
        "created_at",
        "creator",
        "fingerprint",
        "status",
        "note",
    }
    assert data["site"] == SITE and data["uses"] == 2 and data["uses_left"] == 2
    assert data["status"] == "active" and data["note"] == "rack B" and "@" in data["creator"]
    assert path.stat().st_mode & 0o777 == 0o600
    # the key is the one docs/enrollment.rst defines, derived from the fleet secret
    assert key_text == f"edge-enroll:v2:{SITE}:{data['id']}:{enrollment_key_of(SITE, data['id'])}"
    key = key_text.rsplit(":", 1)[1]
    _no_secret_in([output, json.dumps(data)], key)
    # never overwrites
    code, _, out, err = salt_run(enr_master, "edge.enrollment_key", f"site={SITE}", f"path={path}")
    assert code != 0 and "already exists" in out + err
    assert path.read_text().strip() == key_text
    # bad limits: a clear message, nothing created
    before = len(enrollment_admin.listing(enr_opts))
    code, _, out, err = salt_run(
        enr_master, "edge.enrollment_key", f"site={SITE}", f"path={tmp_path / 'x.key'}", "uses=0"
    )
    assert code != 0 and "uses must be" in out + err and not (tmp_path / "x.key").exists()
    assert len(enrollment_admin.listing(enr_opts)) == before
    listed = {e["id"]: e for e in enrollment_admin.listing(enr_opts)}
    assert listed[data["id"]]["uses_left"] == 2


def test_one_time_key_admits_one_real_minion_and_refuses_the_second(enr_master, enr_opts, tmp_path):
    data, key_text, path, _ = create_enrollment(enr_master, tmp_path, note="one-time")
    assert data["uses"] == 1  # the default
    bus = BusRecorder(enr_opts).start()
    first = enrolling_minion(enr_master, "enr-one-", path)
    second = enrolling_minion(enr_master, "enr-two-", path)
    try:
        first.start()
        assert wait_until(lambda: _state(enr_opts, first.id) == "accepted", DECIDE_TIMEOUT), (
            f"{first.id} was not admitted: {_decision([enr_opts], first.id)}"
        )
        second.start()
        assert wait_until(
            lambda: _decision([enr_opts], second.id).get("decision") == "refused", DECIDE_TIMEOUT
        ), "the second minion was not decided"
        assert _decision([enr_opts], second.id)["reason"] == "exhausted"
        assert _state(enr_opts, second.id) == "pending"  # on_invalid: keep
    finally:
        first.terminate()
        second.terminate()
        bus.stop()
    rec = _record(enr_opts, data["id"])
    assert rec["used"] == 1 and rec["admitted"] == [first.id]
    listed = {e["id"]: e for e in enrollment_admin.listing(enr_opts)}[data["id"]]
    assert (
        listed["status"] == "exhausted"
        and listed["uses_left"] == 0
        and listed["admitted"] == [first.id]
    )
    # from the node to its enrollment
    index = admission.node_index(enr_opts)
    assert (
        index[first.id]["admitted_by"] == f"enrollment:{data['id']}"
        and index[first.id]["site"] == SITE
    )
    accepted = [d for t, d in bus.tagged("edge/admission/accepted") if d.get("id") == first.id]
    refused = [d for t, d in bus.tagged("edge/admission/refused") if d.get("id") == second.id]
    assert accepted and accepted[0]["admitted_by"] == f"enrollment:{data['id']}"
    assert refused and refused[0]["reason"] == "exhausted"
    key = key_text.rsplit(":", 1)[1]
    _no_secret_in([json.dumps(bus.events, default=str)], key, key_text)


def test_expired_key_refuses_a_real_minion(enr_master, enr_opts, tmp_path):
    data, _, path, _ = create_enrollment(enr_master, tmp_path, expires="3s")
    # wait for the expiry itself (the master's clock is ours)
    assert wait_until(
        lambda: (
            {e["id"]: e for e in enrollment_admin.listing(enr_opts)}[data["id"]]["status"]
            == "expired"
        ),
        30,
    )
    late = enrolling_minion(enr_master, "enr-late-", path)
    try:
        late.start()
        assert wait_until(
            lambda: _decision([enr_opts], late.id).get("decision") == "refused", DECIDE_TIMEOUT
        )
        assert _decision([enr_opts], late.id)["reason"] == "expired"
        assert _state(enr_opts, late.id) == "pending"
    finally:
        late.terminate()
    assert _record(enr_opts, data["id"])["used"] == 0


def test_replayed_tokens_after_the_key_is_spent(enr_master, enr_opts, enr_keys, tmp_path):
    data, key_text, _, _ = create_enrollment(enr_master, tmp_path)
    node, stranger, third = (random_string("enr-rp-") for _ in range(3))
    pub, other_pub = enr_keys[0][1], enr_keys[1][1]
    token = v2_token(key_text, node, pub)
    _sign_in(enr_opts, node, pub, token)
    assert wait_until(lambda: _state(enr_opts, node) == "accepted", DECIDE_TIMEOUT)
    # the sniffed token for another id, or for the same id with another key
    # (its key removed by the operator meanwhile): useless
    _sign_in(enr_opts, stranger, other_pub, token)
    key_cache(enr_opts).flush("keys", node)
    _sign_in(enr_opts, node, other_pub, token)
    assert wait_until(
        lambda: (
            _decided([enr_opts], [stranger])
            and _decision([enr_opts], node).get("decision") == "refused"
        ),
        DECIDE_TIMEOUT,
    )
    assert _decision([enr_opts], stranger)["reason"] == "bad_token"
    assert _decision([enr_opts], node)["reason"] == "bad_token"
    # a fresh, valid token from the stolen key string: the key is spent
    _sign_in(enr_opts, third, other_pub, v2_token(key_text, third, other_pub))
    assert wait_until(lambda: _decided([enr_opts], [third]), DECIDE_TIMEOUT)
    assert _decision([enr_opts], third)["reason"] == "exhausted"
    # and the same token again later: still refused, still one use
    fake_auth(enr_opts, third, other_pub, v2_token(key_text, third, other_pub))
    states = key_states(enr_opts)
    assert (
        states[third][0] == "pending"
        and states[stranger][0] == "pending"
        and states[node][0] == "pending"
    )
    assert _record(enr_opts, data["id"])["used"] == 1


def test_require_enrollment_refuses_site_key_tokens(enr_master, enr_opts, enr_keys, tmp_path):
    old = random_string("enr-v1-")
    pub = enr_keys[2][1]
    _sign_in(enr_opts, old, pub, make_token(SECRET, SITE, old, pub))
    assert wait_until(lambda: _decided([enr_opts], [old]), DECIDE_TIMEOUT)
    assert _decision([enr_opts], old)["reason"] == "enrollment_required"
    assert _state(enr_opts, old) == "pending"
    # the same node with an enrollment key instead is admitted
    _, key_text, _, _ = create_enrollment(enr_master, tmp_path)
    fake_auth(enr_opts, old, pub, v2_token(key_text, old, pub))
    assert wait_until(lambda: _state(enr_opts, old) == "accepted", DECIDE_TIMEOUT)


def test_revocation_mid_storm(enr_master, enr_opts, enr_keys, tmp_path):
    data, key_text, _, _ = create_enrollment(enr_master, tmp_path, uses=50, note="storm")
    first = [random_string("enr-st-a-") for _ in range(6)]
    second = [random_string("enr-st-b-") for _ in range(6)]
    pubs = {m: enr_keys[i % len(enr_keys)][1] for i, m in enumerate(first + second)}
    for mid in first:
        _sign_in(enr_opts, mid, pubs[mid], v2_token(key_text, mid, pubs[mid]))
    assert wait_until(lambda: any(_state(enr_opts, m) == "accepted" for m in first), DECIDE_TIMEOUT)
    code, ret, out, err = salt_run(enr_master, "edge.revoke_enrollment", data["id"])
    assert code == 0 and ret["status"] == "enrollment_revoked", (out + err)[-2000:]
    for mid in second:
        _sign_in(enr_opts, mid, pubs[mid], v2_token(key_text, mid, pubs[mid]))
    assert wait_until(lambda: _decided([enr_opts], first + second), DECIDE_TIMEOUT)
    rec = _record(enr_opts, data["id"])
    accepted = sorted(m for m in first + second if _state(enr_opts, m) == "accepted")
    assert accepted and sorted(rec["admitted"]) == accepted and rec["used"] == len(accepted)
    for mid in second:
        assert _decision([enr_opts], mid)["reason"] == "enrollment_revoked"
    for mid in first:
        if mid not in accepted:
            assert _decision([enr_opts], mid)["reason"] == "enrollment_revoked"
    # nodes already accepted are not touched by the revocation
    assert all(_state(enr_opts, m) == "accepted" for m in accepted)
    code, listing, _, _ = salt_run(enr_master, "edge.enrollment_keys", f"site={SITE}")
    entry = {e["id"]: e for e in listing}[data["id"]]
    assert entry["status"] == "enrollment_revoked" and sorted(entry["admitted"]) == accepted
    index = admission.node_index(enr_opts)
    assert all(index[m]["admitted_by"] == f"enrollment:{data['id']}" for m in accepted)


@pytest.mark.parametrize("round_", [1, 2])
def test_two_masters_race_for_three_uses(
    enr_master, enr_opts, enr_twin, enr_keys, tmp_path, round_
):
    twin_opts = master_opts(enr_twin)
    assert os.path.realpath(twin_opts["pki_dir"]) == os.path.realpath(enr_opts["pki_dir"])
    data, key_text, _, _ = create_enrollment(enr_master, tmp_path, uses=3, note=f"race {round_}")
    ids = [random_string(f"enr-race{round_}-") for _ in range(6)]
    pubs = {m: enr_keys[i % len(enr_keys)][1] for i, m in enumerate(ids)}
    for mid in ids:
        place_pending(enr_opts, mid, pubs[mid])
    # multi-master: every master sees every sign-in, at the same time
    barrier = threading.Barrier(2)

    def fire(opts):
        # round 2: the twin gets the sign-ins in the opposite order, so each
        # master is first for some nodes
        order = ids[::-1] if round_ == 2 and opts is twin_opts else ids
        barrier.wait()
        for mid in order:
            fake_auth(opts, mid, pubs[mid], v2_token(key_text, mid, pubs[mid]))

    buses = [BusRecorder(enr_opts).start(), BusRecorder(twin_opts).start()]
    start = time.monotonic()
    threads = [threading.Thread(target=fire, args=(o,)) for o in (enr_opts, twin_opts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wait_until(
        lambda: (
            _decided([enr_opts, twin_opts], ids)
            and sum(_state(enr_opts, m) == "accepted" for m in ids) == 3
        ),
        DECIDE_TIMEOUT,
    ), {m: (_state(enr_opts, m), _decision([enr_opts, twin_opts], m)) for m in ids}
    elapsed = time.monotonic() - start
    accepted = sorted(m for m in ids if _state(enr_opts, m) == "accepted")
    refused = sorted(set(ids) - set(accepted))
    rec = _record(enr_opts, data["id"])
    assert len(accepted) == 3 and rec["used"] == 3 and sorted(rec["admitted"]) == accepted
    for mid in refused:
        assert _state(enr_opts, mid) == "pending"
        assert _decision([enr_opts, twin_opts], mid)["reason"] == "exhausted"
    # each accepted key was accepted once, by one master (Salt's own salt/key events)
    wait_until(lambda: sum(len(b.tagged("edge/admission/")) for b in buses) >= len(ids), 30)
    for bus in buses:
        bus.stop()
    accepts = {m: [] for m in ids}
    for bus, opts in zip(buses, (enr_opts, twin_opts)):
        for _tag, data in bus.tagged("edge/admission/"):
            if data.get("id") in accepts and data.get("action") == "accepted":
                accepts[data["id"]].append(opts["id"])
    assert {m for m, v in accepts.items() if v} == set(accepted)
    assert all(len(accepts[m]) == 1 for m in accepted), accepts
    print(
        f"race round {round_}: 6 nodes, 2 masters, uses=3 -> {len(accepted)} accepted "
        f"(by {sorted(v[0] for v in accepts.values() if v)}), {len(refused)} refused exhausted, "
        f"decided in {elapsed:.1f} s"
    )


def test_use_given_back_when_the_key_changes_before_its_write(
    enr_opts, enr_keys, tmp_path, enr_master, monkeypatch
):
    """
    Salt's own writers do not take our lock: when the pending key changes
    between the read it was judged on and the re-read before its write (here
    replaced right after its enrollment use was counted), the key is left
    alone and the one-time key keeps its use for the real node.
    """
    data, key_text, _, _ = create_enrollment(enr_master, tmp_path, uses=1, note="race")
    mid = random_string("enr-race-")
    pub, other = enr_keys[0][1], enr_keys[1][1]
    place_pending(enr_opts, mid, pub)
    admission.record(enr_opts, mid, pub, v2_token(key_text, mid, pub))
    consume = enrollment.EnrollmentStore.consume

    def consume_then_replace_the_key(self, *args, **kwargs):
        reason = consume(self, *args, **kwargs)
        place_pending(enr_opts, mid, other)  # a concurrent Salt writer
        return reason

    monkeypatch.setattr(enrollment.EnrollmentStore, "consume", consume_then_replace_the_key)
    got = admission.decide_and_act(enr_opts, ids=[mid])
    monkeypatch.undo()
    assert got[mid]["action"] == "none", got
    assert key_states(enr_opts)[mid] == ("pending", other)
    rec = _record(enr_opts, data["id"])
    assert rec["used"] == 0 and rec["admitted"] == [], rec
