"""
Admission by pre-shared token, master side (DESIGN.md §3).

Flow: a pending minion re-authenticates every ``acceptance_wait_time``; with
``auth_events_autosign_grains: [pend, denied]`` the master's ``salt/auth`` event
carries its ``edge_token`` grain. :func:`record` keeps (id, public key,
token) in Salt's cache; :func:`decide_and_act` verifies pending keys against
their recorded token and accepts the good ones through Salt's key store.

Configuration (master, under ``edge:``):

``revoked_sites``
    list of site names whose tokens are refused (``revoked_site``).
``site_ids``
    optional mapping ``{site: [glob, ...]}``; when a site has an entry, a
    minion id must match one of its globs (``fnmatchcase``) or it is refused
    (``id_not_allowed``). Sites without an entry accept any id.
``on_invalid``
    ``keep`` (default), ``reject`` or ``delete``: what happens to the pending
    key of a *refused* minion. ``no_token`` is not a refusal and never moves
    a key.
``auto_admit``
    ``true``: the reactor admits at once, in batches (see
    :mod:`saltext_edge.admitter`); default ``false``: it only records the
    token for ``salt-run edge.accept_pending``.

Decisions: ``accepted``; ``refused`` with reason ``bad_token``,
``key_changed`` (the pending public key is not the one the token was made
for), ``revoked_site``, ``id_not_allowed``, ``malformed_token``; or
``no_token`` (reason ``no_token_seen``). Each decision fires an event
``edge/admission/<decision>`` and writes one log line; neither contains the
token, a site key or the secret.

Storage, in the master cache (``salt.cache.Cache(opts)``, driver ``cache``):

* bank ``edge_admission/tokens``: one entry per minion, keyed by the SHA-256
  of the minion id (safe as a file name for any id), holding id, public key,
  its digest, token and time seen;
* bank ``edge_admission/decisions``: batches of decisions (one entry per run,
  compacted as they pile up), so deciding 5000 keys costs one cache write.
"""

import atexit
import contextlib
import fcntl
import fnmatch
import hashlib
import logging
import os
import threading
import time
import uuid

from saltext_edge import fsperm
from saltext_edge import shared_secret as _secrets
from saltext_edge import tokens as _token

log = logging.getLogger(__name__)

BANK = "edge_admission"
TOKENS_BANK = BANK + "/tokens"
DECISIONS_BANK = BANK + "/decisions"
INTENTS_BANK = BANK + "/intents"
EVENT_PREFIX = "edge/admission/"
ON_INVALID = ("keep", "reject", "delete")
REFUSAL_REASONS = (
    "bad_token",
    "key_changed",
    "revoked_site",
    "id_not_allowed",
    "malformed_token",
)
# compact the decisions bank when it holds more batches than this
COMPACT_AFTER = 32


class AdmissionError(ValueError):
    """Bad admission configuration or input; the message holds no secret."""


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
def _edge_conf(opts):
    conf = opts.get("edge") or {}
    if not isinstance(conf, dict):
        raise AdmissionError("the 'edge' master option must be a mapping")
    return conf


def policy(opts):
    """
    Return the admission policy from the master options as a dict with
    ``revoked_sites`` (set), ``site_ids`` (dict of lists), ``on_invalid``
    (str) and ``auto_admit`` (bool). Raises :class:`AdmissionError` on a
    malformed policy (fail closed).
    """
    conf = _edge_conf(opts)
    revoked = conf.get("revoked_sites") or []
    if isinstance(revoked, str):
        revoked = [revoked]
    if not isinstance(revoked, (list, tuple, set)):
        raise AdmissionError("edge:revoked_sites must be a list of site names")
    site_ids = conf.get("site_ids") or {}
    if not isinstance(site_ids, dict):
        raise AdmissionError("edge:site_ids must map site names to lists of id globs")
    norm_ids = {}
    for site, globs in site_ids.items():
        if isinstance(globs, str):
            globs = [globs]
        if not isinstance(globs, (list, tuple)) or not all(isinstance(g, str) for g in globs):
            raise AdmissionError(f"edge:site_ids:{site} must be a list of id globs")
        norm_ids[str(site)] = list(globs)
    on_invalid = conf.get("on_invalid", "keep") or "keep"
    if on_invalid not in ON_INVALID:
        raise AdmissionError("edge:on_invalid must be one of keep, reject, delete")
    return {
        "revoked_sites": {str(s) for s in revoked},
        "site_ids": norm_ids,
        "on_invalid": on_invalid,
        "auto_admit": conf.get("auto_admit", False) is True,
    }


# --------------------------------------------------------------------------
# storage
# --------------------------------------------------------------------------
def _cache(opts):
    import salt.cache  # pylint: disable=import-outside-toplevel

    return salt.cache.Cache(opts)


_LOCAL = threading.local()


def _objects(opts):
    """
    Return ``(cache, keyobj)`` for ``opts``, built once per thread and reused
    while ``opts`` is the same object. Building Salt's cache and key loaders
    costs tens of milliseconds, and the reactor calls us (from its worker
    threads, with one wheel client whose ``__opts__`` never changes) once per
    ``salt/auth`` event: under an auth storm that cost dominated. A one-shot
    ``salt-run`` builds them once either way.
    """
    memo = getattr(_LOCAL, "memo", None)
    if memo is None or memo[0] is not opts:
        memo = _LOCAL.memo = (opts, _cache(opts), _key_obj(opts))
        atexit.register(_close_event, memo[2])
    return memo[1], memo[2]


def _close_event(keyobj):
    """Close the key object's event connection, if one was opened, before
    the interpreter tears its modules down (else Salt prints a traceback)."""
    if "event" in keyobj.__dict__:  # a cached_property, only if created
        try:
            keyobj.event.destroy()
        except Exception:  # pylint: disable=broad-except
            pass


def _rec_key(minion_id):
    return hashlib.sha256(minion_id.encode("utf-8")).hexdigest()


def _valid_id(opts, minion_id):
    import salt.utils.verify  # pylint: disable=import-outside-toplevel

    return (
        isinstance(minion_id, str)
        and bool(minion_id)
        and salt.utils.verify.valid_id(opts, minion_id)
    )


def _clean_pub(pub):
    return pub.strip() if isinstance(pub, str) else pub


def record(opts, minion_id, pub, token, source="event", cache=None):
    """
    Record that pending minion ``minion_id`` presented ``token`` with public
    key ``pub``. Returns ``{"id": ..., "recorded": bool, "changed": bool,
    "reason": str|None}`` (never the token). A record identical to the stored
    one is not rewritten. Invalid ids or public keys are not recorded.
    """
    ret = {"id": minion_id, "recorded": False, "changed": False, "reason": None}
    if not _valid_id(opts, minion_id):
        ret["reason"] = "bad_id"
        return ret
    pub = _clean_pub(pub)
    try:
        digest = _token.pubkey_digest(pub)
    except _token.TokenError:
        ret["reason"] = "bad_pub"
        return ret
    if not isinstance(token, str) or not token:
        ret["reason"] = "no_token_seen"
        return ret
    # keep a bounded, obviously-malformed marker rather than an arbitrary blob
    if len(token) > _token.MAX_TOKEN_LEN:
        token = token[: _token.MAX_TOKEN_LEN + 1]
    cache = cache or _cache(opts)
    key = _rec_key(minion_id)
    old = cache.fetch(TOKENS_BANK, key) or {}
    if old.get("pub_digest") == digest and old.get("token") == token and old.get("id") == minion_id:
        ret["recorded"] = True
        ret["refused"] = old.get("refused")
        return ret
    cache.store(
        TOKENS_BANK,
        key,
        {
            "id": minion_id,
            "pub": pub,
            "pub_digest": digest,
            "token": token,
            "time": time.time(),
            "source": source,
        },
    )
    ret["recorded"] = ret["changed"] = True
    log.info("edge admission: recorded the token presented by %s (source: %s)", minion_id, source)
    return ret


def forget(opts, minion_ids, cache=None):
    """Drop recorded tokens of ``minion_ids``. Returns the number dropped."""
    cache = cache or _cache(opts)
    count = 0
    for minion_id in minion_ids:
        key = _rec_key(minion_id)
        if cache.contains(TOKENS_BANK, key):
            cache.flush(TOKENS_BANK, key)
            count += 1
    return count


def _store_decisions(cache, decisions):
    if not decisions:
        return
    key = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cache.store(DECISIONS_BANK, key, decisions)
    try:
        if len(cache.list(DECISIONS_BANK)) > COMPACT_AFTER:
            _compact(cache)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("edge admission: could not compact the decisions cache: %s", exc)


def _merged_decisions(cache):
    keys = sorted(cache.list(DECISIONS_BANK))
    merged = {}
    for key in keys:
        batch = cache.fetch(DECISIONS_BANK, key) or {}
        if not isinstance(batch, dict):
            continue
        for minion_id, entry in batch.items():
            if not isinstance(entry, dict):
                continue
            prev = merged.get(minion_id)
            if prev is None or entry.get("time", 0) >= prev.get("time", 0):
                merged[minion_id] = entry
    return keys, merged


def _compact(cache):
    keys, merged = _merged_decisions(cache)
    # the merged snapshot sorts before any batch written after it was read
    newkey = keys[-1] + "-c" if keys else None
    if newkey is None:
        return
    cache.store(DECISIONS_BANK, newkey, merged)
    for key in keys:
        try:
            cache.flush(DECISIONS_BANK, key)
        except Exception:  # pylint: disable=broad-except
            # another process compacting at the same time got there first
            if cache.contains(DECISIONS_BANK, key):
                raise


def list_decisions(opts):
    """
    Return the latest admission decision per minion id:
    ``{minion_id: {"decision": "accepted"|"refused"|"no_token"|"recorded",
    "reason": str|None, "site": str|None, "time": float}}``.

    ``recorded`` means a token was seen after the last decision (or with none
    yet). Never contains a token or key material.
    """
    cache = _cache(opts)
    _, merged = _merged_decisions(cache)
    ret = {
        mid: {
            "decision": entry.get("decision"),
            "reason": entry.get("reason"),
            "site": entry.get("site"),
            "time": entry.get("time", 0.0),
        }
        for mid, entry in merged.items()
    }
    for key in cache.list(TOKENS_BANK):
        rec = cache.fetch(TOKENS_BANK, key) or {}
        mid = rec.get("id")
        if not isinstance(mid, str):
            continue
        seen = rec.get("time", 0.0)
        if mid not in ret or ret[mid]["time"] < seen:
            site = None
            try:
                site = _token.parse_token(rec.get("token"))[0]
            except _token.TokenError:
                pass
            ret[mid] = {"decision": "recorded", "reason": None, "site": site, "time": seen}
    return ret


# --------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------
def verify(minion_id, pending_pub, rec, secrets, pol, pending_digest=None):
    """
    Verify the recorded token ``rec`` (a dict from the tokens bank, or None)
    of ``minion_id`` whose key pending now is ``pending_pub``.

    Returns ``(decision, reason, site)`` with decision ``accepted``,
    ``refused`` or ``no_token``. Pure function; constant-time MAC comparison.
    """
    if not rec or not isinstance(rec.get("token"), str) or not rec.get("token"):
        return "no_token", "no_token_seen", None
    pending_pub = _clean_pub(pending_pub)
    rec_digest = rec.get("pub_digest")
    if _clean_pub(rec.get("pub")) != pending_pub:
        # not byte-identical: same key in other PEM wrapping still counts
        try:
            pending_digest = pending_digest or _token.pubkey_digest(pending_pub)
        except _token.TokenError:
            return "refused", "key_changed", None
        if pending_digest != rec_digest:
            return "refused", "key_changed", None
    try:
        site, _ = _token.parse_token(rec["token"])
    except _token.TokenError:
        return "refused", "malformed_token", None
    try:
        _token.verify_token(rec["token"], secrets, minion_id, rec_digest)
    except _token.TokenError as exc:
        return "refused", (exc.reason if exc.reason in REFUSAL_REASONS else "bad_token"), site
    if site in pol["revoked_sites"]:
        return "refused", "revoked_site", site
    globs = pol["site_ids"].get(site)
    if globs is not None and not any(fnmatch.fnmatchcase(minion_id, g) for g in globs):
        return "refused", "id_not_allowed", site
    return "accepted", None, site


# --------------------------------------------------------------------------
# acting
# --------------------------------------------------------------------------
def _key_obj(opts):
    import salt.key  # pylint: disable=import-outside-toplevel

    return salt.key.Key(opts)


def _pending_ids(keyobj, match, ids=None):
    """
    Return the sorted ids of pending keys matching glob(s) ``match`` (one
    listing of the key store, no key read), or the exact ``ids`` when given.
    The state is checked again when each key is read.
    """
    if ids is not None:
        return sorted(ids)
    patterns = match
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    if not patterns:
        patterns = ["*"]
    everything = patterns == ["*"]
    pending = keyobj.list_keys().get("minions_pre", [])
    if everything:
        return sorted(pending)
    return sorted(m for m in pending if any(fnmatch.fnmatch(m, p) for p in patterns))


def _set_state(keyobj, minion_id, key, new_state):
    """
    Store pending ``key`` (as just read from Salt's key store) with
    ``new_state`` ("accepted"/"rejected") and fire Salt's own ``salt/key``
    event, exactly as ``salt.key.Key.change_state`` does. (Not
    ``Key.accept(match_dict=...)``: it re-matches every key against every
    listed id, which is quadratic at thousands of keys.)
    """
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    key = dict(key, state=new_state)
    keyobj.cache.store("keys", minion_id, key)
    act = {"accepted": "accept", "rejected": "reject"}[new_state]
    eload = {"result": True, "act": act, "id": minion_id, "pub": key["pub"]}
    keyobj.event.fire_event(eload, salt.utils.event.tagify(prefix="key"))
    return True


def _delete(keyobj, minion_id):
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    keyobj.cache.flush("keys", minion_id)
    keyobj.event.fire_event(
        {"result": True, "act": "delete", "id": minion_id},
        salt.utils.event.tagify(prefix="key"),
    )
    return True


CHUNK = 100


@contextlib.contextmanager
def _key_store_lock(keyobj):
    """
    Hold an exclusive lock on the key store while keys change state: a lock
    file in the PKI directory, which masters sharing one key store (shared
    ``pki_dir`` volume) share too. Without it two runs (or the reactor and an
    operator) could both read a key as pending and both accept it.
    """
    # usable whether root or the master's user created it (fsperm)
    opts = getattr(keyobj, "opts", None)
    fd = fsperm.open_lock_file(fsperm.lock_path(keyobj.pki_dir, opts), opts)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _recover(cache, keyobj):
    """
    Finish what a killed run left half done. Salt's key store deletes a
    key's old entry before writing the new one, so a process killed in
    between loses the key; and a run killed before it announced a chunk
    leaves changes without an event. Every chunk's changes are journalled
    first (bank ``edge_admission/intents``) and the journal is dropped only
    once the chunk is announced: here a key found missing is restored in its
    target state, and every journalled change found done is announced and
    stored (at least once). Call with the key-store lock held. Returns
    ``{id: decision entry}`` for the changes found done.
    """
    done = {}
    for entry_key in cache.list(INTENTS_BANK):
        intents = cache.fetch(INTENTS_BANK, entry_key) or {}
        for minion_id, intent in intents.items():
            if not keyobj.cache.fetch("keys", minion_id):
                keyobj.cache.store("keys", minion_id, {"pub": intent["pub"], "state": intent["state"]})
                log.warning("edge admission: restored the %s key of %s after an interrupted run",
                            intent["state"], minion_id)
            if (keyobj.cache.fetch("keys", minion_id) or {}).get("state") == intent["state"]:
                done[minion_id] = {
                    "decision": intent["decision"],
                    "reason": intent["reason"],
                    "site": intent["site"],
                    "action": intent["state"],
                }
        cache.flush(INTENTS_BANK, entry_key)
    if done:
        now = time.time()
        _store_decisions(
            cache,
            {m: {"decision": r["decision"], "reason": r["reason"], "site": r["site"], "time": now}
             for m, r in done.items()},
        )
        for minion_id, res in done.items():
            _announce(keyobj.event, minion_id, res, now)
    return done


def _plan(keyobj, cache, pending, extra_records, secrets, pol):
    """Read and verify each pending key; returns ``[(id, key, decision, reason, site, rec)]``."""
    plan = []
    for minion_id in pending:
        try:
            key = keyobj.cache.fetch("keys", minion_id) or {}
        except Exception as exc:  # pylint: disable=broad-except
            # a corrupt or unreadable key entry: leave it to the operator
            log.warning("edge admission: cannot read the key of %s: %s", minion_id, exc)
            continue
        if key.get("state") != "pending" or not key.get("pub"):
            continue  # accepted/deleted meanwhile
        rec = extra_records.get(minion_id)
        if rec is None:
            rec = cache.fetch(TOKENS_BANK, _rec_key(minion_id)) or None
            if rec is not None and rec.get("id") != minion_id:
                rec = None
        decision, reason, site = verify(minion_id, key["pub"], rec, secrets, pol)
        plan.append((minion_id, key, decision, reason, site, rec))
    return plan


def _target(decision, on_invalid):
    """The key-store change a decision calls for: accepted/rejected/deleted, or None."""
    if decision == "accepted":
        return "accepted"
    if decision == "refused" and on_invalid == "reject":
        return "rejected"
    if decision == "refused" and on_invalid == "delete":
        return "deleted"
    return None


def _act_chunk(keyobj, cache, chunk, on_invalid):
    """
    Apply one chunk of the plan under the key-store lock, each key only if it
    is still pending with the very public key its token was verified for.
    Returns ``({id: action}, journal key or None)``; the caller drops the
    journal entry once the chunk is announced.
    """
    actions = {}
    with _key_store_lock(keyobj):
        intents = {}
        for minion_id, key, decision, reason, site, _ in chunk:
            target = _target(decision, on_invalid)
            if target in ("accepted", "rejected"):
                intents[minion_id] = {"pub": key["pub"], "state": target, "decision": decision,
                                      "reason": reason, "site": site}
        journal = f"{time.time_ns():020d}-{os.getpid()}" if intents else None
        if intents:
            cache.store(INTENTS_BANK, journal, intents)
        for minion_id, key, decision, _, _, _ in chunk:
            target = _target(decision, on_invalid)
            if target is None:
                actions[minion_id] = "kept" if decision in ("refused", "no_token") else "none"
                continue
            now_key = keyobj.cache.fetch("keys", minion_id) or {}
            if now_key.get("state") != "pending" or now_key.get("pub") != key["pub"]:
                actions[minion_id] = "none"  # changed under us (another run, a new key)
                continue
            if target == "deleted":
                _delete(keyobj, minion_id)
            else:
                _set_state(keyobj, minion_id, key, target)
            actions[minion_id] = target
    return actions, journal


def decide_and_act(opts, match="*", dry_run=False, secrets=None, extra_records=None, ids=None):
    """
    Verify every pending key matching ``match`` (glob, or comma-separated
    globs) against its recorded token and act on the verdict: accept the
    valid ones, apply ``edge:on_invalid`` to refused ones, leave ``no_token``
    keys alone. With ``dry_run`` nothing is changed, stored or fired.

    ``extra_records`` (``{id: record}``) are used in preference to the
    stored ones (freshly seen tokens). ``ids`` (a list of exact minion ids)
    replaces ``match`` and avoids listing every key.

    Keys change state in chunks under a key-store lock (each only if still
    pending with the key its token was made for), journalled so that a run
    killed midway loses no key, and each chunk's decisions are logged, fired
    and stored as soon as it is done.

    Returns ``{minion_id: {"decision": "accepted"|"refused"|"no_token",
    "reason": str|None, "site": str|None, "action": "accepted"|"kept"|
    "rejected"|"deleted"|"none"}}`` (``action`` is ``none`` in a dry run or
    when the key changed under us).

    Raises :class:`saltext_edge.shared_secret.SecretError` when no usable secret is
    configured and :class:`AdmissionError` on a malformed policy.
    """
    import salt.crypt  # pylint: disable=import-outside-toplevel

    pol = policy(opts)
    if secrets is None:
        secrets = _secrets.master_secrets(opts)
    cache, keyobj = _objects(opts)
    if not dry_run and cache.list(INTENTS_BANK):
        with _key_store_lock(keyobj):
            _recover(cache, keyobj)
    pending = _pending_ids(keyobj, match, ids=ids)
    plan = _plan(keyobj, cache, pending, extra_records or {}, secrets, pol)
    results = {}
    for minion_id, _, decision, reason, site, _ in plan:
        results[minion_id] = {"decision": decision, "reason": reason, "site": site, "action": "none"}
    if dry_run or not plan:
        return results

    removed = []
    for start in range(0, len(plan), CHUNK):
        chunk = plan[start : start + CHUNK]
        now = time.time()
        actions, journal = _act_chunk(keyobj, cache, chunk, pol["on_invalid"])
        for minion_id, action in actions.items():
            results[minion_id]["action"] = action
            if action in ("rejected", "deleted"):
                removed.append(minion_id)
        for minion_id, _, decision, reason, _, rec in chunk:
            # remembered so the reactor stops re-submitting this token; not
            # key_changed, which condemns the pending key, not the token (the
            # token's own key may be pending next, once a squatter is gone)
            if decision == "refused" and reason != "key_changed" and rec.get("refused") != reason:
                cache.store(TOKENS_BANK, _rec_key(minion_id), dict(rec, refused=reason))
        _store_decisions(
            cache,
            {
                c[0]: {
                    "decision": results[c[0]]["decision"],
                    "reason": results[c[0]]["reason"],
                    "site": results[c[0]]["site"],
                    "time": now,
                }
                for c in chunk
            },
        )
        for c in chunk:
            _announce(keyobj.event, c[0], results[c[0]], now)
        if journal:
            cache.flush(INTENTS_BANK, journal)
    # side effects Salt's own reject/delete have, once per run
    if removed:
        forget(opts, [m for m in removed if results[m]["action"] == "deleted"], cache=cache)
        keyobj.check_minion_cache()
        if opts.get("rotate_aes_key"):
            salt.crypt.dropfile(opts["cachedir"], opts["user"], opts["id"])
    return results


def _announce(event, minion_id, res, now):
    log.info(
        "edge admission: %s %s (reason: %s, site: %s, action: %s)",
        minion_id,
        res["decision"],
        res["reason"],
        res["site"],
        res["action"],
    )
    try:
        event.fire_event(
            {
                "id": minion_id,
                "decision": res["decision"],
                "reason": res["reason"],
                "site": res["site"],
                "action": res["action"],
                "time": now,
            },
            EVENT_PREFIX + res["decision"],
        )
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("edge admission: could not fire the decision event for %s: %s", minion_id, exc)


def record_for_decision(opts, minion_id, pub, token, source="reactor"):
    """
    Record the token of a sign-in (:func:`record`) and say what is left to
    do for it. Returns ``(record_result, todo)`` with ``todo``:
    ``"none"`` (not recorded, see ``record_result["reason"]``), ``"manual"``
    (``auto_admit`` is off), ``"refused_before"`` (this very token for this
    very key was already refused: a pending minion signs in every
    ``acceptance_wait_time`` and is not re-decided each time) or
    ``"decide"``. Raises :class:`AdmissionError` on a malformed policy.
    """
    cache, _ = _objects(opts)
    rec = record(opts, minion_id, pub, token, source=source, cache=cache)
    if not rec["recorded"]:
        return rec, "none"
    if not policy(opts)["auto_admit"]:
        return rec, "manual"
    if not rec["changed"] and rec.get("refused"):
        return rec, "refused_before"
    return rec, "decide"


def handle_auth(opts, minion_id, pub, token, act="pend", source="reactor"):
    """
    Handle one pending key's ``salt/auth`` data: record the token and, when
    ``edge:auto_admit`` is true, decide for this minion at once.

    Returns ``{"id": ..., "recorded": bool, "decision": str|None,
    "reason": str|None, "site": str|None, "action": str|None}`` (no token).
    """
    ret = {
        "id": minion_id,
        "recorded": False,
        "decision": None,
        "reason": None,
        "site": None,
        "action": None,
    }
    if act != "pend":
        ret["reason"] = "not_pending"
        return ret
    rec, todo = record_for_decision(opts, minion_id, pub, token, source=source)
    ret["recorded"] = rec["recorded"]
    if todo == "none":
        ret["reason"] = rec["reason"]
        return ret
    if todo == "manual":
        return ret
    if todo == "refused_before":
        ret.update(decision="refused", reason=rec["refused"], action="none")
        return ret
    try:
        secrets = _secrets.master_secrets(opts)
    except _secrets.SecretError as exc:
        log.error("edge admission: not admitting %s: %s", minion_id, exc)
        ret["reason"] = "no_secret"
        return ret
    res = decide_and_act(opts, ids=[minion_id], secrets=secrets)
    if minion_id in res:
        ret.update(res[minion_id])
    return ret


def token_from_auth_event(data):
    """
    Return ``(minion_id, pub, token, act)`` from a ``salt/auth`` event's data
    (token from ``autosign_grains.edge_token``; None when absent).
    """
    if not isinstance(data, dict):
        return None, None, None, None
    grains = data.get("autosign_grains")
    tok = grains.get("edge_token") if isinstance(grains, dict) else None
    return data.get("id"), data.get("pub"), tok, data.get("act")


def collect_auth_events(opts, seconds, match="*"):
    """
    Listen on the master event bus for ``seconds`` and return
    ``{minion_id: record}`` for pending keys whose ``salt/auth`` event
    carried an ``edge_token`` (ids matching ``match``). Each is also
    recorded in the cache.
    """
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    patterns = [p for p in (match or "*").split(",") if p] or ["*"]
    seen = {}
    cache = _cache(opts)
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
            if act != "pend" or not isinstance(minion_id, str):
                continue
            if not any(fnmatch.fnmatch(minion_id, p) for p in patterns):
                continue
            rec = record(opts, minion_id, pub, tok, source="wait", cache=cache)
            if rec["recorded"]:
                seen[minion_id] = cache.fetch(TOKENS_BANK, _rec_key(minion_id))
    return seen
