"""
The fleet record in Salt's cache (``salt.cache.factory(opts)``: the master's
configured ``cache`` driver, ``localfs`` by default, ``redis`` etc. when
several masters share one record). See ``docs/ref/engine.rst``, "Storage".

Banks and keys:

* ``edge_fleet/live``, keys ``s00`` .. ``s63``: ``{id: record}`` for the
  nodes whose id hashes (CRC-32) to that shard. 64 writes at most per flush
  whatever the fleet size; a report reads 64 keys.
* ``edge_fleet/hours``, one key per node: its hourly rows (30 days), written
  when an hour closes.
* ``edge_fleet/meta``, key ``sites``: per site the degraded flag and the
  hourly site rows; key ``engine.<master id>``: what each master's engine last
  wrote (start, last flush, counters).

Every write of a shard reads it first and merges node by node
(:func:`saltext_edge.fleet.record.merge`: the master that saw the node last
wins), so two masters writing the same shard lose at most one flush of each
other's updates, which their next flush puts back.
"""

import hashlib
import logging
import re
import zlib

from saltext_edge.errors import EdgeError

log = logging.getLogger(__name__)

BANK_LIVE = "edge_fleet/live"
BANK_HOURS = "edge_fleet/hours"
BANK_META = "edge_fleet/meta"
SHARDS = 64
_SAFE_KEY = re.compile(r"\A[A-Za-z0-9_.-]{1,128}\Z")


def shard_of(minion_id):
    """Return the shard key (``s00``..``s63``) of ``minion_id``."""
    return f"s{zlib.crc32(minion_id.encode('utf-8', 'surrogatepass')) % SHARDS:02d}"


def node_key(minion_id):
    """Return the cache key for ``minion_id``'s hourly rows (the id itself when it is a safe file name)."""
    if _SAFE_KEY.match(minion_id) and not minion_id.startswith("."):
        return minion_id
    return "h-" + hashlib.sha256(minion_id.encode("utf-8", "surrogatepass")).hexdigest()


class StoreError(EdgeError):
    """The cache could not be read or written (the message names the bank and key)."""


class Store:
    """Reads and writes the record through ``salt.cache``."""

    def __init__(self, opts, cache=None):
        self.opts = opts
        if cache is None:
            import salt.cache

            cache = salt.cache.factory(opts)
        self.cache = cache

    def _fetch(self, bank, key):
        try:
            data = self.cache.fetch(bank, key)
        except Exception as exc:
            raise StoreError(f"cannot read {bank}/{key}: {exc.__class__.__name__}: {exc}") from exc
        return data if isinstance(data, (dict, list)) else None

    def _store(self, bank, key, data):
        try:
            self.cache.store(bank, key, data)
        except Exception as exc:
            raise StoreError(f"cannot write {bank}/{key}: {exc.__class__.__name__}: {exc}") from exc

    # ---- live records ---------------------------------------------------

    def load_all(self):
        """Return ``{id: record}`` of every node in the store (unreadable shards are skipped and logged)."""
        nodes = {}
        for index in range(SHARDS):
            key = f"s{index:02d}"
            try:
                shard = self._fetch(BANK_LIVE, key)
            except StoreError as exc:
                log.warning("edge_fleet: %s", exc)
                continue
            if isinstance(shard, dict):
                for minion_id, rec in shard.items():
                    if isinstance(rec, dict):
                        nodes[minion_id] = rec
        return nodes

    def load(self, minion_id):
        """Return the record of ``minion_id`` or ``None``."""
        shard = self._fetch(BANK_LIVE, shard_of(minion_id)) or {}
        rec = shard.get(minion_id) if isinstance(shard, dict) else None
        return rec if isinstance(rec, dict) else None

    def write_records(self, records, merge):
        """
        Write ``records`` (``{id: record}``), shard by shard, merging each
        with what the store holds (``merge(mine, theirs)``). Returns
        ``({id: merged record}, errors)``: the merged records (other
        masters' sightings included) and the number of shards that failed.
        """
        by_shard = {}
        for minion_id, rec in records.items():
            by_shard.setdefault(shard_of(minion_id), {})[minion_id] = rec
        merged = {}
        errors = 0
        for key, mine in by_shard.items():
            try:
                stored = self._fetch(BANK_LIVE, key)
                stored = stored if isinstance(stored, dict) else {}
                for minion_id, rec in mine.items():
                    stored[minion_id] = merge(rec, stored.get(minion_id))
                    merged[minion_id] = stored[minion_id]
                self._store(BANK_LIVE, key, stored)
            except StoreError as exc:
                errors += 1
                log.warning("edge_fleet: %s", exc)
        return merged, errors

    def forget(self, minion_ids):
        """Remove ``minion_ids`` from the record (deleted keys). Returns how many were removed."""
        by_shard = {}
        for minion_id in minion_ids:
            by_shard.setdefault(shard_of(minion_id), []).append(minion_id)
        removed = 0
        for key, ids in by_shard.items():
            stored = self._fetch(BANK_LIVE, key)
            if not isinstance(stored, dict):
                continue
            for minion_id in ids:
                if stored.pop(minion_id, None) is not None:
                    removed += 1
            self._store(BANK_LIVE, key, stored)
        return removed

    # ---- hourly rows ----------------------------------------------------

    def hours(self, minion_id):
        """Return the hourly rows of ``minion_id`` (oldest first; empty when none)."""
        rows = self._fetch(BANK_HOURS, node_key(minion_id))
        return rows if isinstance(rows, list) else []

    def add_hours(self, minion_id, rows, merge_hours, keep):
        """Append ``rows`` to ``minion_id``'s hourly rows (union by hour, the last ``keep`` kept)."""
        key = node_key(minion_id)
        current = self._fetch(BANK_HOURS, key)
        self._store(
            BANK_HOURS, key, merge_hours(current if isinstance(current, list) else [], rows, keep)
        )

    # ---- meta -----------------------------------------------------------

    def meta(self, key):
        """Return the meta entry ``key`` (a dict, empty when missing)."""
        try:
            data = self._fetch(BANK_META, key)
        except StoreError as exc:
            log.warning("edge_fleet: %s", exc)
            return {}
        return data if isinstance(data, dict) else {}

    def set_meta(self, key, data):
        """Write the meta entry ``key``."""
        self._store(BANK_META, key, data)

    def engines(self):
        """Return ``{master_id: engine info}`` of every engine that wrote to this store."""
        try:
            keys = self.cache.list(BANK_META) or []
        except Exception:
            return {}
        ret = {}
        for key in keys:
            if key.startswith("engine."):
                ret[key[len("engine.") :]] = self.meta(key)
        return ret
