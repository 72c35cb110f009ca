"""
The accept/refuse rule: :func:`judge`, the one function every path calls
(the reactor's sign-in, ``accept_pending``, the wheel), and the verdict it
returns. docs/concepts.rst states the rule; docs/security-tests.rst what
was tried against it.
"""

import fnmatch
import time
from typing import NamedTuple

from saltext_edge import enrollment as _enr
from saltext_edge import tokens as _token
from saltext_edge.admission import nodes as _nodes
from saltext_edge.admission import stores as _stores

REFUSAL_REASONS = (
    "bad_token",
    "key_changed",
    "revoked_site",
    "id_not_allowed",
    "site_mismatch",
    "revoked_node",
    "revoked_key",
    "malformed_token",
    "enrollment_required",
) + tuple(r for r in _enr.REASONS if r != "id_not_allowed")
# refusals of a token that verifies (only a site-key or enrollment-key holder could make it)
_PROVEN_REFUSALS = (
    "revoked_site",
    "id_not_allowed",
    "site_mismatch",
    "revoked_node",
    "revoked_key",
    "enrollment_required",
) + _enr.REASONS


class Verdict(NamedTuple):
    """The outcome of :func:`judge`."""

    decision: str  # accepted | refused | no_token
    reason: str | None
    site: str | None
    secret_index: int | None = None  # 0 current secret, 1 previous
    enrollment: str | None = None  # the enrollment id of a v2 token

    @property
    def admitted_by(self):
        """What admits (or would admit) the node: ``enrollment:<id>`` or ``token:<site>``."""
        if self.site is None:
            return None
        by = f"enrollment:{self.enrollment}" if self.enrollment else f"token:{self.site}"
        return by + (" (previous secret)" if self.secret_index else "")


def judge(minion_id, pub_digest, token, secrets, pol, node=None, enrollments=None, now=None):
    """
    Decide whether ``token`` admits ``minion_id`` with the public key whose
    SPKI digest is ``pub_digest``, under fleet ``secrets`` and policy ``pol``;
    ``node`` is the id's node-index entry (revocation, bound site);
    ``enrollments`` the :class:`saltext_edge.enrollment.EnrollmentStore`
    holding the limits of v2 tokens (read only here: the use is counted
    under the key-store lock when the key is accepted), ``now`` epoch seconds.

    Returns a :class:`Verdict`. Refusal reasons, in the order checked:
    ``malformed_token``, ``bad_token``, ``revoked_node``, ``revoked_key``
    (the key was removed by ``salt-run edge.revoke_node``: barred for this id
    for good, even once the id is no longer revoked), ``revoked_site``,
    ``id_not_allowed`` (the site's ``site_ids`` globs do not match, or with
    ``bind_ids`` the id matches another site's globs), ``site_mismatch``
    (with ``bind_ids``, the id was admitted before for another site), then
    ``enrollment_required`` (a v1 site-key token under
    ``edge:require_enrollment``) or, for a v2 token, the enrollment's
    ``enrollment_unknown``, ``enrollment_revoked``, ``expired``,
    ``exhausted``, ``id_not_allowed`` (docs/enrollment.rst).
    """
    if not isinstance(token, str) or not token:
        return Verdict("no_token", "no_token_seen", None)
    v2 = token.startswith(_enr.VERSION + ":")
    enr_id = None
    try:
        if v2:
            site, enr_id, index = _enr.verify_token(token, secrets, minion_id, pub_digest)
        else:
            site, index = _token.verify_token(token, secrets, minion_id, pub_digest)
    except _token.TokenError as exc:
        site = None
        if exc.reason != "malformed_token":
            try:
                site = _token.parse(token).site
            except _token.TokenError:
                pass
        reason = exc.reason if exc.reason in REFUSAL_REASONS else "bad_token"
        return Verdict("refused", reason, site)
    verdict = _judge_site(minion_id, site, index, pol, node, pub_digest)
    if verdict.decision != "accepted":
        return verdict._replace(enrollment=enr_id)
    if not v2:
        if pol.get("require_enrollment"):
            return Verdict("refused", "enrollment_required", site, index)
        return verdict
    rec = enrollments.get(enr_id) if enrollments is not None else None
    if rec is not None and rec.get("site") != site:
        rec = None  # cannot happen with a verified token; fail closed
    now = time.time() if now is None else now
    reason = _enr.check(rec, minion_id, now, pub_digest)
    if reason:
        return Verdict("refused", reason, site, index, enr_id)
    return Verdict("accepted", None, site, index, enr_id)


def _judge_site(minion_id, site, index, pol, node, pub_digest):
    """The node and site rules of :func:`judge` for a token verified for ``site``."""
    if node and node.get("revoked"):
        return Verdict("refused", "revoked_node", site, index)
    if _nodes.key_revoked(node, pub_digest):
        return Verdict("refused", "revoked_key", site, index)
    if site in pol["revoked_sites"]:
        return Verdict("refused", "revoked_site", site, index)
    globs = pol["site_ids"].get(site)
    if globs is not None:
        if not any(fnmatch.fnmatchcase(minion_id, g) for g in globs):
            return Verdict("refused", "id_not_allowed", site, index)
    elif pol["bind_ids"] and any(
        fnmatch.fnmatchcase(minion_id, g) for gl in pol["site_ids"].values() for g in gl
    ):
        return Verdict("refused", "id_not_allowed", site, index)
    bound = _nodes.bound_site(node)
    if pol["bind_ids"] and bound is not None and bound != site:
        return Verdict("refused", "site_mismatch", site, index)
    return Verdict("accepted", None, site, index)


def rank(verdict):
    """3 for an acceptance, 2 for a refusal of a token that verifies, 1 otherwise."""
    if verdict.decision == "accepted":
        return 3
    if verdict.reason in _PROVEN_REFUSALS:
        return 2
    return 1


def verdict_for_record(
    minion_id, pending_pub, rec, secrets, pol, node=None, pending_digest=None, enrollments=None
):
    """:func:`judge` the token record ``rec`` against the key pending now (``key_changed`` if not its key)."""
    if not rec or not isinstance(rec.get("token"), str) or not rec.get("token"):
        return Verdict("no_token", "no_token_seen", None)
    if not same_key(pending_pub, rec, pending_digest):
        return Verdict("refused", "key_changed", None)
    return judge(minion_id, rec.get("pub_digest"), rec["token"], secrets, pol, node, enrollments)


def same_key(pending_pub, rec, pending_digest=None):
    """True when the token record ``rec`` was presented with the key ``pending_pub`` (any PEM wrapping)."""
    pending_pub = _stores.clean_pub(pending_pub)
    if _stores.clean_pub(rec.get("pub")) == pending_pub:
        return True
    # not byte-identical: the same key in another PEM wrapping still counts
    try:
        pending_digest = pending_digest or _token.pubkey_digest(pending_pub)
    except _token.TokenError:
        return False
    return pending_digest == rec.get("pub_digest")
