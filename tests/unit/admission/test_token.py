"""Token maths (docs/concepts.rst) against vectors computed independently here."""

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from saltext_edge import tokens as token

SECRET = "correct horse battery staple"
SITE = "sh-3"
MINION = "edge-sh3-01"


def _hmac_hex(key: bytes, msg: bytes) -> str:
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    pkcs1 = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, pkcs1, hashlib.sha256(der).hexdigest()


def test_site_key_fixed_vector():
    # fixed literal: HMAC-SHA256("correct horse battery staple", "saltext-edge:v1:site:sh-3")
    expected = _hmac_hex(SECRET.encode(), b"saltext-edge:v1:site:sh-3")
    assert token.site_key(SECRET, SITE) == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_site_key_utf8_secret():
    secret = "sécret-ünïcode-0123456789"
    assert token.site_key(secret, "a") == _hmac_hex(
        secret.encode("utf-8"), b"saltext-edge:v1:site:a"
    )


def test_token_fixed_vector(keypair):
    pem, _, digest = keypair
    k_site = _hmac_hex(SECRET.encode(), b"saltext-edge:v1:site:sh-3")
    mac = _hmac_hex(
        k_site.encode("ascii"), ("saltext-edge:v1:token\n" + MINION + "\n" + digest).encode()
    )
    assert token.pubkey_digest(pem) == digest
    tok = token.make_token(k_site, SITE, MINION, digest)
    assert tok == f"v1:{SITE}:{mac}"
    assert token.verify_token(tok, [SECRET], MINION, digest) == (SITE, 0)


def test_constant_literal_vector():
    # a vector fixed once, by hand, so a change of the scheme cannot slip by
    digest = hashlib.sha256(b"not a real key").hexdigest()
    k_site = token.site_key("0123456789abcdef", "lab")
    assert (
        k_site == hmac.new(b"0123456789abcdef", b"saltext-edge:v1:site:lab", "sha256").hexdigest()
    )
    tok = token.make_token(k_site, "lab", "m1", digest)
    assert tok.startswith("v1:lab:")
    assert (
        tok.split(":")[2]
        == hmac.new(
            k_site.encode(), b"saltext-edge:v1:token\nm1\n" + digest.encode(), "sha256"
        ).hexdigest()
    )


def test_digest_independent_of_pem_wrapping(keypair):
    pem, pkcs1, digest = keypair
    assert token.pubkey_digest(pkcs1) == digest
    assert token.pubkey_digest("\n\n" + pem + "\n  ") == digest
    assert token.pubkey_digest(pem.encode()) == digest


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", None, 3],
)
def test_digest_rejects_garbage(bad):
    with pytest.raises(token.TokenError) as err:
        token.pubkey_digest(bad)
    assert err.value.reason == "bad_pub"


def test_token_bound_to_id_and_key(keypair):
    _, _, digest = keypair
    k_site = token.site_key(SECRET, SITE)
    tok = token.make_token(k_site, SITE, MINION, digest)
    with pytest.raises(token.TokenError) as err:
        token.verify_token(tok, [SECRET], "other-minion", digest)
    assert err.value.reason == "bad_token"
    with pytest.raises(token.TokenError):
        token.verify_token(tok, [SECRET], MINION, "0" * 64)
    with pytest.raises(token.TokenError):
        token.verify_token(tok, ["another secret entirely"], MINION, digest)


def test_previous_secret_index(keypair):
    _, _, digest = keypair
    old = "the old fleet secret!"
    tok = token.make_token(token.site_key(old, SITE), SITE, MINION, digest)
    assert token.verify_token(tok, [SECRET, old], MINION, digest) == (SITE, 1)


def test_site_key_of_other_site_fails(keypair):
    _, _, digest = keypair
    tok = token.make_token(token.site_key(SECRET, "other"), SITE, MINION, digest)
    with pytest.raises(token.TokenError):
        token.verify_token(tok, [SECRET], MINION, digest)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "v1",
        "v1:site",
        "v2:site:" + "a" * 64,
        "v1:bad site:" + "a" * 64,
        "v1:site:" + "A" * 64,
        "v1:site:" + "a" * 63,
        "v1:site:" + "g" * 64,
        "v1:site:" + "a" * 64 + ":x",
        "v1:" + "s" * 65 + ":" + "a" * 64,
        "v1::" + "a" * 64,
        "x" * 10000,
        None,
        b"v1:site:" + b"a" * 64,
    ],
)
def test_parse_errors(bad):
    with pytest.raises(token.TokenError) as err:
        token.parse_token(bad)
    assert err.value.reason == "malformed_token"
    if isinstance(bad, str) and bad:
        assert bad not in str(err.value)


@pytest.mark.parametrize("site", ["", "a b", "x" * 65, "ä", "a/b", "a:b", None])
def test_bad_site_names(site):
    with pytest.raises(token.TokenError):
        token.site_key(SECRET, site)


@pytest.mark.parametrize("site", ["a", "A.b_c-9", "x" * 64])
def test_good_site_names(site):
    assert token.validate_site(site) == site


def test_site_key_validation_does_not_echo():
    secretish = "z" * 64
    with pytest.raises(token.TokenError) as err:
        token.validate_site_key(secretish)
    assert secretish not in str(err.value)
    assert token.validate_site_key(" " + "AB" * 32 + "\n") == "ab" * 32


def test_fingerprint_is_not_the_key():
    k_site = token.site_key(SECRET, SITE)
    fp = token.key_fingerprint(k_site)
    assert len(fp) == 16 and fp not in k_site
    assert fp == hashlib.sha256(b"saltext-edge:v1:fingerprint\n" + k_site.encode()).hexdigest()[:16]
