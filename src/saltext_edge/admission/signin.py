"""
Sign-ins as they reach the master: the data of a ``salt/auth`` event (from
the reactor, the wheel, or ``salt-run edge.accept_pending wait=N``). Every
field is hostile: any accepted minion can make the master fire an event with
the tag ``salt/auth`` and any data (docs/concepts.rst, "Threat model"). So
nothing here trusts the event: a token is recorded only for the public key
the key store itself holds pending for that id, a token never replaces a
better one for the same key, and the key store is changed only on a token
that verifies (:func:`sign_in`, the one dispatcher for wheel and reactor).
"""

import copy
import fnmatch
import logging
import os
import time
from typing import NamedTuple

from saltext_edge import enrollment as _enr
from saltext_edge import shared_secret as _secrets
from saltext_edge import tokens as _token
from saltext_edge.admission import decision as _decision
from saltext_edge.admission import keystore as _ks
from saltext_edge.admission import nodes as _nodes
from saltext_edge.admission import rule as _rule
from saltext_edge.admission import stores as _stores
from saltext_edge.admission.policy import edge_conf as _policy_edge_conf
from saltext_edge.admission.policy import fingerprint, policy
from saltext_edge.memo import Memo

log = logging.getLogger(__name__)

MAX_ID_LEN = 255

#: seconds a sign-in reuses the policy and secrets read for the one before
#: (docs/benchmarks.rst: reading them was 8 % of the reactor's work under a
#: storm); a change of the ``edge:`` options, of a secret file or of the
#: secret's environment variable is seen at once
SETTINGS_TTL = 1.0
_SETTINGS = Memo()


def _secret_files_state(conf):
    state = []
    for name in ("shared_secret_file", "previous_shared_secret_file"):
        path = conf.get(name)
        if not isinstance(path, str):
            state.append(None)
            continue
        try:
            st = os.stat(path)
        except OSError:
            state.append("missing")
            continue
        state.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(state)


def settings(opts):
    """
    Return ``(policy, secrets)`` for ``opts``: :func:`~saltext_edge.admission.policy.policy`
    and :func:`saltext_edge.shared_secret.master_secrets`, reused for up to
    :data:`SETTINGS_TTL` seconds while the same ``opts`` holds the same
    ``edge:`` options, the secret files are unchanged and the secret's
    environment variable is the same. Raises what those raise; a failure is
    never reused (fail closed at every sign-in).
    """
    conf = _policy_edge_conf(opts)  # raises, as policy() would, on a non-mapping
    conf_copy = copy.deepcopy(conf) if isinstance(conf, dict) else conf
    state = (
        _secret_files_state(conf) if isinstance(conf, dict) else None,
        os.environ.get(_secrets.ENV_VAR),
    )
    period = int(time.monotonic() // SETTINGS_TTL)
    return _SETTINGS.get(
        (opts, period, state, conf_copy),
        lambda: (policy(opts), _secrets.master_secrets(opts)),
    )


class SignIn(NamedTuple):
    """The fields of a ``salt/auth`` event that admission reads (each checked later)."""

    minion_id: object
    pub: object
    token: object
    act: object


class Outcome(NamedTuple):
    """What :func:`sign_in` did: ``status`` and the token record, if any."""

    status: str
    rec: dict | None = None


def valid_id(opts, minion_id):
    """True for a minion id of 1-255 printable characters (no white space) that Salt accepts."""
    import salt.utils.verify

    return (
        isinstance(minion_id, str)
        and 0 < len(minion_id) <= MAX_ID_LEN
        and minion_id.isprintable()
        and not any(c.isspace() for c in minion_id)
        and salt.utils.verify.valid_id(opts, minion_id)
    )


def token_from_auth_event(data):
    """
    Return ``(minion_id, pub, token, act)`` from a ``salt/auth`` event's data
    (token from ``autosign_grains.edge_token``; None when absent). The values
    are unchecked.
    """
    if not isinstance(data, dict):
        return None, None, None, None
    grains = data.get("autosign_grains")
    tok = grains.get("edge_token") if isinstance(grains, dict) else None
    return data.get("id"), data.get("pub"), tok, data.get("act")


def record(opts, minion_id, pub, token, source="event", cache=None):
    """
    Store that ``minion_id`` presented ``token`` with public key ``pub``,
    trusting the caller for the pairing (hostile data goes through
    :func:`sign_in`). Bounded: ids are checked, keys must be PEM public keys
    of at most 8 kB, over-long tokens are stored as a malformed marker.
    Returns ``{"id", "recorded": bool, "changed": bool, "reason": str|None}``
    (never the token).
    """
    ret = {"id": minion_id, "recorded": False, "changed": False, "reason": None}
    if not valid_id(opts, minion_id):
        ret["reason"] = "bad_id"
        return ret
    try:
        digest = _stores.pub_digest(pub)
    except _token.TokenError:
        ret["reason"] = "bad_pub"
        return ret
    if not isinstance(token, str) or not token:
        ret["reason"] = "no_token_seen"
        return ret
    store = cache or _stores.cache(opts)
    old = _stores.fetch_record(store, minion_id) or {}
    token = _stores.bounded_token(token)
    if old.get("pub_digest") == digest and old.get("token") == token:
        ret["recorded"] = True
        ret["refused"] = old.get("refused")
        return ret
    _stores.store_record(opts, store, minion_id, pub, digest, token, source)
    ret["recorded"] = ret["changed"] = True
    log.info("edge admission: recorded the token presented by %s (source: %s)", minion_id, source)
    return ret


def sign_in(opts, minion_id, pub, token, act="pend", source="reactor", defer=False):
    """
    Take one sign-in's data and say what is left to do. Returns an
    :class:`Outcome` whose ``status`` is:

    * ``decide`` (auto mode: decide this id now), ``recorded`` (manual
      mode: wait for ``salt-run edge.accept_pending``), ``refused_before``
      (this token for this key was refused under the same secrets and
      policy);
    * ``ignored`` (an ``act`` other than ``pend``/``denied``), ``bad_id``,
      ``bad_pub``, ``no_token_seen``, ``not_pending`` (the key store holds no
      pending key for the id with this public key: a stale or forged event),
      ``unproven`` (a ``denied`` sign-in whose token does not admit the key
      presented), ``kept_better`` (a better token is already recorded for
      this key).

    ``act: denied`` with a token that admits the presented key: when the key
    stored under the id is *pending* (a squatter's), it is replaced by the
    presented key, so the node that proved itself wins the id
    (docs/concepts.rst, "Squatters"). Accepted and rejected keys are never
    touched.

    ``defer`` (the admission engine, auto mode, ``act: pend``): the key
    store is not read here and a new token record is not stored; the
    ``decide`` outcome's record must then be decided with
    ``decide_and_act(..., extra_records=..., only_matching=True)``, which
    reads the key under the key-store lock, decides only when it is the
    very key presented (else nothing: a stale or forged event) and stores
    the record of every refusal. One read of the key store per key instead
    of two; the same checks.

    Raises :class:`~saltext_edge.admission.policy.AdmissionError` (policy)
    and :class:`saltext_edge.shared_secret.SecretError` (no usable secret).
    """
    if act not in ("pend", "denied"):
        return Outcome("ignored")
    if not valid_id(opts, minion_id):
        return Outcome("bad_id")
    try:
        digest = _stores.pub_digest(pub)
    except _token.TokenError:
        return Outcome("bad_pub")
    if not isinstance(token, str) or not token:
        return Outcome("no_token_seen")
    token = _stores.bounded_token(token)
    pol, secrets = settings(opts)
    node = _nodes.get(opts, minion_id)
    verdict = _rule.judge(minion_id, digest, token, secrets, pol, node, _enr.store(opts))
    store, keyobj = _ks.objects(opts)
    pub = _stores.clean_pub(pub)
    if act == "denied":
        if verdict.decision != "accepted":
            return Outcome("unproven")
        if not _claim(opts, keyobj, minion_id, pub, digest, pol):
            return Outcome("not_pending")
    defer = defer and act == "pend" and pol["auto_admit"]
    if act != "denied" and not defer:
        stored = keyobj.cache.fetch("keys", minion_id) or {}
        if stored.get("state") != "pending" or not _same_key(stored.get("pub"), pub, digest):
            return Outcome("not_pending")
        pub = _stores.clean_pub(stored["pub"])
    new_rank = _rule.rank(verdict)
    old = _stores.fetch_record(store, minion_id)
    if old and old.get("pub_digest") == digest and old.get("token") == token:
        rec = old
    elif old and old.get("pub_digest") == digest and (old.get("rank") or 1) > new_rank:
        return Outcome("kept_better", old)
    elif defer:
        rec = _stores.new_record(minion_id, pub, digest, token, source, rank=new_rank)
    else:
        rec = _stores.store_record(
            opts, store, minion_id, pub, digest, token, source, rank=new_rank
        )
        log.info(
            "edge admission: recorded the token presented by %s (source: %s)", minion_id, source
        )
    if not pol["auto_admit"]:
        return Outcome("recorded", rec)
    if rec.get("refused") and rec.get("refused_fp") == fingerprint(pol, secrets) and rec is old:
        return Outcome("refused_before", rec)
    return Outcome("decide", rec)


def _same_key(stored_pub, pub, digest):
    if not isinstance(stored_pub, str):
        return False
    if _stores.clean_pub(stored_pub) == pub:
        return True
    try:
        return _stores.pub_digest(stored_pub) == digest
    except _token.TokenError:
        return False


def _claim(opts, keyobj, minion_id, pub, digest, pol):
    """
    Under the key-store lock, let a key that proved itself take an id held
    by another *pending* key (or by none). Returns False when an accepted or
    rejected key holds the id, or when the operator revoked the presented
    key for this id (read again under the lock, which ``revoke_node``
    takes too: a revocation made since the key was judged still holds).
    """
    with _ks.lock(keyobj, pol["lock_timeout"], what="edge admission claim"):
        if _nodes.key_revoked(_nodes.get(opts, minion_id), digest):
            return False
        stored = keyobj.cache.fetch("keys", minion_id) or {}
        if stored and stored.get("state") != "pending":
            return False
        if stored and _same_key(stored.get("pub"), pub, digest):
            return True
        _ks.set_state(keyobj, minion_id, {"pub": pub}, "pending")
    log.warning(
        "edge admission: %s proved itself with another key than the one pending under its id; "
        "that pending key was replaced by the proven one",
        minion_id,
    )
    return True


def dispatch(opts, minion_id, pub, token, act, source, decide):
    """
    The one dispatcher for the wheel and the reactor: :func:`sign_in`, then
    ``decide(minion_id)`` when the outcome is ``decide``. Returns ``(outcome,
    decide's return or None)``.
    """
    outcome = sign_in(opts, minion_id, pub, token, act=act, source=source)
    if outcome.status == "decide":
        return outcome, decide(minion_id)
    return outcome, None


def handle_auth(opts, minion_id, pub, token, act="pend", source="reactor"):
    """
    Handle one ``salt/auth`` event's data and wait for its decision (auto
    mode). Returns ``{"id", "recorded": bool, "decision": str|None,
    "reason": str|None, "site": str|None, "action": str|None}`` (no token).
    """
    ret = {
        "id": minion_id if isinstance(minion_id, str) else None,
        "recorded": False,
        "decision": None,
        "reason": None,
        "site": None,
        "action": None,
    }

    def _decide(mid):
        return _decision.decide_and_act(opts, ids=[mid])

    try:
        outcome, res = dispatch(opts, minion_id, pub, token, act, source, _decide)
    except _secrets.SecretError as exc:
        log.error("edge admission: not admitting a sign-in: %s", exc)
        ret["reason"] = "no_secret"
        return ret
    ret["recorded"] = outcome.rec is not None
    if outcome.status == "refused_before":
        ret.update(decision="refused", reason=outcome.rec.get("refused"), action="none")
    elif outcome.status == "decide":
        if res and minion_id in res:
            ret.update(res[minion_id])
    elif outcome.status not in ("recorded", "kept_better"):
        ret["reason"] = (
            "not_pending" if outcome.status == "ignored" and act != "pend" else outcome.status
        )
    return ret


def collect_auth_events(opts, seconds, match="*"):
    """
    Listen on the master event bus for ``seconds`` and pass every
    ``salt/auth`` event of an id matching ``match`` through :func:`sign_in`
    (it records, decides nothing). When ``match`` names exact ids (no glob
    character), stop as soon as a token is recorded for each of them.
    Returns ``{minion_id: record}`` for the tokens recorded.
    """
    import salt.utils.event

    patterns = [p for p in (match or "*").split(",") if p] or ["*"]
    exact = None if any(c in p for p in patterns for c in "*?[") else set(patterns)
    seen = {}
    manual = dict(opts, edge=dict(_policy_edge_conf(opts), auto_admit=False))
    deadline = time.monotonic() + float(seconds)
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as event:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ev = event.get_event(wait=min(left, 1.0), tag="salt/auth", full=True)
            if not ev or ev.get("tag") != "salt/auth":
                continue
            minion_id, pub, tok, act = token_from_auth_event(ev.get("data"))
            if not isinstance(minion_id, str) or not any(
                fnmatch.fnmatch(minion_id, p) for p in patterns
            ):
                continue
            outcome = sign_in(manual, minion_id, pub, tok, act=act, source="wait")
            if outcome.rec is not None:
                seen[minion_id] = outcome.rec
                if exact is not None and exact <= seen.keys():
                    break
    return seen
