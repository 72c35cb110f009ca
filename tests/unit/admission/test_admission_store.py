"""
Admission storage and the ``wait`` listener against a real Salt cache
(localfs, in a temporary directory); only the event bus is faked.
"""

import pytest
import salt.cache
import salt.config
import salt.utils.event
from tests.support.keys import new_pub

from saltext_edge import admission, admitter
from saltext_edge import tokens as token
from saltext_edge.admission import stores

SECRET = "unit-fleet-9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f"


def _pending(opts, mid, pub):
    salt.cache.Cache(opts, driver=opts["keys.cache_driver"]).store(
        "keys", mid, {"pub": pub, "state": "pending"}
    )


def _tok(mid, pub, site="sh-3"):
    return token.make_token(token.site_key(SECRET, site), site, mid, token.pubkey_digest(pub))


def test_record_is_idempotent_and_listed(opts, pub):
    tok = _tok("edge-1", pub)
    first = admission.record(opts, "edge-1", pub, tok)
    assert first == {"id": "edge-1", "recorded": True, "changed": True, "reason": None}
    again = admission.record(opts, "edge-1", pub, tok)
    assert again["recorded"] and not again["changed"]
    # the reactor's entry point, manual mode: records, queues nothing; only
    # for the key the key store holds pending under the id
    assert admitter.submit(opts, "edge-1", pub, tok) == "not_pending"
    _pending(opts, "edge-1", pub)
    assert admitter.submit(opts, "edge-1", pub, tok) == "recorded"
    assert admitter._ADMITTER is None
    assert admitter.submit(opts, "edge-1", pub, None) == "no_token_seen"
    assert admitter.submit(opts, "a/b", pub, tok) == "bad_id"
    listed = admission.list_decisions(opts)
    assert listed["edge-1"]["decision"] == "recorded" and listed["edge-1"]["site"] == "sh-3"
    assert tok not in repr(listed) and tok not in repr(first)


@pytest.mark.parametrize(
    "mid,pubval,tok,reason",
    [
        ("a/b", None, "v1:x:" + "a" * 64, "bad_id"),
        ("ok", "garbage", "v1:x:" + "a" * 64, "bad_pub"),
        ("ok", None, None, "no_token_seen"),
        ("ok", None, 42, "no_token_seen"),
    ],
)
def test_record_rejects_bad_input(opts, pub, mid, pubval, tok, reason):
    ret = admission.record(opts, mid, pubval or pub, tok)
    assert ret["recorded"] is False and ret["reason"] == reason


def test_decisions_batches_and_compaction(opts):
    cache = stores.cache(opts)
    for i in range(admission.COMPACT_AFTER + 5):
        stores.store_decisions(
            cache,
            {
                f"m{i % 3}": {
                    "decision": "refused",
                    "reason": f"r{i}",
                    "site": None,
                    "time": float(i),
                }
            },
        )
    assert len(cache.list(admission.DECISIONS_BANK)) <= admission.COMPACT_AFTER + 1
    listed = admission.list_decisions(opts)
    last = admission.COMPACT_AFTER + 4
    assert listed[f"m{last % 3}"]["reason"] == f"r{last}"
    assert set(listed) == {"m0", "m1", "m2"}


class _FakeBus:
    def __init__(self, events):
        self.events = list(events)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

    def get_event(self, wait=None, tag=None, full=False):
        return self.events.pop(0) if self.events else None


def test_collect_auth_events(opts, pub, monkeypatch):
    good = _tok("edge-1", pub)
    events = [
        {
            "tag": "salt/auth",
            "data": {
                "act": "pend",
                "id": "edge-1",
                "pub": pub,
                "autosign_grains": {"edge_token": good},
            },
        },
        {
            "tag": "salt/auth",
            "data": {
                "act": "accept",
                "id": "edge-2",
                "pub": pub,
                "autosign_grains": {"edge_token": good},
            },
        },
        {
            "tag": "salt/auth",
            "data": {
                "act": "pend",
                "id": "other-3",
                "pub": pub,
                "autosign_grains": {"edge_token": good},
            },
        },
        {"tag": "salt/auth", "data": {"act": "pend", "id": "edge-4", "pub": pub}},
        {
            "tag": "salt/key",
            "data": {
                "act": "pend",
                "id": "edge-5",
                "pub": pub,
                "autosign_grains": {"edge_token": good},
            },
        },
    ]
    _pending(opts, "edge-1", pub)
    monkeypatch.setattr(salt.utils.event, "get_master_event", lambda *a, **k: _FakeBus(events))
    seen = admission.collect_auth_events(opts, 0.5, match="edge-*")
    assert set(seen) == {"edge-1"}
    assert seen["edge-1"]["token"] == good


def test_denied_event_needs_a_token_for_the_presented_key(opts, pub):
    """A ``denied`` sign-in is recorded only with a token valid for the key it presented."""
    other = new_pub()
    replayed = _tok("edge-2", pub)  # valid for pub, presented with another key
    assert admitter.submit(opts, "edge-2", other, replayed, act="denied") == "unproven"
    assert "edge-2" not in admission.list_decisions(opts)
    assert admitter.submit(opts, "edge-2", pub, "v1:sh-3:" + "0" * 64, act="denied") == "unproven"
    # its own token for its own key: recorded (manual mode: nothing queued)
    assert admitter.submit(opts, "edge-2", pub, replayed, act="denied") == "recorded"
    assert admission.list_decisions(opts)["edge-2"]["decision"] == "recorded"
    assert admitter.submit(opts, "edge-2", pub, replayed, act="reject") == "ignored"
    assert admitter._ADMITTER is None


def test_token_store_is_bounded(opts, pub):
    """Old records go after 7 days, then the oldest beyond the limit."""
    from saltext_edge.admission import stores

    cache = stores.cache(opts)
    digest = token.pubkey_digest(pub)
    for i in range(30):
        stores.store_record(opts, cache, f"m-{i}", pub, digest, "v1:sh-3:" + "0" * 64, "test")
    stale = dict(cache.fetch(stores.TOKENS_BANK, stores.rec_key("m-0")), time=1.0)
    cache.store(stores.TOKENS_BANK, stores.rec_key("m-0"), stale)
    dropped = stores.prune_records(cache, limit=20)
    assert dropped == 10
    left = {cache.fetch(stores.TOKENS_BANK, k)["id"] for k in cache.list(stores.TOKENS_BANK)}
    assert len(left) == 20 and "m-0" not in left and "m-29" in left


def test_decision_store_is_bounded(opts):
    from saltext_edge.admission import stores

    cache = stores.cache(opts)
    for i in range(5):
        stores.store_decisions(
            cache,
            {
                f"d{i}-{j}": {
                    "decision": "refused",
                    "reason": "bad_token",
                    "site": None,
                    "time": float(i * 10 + j),
                }
                for j in range(10)
            },
        )
    stores._compact(cache, limit=15)
    _, merged = stores.merged_decisions(cache)
    assert len(merged) == 15 and "d4-9" in merged and "d0-0" not in merged


def test_pub_bound_and_id_bound(opts, pub):
    assert (
        admission.record(opts, "edge-9", "# pad\n" * 2000 + pub, "v1:sh-3:" + "0" * 64)["reason"]
        == "bad_pub"
    )
    assert (
        admission.record(opts, "edge\nINJECTED", pub, "v1:sh-3:" + "0" * 64)["reason"] == "bad_id"
    )
    assert admission.record(opts, "x" * 256, pub, "v1:sh-3:" + "0" * 64)["reason"] == "bad_id"


def test_sign_in_settings_reused_but_every_change_seen_at_once(opts, pub, tmp_path, monkeypatch):
    """The policy and secrets a sign-in reads are reused only while nothing they come from changed."""
    from saltext_edge.admission import signin
    from saltext_edge.shared_secret import SecretError

    monkeypatch.delenv("SALT_SHARED_SECRET", raising=False)
    first = signin.settings(opts)
    assert signin.settings(opts) is first  # reused: same opts, same edge options
    # an edge option changed in place: refused at the very next sign-in
    opts["edge"]["revoked_sites"] = ["sh-3"]
    pol, _ = signin.settings(opts)
    assert pol["revoked_sites"] == frozenset({"sh-3"})
    # a secret file rewritten (rotation): the new secret at once
    path = tmp_path / "secret"
    path.write_text("file-fleet-3e9a7c1f5b2d8e4a6c0f9b3d7e1a5c8f2b6d0e4a\n")
    path.chmod(0o600)
    opts["edge"] = {"shared_secret_file": str(path)}
    _, secrets = signin.settings(opts)
    path.write_text("file-fleet-8b1d5f9a3c7e2b6d0a4f8c1e5b9d3a7f2c6e0b4d8\n")
    _, rotated = signin.settings(opts)
    assert rotated != secrets and len(rotated) == 1
    # a secret that became unusable fails at once, and the failure is not reused
    path.write_text("short\n")
    for _ in range(2):
        with pytest.raises(SecretError):
            signin.settings(opts)
    # another opts object is never served from the memo
    other = dict(opts, edge={"shared_secret": SECRET, "auto_admit": True})
    assert signin.settings(other)[0]["auto_admit"] is True


def test_revoke_bars_the_key_and_unrevoke_names_the_next_one(opts, pub):
    """
    ``revoke_node`` bars the key it removes for the id; once lifted, that key
    is refused whatever path it takes (``pend``, ``denied``), and the return
    names the key pending now that a valid token admits.
    """
    other = new_pub()
    _pending(opts, "edge-r", pub)
    assert admission.record(opts, "edge-r", pub, _tok("edge-r", pub))["recorded"]
    ret = admission.revoke_node(opts, "edge-r")
    assert ret["key_removed"] == "pending"
    assert ret["revoked_keys"] == [token.pubkey_digest(pub)]
    _pending(opts, "edge-r", other)
    ret = admission.revoke_node(opts, "edge-r", revoked=False)
    assert ret["revoked_keys"] == [token.pubkey_digest(pub)]
    assert ret["will_admit"]["sha256"] == token.pubkey_digest(other)
    # the barred key with its valid token: not recorded, not claimed
    assert admitter.submit(opts, "edge-r", pub, _tok("edge-r", pub), act="denied") == "unproven"
    keys = salt.cache.Cache(opts, driver=opts["keys.cache_driver"])
    assert keys.fetch("keys", "edge-r")["pub"] == other
    auto = dict(opts, edge=dict(opts["edge"], auto_admit=True))
    res = admission.decide_and_act(auto, ids=["edge-r"])
    assert res["edge-r"]["decision"] == "no_token"
    # the key pending now, with its own token: admitted
    assert admission.record(opts, "edge-r", other, _tok("edge-r", other))["recorded"]
    assert admission.decide_and_act(auto, ids=["edge-r"])["edge-r"]["decision"] == "accepted"
    assert admission.node_index(opts)["edge-r"]["revoked_keys"] == [token.pubkey_digest(pub)]
    # the stolen key, pending again after a fresh revocation cycle: refused
    admission.revoke_node(opts, "edge-r")
    admission.revoke_node(opts, "edge-r", revoked=False)
    _pending(opts, "edge-r", pub)
    assert admission.record(opts, "edge-r", pub, _tok("edge-r", pub))["recorded"]
    res = admission.decide_and_act(auto, ids=["edge-r"])["edge-r"]
    assert (res["decision"], res["reason"]) == ("refused", "revoked_key")


def test_a_recorded_token_keeps_its_site_whatever_its_version(opts, pub):
    """One parser for v1 and v2 (tokens.parse): a recorded v2 token is listed with its site."""
    from saltext_edge import enrollment as enr

    key_text = enr.format_key(
        "sh-4", "0123456789abcdef", enr.enrollment_key(SECRET, "sh-4", "0123456789abcdef")
    )
    tokens = {
        "edge-v1": _tok("edge-v1", pub),
        "edge-v2": enr.make_token(key_text, "edge-v2", token.pubkey_digest(pub)),
    }
    for mid, tok in tokens.items():
        _pending(opts, mid, pub)
        outcome = admission.sign_in(opts, mid, pub, tok, source="wheel")
        assert outcome.rec is not None, outcome.status
    listed = admission.list_decisions(opts)
    assert {mid: listed[mid]["site"] for mid in tokens} == {"edge-v1": "sh-3", "edge-v2": "sh-4"}
    assert listed["edge-v2"]["decision"] == "recorded"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("v1:sh-3:" + "a" * 64, ("v1", "sh-3", None, "a" * 64)),
        ("v2:sh-3:0123456789abcdef:" + "b" * 64, ("v2", "sh-3", "0123456789abcdef", "b" * 64)),
    ],
)
def test_one_parser_for_every_token_version(text, parsed):
    assert token.parse(text) == parsed
    for bad in (text + ":x", text.replace("sh-3", "sh 3"), "v3" + text[2:], text[:-1]):
        with pytest.raises(token.TokenError) as err:
            token.parse(bad)
        assert err.value.reason == "malformed_token" and bad not in str(err.value)
