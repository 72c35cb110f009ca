"""
Sealed events (saltext_edge.eventauth) and liveness proofs
(saltext_edge.fleet.proof): what verifies, and every way it must not.
Real files, real RSA keys, real HMAC; no Salt daemons.
"""

import copy
import json
import os
import stat

import pytest
from tests.support.keys import key_file

from saltext_edge import eventauth, pki_paths
from saltext_edge.fleet import evidence, proof, signing

TAG = "edge/node/n1/offline"
DATA = {
    "id": "n1",
    "site": "north",
    "status": "offline",
    "last_seen": "2026-01-01T00:00:00Z",
    "reason": "missed 5 heartbeats",
    "offline": ["n1"],
    "share": 0.5,
}
NOW = 1_800_000_000.0


@pytest.fixture
def opts(tmp_path):
    return {"pki_dir": str(tmp_path / "pki"), "id": "master-1"}


def test_seal_then_verify(opts):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    assert sealed is not DATA and eventauth.FIELD not in DATA
    assert eventauth.verify(opts, TAG, sealed, now=NOW + 1)
    # Salt's _stamp is added by the bus after sealing: not covered
    assert eventauth.verify(opts, TAG, dict(sealed, _stamp="2026-01-01T00:00:00.1"), now=NOW)


def test_key_file_is_private_and_shared(opts):
    eventauth.seal(opts, TAG, DATA)
    path = pki_paths.event_key(opts)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == eventauth.KEY_BYTES
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    # a second creator gets the same key (masters sharing a key store)
    assert eventauth.load_key(dict(opts), create=True) == eventauth.load_key(opts)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t, d: ("edge/node/n2/offline", d),  # another tag
        lambda t, d: (t.replace("offline", "online"), d),
        lambda t, d: (t, dict(d, id="n2")),  # another field value
        lambda t, d: (t, dict(d, extra=1)),  # a field added
        lambda t, d: (t, {k: v for k, v in d.items() if k != "reason"}),  # removed
        lambda t, d: (t, dict(d, share=0.51)),
        lambda t, d: (t, dict(d, offline=["n1", "n2"])),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], at=d["edge_seal"]["at"] + 1))),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], mac="A" * 44))),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], mac="%%%"))),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], mac="A" * 5000))),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], at=str(d["edge_seal"]["at"])))),
        lambda t, d: (t, dict(d, edge_seal=dict(d["edge_seal"], at=True))),
        lambda t, d: (t, dict(d, edge_seal="v1")),
        lambda t, d: (t, {k: v for k, v in d.items() if k != "edge_seal"}),
        lambda t, d: (t, dict(d, share=float("nan"))),
        lambda t, d: (None, d),
        lambda t, d: (t, [d]),
    ],
)
def test_tampered_events_do_not_verify(opts, tamper):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    tag, data = tamper(TAG, copy.deepcopy(sealed))
    assert eventauth.verify(opts, tag, data, now=NOW) is False


def test_age_bound(opts):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    assert eventauth.verify(opts, TAG, sealed, now=NOW + eventauth.MAX_AGE_S - 1)
    assert not eventauth.verify(opts, TAG, sealed, now=NOW + eventauth.MAX_AGE_S + 1)
    assert not eventauth.verify(opts, TAG, sealed, now=NOW - eventauth.MAX_AHEAD_S - 1)


def test_no_key_or_another_key(opts, tmp_path):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    # a minion: another pki_dir, no key there; verifying does not make one
    minion = {"pki_dir": str(tmp_path / "minion-pki")}
    assert eventauth.verify(minion, TAG, sealed, now=NOW) is False
    assert not os.path.exists(pki_paths.event_key(minion))
    # another master's key
    other = {"pki_dir": str(tmp_path / "other")}
    eventauth.seal(other, TAG, DATA)
    assert eventauth.verify(other, TAG, sealed, now=NOW) is False
    # a sealer without the key: a minion with a key of its own
    forged = eventauth.seal_with(b"k" * 32, TAG, DATA, now=NOW)
    assert eventauth.verify(opts, TAG, forged, now=NOW) is False


def test_malformed_key_file_fails_closed(opts):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    path = pki_paths.event_key(opts)
    os.chmod(path, 0o600)
    with open(path, "wb") as fh_:
        fh_.write(b"short")
    assert eventauth.verify(opts, TAG, sealed, now=NOW) is False
    with pytest.raises(eventauth.EventKeyError) as err:
        eventauth.seal(opts, TAG, DATA)
    assert path in str(err.value) and "short" not in str(err.value)


# ---- liveness proofs -------------------------------------------------------


def _keypair(tmp_path, name):
    path, pub = key_file(tmp_path, name)
    return signing.Signer(path), pub


@pytest.fixture
def nodes(tmp_path):
    """Two nodes' signers and a key ring that holds their accepted keys."""
    live, live_pub = _keypair(tmp_path, "live")
    thief, thief_pub = _keypair(tmp_path, "thief")
    accepted = {"live": live_pub, "dead": _keypair(tmp_path, "dead")[1], "thief": thief_pub}
    ring = signing.KeyRing({}, fetch=accepted.get)
    return {"live": live, "thief": thief, "ring": ring}


def test_proof_roundtrip_and_forgeries(opts, nodes):
    challenge = proof.new_challenge(opts, now=NOW)
    key = eventauth.load_key(opts)
    assert proof.check_challenge(key, challenge, now=NOW + 5)
    assert not proof.check_challenge(key, challenge, now=NOW + proof.CHALLENGE_SLACK_S + 1)
    good = proof.answer({"id": "live"}, challenge, now=NOW, signer=nodes["live"])
    verify = nodes["ring"].verify
    assert proof.check_answer(verify, "live", challenge, good)
    # the thief knows the challenge (it saw the publication) but not the dead node's key
    forged = proof.answer({"id": "dead"}, challenge, now=NOW, signer=nodes["thief"])
    assert not proof.check_answer(verify, "dead", challenge, forged)
    # a valid proof of the thief, returned in the dead node's name
    own = proof.answer({"id": "thief"}, challenge, now=NOW, signer=nodes["thief"])
    assert not proof.check_answer(verify, "dead", challenge, own)
    # the live node's answer to an older challenge, replayed
    old = proof.new_challenge(opts, now=NOW - 30)
    replay = proof.answer({"id": "live"}, old, now=NOW - 30, signer=nodes["live"])
    assert not proof.check_answer(verify, "live", challenge, replay)
    # a changed field breaks the signature; a plain test.ping return is no proof
    assert not proof.check_answer(verify, "live", challenge, dict(good, uptime_s=1.0))
    assert not proof.check_answer(verify, "live", challenge, True)
    # a challenge the minion did not get from this master's runner
    with pytest.raises(proof.ProofError):
        proof.answer({"id": "live"}, "x" * 300, signer=nodes["live"])


def test_a_proof_is_no_heartbeat(opts, nodes):
    challenge = proof.new_challenge(opts, now=NOW)
    good = proof.answer({"id": "live"}, challenge, now=NOW, signer=nodes["live"])
    classifier = evidence.Classifier(nodes["ring"])
    assert isinstance(
        classifier.classify("edge/heartbeat", {"id": "live", "data": good}), evidence.Refusal
    )


def test_prove_counts_only_verified_answers(opts, nodes):
    fired = []

    def cmd(minions, challenge, timeout):
        return {
            "live": {"ret": proof.answer({"id": "live"}, challenge, signer=nodes["live"])},
            # forged return for the dead node: signed by another minion
            "dead": {"ret": proof.answer({"id": "dead"}, challenge, signer=nodes["thief"])},
            # what LocalClient reports for minions that did not return
            "gone": {"failed": True},
            "away": {"out": "no_return", "ret": "Minion did not return. [Not connected]"},
            "lost": False,
        }

    out = proof.prove(
        opts,
        ["live", "dead", "gone", "away", "lost", "never"],
        5,
        cmd=cmd,
        keyring=nodes["ring"],
        fire=lambda o, ids: fired.append(ids),
    )
    silent = dict.fromkeys(("gone", "away", "lost", "never"), "silent")
    assert out == {"live": "proven", "dead": "unproven", **silent}
    assert fired == [["live"]]


def test_proven_event_is_evidence_only_when_sealed(opts, nodes):
    classifier = evidence.Classifier(
        nodes["ring"],
        verify_event=lambda tag, data: eventauth.verify(opts, tag, data, now=NOW),
    )
    data = eventauth.seal(opts, proof.PROVEN_TAG, {"ids": ["live", "n2"], "master": "m"}, now=NOW)
    evs = classifier.classify(proof.PROVEN_TAG, data)
    assert [(e.kind, e.id, e.trusted) for e in evs] == [
        ("proof", "live", True),
        ("proof", "n2", True),
    ]
    assert classifier.classify(proof.PROVEN_TAG, dict(data, ids=["dead"])) is None
    assert classifier.classify(proof.PROVEN_TAG, {"ids": ["dead"]}) is None
    # an engine built without a verifier trusts none
    plain = evidence.Classifier(nodes["ring"])
    assert plain.classify(proof.PROVEN_TAG, data) is None


def test_unreadable_key_is_logged_once_per_period(opts, caplog, monkeypatch):
    sealed = eventauth.seal(opts, TAG, DATA, now=NOW)
    path = pki_paths.event_key(opts)
    with open(path, "wb") as fh_:
        fh_.write(b"x" * 100)
    monkeypatch.setattr(eventauth, "_last_error", [float("-inf")])
    with caplog.at_level("ERROR", logger="saltext_edge.eventauth"):
        for _ in range(1000):  # a flood of forged events
            assert eventauth.verify(opts, TAG, sealed, now=NOW) is False
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and path in errors[0].getMessage()
    assert eventauth.verify({}, TAG, sealed) is False  # options without a pki_dir


# ---- alerts ----------------------------------------------------------------


def test_alert_posts_the_documented_body_for_sealed_events_only(opts):
    from saltext_edge import alerts

    calls = []

    def query(url, **kwargs):
        calls.append((url, kwargs))
        return {"status": 200}

    opts = dict(opts, edge={"alerts": {"url": "https://hook.example/x?token=s3cret"}})
    sealed = eventauth.seal(opts, TAG, DATA)
    ret = alerts.post(opts, json.dumps({"tag": TAG, "data": sealed}), query=query)
    assert ret == {"posted": True, "event": TAG, "status": 200}
    ((url, kwargs),) = calls
    assert url == "https://hook.example/x?token=s3cret" and kwargs["method"] == "POST"
    assert json.loads(kwargs["data"]) == {
        "event": TAG,
        "kind": "offline",
        "node": "n1",
        "site": "north",
        "last_seen": "2026-01-01T00:00:00Z",
        "reason": "missed 5 heartbeats",
        "offline": ["n1"],
        "master": None,
    }
    assert kwargs["header_dict"] == {"Content-Type": "application/json"}
    # forged or changed: nothing posted
    for tag, data in (
        (TAG, dict(sealed, reason="x")),
        ("edge/node/n2/offline", sealed),
        (TAG, DATA),
    ):
        ret = alerts.post(opts, {"tag": tag, "data": data}, query=query)
        assert ret["posted"] is False and ret["reason"] == "not sealed by this master"
    assert len(calls) == 1
    # no URL: nothing posted, said so
    ret = alerts.post(dict(opts, edge={}), {"tag": TAG, "data": sealed}, query=query)
    assert ret["reason"] == "edge:alerts:url is not set" and len(calls) == 1


def test_alert_failures_say_why_without_the_url(opts, caplog):
    from saltext_edge import alerts

    opts = dict(opts, edge={"alerts": {"url": "https://hook.example/s3cret", "timeout": 2}})
    event = {"tag": TAG, "data": eventauth.seal(opts, TAG, DATA)}
    with caplog.at_level("ERROR"):
        ret = alerts.post(opts, event, query=lambda url, **kw: {"status": 503})
        assert ret["posted"] is False and ret["reason"] == "the web hook answered HTTP 503"
        ret = alerts.post(opts, event, query=lambda url, **kw: {"error": "refused"})
        assert ret["reason"] == "the web hook was not reached"
    assert "s3cret" not in caplog.text + json.dumps(ret)
    for bad in ("not json", "[1]", {"tag": 1, "data": {}}, {"tag": TAG}):
        with pytest.raises(alerts.AlertError):
            alerts.post(opts, bad)
    for conf, word in (
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"url": "https://x", "timeout": 0}, "timeout"),
        ("https://x", "mapping"),
    ):
        with pytest.raises(alerts.AlertError, match=word):
            alerts.post(dict(opts, edge={"alerts": conf}), event)
