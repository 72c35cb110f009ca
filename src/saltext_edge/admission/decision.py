"""
The decision run over pending keys (:func:`decide_and_act`): plan each key
with the one rule (:mod:`saltext_edge.admission.judge`), then accept,
reject or delete in chunks under the key-store lock, with the journal, and
announce every decision.
"""

import fnmatch
import logging
import time
from typing import NamedTuple

from saltext_edge import enrollment as _enr
from saltext_edge import shared_secret as _secrets
from saltext_edge.admission import events as _events
from saltext_edge.admission import keystore as _ks
from saltext_edge.admission import nodes as _nodes
from saltext_edge.admission import stores as _stores
from saltext_edge.admission.policy import fingerprint, policy
from saltext_edge.admission.rule import Verdict, same_key, verdict_for_record

log = logging.getLogger(__name__)

EVENT_PREFIX = "edge/admission/"
CHUNK = 100


class PlanItem(NamedTuple):
    """One pending key of a decision run."""

    minion_id: str
    key: dict  # as read from Salt's key store: {"pub", "state"}
    verdict: Verdict
    rec: dict | None  # the token record it was judged on


def _pending_ids(keyobj, match, ids=None):
    if ids is not None:
        return sorted(ids)
    patterns = match
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    if not patterns:
        patterns = ["*"]
    pending = keyobj.list_keys().get("minions_pre", [])
    if patterns == ["*"]:
        return sorted(pending)
    return sorted(m for m in pending if any(fnmatch.fnmatch(m, p) for p in patterns))


def _plan(
    opts, keyobj, store, pending, extra_records, secrets, pol, enrollments=None, only_matching=False
):
    """
    Read each id's key from the key store (once) and judge the token recorded
    for it against that very public key. Ids no longer pending are left out;
    with ``only_matching``, so are ids whose ``extra_records`` entry was
    presented with another key than the one pending (a stale or forged
    sign-in: nothing to decide, see :func:`saltext_edge.admission.signin.sign_in`).
    """
    plan = []
    if enrollments is None:
        enrollments = _enr.store(opts)
    for minion_id in pending:
        try:
            key = _ks.read_key(keyobj, minion_id)
        except Exception as exc:
            log.warning("edge admission: cannot read the key of %s: %s", minion_id, exc)
            continue
        if key.get("state") != "pending" or not key.get("pub"):
            continue  # accepted/deleted meanwhile
        rec = extra_records.get(minion_id)
        if only_matching and rec is not None and not same_key(key["pub"], rec):
            continue
        rec = rec or _stores.fetch_record(store, minion_id)
        node = _nodes.get(opts, minion_id)
        verdict = verdict_for_record(
            minion_id, key["pub"], rec, secrets, pol, node, enrollments=enrollments
        )
        plan.append(PlanItem(minion_id, key, verdict, rec))
    return plan


def _target(verdict, on_invalid):
    """The key-store change a verdict calls for: accepted/rejected/deleted, or None."""
    if verdict.decision == "accepted":
        return "accepted"
    if verdict.decision == "refused" and on_invalid == "reject":
        return "rejected"
    if verdict.decision == "refused" and on_invalid == "delete":
        return "deleted"
    return None


def _act_chunk(opts, keyobj, store, ids, extra_records, secrets, pol, enrollments, only_matching):
    """
    Decide and apply one chunk of pending ``ids`` under the key-store lock.
    Each key is read inside the lock and judged on the public key read there
    (no other admission run can change it meanwhile), then read again right
    before it is written, because Salt's own key writers do not take our
    lock; a key that changed is left alone (action ``none``). An acceptance by an
    enrollment first counts its use in the same locked section (refused
    with the enrollment's reason when it is spent meanwhile, e.g. by another
    master on the same key store); the use is given back when the key then
    changed before its write. Returns ``({id: action}, journal key or
    None, chunk)`` where ``chunk`` holds the :class:`PlanItem` s with their
    final verdicts.
    """
    actions = {}
    admitted = {}
    with _ks.lock(keyobj, pol["lock_timeout"], what="edge admission decision"):
        chunk = _plan(
            opts, keyobj, store, ids, extra_records, secrets, pol, enrollments, only_matching
        )
        chunk, counted = _count_uses(opts, chunk)
        targets = {item.minion_id: _target(item.verdict, pol["on_invalid"]) for item in chunk}
        intents = {
            item.minion_id: {
                "pub": item.key["pub"],
                "state": targets[item.minion_id],
                "decision": item.verdict.decision,
                "reason": item.verdict.reason,
                "site": item.verdict.site,
                "admitted_by": item.verdict.admitted_by,
            }
            for item in chunk
            if targets[item.minion_id] in ("accepted", "rejected")
        }
        entry = _ks.journal(store, intents)
        # Salt's salt/key events of the chunk go out together once its keys
        # are written (events.batched_events), not one loop turn each
        with _ks.inflight_marker(keyobj) as marker, _events.batched_events(keyobj):
            for item in chunk:
                target = targets[item.minion_id]
                if target is None:
                    actions[item.minion_id] = (
                        "kept" if item.verdict.decision in ("refused", "no_token") else "none"
                    )
                    continue
                # only the very key judged is changed: Salt's own writers
                # (salt-key -d/-r, the master's sign-in handling) do not take
                # our lock, so a key deleted or replaced since the chunk was
                # read is left alone, not re-created
                if not _change(keyobj, item, target, marker):
                    actions[item.minion_id] = "none"
                    if item.minion_id in counted:
                        _enr.store(opts).release(item.verdict.enrollment, item.minion_id)
                    continue
                actions[item.minion_id] = target
                if target == "accepted":
                    admitted[item.minion_id] = {
                        "site": item.verdict.site,
                        "admitted_by": item.verdict.admitted_by,
                        "pub_digest": (item.rec or {}).get("pub_digest"),
                    }
        _nodes.note_admitted(opts, admitted)
    return actions, entry, chunk


def _change(keyobj, item, target, marker):
    """Apply ``target`` to ``item``'s pending key if it is still the key judged; True when done."""
    if target == "accepted":
        return _ks.accept_pending(keyobj, item.minion_id, item.key["pub"], marker=marker)
    now_key = _ks.read_key(keyobj, item.minion_id)
    if now_key.get("state") != "pending" or now_key.get("pub") != item.key["pub"]:
        return False
    if target == "deleted":
        return _ks.delete(keyobj, item.minion_id)
    return _ks.set_state(keyobj, item.minion_id, item.key, target, marker=marker)


def _count_uses(opts, chunk):
    """
    Under the key-store lock, on keys read under it: count one use of its
    enrollment for each item to be accepted by a v2 token; an item whose
    enrollment refuses now gets that refusal. Returns ``(chunk, ids)``:
    ``ids`` are those whose use was counted now (a node admitted by the
    enrollment before is not counted twice).
    """
    counted = set()
    if not any(item.verdict.enrollment and item.verdict.decision == "accepted" for item in chunk):
        return chunk, counted
    enrollments = _enr.store(opts)
    now = time.time()
    out = []
    for item in chunk:
        verdict = item.verdict
        if verdict.enrollment and verdict.decision == "accepted":
            before = enrollments.get(verdict.enrollment) or {}
            reason = enrollments.consume(
                verdict.enrollment, item.minion_id, now, (item.rec or {}).get("pub_digest")
            )
            if reason:
                item = item._replace(verdict=verdict._replace(decision="refused", reason=reason))
            elif item.minion_id not in before.get("admitted", ()):
                counted.add(item.minion_id)
        out.append(item)
    return out, counted


def decide_and_act(
    opts,
    match="*",
    dry_run=False,
    secrets=None,
    extra_records=None,
    ids=None,
    only_matching=False,
):
    """
    Verify every pending key matching ``match`` (glob, or comma-separated
    globs; or exactly ``ids``) against its recorded token with :func:`judge`
    and act: accept the valid ones, apply ``edge:on_invalid`` to refused
    ones, leave ``no_token`` keys alone. With ``dry_run`` nothing is changed,
    stored or fired. ``extra_records`` (``{id: record}``) are used in
    preference to the stored ones; with ``only_matching`` an id whose extra
    record was presented with another key than the one pending is left out
    (not decided, not in the return).

    Returns ``{minion_id: {"decision": "accepted"|"refused"|"no_token",
    "reason": str|None, "site": str|None, "admitted_by":
    "enrollment:<id>"|"token:<site>"|None (what verified the token),
    "action": "accepted"|"kept"|"rejected"|"deleted"|"none"}}``.

    Raises :class:`saltext_edge.shared_secret.SecretError` when no usable
    secret is configured and :class:`~saltext_edge.admission.policy.AdmissionError`
    on a malformed policy or when the key-store lock cannot be had in time.
    """
    import salt.crypt

    pol = policy(opts)
    if secrets is None:
        secrets = _secrets.master_secrets(opts)
    fprint = fingerprint(pol, secrets)
    store, keyobj = _ks.objects(opts)
    if not dry_run and store.list(_stores.INTENTS_BANK):
        with _ks.lock(keyobj, pol["lock_timeout"], what="edge admission recovery"):
            done, _ = _ks.recover(store, keyobj)
        _finish(store, keyobj, done, time.time())
    pending = _pending_ids(keyobj, match, ids=ids)
    extra_records = extra_records or {}
    enrollments = _enr.store(opts)
    if dry_run:
        plan = _plan(opts, keyobj, store, pending, extra_records, secrets, pol, enrollments)
        return {item.minion_id: _result(item) for item in plan}
    results = {}
    removed = []
    if pending:
        _events.direct_events(keyobj)
    for start in range(0, len(pending), CHUNK):
        actions, entry, chunk = _act_chunk(
            opts,
            keyobj,
            store,
            pending[start : start + CHUNK],
            extra_records,
            secrets,
            pol,
            enrollments,
            only_matching,
        )
        for item in chunk:
            results[item.minion_id] = _result(item)
        for minion_id, action in actions.items():
            results[minion_id]["action"] = action
            if action in ("rejected", "deleted"):
                removed.append(minion_id)
        for item in chunk:
            if item.verdict.secret_index and item.verdict.decision == "accepted":
                log.warning(
                    "edge admission: %s was admitted with a token that verifies only under "
                    "the previous fleet secret",
                    item.minion_id,
                )
            # remembered so the reactor stops re-submitting this token until
            # the secrets or the policy change; not key_changed, which
            # condemns the pending key, not the token
            if (
                item.verdict.decision == "refused"
                and item.verdict.reason != "key_changed"
                and item.rec
            ):
                _stores.mark_refused(store, item.minion_id, item.rec, item.verdict.reason, fprint)
        _finish(
            store, keyobj, {item.minion_id: results[item.minion_id] for item in chunk}, time.time()
        )
        if entry:
            store.flush(_stores.INTENTS_BANK, entry)
    if removed:
        _stores.forget(opts, [m for m in removed if results[m]["action"] == "deleted"], store=store)
        keyobj.check_minion_cache()
        if opts.get("rotate_aes_key"):
            salt.crypt.dropfile(opts["cachedir"], opts["user"], opts["id"])
    return results


def _result(item):
    """The result entry of a judged :class:`PlanItem` (``action`` still ``none``)."""
    return {
        "decision": item.verdict.decision,
        "reason": item.verdict.reason,
        "site": item.verdict.site,
        "admitted_by": item.verdict.admitted_by,
        "action": "none",
    }


def _finish(store, keyobj, done, now):
    """Store and announce ``{id: result}`` (one log line and one event each)."""
    if not done:
        return
    _stores.store_decisions(
        store,
        {
            m: {
                "decision": r["decision"],
                "reason": r["reason"],
                "site": r["site"],
                "admitted_by": r.get("admitted_by"),
                "time": now,
            }
            for m, r in done.items()
        },
    )
    with _events.batched_events(keyobj):
        for minion_id, res in done.items():
            announce(keyobj.event, minion_id, res, now)


def announce(event, minion_id, res, now):
    """Log one decision line and fire ``edge/admission/<decision>`` (no token, no key)."""
    log.info(
        "edge admission: %s %s (reason: %s, site: %s, by: %s, action: %s)",
        minion_id,
        res["decision"],
        res["reason"],
        res["site"],
        res.get("admitted_by"),
        res["action"],
    )
    try:
        event.fire_event(
            {
                "id": minion_id,
                "decision": res["decision"],
                "reason": res["reason"],
                "site": res["site"],
                "admitted_by": res.get("admitted_by"),
                "action": res["action"],
                "time": now,
            },
            EVENT_PREFIX + str(res["decision"]),
        )
    except Exception as exc:
        log.warning("edge admission: could not fire the decision event for %s: %s", minion_id, exc)
