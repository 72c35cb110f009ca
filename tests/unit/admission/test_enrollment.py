"""
Enrollment keys: token maths against the published test vectors (written
here independently of the module) and the limit rules.
"""

import hashlib
import hmac

import pytest

from saltext_edge import enrollment as enr
from saltext_edge import enrollment_admin as enr_admin

SECRET = "k9V2pQ7xL3mN8rT1wY6zA4bC0dE5fG2h"
SITE = "sh-3"
ENR_ID = "0123456789abcdef"
DIGEST = "a" * 64
# docs/enrollment.rst publishes these
VECTOR_KEY = "3041935d9f7621f56c40c2cf60ea0c7b165f12e0480376a691a098de0348e94e"
VECTOR_TOKEN = (
    "v2:sh-3:0123456789abcdef:14cdc19e17a338b845e8a47f305d5091b6463219685d4c2b6514118ac86645b3"
)
NOW = 1_800_000_000.0


def _hmac(key, msg):
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()


def test_vectors_match_an_independent_computation():
    key = _hmac(SECRET, f"saltext-edge:v2:enroll:{SITE}:{ENR_ID}")
    mac = _hmac(key, f"saltext-edge:v2:token\nnode-1\n{DIGEST}")
    assert key == VECTOR_KEY
    assert f"v2:{SITE}:{ENR_ID}:{mac}" == VECTOR_TOKEN
    assert enr.enrollment_key(SECRET, SITE, ENR_ID) == VECTOR_KEY
    key_text = enr.format_key(SITE, ENR_ID, VECTOR_KEY)
    assert enr.make_token(key_text, "node-1", DIGEST) == VECTOR_TOKEN


def test_verify_binds_id_key_and_secret():
    assert enr.verify_token(VECTOR_TOKEN, ["x" * 32, SECRET], "node-1", DIGEST) == (SITE, ENR_ID, 1)
    for minion_id, digest, secrets in (
        ("node-2", DIGEST, [SECRET]),
        ("node-1", "b" * 64, [SECRET]),
        ("node-1", DIGEST, ["y" * 32]),
    ):
        with pytest.raises(enr.EnrollmentError) as err:
            enr.verify_token(VECTOR_TOKEN, secrets, minion_id, digest)
        assert err.value.reason == "bad_token"


def test_token_names_its_site_and_enrollment():
    # another site or enrollment id in the token changes the key it needs
    for forged in (
        VECTOR_TOKEN.replace("sh-3", "sh-4"),
        VECTOR_TOKEN.replace(ENR_ID, "fedcba9876543210"),
    ):
        with pytest.raises(enr.EnrollmentError) as err:
            enr.verify_token(forged, [SECRET], "node-1", DIGEST)
        assert err.value.reason == "bad_token"


@pytest.mark.parametrize(
    "token",
    [
        "v1:sh-3:" + "a" * 64,
        "v2:sh-3:0123:" + "a" * 64,
        "v2:sh 3:0123456789abcdef:" + "a" * 64,
        "v2:sh-3:0123456789ABCDEF:" + "a" * 64,
        "v2:sh-3:0123456789abcdef:" + "a" * 63,
        "v2:sh-3:0123456789abcdef:" + "a" * 64 + ":x",
        "v2:" + "s" * 5000,
        None,
    ],
)
def test_malformed_tokens(token):
    with pytest.raises(enr.EnrollmentError) as err:
        enr.parse_token(token)
    assert err.value.reason == "malformed_token"


def test_parse_key_never_echoes_the_key():
    bad = "edge-enroll:v2:sh-3:0123456789abcdef:" + "z" * 64
    with pytest.raises(enr.EnrollmentError) as err:
        enr.parse_key(bad)
    assert "z" * 16 not in str(err.value)
    assert enr.parse_key(" " + enr.format_key(SITE, ENR_ID, VECTOR_KEY) + "\n") == (
        SITE,
        ENR_ID,
        VECTOR_KEY,
    )


@pytest.mark.parametrize(
    "value,seconds",
    [
        (60, 60),
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86400),
        ("7d", 604800),
        ("2w", 1209600),
        ("15", 15),
    ],
)
def test_durations(value, seconds):
    assert enr.parse_duration(value) == seconds


@pytest.mark.parametrize("value", [0, -1, "0h", "1y", "h", "", True, "400d", "1.5h"])
def test_bad_durations(value):
    with pytest.raises(enr.EnrollmentError):
        enr.parse_duration(value)


def test_defaults_are_one_use_and_one_day():
    rec = enr.new_record(SITE, now=NOW)
    assert rec["uses"] == 1
    assert enr._from_iso(rec["expires_at"]) - NOW == 24 * 3600


@pytest.mark.parametrize(
    "kwargs",
    [
        {"uses": 0},
        {"uses": True},
        {"uses": "3"},
        {"note": "a\nb"},
        {"ids": ""},
        {"expires": "never"},
    ],
)
def test_bad_limits(kwargs):
    with pytest.raises(enr.EnrollmentError):
        enr.new_record(SITE, now=NOW, **kwargs)


def test_check_reasons_in_order():
    rec = enr.new_record(SITE, uses=1, expires="1h", ids="sh3-*", now=NOW)
    assert enr.check(None, "sh3-a", NOW) == "enrollment_unknown"
    assert enr.check(rec, "other", NOW) == "id_not_allowed"
    assert enr.check(rec, "sh3-a", NOW) is None
    assert enr.check(rec, "sh3-a", NOW + 3600) == "expired"
    used = dict(rec, used=1, admitted=["sh3-a"])
    assert enr.check(used, "sh3-b", NOW) == "exhausted"
    assert enr.check(used, "sh3-a", NOW) is None  # the node it admitted, again
    assert (
        enr.check(dict(rec, revoked_at="2027-01-01T00:00:00Z"), "sh3-a", NOW)
        == "enrollment_revoked"
    )


def test_store_counts_uses(tmp_path):
    store = enr.EnrollmentStore(str(tmp_path / "enr"))
    rec = enr.new_record(SITE, uses=2, expires="1h", now=NOW)
    store.put(rec)
    assert (tmp_path / "enr" / f"{rec['id']}.json").stat().st_mode & 0o777 == 0o600
    assert store.consume(rec["id"], "a", NOW) is None
    assert store.consume(rec["id"], "a", NOW) is None  # same node: no second use
    assert store.consume(rec["id"], "b", NOW) is None
    assert store.consume(rec["id"], "c", NOW) == "exhausted"
    got = store.get(rec["id"])
    assert got["used"] == 2 and got["admitted"] == ["a", "b"]
    assert enr.summary(got, NOW)["status"] == "exhausted"
    assert store.revoke(rec["id"], NOW)["revoked_at"]
    assert store.consume(rec["id"], "a", NOW) == "enrollment_revoked"
    assert store.consume("ffffffffffffffff", "a", NOW) == "enrollment_unknown"
    assert [r["id"] for r in store.all()] == [rec["id"]]


def test_readmission_needs_the_same_key(tmp_path):
    store = enr.EnrollmentStore(str(tmp_path / "enr"))
    rec = enr.new_record(SITE, uses=1, expires="1h", now=NOW)
    store.put(rec)
    assert store.consume(rec["id"], "a", NOW, pub_digest="1" * 64) is None
    # the node again with its own key (a crash between counting and
    # accepting): no new use; with another key: the enrollment is spent
    assert store.consume(rec["id"], "a", NOW, pub_digest="1" * 64) is None
    assert store.consume(rec["id"], "a", NOW, pub_digest="2" * 64) == "exhausted"
    assert store.get(rec["id"])["used"] == 1
    # a record that names the id without its key's digest (written before
    # digests were kept) re-admits no key for free
    legacy = dict(store.get(rec["id"]), digests={})
    assert enr.check(legacy, "a", NOW, pub_digest="1" * 64) == "exhausted"


def test_new_key_file_is_private_and_never_overwritten(tmp_path):
    path = str(tmp_path / "k")
    enr_admin.write_new_file(path, "edge-enroll:v2:x")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(enr_admin.KeyFileError):
        enr_admin.write_new_file(path, "other")
    with pytest.raises(enr_admin.KeyFileError):
        enr_admin.check_new_path("relative/path")
    assert (tmp_path / "k").read_text() == "edge-enroll:v2:x\n"


def test_creator_prefers_the_sudo_user():
    assert enr_admin.creator({"SUDO_USER": "alice", "USER": "root"}).startswith("alice@")
    assert enr_admin.creator({"USER": "bob"}).startswith("bob@")


# --------------------------------------------------------------------------
# the accept/refuse rule with v2 tokens (saltext_edge.admission.judge)
# --------------------------------------------------------------------------
def _judge_setup(tmp_path, **limits):
    from saltext_edge import admission

    store = enr.EnrollmentStore(str(tmp_path / "enr"))
    rec = enr.new_record(SITE, now=NOW, **limits)
    store.put(rec)
    key_text = enr.format_key(SITE, rec["id"], enr.enrollment_key(SECRET, SITE, rec["id"]))
    return admission, store, rec, key_text


def test_judge_v2_limits_and_admitted_by(tmp_path):
    admission, store, rec, key_text = _judge_setup(tmp_path, uses=1, expires="1h", ids="sh3-*")
    pol = admission.policy({})
    tok = enr.make_token(key_text, "sh3-a", DIGEST)
    verdict = admission.judge("sh3-a", DIGEST, tok, [SECRET], pol, enrollments=store, now=NOW)
    assert (verdict.decision, verdict.site, verdict.enrollment) == ("accepted", SITE, rec["id"])
    assert verdict.admitted_by == f"enrollment:{rec['id']}"
    other = enr.make_token(key_text, "edge-9", DIGEST)
    assert (
        admission.judge("edge-9", DIGEST, other, [SECRET], pol, enrollments=store, now=NOW).reason
        == "id_not_allowed"
    )
    assert (
        admission.judge(
            "sh3-a", DIGEST, tok, [SECRET], pol, enrollments=store, now=NOW + 3600
        ).reason
        == "expired"
    )
    assert (
        admission.judge("sh3-a", DIGEST, tok, [SECRET], pol, enrollments=None, now=NOW).reason
        == "enrollment_unknown"
    )
    assert store.consume(rec["id"], "sh3-a", NOW, DIGEST) is None
    tok_b = enr.make_token(key_text, "sh3-b", DIGEST)
    assert (
        admission.judge("sh3-b", DIGEST, tok_b, [SECRET], pol, enrollments=store, now=NOW).reason
        == "exhausted"
    )
    store.revoke(rec["id"], NOW)
    assert (
        admission.judge("sh3-b", DIGEST, tok_b, [SECRET], pol, enrollments=store, now=NOW).reason
        == "enrollment_revoked"
    )
    # a sniffed token for another id or key, or under another fleet secret
    assert (
        admission.judge("sh3-c", DIGEST, tok_b, [SECRET], pol, enrollments=store, now=NOW).reason
        == "bad_token"
    )
    assert (
        admission.judge("sh3-b", DIGEST, tok_b, ["z" * 40], pol, enrollments=store, now=NOW).reason
        == "bad_token"
    )


def test_judge_v2_keeps_the_site_rules_and_require_enrollment(tmp_path):
    from saltext_edge import tokens as v1

    admission, store, rec, key_text = _judge_setup(tmp_path, uses=5)
    tok = enr.make_token(key_text, "n-1", DIGEST)
    revoked = admission.policy({"edge": {"revoked_sites": [SITE]}})
    assert (
        admission.judge("n-1", DIGEST, tok, [SECRET], revoked, enrollments=store, now=NOW).reason
        == "revoked_site"
    )
    bound = {"id": "n-1", "site": "sh-9", "revoked": False}
    pol = admission.policy({})
    assert (
        admission.judge(
            "n-1", DIGEST, tok, [SECRET], pol, node=bound, enrollments=store, now=NOW
        ).reason
        == "site_mismatch"
    )
    claimed = admission.policy({"edge": {"site_ids": {"sh-9": ["n-*"]}}})
    assert (
        admission.judge("n-1", DIGEST, tok, [SECRET], claimed, enrollments=store, now=NOW).reason
        == "id_not_allowed"
    )
    strict = admission.policy({"edge": {"require_enrollment": True}})
    v1_tok = v1.make_token(v1.site_key(SECRET, SITE), SITE, "n-1", DIGEST)
    assert admission.judge("n-1", DIGEST, v1_tok, [SECRET], strict).reason == "enrollment_required"
    assert admission.judge("n-1", DIGEST, v1_tok, [SECRET], pol).decision == "accepted"
    assert (
        admission.judge("n-1", DIGEST, tok, [SECRET], strict, enrollments=store, now=NOW).decision
        == "accepted"
    )
    with pytest.raises(admission.AdmissionError):
        admission.policy({"edge": {"require_enrollment": "yes"}})
    # the refusal fingerprint changes with the policy, so refusals are re-decided
    from saltext_edge.admission.policy import fingerprint

    assert fingerprint(strict, [SECRET]) != fingerprint(pol, [SECRET])


def test_minion_reads_the_enrollment_key(tmp_path):
    from saltext_edge import shared_secret

    key_text = enr.format_key(SITE, ENR_ID, VECTOR_KEY)
    path = tmp_path / "edge.key"
    path.write_text(key_text + "\n")
    assert (
        shared_secret.minion_enrollment_key({"edge": {"enrollment_key_file": str(path)}})
        == key_text
    )
    assert (
        shared_secret.minion_enrollment_key({"edge": {"enrollment_key": key_text, "site": SITE}})
        == key_text
    )
    assert shared_secret.minion_enrollment_key({"edge": {"site": SITE}}) is None
    with pytest.raises(shared_secret.SecretError) as err:
        shared_secret.minion_enrollment_key({"edge": {"enrollment_key": key_text, "site": "sh-4"}})
    assert "sh-4" in str(err.value) and VECTOR_KEY not in str(err.value)
    with pytest.raises(shared_secret.SecretError) as err:
        shared_secret.minion_enrollment_key(
            {"edge": {"enrollment_key": "edge-enroll:v2:sh-3:zz:" + "q" * 64}}
        )
    assert "q" * 16 not in str(err.value)


def test_one_site_for_the_grain_and_the_heartbeat(tmp_path):
    """An enrolled node without edge:site: its heartbeat names the site its edge_site grain does."""
    from saltext_edge import shared_secret
    from saltext_edge.uplink import heartbeat

    key_text = enr.format_key(SITE, ENR_ID, VECTOR_KEY)
    enrolled = {"id": "n1", "cachedir": str(tmp_path), "edge": {"enrollment_key": key_text}}
    assert shared_secret.node_site(enrolled) == SITE
    assert heartbeat.payload(enrolled, {}, 1, "b:1", 60, 0.1)["site"] == SITE
    configured = dict(enrolled, edge={"site": "sh-9"})
    assert heartbeat.payload(configured, {}, 1, "b:1", 60, 0.1)["site"] == "sh-9"
    for edge in ({"site": "not a site"}, {}, {"enrollment_key": "junk"}):
        assert shared_secret.node_site(dict(enrolled, edge=edge)) is None


def test_release_gives_back_the_use_just_counted(tmp_path):
    store = enr.EnrollmentStore(str(tmp_path / "enr"))
    rec = enr.new_record(SITE, uses=1, expires="1h", now=NOW)
    store.put(rec)
    assert store.consume(rec["id"], "a", NOW, pub_digest="1" * 64) is None
    assert store.consume(rec["id"], "b", NOW) == "exhausted"
    assert store.release(rec["id"], "a") is True
    got = store.get(rec["id"])
    assert got["used"] == 0 and got["admitted"] == [] and "a" not in got.get("digests", {})
    assert store.consume(rec["id"], "b", NOW) is None  # the use is there again
    assert store.release(rec["id"], "a") is False  # nothing of a's to give back
    assert store.release("ffffffffffffffff", "b") is False
    assert store.get(rec["id"])["used"] == 1
