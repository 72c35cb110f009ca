"""
Hostile tokens against the token maths and the admission verdict (pure logic:
no daemon needed). The real-daemon counterparts live in test_admission_daemons.py.

* property-based: ``parse_token`` / ``verify_token`` never raise anything but
  ``TokenError`` and never accept a string that was not made with the secret;
* a catalogue of malformed tokens (wrong version, bad site, non-string grain
  values, empty, 1 MB, unicode) gets ``malformed_token`` (or ``no_token``);
* well-formed tokens used out of place: another id, another key, a revoked
  site, a rotated-out secret, an id outside the site's globs.
"""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saltext_edge import admission
from saltext_edge import tokens as tk
from saltext_edge.admission.rule import verdict_for_record

from .conftest import (
    PREVIOUS,
    REVOKED_SITE,
    ROTATED_OUT,
    SECRET,
    SITE,
    make_token,
    site_key,
    spki_digest,
)

SECRETS = [SECRET, PREVIOUS]
HEX = "0123456789abcdef"


@pytest.fixture(scope="module")
def keys(key_pool):
    return key_pool[0], key_pool[1]


@pytest.fixture(scope="module")
def pol():
    return admission.policy(
        {"edge": {"revoked_sites": [REVOKED_SITE], "site_ids": {"locked": ["lk-*"]}}}
    )


def _rec(minion_id, pub, token):
    return {"id": minion_id, "pub": pub, "pub_digest": tk.pubkey_digest(pub), "token": token}


# --------------------------------------------------------------------------
# property-based fuzzing
# --------------------------------------------------------------------------
_token_like = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda v, s, m: f"{v}:{s}:{m}",
        st.sampled_from(["v1", "v2", "V1", "v0", "", "v1 "]),
        st.text(alphabet=string.ascii_letters + string.digits + "._-:/ é\n", max_size=70),
        st.text(alphabet=HEX + "ABCDEFxyz:\n ", max_size=70),
    ),
    st.builds(
        lambda s, m: f"v1:{s}:{m}",
        st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z"),
        st.text(alphabet=HEX, min_size=64, max_size=64),
    ),
)
_any_value = st.one_of(
    _token_like,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=200),
    st.lists(st.text(max_size=20), max_size=4),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_any_value)
def test_parse_token_fuzz_only_tokenerror(value):
    try:
        site, mac = tk.parse_token(value)
    except tk.TokenError as exc:
        assert exc.reason in ("malformed_token", "bad_site")
        # the message never echoes the input
        if isinstance(value, str) and len(value) >= 8:
            assert value not in str(exc)
        return
    # whatever parses is exactly the documented shape
    assert isinstance(value, str)
    assert value == f"v1:{site}:{mac}"
    assert tk.SITE_RE.match(site) and len(mac) == 64 and set(mac) <= set(HEX)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_any_value, minion_id=st.text(min_size=1, max_size=40))
def test_verify_token_fuzz_never_accepts(value, minion_id):
    digest = "ab" * 32
    with pytest.raises(tk.TokenError) as err:
        tk.verify_token(value, SECRETS, minion_id, digest)
    assert err.value.reason in ("malformed_token", "bad_token", "bad_site")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_any_value, minion_id=st.text(min_size=1, max_size=40))
def test_admission_verify_fuzz_never_accepts(value, minion_id, keys, pol):
    """The library verdict the runner and reactor use: never raises, never accepts."""
    pub = keys[0][1]
    rec = {"id": minion_id, "pub": pub, "pub_digest": spki_digest(pub), "token": value}
    decision, reason, _site = verdict_for_record(minion_id, pub, rec, SECRETS, pol)[:3]
    assert decision in ("refused", "no_token")
    assert reason in admission.REFUSAL_REASONS + ("no_token_seen",)


@settings(max_examples=200, deadline=None)
@given(flip=st.integers(min_value=0, max_value=63), char=st.sampled_from(HEX))
def test_one_hex_digit_changed_is_refused(flip, char, keys):
    pub = keys[0][1]
    good = make_token(SECRET, SITE, "edge-1", pub)
    mac = good.rsplit(":", 1)[1]
    if mac[flip] == char:
        return
    bad = good[:-64] + mac[:flip] + char + mac[flip + 1 :]
    with pytest.raises(tk.TokenError) as err:
        tk.verify_token(bad, SECRETS, "edge-1", spki_digest(pub))
    assert err.value.reason == "bad_token"


# --------------------------------------------------------------------------
# catalogue of malformed grain values
# --------------------------------------------------------------------------
def _malformed(pub):
    good = make_token(SECRET, SITE, "edge-1", pub)
    mac = good.rsplit(":", 1)[1]
    return {
        "wrong version v2": "v2:" + good[3:],
        "wrong version V1": "V1:" + good[3:],
        "no version": good[3:],
        "site empty": f"v1::{mac}",
        "site 65 chars": f"v1:{'a' * 65}:{mac}",
        "site with slash": f"v1:../etc:{mac}",
        "site with space": f"v1:sh 3:{mac}",
        "site unicode": f"v1:sité:{mac}",
        "mac upper-case": f"v1:{SITE}:{mac.upper()}",
        "mac short": f"v1:{SITE}:{mac[:-1]}",
        "mac unicode digits": f"v1:{SITE}:{'٣' * 64}",
        "extra field": good + ":x",
        "trailing newline": good + "\n",
        "leading space": " " + good,
        "1 MB": "v1:" + SITE + ":" + "a" * (1024 * 1024),
        "1 MB of colons": ":" * (1024 * 1024),
        "NUL inside": good[:10] + "\0" + good[11:],
        "emoji": "v1:🔥:" + mac,
    }


MALFORMED_LABELS = [
    "wrong version v2",
    "wrong version V1",
    "no version",
    "site empty",
    "site 65 chars",
    "site with slash",
    "site with space",
    "site unicode",
    "mac upper-case",
    "mac short",
    "mac unicode digits",
    "extra field",
    "trailing newline",
    "leading space",
    "1 MB",
    "1 MB of colons",
    "NUL inside",
    "emoji",
]


@pytest.mark.parametrize("label", MALFORMED_LABELS)
def test_malformed_token_refused(label, keys, pol):
    pub = keys[0][1]
    value = _malformed(pub)[label]
    with pytest.raises(tk.TokenError) as err:
        tk.parse_token(value)
    assert err.value.reason == "malformed_token"
    assert value not in str(err.value)
    decision, reason, _ = verdict_for_record(
        "edge-1", pub, _rec("edge-1", pub, value), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "malformed_token")


@pytest.mark.parametrize(
    "value",
    [None, "", ["v1:sh-3:" + "a" * 64], {"token": "x"}, 12345, 1.5, True, b"v1:sh-3:" + b"a" * 64],
    ids=["null", "empty", "list", "dict", "int", "float", "bool", "bytes"],
)
def test_non_string_grain_values(value, keys, pol):
    """Grain values are YAML: anything can arrive. Refused or no_token, never a crash."""
    pub = keys[0][1]
    with pytest.raises(tk.TokenError):
        tk.parse_token(value)
    rec = {"id": "edge-1", "pub": pub, "pub_digest": spki_digest(pub), "token": value}
    decision, reason, _ = verdict_for_record("edge-1", pub, rec, SECRETS, pol)[:3]
    assert decision in ("refused", "no_token")
    if decision == "refused":
        assert reason == "malformed_token"


def test_record_bounds_a_huge_token(tmp_path, keys):
    """A 1 MB grain is not stored as 1 MB (the cache holds a bounded marker)."""
    opts = _local_opts(tmp_path)
    pub = keys[0][1]
    huge = "v1:" + SITE + ":" + "f" * (1024 * 1024)
    ret = admission.record(opts, "edge-1", pub, huge)
    assert "token" not in ret and huge not in repr(ret)
    size = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert size < 64 * 1024, f"{size} bytes stored for a 1 MB token"


# --------------------------------------------------------------------------
# well-formed tokens out of place
# --------------------------------------------------------------------------
def test_valid_token_for_another_id(keys, pol):
    pub = keys[0][1]
    tok = make_token(SECRET, SITE, "edge-1", pub)
    assert (
        verdict_for_record("edge-1", pub, _rec("edge-1", pub, tok), SECRETS, pol).decision
        == "accepted"
    )
    decision, reason, site = verdict_for_record(
        "edge-2", pub, _rec("edge-2", pub, tok), SECRETS, pol
    )[:3]
    assert (decision, reason, site) == ("refused", "bad_token", SITE)


def test_valid_token_for_another_key(keys, pol):
    (_, pub_a), (_, pub_b) = keys
    tok_a = make_token(SECRET, SITE, "edge-1", pub_a)
    # replayed with the attacker's own key: the record says key B, token for key A
    decision, reason, _ = verdict_for_record(
        "edge-1", pub_b, _rec("edge-1", pub_b, tok_a), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "bad_token")
    # recorded for key A, but key B is what is pending now
    decision, reason, _ = verdict_for_record(
        "edge-1", pub_b, _rec("edge-1", pub_a, tok_a), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "key_changed")


def test_same_key_other_pem_wrapping_is_not_key_changed(keys, pol):
    pub = keys[0][1]
    tok = make_token(SECRET, SITE, "edge-1", pub)
    body = "".join(pub.strip().splitlines()[1:-1])
    rewrapped = (
        "-----BEGIN PUBLIC KEY-----\n"
        + "\n".join(body[i : i + 76] for i in range(0, len(body), 76))
        + "\n-----END PUBLIC KEY-----\n"
    )
    assert rewrapped.strip() != pub.strip()
    decision, _, _ = verdict_for_record(
        "edge-1", rewrapped, _rec("edge-1", pub, tok), SECRETS, pol
    )[:3]
    assert decision == "accepted"


def test_revoked_site(keys, pol):
    pub = keys[0][1]
    tok = make_token(SECRET, REVOKED_SITE, "edge-1", pub)
    decision, reason, site = verdict_for_record(
        "edge-1", pub, _rec("edge-1", pub, tok), SECRETS, pol
    )[:3]
    assert (decision, reason, site) == ("refused", "revoked_site", REVOKED_SITE)


def test_rotation(keys, pol):
    pub = keys[0][1]
    prev = make_token(PREVIOUS, SITE, "edge-1", pub)
    assert (
        verdict_for_record("edge-1", pub, _rec("edge-1", pub, prev), SECRETS, pol).decision
        == "accepted"
    )
    old = make_token(ROTATED_OUT, SITE, "edge-1", pub)
    decision, reason, _ = verdict_for_record("edge-1", pub, _rec("edge-1", pub, old), SECRETS, pol)[
        :3
    ]
    assert (decision, reason) == ("refused", "bad_token")
    # once the previous secret is dropped, its tokens stop working too
    decision, reason, _ = verdict_for_record(
        "edge-1", pub, _rec("edge-1", pub, prev), [SECRET], pol
    )[:3]
    assert (decision, reason) == ("refused", "bad_token")


def test_site_key_of_one_site_cannot_mint_for_another(keys, pol):
    pub = keys[0][1]
    forged = make_token(None, "other-site", "edge-1", pub, k_site=site_key(SECRET, SITE))
    decision, reason, _ = verdict_for_record(
        "edge-1", pub, _rec("edge-1", pub, forged), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "bad_token")


def test_id_not_allowed_for_site(keys, pol):
    pub = keys[0][1]
    tok = make_token(SECRET, "locked", "intruder-1", pub)
    decision, reason, _ = verdict_for_record(
        "intruder-1", pub, _rec("intruder-1", pub, tok), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "id_not_allowed")
    tok = make_token(SECRET, "locked", "lk-7", pub)
    assert (
        verdict_for_record("lk-7", pub, _rec("lk-7", pub, tok), SECRETS, pol).decision == "accepted"
    )
    # the ids "locked" claims are its own: another site's valid token is refused for them
    tok = make_token(SECRET, SITE, "lk-8", pub)
    decision, reason, _ = verdict_for_record("lk-8", pub, _rec("lk-8", pub, tok), SECRETS, pol)[:3]
    assert (decision, reason) == ("refused", "id_not_allowed")


def test_secret_as_site_key_mac_is_refused(keys, pol):
    """A token MAC'd with S directly (a node given S that skipped the site-key step)."""
    pub = keys[0][1]
    forged = make_token(None, SITE, "edge-1", pub, k_site=SECRET)
    decision, reason, _ = verdict_for_record(
        "edge-1", pub, _rec("edge-1", pub, forged), SECRETS, pol
    )[:3]
    assert (decision, reason) == ("refused", "bad_token")


def _local_opts(tmp_path):
    import salt.config

    opts = salt.config.master_config(None)
    opts.update(
        {
            "cachedir": str(tmp_path / "cache"),
            "pki_dir": str(tmp_path / "pki"),
            "sock_dir": str(tmp_path / "sock"),
        }
    )
    return opts
