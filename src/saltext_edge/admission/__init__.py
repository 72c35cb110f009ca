"""
Admission by pre-shared token, master side (docs/concepts.rst).

A pending minion signs in every ``acceptance_wait_time``; with
``auth_events_autosign_grains: [pend, denied]`` the master's ``salt/auth``
event carries its ``edge_token`` grain. One file per job:

* :mod:`.policy` -- the ``edge:`` policy, strictly typed;
* :mod:`.signin` -- a sign-in's hostile data: checked against the key store,
  recorded, dispatched (the one entry for the wheel and the reactor);
* :mod:`.rule` -- the accept/refuse rule (:func:`judge`) and its verdict;
* :mod:`.decision` -- the decision run over pending keys
  (:func:`decide_and_act`);
* :mod:`.keystore` -- writes into Salt's key store: lock, journal, recovery;
* :mod:`.events` -- how a decision run fires its events;
* :mod:`.stores` -- the bounded token and decision stores;
* :mod:`.nodes` -- the node index (verified site, revocation);
* :mod:`.files` -- the files admission creates.

Everything callers used from the former single module is re-exported here.
"""

import logging
import time

from saltext_edge.admission import keystore as _ks
from saltext_edge.admission import nodes as _nodes
from saltext_edge.admission import stores as _stores
from saltext_edge.admission.decision import (  # noqa: F401
    CHUNK,
    EVENT_PREFIX,
    PlanItem,
    announce,
    decide_and_act,
)
from saltext_edge.admission.policy import (  # noqa: F401
    DEFAULT_LOCK_TIMEOUT,
    ON_INVALID,
    AdmissionError,
    policy,
)
from saltext_edge.admission.rule import (  # noqa: F401
    REFUSAL_REASONS,
    Verdict,
    judge,
)
from saltext_edge.admission.signin import (  # noqa: F401
    Outcome,
    collect_auth_events,
    dispatch,
    handle_auth,
    record,
    sign_in,
    token_from_auth_event,
    valid_id,
)
from saltext_edge.admission.stores import (  # noqa: F401
    BANK,
    COMPACT_AFTER,
    DECISIONS_BANK,
    INTENTS_BANK,
    TOKENS_BANK,
    forget,
    list_decisions,
)

log = logging.getLogger(__name__)


def node_index(opts):
    """
    Return, per accepted minion (and per revoked id), what admission knows
    of it: ``{id: {"site": str|None, "admitted_by": str|None, "revoked":
    bool, "admitted_at": ISO 8601 str|None}}``.

    ``site`` is the site whose key made the token that admitted the node
    (verified by the master, unlike the node's own ``edge_site`` grain);
    ``admitted_by`` is ``enrollment:<id>`` for a node admitted by an
    enrollment key (docs/enrollment.rst), ``token:<site>`` for a site key
    (either with `` (previous secret)`` appended when only
    the previous secret verified it) or ``outside`` for a key accepted
    by other means (``salt-key -a``, autosign).
    """
    keyobj = _ks.key_obj(opts)
    accepted = keyobj.list_keys().get("minions", [])
    return _nodes.node_index(opts, accepted)


def _digest_or_none(pub):
    from saltext_edge import tokens as _token

    try:
        return _stores.pub_digest(pub)
    except _token.TokenError:
        return None


def revoke_node(opts, minion_id, revoked=True):
    """
    Revoke ``minion_id`` for good (``revoked=False`` lifts it): record the
    revocation in the node index (shared by masters on one key store,
    survives restarts) together with the SPKI SHA-256 digest of every public
    key known for the id (the key in the key store, whatever its state, the
    key it was admitted with, the key its recorded token was presented
    with); remove its key from the key store; drop its recorded token; fire
    ``edge/admission/revoked``. A revoked id is refused (``revoked_node``)
    at every later sign-in, valid token or not; a revoked key is refused
    (``revoked_key``) for that id for good, also once the revocation is
    lifted.

    Lifting it (``revoked=False``) keeps the revoked keys barred, forgets
    the refusal remembered for the key pending now (so its next sign-in is
    decided again) and names that key.

    Returns ``{"id": str, "revoked": bool, "key_removed": str|None (the
    state of the key removed), "revoked_keys": [SPKI SHA-256 hex] (every
    key barred for the id), "will_admit": {"sha256": str,
    "salt_key_finger": str}|None}``: ``will_admit`` (lifting only) is the
    key pending now if it is not barred (``salt_key_finger`` as ``salt-key
    -f ID`` prints it), the one key a valid token can get admitted next.
    """
    import salt.crypt
    import salt.utils.crypt

    if not valid_id(opts, minion_id):
        raise AdmissionError("not a valid minion id")
    try:
        timeout = policy(opts)["lock_timeout"]
    except AdmissionError:
        # a broken admission policy admits nothing; revoking must still work
        timeout = DEFAULT_LOCK_TIMEOUT
    store, keyobj = _ks.objects(opts)
    removed = None
    will_admit = None
    with _ks.lock(keyobj, timeout, what="edge.revoke_node"):
        key = keyobj.cache.fetch("keys", minion_id) or {}
        digests = []
        if revoked:
            entry = _nodes.get(opts, minion_id) or {}
            rec = _stores.fetch_record(store, minion_id) or {}
            digests = [
                _digest_or_none(key.get("pub")),
                entry.get("pub_digest"),
                rec.get("pub_digest"),
            ]
        entry = _nodes.set_revoked(
            opts, minion_id, revoked, keys=[d for d in digests if isinstance(d, str)]
        )
        if revoked and key:
            removed = key.get("state")
            _ks.delete(keyobj, minion_id)
        elif key.get("state") == "pending":
            digest = _digest_or_none(key.get("pub"))
            if digest and not _nodes.key_revoked(entry, digest):
                will_admit = {
                    "sha256": digest,
                    "salt_key_finger": salt.utils.crypt.pem_finger(key=key["pub"].encode("utf-8")),
                }
    barred = list(entry.get("revoked_keys") or ())
    if revoked:
        forget(opts, [minion_id], store=store)
        if removed == "accepted":
            keyobj.check_minion_cache()
        if removed == "accepted" and opts.get("rotate_aes_key", True):
            salt.crypt.dropfile(opts["cachedir"], opts["user"], opts["id"])
        log.warning(
            "edge admission: %s revoked by the operator; %d key(s) barred for it for good",
            minion_id,
            len(barred),
        )
    else:
        _stores.clear_refused(store, minion_id)
        log.warning(
            "edge admission: %s no longer revoked by the operator; its %d revoked key(s) stay "
            "barred; %s",
            minion_id,
            len(barred),
            f"the key pending now (SPKI sha256 {will_admit['sha256']}) is admitted by a valid "
            "token at its next sign-in"
            if will_admit
            else "no admissible key is pending for it now",
        )
    announce(
        keyobj.event,
        minion_id,
        {
            "decision": "revoked" if revoked else "unrevoked",
            "reason": None,
            "site": None,
            "action": "deleted" if removed else "none",
        },
        time.time(),
    )
    return {
        "id": minion_id,
        "revoked": bool(revoked),
        "key_removed": removed,
        "revoked_keys": barred,
        "will_admit": will_admit,
    }


def accept_pending(opts, match="*", dry_run=False, wait=0):
    """
    ``salt-run edge.accept_pending``: check ``match`` (a non-empty glob, or
    comma-separated globs) and ``wait`` (0-3600 seconds), fail closed on no
    usable fleet secret or a bad policy before listening or touching
    anything, listen to ``salt/auth`` events for ``wait`` seconds, then
    :func:`decide_and_act`. Raises :class:`AdmissionError` or
    :class:`saltext_edge.shared_secret.SecretError` (one-line messages).
    """
    from saltext_edge import shared_secret as _secrets

    try:
        wait = float(wait or 0)
    except (TypeError, ValueError):
        raise AdmissionError("wait must be a number of seconds") from None
    if not 0 <= wait <= 3600:  # NaN fails too
        raise AdmissionError("wait must be between 0 and 3600 seconds")
    if not isinstance(match, str) or not match:
        raise AdmissionError("match must be a non-empty glob")
    secrets = _secrets.master_secrets(opts)
    policy(opts)
    fresh = collect_auth_events(opts, wait, match=match) if wait else None
    return decide_and_act(opts, match=match, dry_run=dry_run, secrets=secrets, extra_records=fresh)
