"""
Enrollment keys: expiring, limited-use keys that admit nodes of one site
(see ``docs/enrollment.rst`` for the contract and test vectors).

Key material and tokens (pure functions):

* enrollment key ``K_enr = hex(HMAC-SHA256(S, "saltext-edge:v2:enroll:" +
  site + ":" + enrollment_id))`` — derived from the fleet secret ``S`` and the
  enrollment's public id, so masters that share the secret need no other
  secret store;
* the node is given one string, ``"edge-enroll:v2:" + site + ":" +
  enrollment_id + ":" + K_enr``;
* its token is ``"v2:" + site + ":" + enrollment_id + ":" +
  hex(HMAC-SHA256(K_enr_hex_ascii, "saltext-edge:v2:token\\n" + minion_id +
  "\\n" + sha256_hex(DER SPKI)))``: it names the enrollment, never carries a
  key, and is bound to the minion id and its public key like v1.

Limits (uses, expiry, id glob, revocation) live in :class:`EnrollmentStore`,
one JSON file per enrollment in a directory beside the key store; every
change is made under the caller's key-store lock.
"""

import datetime
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets as _pysecrets

from saltext_edge import fsperm as _fsperm
from saltext_edge import pki_paths as _paths
from saltext_edge import tokens as _token

VERSION = _token.V2
KEY_PREFIX = "edge-enroll:v2:"
ENR_ID_RE = _token.ENR_ID_RE
REASONS = ("expired", "exhausted", "enrollment_revoked", "enrollment_unknown", "id_not_allowed")
DEFAULT_USES = 1
DEFAULT_EXPIRES = 24 * 3600
MAX_USES = 100000
MAX_EXPIRES = 366 * 24 * 3600
MAX_NOTE = 200
_DURATION_RE = re.compile(r"\A\s*(\d+)\s*([smhdw]?)\s*\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class EnrollmentError(_token.TokenError):
    """
    An enrollment key, token or limit is malformed, or an enrollment refuses
    an admission (``reason`` is one of :data:`REASONS` then). Never holds key
    material.
    """


# --------------------------------------------------------------------------
# key material and tokens
# --------------------------------------------------------------------------
def new_id():
    """Return a fresh enrollment id (16 lowercase hex characters, public)."""
    return _pysecrets.token_hex(8)


def validate_id(enr_id):
    """Return ``enr_id`` if it is a well-formed enrollment id, else raise :class:`EnrollmentError`."""
    if not isinstance(enr_id, str) or not ENR_ID_RE.match(enr_id):
        raise EnrollmentError("malformed_token", "an enrollment id is 16 lowercase hex characters")
    return enr_id


def enrollment_key(secret, site, enr_id):
    """Return ``K_enr`` (64 lowercase hex characters) for ``site`` and ``enr_id`` under ``secret``."""
    _token.validate_site(site)
    validate_id(enr_id)
    msg = ("saltext-edge:v2:enroll:" + site + ":" + enr_id).encode("utf-8")
    return hmac.new(_token._secret_bytes(secret), msg, hashlib.sha256).hexdigest()


def format_key(site, enr_id, key):
    """Return the one-line enrollment key string a node is given."""
    return f"{KEY_PREFIX}{site}:{enr_id}:{_token.validate_site_key(key)}"


def parse_key(text):
    """
    Parse an enrollment key string; return ``(site, enr_id, key_hex)`` or
    raise :class:`EnrollmentError` (without echoing the key).
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str) or not text.strip().startswith(KEY_PREFIX):
        raise EnrollmentError("bad_enrollment_key", f"an enrollment key starts with '{KEY_PREFIX}'")
    parts = text.strip()[len(KEY_PREFIX) :].split(":")
    if len(parts) != 3:
        raise EnrollmentError(
            "bad_enrollment_key", "an enrollment key is 'edge-enroll:v2:SITE:ID:KEY'"
        )
    site, enr_id, key = parts
    try:
        _token.validate_site(site)
        validate_id(enr_id)
        key = _token.validate_site_key(key)
    except _token.TokenError as err:
        raise EnrollmentError("bad_enrollment_key", "the enrollment key is malformed") from err
    return site, enr_id, key


def _mac(key, minion_id, pub_digest):
    msg = "saltext-edge:v2:token\n" + minion_id + "\n" + pub_digest
    return hmac.new(key.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def make_token(enr_key_text, minion_id, pub_digest):
    """Return the v2 token for ``minion_id`` / ``pub_digest`` from an enrollment key string."""
    site, enr_id, key = parse_key(enr_key_text)
    if not isinstance(minion_id, str) or not minion_id:
        raise EnrollmentError("bad_id", "the minion id must be a non-empty string")
    return f"{VERSION}:{site}:{enr_id}:{_mac(key, minion_id, pub_digest)}"


def parse_token(token):
    """
    Parse a v2 token (:func:`saltext_edge.tokens.parse`); return ``(site,
    enr_id, mac_hex)`` or raise :class:`EnrollmentError` with reason
    ``malformed_token``.
    """
    try:
        parsed = _token.parse(token)
    except _token.TokenError as exc:
        raise EnrollmentError("malformed_token", str(exc)) from None
    if parsed.version != VERSION:
        raise EnrollmentError("malformed_token", "not a v2 token")
    return parsed.site, parsed.enrollment, parsed.mac


def verify_token(token, secrets, minion_id, pub_digest):
    """
    Check a v2 ``token`` for ``minion_id`` / ``pub_digest`` against each fleet
    secret (current first). Returns ``(site, enr_id, index)`` or raises
    :class:`EnrollmentError` (``malformed_token`` / ``bad_token``). Constant
    time; every secret is tried.
    """
    site, enr_id, mac = parse_token(token)
    matched = None
    for index, secret in enumerate(secrets):
        expected = _mac(enrollment_key(secret, site, enr_id), minion_id, pub_digest)
        if hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii")) and matched is None:
            matched = index
    if matched is None:
        raise EnrollmentError("bad_token", "the token does not verify for this minion id and key")
    return site, enr_id, matched


# --------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------
def parse_duration(value):
    """
    Return a duration in seconds from ``value`` (an int, or ``"90s"``,
    ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``). Raises :class:`EnrollmentError`
    for anything else, zero, or more than a year.
    """
    if isinstance(value, bool):
        raise EnrollmentError("bad_limit", "expires must be a duration such as 24h")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise EnrollmentError(
                "bad_limit", "expires must be a duration such as 90s, 30m, 24h or 7d"
            )
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= MAX_EXPIRES:
        raise EnrollmentError("bad_limit", "expires must be more than 0 s and at most 366 days")
    return seconds


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_iso(text):
    return (
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
    )


def new_record(
    site,
    uses=DEFAULT_USES,
    expires=DEFAULT_EXPIRES,
    ids=None,
    note=None,
    creator=None,
    now=None,
    enr_id=None,
):
    """
    Return a validated enrollment record (a dict of JSON types, no key
    material): ``id, site, uses, used, ids, note, creator, created_at,
    expires_at, revoked_at, admitted``. Raises :class:`EnrollmentError` on bad
    limits.
    """
    _token.validate_site(site)
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise EnrollmentError("bad_limit", f"uses must be a whole number from 1 to {MAX_USES}")
    seconds = parse_duration(expires)
    if ids is not None and (not isinstance(ids, str) or not ids or len(ids) > 255):
        raise EnrollmentError("bad_limit", "ids must be one minion-id glob")
    if note is not None and (
        not isinstance(note, str) or len(note) > MAX_NOTE or not note.isprintable()
    ):
        raise EnrollmentError(
            "bad_limit", f"note must be printable text of at most {MAX_NOTE} characters"
        )
    now = now if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    return {
        "id": validate_id(enr_id) if enr_id else new_id(),
        "site": site,
        "uses": uses,
        "used": 0,
        "ids": ids,
        "note": note,
        "creator": creator,
        "created_at": _iso(now),
        "expires_at": _iso(now + seconds),
        "revoked_at": None,
        "admitted": [],
        "digests": {},
    }


def check(record, minion_id, now, pub_digest=None):
    """
    Return ``None`` when ``record`` may admit ``minion_id`` at ``now`` (epoch
    seconds), else the refusal reason (one of :data:`REASONS`).

    An id the enrollment already admitted is admitted again without a new use
    only with the same public key (``pub_digest``; a call without
    ``pub_digest`` accepts any, a record that holds no digest for that id
    none): so a crash between counting the use and accepting the key costs
    nothing, but the key holder cannot re-enroll a deleted node with a new
    key for free. (A key the operator revoked is refused before this, by
    :func:`saltext_edge.admission.rule.judge`.)
    """
    if record is None:
        return "enrollment_unknown"
    if record.get("revoked_at"):
        return "enrollment_revoked"
    if now >= _from_iso(record["expires_at"]):
        return "expired"
    if minion_id in record.get("admitted", ()):
        known = (record.get("digests") or {}).get(minion_id)
        if pub_digest is None or (
            known is not None and hmac.compare_digest(str(known), str(pub_digest))
        ):
            return None  # the same node again (its key was re-accepted): no new use
    if record.get("used", 0) >= record.get("uses", 0):
        return "exhausted"
    if record.get("ids") and not fnmatch.fnmatchcase(minion_id, record["ids"]):
        return "id_not_allowed"
    return None


def summary(record, now):
    """Return the public view of ``record`` (uses left, status) for listings and returns."""
    status = check(dict(record, admitted=[]), "", now) if record else "enrollment_unknown"
    if status in (None, "id_not_allowed"):
        status = "active"
    return {
        "id": record["id"],
        "site": record["site"],
        "uses": record["uses"],
        "uses_left": max(0, record["uses"] - record.get("used", 0)),
        "expires_at": record["expires_at"],
        "created_at": record["created_at"],
        "creator": record.get("creator"),
        "note": record.get("note"),
        "ids": record.get("ids"),
        "revoked_at": record.get("revoked_at"),
        "status": status,
        "admitted": list(record.get("admitted", ())),
    }


class EnrollmentStore:
    """
    Enrollment records, one JSON file per enrollment under ``directory``
    (beside the key store, so masters sharing the key store share them).
    Mutating calls must be made under the key-store lock.
    """

    def __init__(self, directory, opts=None):
        self.directory = directory
        self.opts = opts

    def _path(self, enr_id):
        return os.path.join(self.directory, validate_id(enr_id) + ".json")

    def get(self, enr_id):
        """Return the record of ``enr_id`` or ``None`` (unknown or unreadable)."""
        try:
            with open(self._path(enr_id), encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError, EnrollmentError):
            return None
        return record if isinstance(record, dict) and record.get("id") == enr_id else None

    def put(self, record):
        """
        Write ``record`` atomically (mode 0600, directory 0700, both the
        master's user when root writes them, see :mod:`saltext_edge.fsperm`).
        """
        _fsperm.private_dir(self.directory, self.opts)
        _fsperm.write_private_json(self._path(record["id"]), record, self.opts)

    def all(self):
        """Return every readable record, oldest first."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        records = [
            self.get(n[:-5]) for n in names if n.endswith(".json") and ENR_ID_RE.match(n[:-5])
        ]
        return sorted((r for r in records if r), key=lambda r: r["created_at"])

    def consume(self, enr_id, minion_id, now, pub_digest=None):
        """
        Count one admission of ``minion_id`` (public key digest
        ``pub_digest``) by ``enr_id`` if the enrollment allows it. Returns
        ``None`` on success, else the refusal reason. Call under the
        key-store lock.
        """
        record = self.get(enr_id)
        reason = check(record, minion_id, now, pub_digest)
        if reason is None and (
            minion_id not in record["admitted"]
            or (pub_digest and (record.get("digests") or {}).get(minion_id) != pub_digest)
        ):
            if minion_id not in record["admitted"]:
                record["used"] += 1
                record["admitted"].append(minion_id)
            if pub_digest:
                record.setdefault("digests", {})[minion_id] = pub_digest
            self.put(record)
        return reason

    def release(self, enr_id, minion_id):
        """
        Give back the use :meth:`consume` counted for ``minion_id`` in this
        same locked section, when its key was not written after all (it
        changed under Salt's own writers). Returns True when a use was given
        back. Call under the key-store lock.
        """
        record = self.get(enr_id)
        if record is None or minion_id not in record["admitted"]:
            return False
        record["admitted"].remove(minion_id)
        record["used"] = max(0, record["used"] - 1)
        (record.get("digests") or {}).pop(minion_id, None)
        self.put(record)
        return True

    def revoke(self, enr_id, now):
        """Mark ``enr_id`` revoked; return its record, or ``None`` when unknown."""
        record = self.get(enr_id)
        if record is not None and not record.get("revoked_at"):
            record["revoked_at"] = _iso(now)
            self.put(record)
        return record


# --------------------------------------------------------------------------
# where a master keeps the records (saltext_edge.enrollment_admin operates on them)
# --------------------------------------------------------------------------


def store(opts):
    """Return the :class:`EnrollmentStore` of the master options ``opts``."""
    return EnrollmentStore(_paths.enrollments_dir(opts), opts)
