"""
Token maths for admission by pre-shared token (docs/concepts.rst). Pure functions.

* site key ``K_site = hex(HMAC-SHA256(S, "saltext-edge:v1:site:" + site))``
* token ``"v1:" + site + ":" + hex(HMAC-SHA256(K_site_hex_ascii,
  "saltext-edge:v1:token\\n" + minion_id + "\\n" + sha256_hex(DER SPKI)))``
"""

import hashlib
import hmac
import re
import typing

from saltext_edge.errors import EdgeError

VERSION = "v1"
#: the enrollment token's version (docs/enrollment.rst; :mod:`saltext_edge.enrollment`)
V2 = "v2"
SITE_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
SITE_KEY_RE = re.compile(r"\A[0-9a-f]{64}\Z")
MAC_RE = re.compile(r"\A[0-9a-f]{64}\Z")
#: an enrollment id (16 hex digits), the third field of a v2 token
ENR_ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")
# longest well-formed token: "v2:" + 64-char site + ":" + 16 hex + ":" + 64 hex
# (a v1 token has no enrollment id)
MAX_TOKEN_LEN = 3 + 64 + 1 + 16 + 1 + 64
MIN_SECRET_LEN = 16


class TokenError(EdgeError, ValueError):
    """
    A token, site name, key or secret is malformed. The message never holds
    the offending secret material.
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def validate_site(site):
    """
    Return ``site`` if it is a valid site name (1-64 of ``[A-Za-z0-9._-]``),
    else raise :class:`TokenError`.
    """
    if not isinstance(site, str) or not SITE_RE.match(site):
        raise TokenError(
            "bad_site", "site names are 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return site


def _secret_bytes(secret):
    if isinstance(secret, bytes):
        return secret
    if not isinstance(secret, str):
        raise TokenError("bad_secret", "the shared secret must be a string")
    return secret.encode("utf-8")


def site_key(secret, site):
    """
    Return the site key (64 lowercase hex characters) of ``site`` under the
    fleet ``secret``.
    """
    validate_site(site)
    return hmac.new(
        _secret_bytes(secret), ("saltext-edge:v1:site:" + site).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def validate_site_key(key):
    """
    Return ``key`` normalised (stripped, lowercase) if it looks like a site
    key, else raise :class:`TokenError` (without echoing the key).
    """
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not isinstance(key, str):
        raise TokenError("bad_site_key", "a site key must be a string")
    key = key.strip().lower()
    if not SITE_KEY_RE.match(key):
        raise TokenError("bad_site_key", "a site key is 64 hexadecimal characters")
    return key


def key_fingerprint(key):
    """
    Return a short, non-reversible fingerprint of a site key or secret
    (first 16 hex chars of SHA-256 over a domain-separated input), safe to show.
    """
    return hashlib.sha256(b"saltext-edge:v1:fingerprint\n" + _secret_bytes(key)).hexdigest()[:16]


def pubkey_digest(pub):
    """
    Return ``sha256_hex`` of the DER SubjectPublicKeyInfo of ``pub`` (a PEM
    string or bytes; PKCS#1 ``RSA PUBLIC KEY`` PEM is accepted too).

    Raises :class:`TokenError` when ``pub`` is not a public key.
    """
    from cryptography.hazmat.primitives import serialization

    if isinstance(pub, str):
        pub = pub.encode("utf-8")
    if not isinstance(pub, bytes) or not pub.strip():
        raise TokenError("bad_pub", "no public key given")
    try:
        key = serialization.load_pem_public_key(pub.strip())
    except (ValueError, TypeError) as err:
        raise TokenError("bad_pub", "the public key is not a PEM public key") from err
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _mac(k_site, minion_id, pub_digest):
    msg = "saltext-edge:v1:token\n" + minion_id + "\n" + pub_digest
    return hmac.new(k_site.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def make_token(k_site, site, minion_id, pub_digest):
    """
    Return the v1 token string for ``minion_id`` whose public key has SHA-256
    DER digest ``pub_digest``, made with site key ``k_site`` for ``site``.
    """
    validate_site(site)
    k_site = validate_site_key(k_site)
    if not isinstance(minion_id, str) or not minion_id:
        raise TokenError("bad_id", "the minion id must be a non-empty string")
    return f"{VERSION}:{site}:{_mac(k_site, minion_id, pub_digest)}"


class Token(typing.NamedTuple):
    """A token's fields, parsed (:func:`parse`); ``enrollment`` is ``None`` in a v1 token."""

    version: str
    site: str
    enrollment: str | None
    mac: str


def parse(token):
    """
    Parse a token of any version, the one parser: ``"v1:SITE:MAC"`` (a site
    key's token) or ``"v2:SITE:ENROLLMENT_ID:MAC"`` (an enrollment's).
    Returns a :class:`Token` or raises :class:`TokenError` with reason
    ``malformed_token``. Never echoes the token.
    """
    if not isinstance(token, str):
        raise TokenError("malformed_token", "the token is not a string")
    if len(token) > MAX_TOKEN_LEN:
        raise TokenError("malformed_token", "the token is too long")
    parts = token.split(":")
    fields = {VERSION: 3, V2: 4}.get(parts[0])
    if fields is None:
        raise TokenError("malformed_token", "unsupported token version")
    if len(parts) != fields:
        raise TokenError("malformed_token", "the token has not the fields of its version")
    site, mac = parts[1], parts[-1]
    enrollment = parts[2] if fields == 4 else None
    if not SITE_RE.match(site):
        raise TokenError("malformed_token", "the token's site name is not valid")
    if enrollment is not None and not ENR_ID_RE.match(enrollment):
        raise TokenError("malformed_token", "the token's enrollment id is not 16 hex characters")
    if not MAC_RE.match(mac):
        raise TokenError("malformed_token", "the token's MAC is not 64 lowercase hex characters")
    return Token(parts[0], site, enrollment, mac)


def parse_token(token):
    """
    Parse a v1 token (:func:`parse`); return ``(site, mac_hex)`` or raise
    :class:`TokenError` with reason ``malformed_token``.
    """
    parsed = parse(token)
    if parsed.version != VERSION:
        raise TokenError("malformed_token", "not a v1 token")
    return parsed.site, parsed.mac


def verify_token(token, secrets, minion_id, pub_digest):
    """
    Check ``token`` for ``minion_id`` and public key digest ``pub_digest``
    against each fleet secret in ``secrets`` (current first, then previous).

    Returns ``(site, index)`` where ``index`` is the position in ``secrets``
    of the secret that verified, or raises :class:`TokenError` with reason
    ``malformed_token`` or ``bad_token``. Comparison is constant time and
    every secret is tried (no early exit that would reveal which matched).
    """
    site, mac = parse_token(token)
    matched = None
    for index, secret in enumerate(secrets):
        expected = _mac(site_key(secret, site), minion_id, pub_digest)
        if hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii")) and matched is None:
            matched = index
    if matched is None:
        raise TokenError("bad_token", "the token does not verify for this minion id and key")
    return site, matched
