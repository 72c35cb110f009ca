"""Pure verification logic and policy parsing of saltext_edge.admission."""

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from saltext_edge import admission
from saltext_edge import tokens as token

SECRET = "unit-test-fleet-secret"
OLD = "unit-test-older-secret"


def _pub():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture(scope="module")
def pubs():
    return _pub(), _pub()


def _rec(mid, pub, secret=SECRET, site="sh-3", tok=None):
    digest = token.pubkey_digest(pub)
    if tok is None:
        tok = token.make_token(token.site_key(secret, site), site, mid, digest)
    return {"id": mid, "pub": pub, "pub_digest": digest, "token": tok}


POL = admission.policy({"edge": {"revoked_sites": ["dead"], "site_ids": {"sh-3": ["edge-*"]}}})


def test_accept(pubs):
    assert admission.verify("edge-1", pubs[0], _rec("edge-1", pubs[0]), [SECRET], POL) == (
        "accepted",
        None,
        "sh-3",
    )


def test_previous_secret(pubs):
    rec = _rec("edge-1", pubs[0], secret=OLD)
    assert admission.verify("edge-1", pubs[0], rec, [SECRET, OLD], POL)[0] == "accepted"
    assert admission.verify("edge-1", pubs[0], rec, [SECRET], POL)[1] == "bad_token"


def test_same_key_other_wrapping_is_not_a_change(pubs):
    rec = _rec("edge-1", pubs[0])
    rewrapped = "\n" + pubs[0].replace("\n", "\n") + "\n\n"
    assert admission.verify("edge-1", rewrapped, rec, [SECRET], POL)[0] == "accepted"


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
        rec = _rec(mid, pending, secret="some-stranger-secret")
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
    decision, got, _ = admission.verify(mid, pending, rec, [SECRET], POL)
    assert (decision, got) == ("refused", reason)


def test_no_token(pubs):
    assert admission.verify("edge-1", pubs[0], None, [SECRET], POL) == ("no_token", "no_token_seen", None)


@pytest.mark.parametrize(
    "edge",
    [
        {"on_invalid": "explode"},
        {"revoked_sites": {"a": 1}},
        {"site_ids": ["x"]},
        {"site_ids": {"s": [1]}},
    ],
)
def test_bad_policy_fails_closed(edge):
    with pytest.raises(admission.AdmissionError):
        admission.policy({"edge": edge})


def test_policy_defaults():
    pol = admission.policy({})
    assert pol["on_invalid"] == "keep" and pol["auto_admit"] is False


def test_auth_event_parsing():
    data = {"id": "m", "pub": "P", "act": "pend", "autosign_grains": {"edge_token": "T"}}
    assert admission.token_from_auth_event(data) == ("m", "P", "T", "pend")
    assert admission.token_from_auth_event({"id": "m"})[2] is None
    assert admission.token_from_auth_event("junk") == (None, None, None, None)


def test_grain_first_start_generates_salt_layout(tmp_path):
    """edge_token on a brand-new minion: creates the pair as Salt would and binds to it."""
    from saltext_edge.grains import edge_token as grain  # pylint: disable=import-outside-toplevel

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
        assert pem.read_text().startswith("-----BEGIN RSA PRIVATE")  # TraditionalOpenSSL, as Salt writes
        expected = token.make_token(k_site, "sh-3", "edge-new", token.pubkey_digest(pub.read_text()))
        assert ret == {"edge_token": expected}
        # second load: same key, same token, nothing rewritten
        mtime = os.stat(pem).st_mtime_ns
        assert grain.edge_token() == ret
        assert os.stat(pem).st_mtime_ns == mtime
        # unconfigured: absent, not an error
        grain.__opts__ = {"id": "x", "pki_dir": str(pki), "__role": "minion"}
        assert grain.edge_token() == {}
        # misconfigured: absent, never raises
        grain.__opts__ = {"id": "x", "pki_dir": str(pki), "__role": "minion",
                          "edge": {"site": "sh-3", "site_key": "nope"}}
        assert grain.edge_token() == {}
    finally:
        del grain.__opts__
