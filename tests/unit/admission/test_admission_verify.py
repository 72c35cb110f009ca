"""Pure verification logic and policy parsing of saltext_edge.admission."""

import os
import stat

import pytest
from tests.support.keys import new_pub

from saltext_edge import admission
from saltext_edge import tokens as token
from saltext_edge.admission.rule import verdict_for_record

SECRET = "unit-fleet-9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f"
OLD = "unit-older-c7E2kQ9xW4pL8mZ3vN6bR1tY5uH0jG7fD2sA"


@pytest.fixture(scope="module")
def pubs():
    return new_pub(), new_pub()


def _rec(mid, pub, secret=SECRET, site="sh-3", tok=None):
    digest = token.pubkey_digest(pub)
    if tok is None:
        tok = token.make_token(token.site_key(secret, site), site, mid, digest)
    return {"id": mid, "pub": pub, "pub_digest": digest, "token": tok}


POL = admission.policy({"edge": {"revoked_sites": ["dead"], "site_ids": {"sh-3": ["edge-*"]}}})


def test_accept(pubs):
    assert verdict_for_record("edge-1", pubs[0], _rec("edge-1", pubs[0]), [SECRET], POL)[:3] == (
        "accepted",
        None,
        "sh-3",
    )


def test_previous_secret(pubs):
    rec = _rec("edge-1", pubs[0], secret=OLD)
    assert verdict_for_record("edge-1", pubs[0], rec, [SECRET, OLD], POL).decision == "accepted"
    assert verdict_for_record("edge-1", pubs[0], rec, [SECRET], POL).reason == "bad_token"


def _rewrap(pem, width):
    lines = pem.strip().splitlines()
    body = "".join(lines[1:-1])
    return "\n".join(
        [lines[0]] + [body[i : i + width] for i in range(0, len(body), width)] + [lines[-1]]
    )


def test_same_key_other_wrapping_is_not_a_change(pubs):
    """The same key wrapped at 76 columns (not byte-identical) is the same key: accepted."""
    rec = _rec("edge-1", pubs[0])
    rewrapped = _rewrap(pubs[0], 76)
    assert rewrapped.strip() != pubs[0].strip()  # the digest branch is the one exercised
    assert verdict_for_record("edge-1", rewrapped, rec, [SECRET], POL).decision == "accepted"
    # another key in the same wrapping is still a change
    assert (
        verdict_for_record("edge-1", _rewrap(pubs[1], 76), rec, [SECRET], POL).reason
        == "key_changed"
    )


@pytest.mark.parametrize(
    "case,reason",
    [
        ("key_changed", "key_changed"),
        ("wrong_secret", "bad_token"),
        ("other_id", "bad_token"),
        ("revoked", "revoked_site"),
        ("id_glob", "id_not_allowed"),
        ("malformed", "malformed_token"),
    ],
)
def test_refusals(pubs, case, reason):
    mid, pending = "edge-1", pubs[0]
    if case == "key_changed":
        rec = _rec(mid, pubs[0])
        pending = pubs[1]
    elif case == "wrong_secret":
        rec = _rec(mid, pending, secret="stranger-4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d")
    elif case == "other_id":
        rec = _rec("edge-2", pending)
        rec["id"] = mid
    elif case == "revoked":
        rec = _rec(mid, pending, site="dead")
    elif case == "id_glob":
        mid = "intruder-1"
        rec = _rec(mid, pending)
    else:
        rec = _rec(mid, pending, tok="v1:sh-3:nothex")
    decision, got, _ = verdict_for_record(mid, pending, rec, [SECRET], POL)[:3]
    assert (decision, got) == ("refused", reason)


def test_no_token(pubs):
    assert verdict_for_record("edge-1", pubs[0], None, [SECRET], POL)[:3] == (
        "no_token",
        "no_token_seen",
        None,
    )


@pytest.mark.parametrize(
    "edge",
    [
        {"on_invalid": "explode"},
        {"revoked_sites": {"a": 1}},
        {"site_ids": ["x"]},
        {"site_ids": {"s": [1]}},
        # YAML reads unquoted no / 0042 / 1.10 / on as bool, int, float
        {"revoked_sites": [False]},
        {"revoked_sites": [42]},
        {"revoked_sites": [1.1]},
        {"revoked_sites": "sh-3"},
        {"site_ids": {True: ["edge-*"]}},
        {"site_ids": {"sh-3": "edge-*"}},
        {"auto_admit": "yes"},
        {"bind_ids": 1},
        {"on_invalid": None},
        {"lock_timeout": True},
    ],
)
def test_bad_policy_fails_closed(edge):
    with pytest.raises(admission.AdmissionError):
        admission.policy({"edge": edge})


def test_policy_defaults():
    pol = admission.policy({})
    assert pol["on_invalid"] == "keep" and pol["auto_admit"] is False and pol["bind_ids"] is True


def test_bad_policy_says_why():
    with pytest.raises(admission.AdmissionError) as err:
        admission.policy({"edge": {"revoked_sites": [False, "sh-3"]}})
    assert (
        "edge:revoked_sites" in str(err.value)
        and "bool" in str(err.value)
        and "quote" in str(err.value)
    )


def test_ids_bound_to_sites(pubs):
    """With site_ids for sh-3 only, another site's valid token cannot take an id sh-3 claims."""
    pol = admission.policy({"edge": {"site_ids": {"sh-3": ["edge-*"]}}})
    assert (
        verdict_for_record(
            "edge-1", pubs[0], _rec("edge-1", pubs[0], site="sh-9"), [SECRET], pol
        ).reason
        == "id_not_allowed"
    )
    assert (
        verdict_for_record(
            "other-1", pubs[0], _rec("other-1", pubs[0], site="sh-9"), [SECRET], pol
        )[:3][0]
        == "accepted"
    )
    loose = admission.policy({"edge": {"site_ids": {"sh-3": ["edge-*"]}, "bind_ids": False}})
    assert (
        verdict_for_record(
            "edge-1", pubs[0], _rec("edge-1", pubs[0], site="sh-9"), [SECRET], loose
        )[:3][0]
        == "accepted"
    )
    # an id admitted for sh-9 before is bound to it
    node = {"id": "other-1", "site": "sh-9", "revoked": False}
    rec = _rec("other-1", pubs[0], site="sh-8")
    assert (
        verdict_for_record("other-1", pubs[0], rec, [SECRET], pol, node=node).reason
        == "site_mismatch"
    )
    assert (
        verdict_for_record(
            "other-1", pubs[0], rec, [SECRET], pol, node=dict(node, revoked=True)
        ).reason
        == "revoked_node"
    )


def test_auth_event_parsing():
    data = {"id": "m", "pub": "P", "act": "pend", "autosign_grains": {"edge_token": "T"}}
    assert admission.token_from_auth_event(data) == ("m", "P", "T", "pend")
    assert admission.token_from_auth_event({"id": "m"})[2] is None
    assert admission.token_from_auth_event("junk") == (None, None, None, None)


def test_grain_first_start_generates_salt_layout(tmp_path):
    """edge_token on a brand-new minion: creates the pair as Salt would and binds to it."""
    from saltext_edge.grains import edge_token as grain

    pki = tmp_path / "pki"
    k_site = token.site_key(SECRET, "sh-3")
    grain.__opts__ = {
        "id": "edge-new",
        "pki_dir": str(pki),
        "keysize": 2048,
        "__role": "minion",
        "edge": {"site": "sh-3", "site_key": k_site},
    }
    try:
        ret = grain.edge_token()
        pem, pub = pki / "minion.pem", pki / "minion.pub"
        assert stat.S_IMODE(os.stat(pem).st_mode) == 0o400
        assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
        assert pem.read_text().startswith(
            "-----BEGIN RSA PRIVATE"
        )  # TraditionalOpenSSL, as Salt writes
        expected = token.make_token(
            k_site, "sh-3", "edge-new", token.pubkey_digest(pub.read_text())
        )
        assert ret == {"edge_token": expected}
        # second load: same key, same token, nothing rewritten
        mtime = os.stat(pem).st_mtime_ns
        assert grain.edge_token() == ret
        assert os.stat(pem).st_mtime_ns == mtime
        # unconfigured: absent, not an error
        grain.__opts__ = {"id": "x", "pki_dir": str(pki), "__role": "minion"}
        assert grain.edge_token() == {}
        # misconfigured: absent, never raises
        grain.__opts__ = {
            "id": "x",
            "pki_dir": str(pki),
            "__role": "minion",
            "edge": {"site": "sh-3", "site_key": "nope"},
        }
        assert grain.edge_token() == {}
    finally:
        del grain.__opts__


def test_revoked_key_is_refused_for_its_id_only(pubs):
    """A key revoked for an id stays barred once the id is no longer revoked; another key is not."""
    stolen, rebuilt = pubs
    node = {
        "id": "edge-1",
        "site": "sh-3",
        "revoked": False,
        "revoked_keys": [token.pubkey_digest(stolen)],
    }
    assert verdict_for_record("edge-1", stolen, _rec("edge-1", stolen), [SECRET], POL, node=node)[
        :3
    ] == (
        "refused",
        "revoked_key",
        "sh-3",
    )
    assert (
        verdict_for_record(
            "edge-1", rebuilt, _rec("edge-1", rebuilt), [SECRET], POL, node=node
        ).decision
        == "accepted"
    )
    # a token that does not verify is refused for that first
    bad = _rec("edge-1", stolen, tok="v1:sh-3:" + "0" * 64)
    assert verdict_for_record("edge-1", stolen, bad, [SECRET], POL, node=node).reason == "bad_token"
