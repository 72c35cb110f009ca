"""
The token store and the decision store, in the master cache
(``salt.cache.Cache(opts)``), both bounded (docs/concepts.rst):

* bank ``edge_admission/tokens``: one entry per minion id, keyed by the
  SHA-256 of the id, holding the id, the public key the token was presented
  with, its digest, the token (at most ``MAX_TOKEN_LEN`` characters) and when
  it was seen; pruned to ``MAX_RECORDS`` entries;
* bank ``edge_admission/decisions``: batches of decisions, one entry per run,
  compacted into one snapshot of at most ``MAX_DECISIONS`` ids.
"""

import contextlib
import hashlib
import itertools
import logging
import os
import time
import uuid

from saltext_edge import tokens as _token

log = logging.getLogger(__name__)

BANK = "edge_admission"
TOKENS_BANK = BANK + "/tokens"
DECISIONS_BANK = BANK + "/decisions"
INTENTS_BANK = BANK + "/intents"
# compact the decisions bank when it holds more batches than this
COMPACT_AFTER = 32
MAX_DECISIONS = 50000
MAX_RECORDS = 20000
RECORD_TTL = 7 * 24 * 3600
# an RSA-8192 public key in PEM is about 1.5 kB
MAX_PUB_BYTES = 8192

_PRUNE_EVERY = 200
_STORED = itertools.count(1)


def cache(opts):
    """Return Salt's master cache for ``opts``."""
    import salt.cache

    return salt.cache.Cache(opts)


def rec_key(minion_id):
    """The cache key of ``minion_id``'s token record (safe as a file name)."""
    return hashlib.sha256(minion_id.encode("utf-8")).hexdigest()


def clean_pub(pub):
    """A public key string stripped of surrounding white space (other values as they are)."""
    return pub.strip() if isinstance(pub, str) else pub


def pub_digest(pub):
    """
    Return the SPKI digest of ``pub`` if it is a bounded PEM public key, else
    raise :class:`saltext_edge.tokens.TokenError` (reason ``bad_pub``).
    """
    if not isinstance(pub, str) or len(pub) > MAX_PUB_BYTES:
        raise _token.TokenError("bad_pub", "the public key is not a PEM string of at most 8 kB")
    return _token.pubkey_digest(pub.strip())


def bounded_token(token):
    """``token`` if it is a string no longer than a token can be, else a fixed malformed marker."""
    if len(token) > _token.MAX_TOKEN_LEN:
        return "malformed:too-long"
    return token


def fetch_record(store, minion_id):
    """Return the token record of ``minion_id`` or None."""
    rec = store.fetch(TOKENS_BANK, rec_key(minion_id)) or None
    if rec is not None and rec.get("id") != minion_id:
        return None
    return rec


def new_record(minion_id, pub, digest, token, source, rank=None):
    """A token record (the caller checked every field), not stored yet."""
    return {
        "id": minion_id,
        "pub": clean_pub(pub),
        "pub_digest": digest,
        "token": bounded_token(token),
        "time": time.time(),
        "source": source,
        "rank": rank,
    }


def store_record(opts, store, minion_id, pub, digest, token, source, rank=None):
    """Write a token record (the caller checked every field); returns it."""
    rec = new_record(minion_id, pub, digest, token, source, rank)
    store.store(TOKENS_BANK, rec_key(minion_id), rec)
    if next(_STORED) % _PRUNE_EVERY == 0:
        prune_records(store)
    return rec


def prune_records(store, limit=MAX_RECORDS, ttl=RECORD_TTL):
    """Drop token records older than ``ttl``, then the oldest beyond ``limit``. Returns the count dropped."""
    keys = store.list(TOKENS_BANK)
    if len(keys) <= limit // 2:
        return 0
    now = time.time()
    aged = []
    for key in keys:
        rec = store.fetch(TOKENS_BANK, key) or {}
        aged.append((rec.get("time", 0.0), key))
    aged.sort()
    drop = [k for t, k in aged if now - t > ttl]
    keep = [k for t, k in aged if now - t <= ttl]
    if len(keep) > limit:
        drop += keep[: len(keep) - limit]
    for key in drop:
        with contextlib.suppress(Exception):  # pruning is best effort; the next run retries
            store.flush(TOKENS_BANK, key)
    if drop:
        log.info("edge admission: pruned %d old token record(s)", len(drop))
    return len(drop)


def forget(opts, minion_ids, store=None):
    """Drop recorded tokens of ``minion_ids``. Returns the number dropped."""
    store = store or cache(opts)
    count = 0
    for minion_id in minion_ids:
        key = rec_key(minion_id)
        if store.contains(TOKENS_BANK, key):
            store.flush(TOKENS_BANK, key)
            count += 1
    return count


def mark_refused(store, minion_id, rec, reason, fprint):
    """Remember on ``rec`` that it was refused for ``reason`` under fingerprint ``fprint``."""
    if rec.get("refused") == reason and rec.get("refused_fp") == fprint:
        return
    store.store(TOKENS_BANK, rec_key(minion_id), dict(rec, refused=reason, refused_fp=fprint))


def clear_refused(store, minion_id):
    """Forget the refusal remembered on ``minion_id``'s token record (so it is decided again); True if there was one."""
    rec = fetch_record(store, minion_id)
    if not rec or not rec.get("refused"):
        return False
    rec = {k: v for k, v in rec.items() if k not in ("refused", "refused_fp")}
    store.store(TOKENS_BANK, rec_key(minion_id), rec)
    return True


def store_decisions(store, decisions):
    """Store one batch ``{id: {"decision", "reason", "site", "time"}}``; compact when due."""
    if not decisions:
        return
    key = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    store.store(DECISIONS_BANK, key, decisions)
    try:
        if len(store.list(DECISIONS_BANK)) > COMPACT_AFTER:
            _compact(store)
    except Exception as exc:
        log.warning("edge admission: could not compact the decisions cache: %s", exc)


def merged_decisions(store):
    """Return ``(batch keys, {id: latest entry})``."""
    keys = sorted(store.list(DECISIONS_BANK))
    merged = {}
    for key in keys:
        batch = store.fetch(DECISIONS_BANK, key) or {}
        if not isinstance(batch, dict):
            continue
        for minion_id, entry in batch.items():
            if not isinstance(entry, dict):
                continue
            prev = merged.get(minion_id)
            if prev is None or entry.get("time", 0) >= prev.get("time", 0):
                merged[minion_id] = entry
    return keys, merged


def _compact(store, limit=None):
    limit = limit or MAX_DECISIONS
    keys, merged = merged_decisions(store)
    if not keys:
        return
    if len(merged) > limit:
        newest = sorted(merged.items(), key=lambda kv: kv[1].get("time", 0), reverse=True)[:limit]
        merged = dict(newest)
    # the merged snapshot sorts before any batch written after it was read
    store.store(DECISIONS_BANK, keys[-1] + "-c", merged)
    for key in keys:
        try:
            store.flush(DECISIONS_BANK, key)
        except Exception:
            # another process compacting at the same time got there first
            if store.contains(DECISIONS_BANK, key):
                raise


def list_decisions(opts):
    """
    Return the latest admission decision per minion id:
    ``{minion_id: {"decision": "accepted"|"refused"|"no_token"|"recorded",
    "reason": str|None, "site": str|None, "time": float}}``.

    ``recorded`` means a token was seen after the last decision (or with none
    yet). Never contains a token or key material.
    """
    store = cache(opts)
    _, merged = merged_decisions(store)
    ret = {
        mid: {
            "decision": entry.get("decision"),
            "reason": entry.get("reason"),
            "site": entry.get("site"),
            "time": entry.get("time", 0.0),
        }
        for mid, entry in merged.items()
    }
    for key in store.list(TOKENS_BANK):
        rec = store.fetch(TOKENS_BANK, key) or {}
        mid = rec.get("id")
        if not isinstance(mid, str):
            continue
        seen = rec.get("time", 0.0)
        if mid not in ret or ret[mid]["time"] < seen:
            site = None
            try:
                site = _token.parse(rec.get("token")).site
            except _token.TokenError:
                pass
            ret[mid] = {"decision": "recorded", "reason": None, "site": site, "time": seen}
    return ret
