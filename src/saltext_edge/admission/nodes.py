"""
The node index: per minion id, the site its token was verified for, what
admitted it, when, and whether the operator revoked it
(``salt-run edge.revoke_node``). It is part of the node's identity on the
master: ids are bound to the site that first admitted them (``edge:bind_ids``,
docs/concepts.rst), and the fleet report reads the verified site from here
rather than from the node's own ``edge_site`` grain.

Stored as one small JSON file per id under ``<pki_dir>/edge/nodes/`` (named
by the SHA-256 of the id), beside the key store, so that masters sharing one
key store share the index and the revocations, and both survive restarts.
"""

import datetime
import os

from saltext_edge import pki_paths as _paths
from saltext_edge.admission import files as _files

#: revoked public keys kept per id (the newest); a revocation removes one
#: key at a time, so this is far more than an id ever collects
MAX_REVOKED_KEYS = 64


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def get(opts, minion_id):
    """Return the index entry of ``minion_id`` (a dict) or None."""
    entry = _files.read_json_file(_paths.node_file(opts, minion_id))
    if entry is None or entry.get("id") != minion_id:
        return None
    return entry


def all_entries(opts):
    """Return ``{id: entry}`` for every entry of the index."""
    out = {}
    try:
        names = os.listdir(_paths.nodes_dir(opts))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        entry = _files.read_json_file(os.path.join(_paths.nodes_dir(opts), name))
        if entry and isinstance(entry.get("id"), str):
            out[entry["id"]] = entry
    return out


def note_admitted(opts, admitted):
    """
    Record admissions: ``admitted`` is ``{id: {"site": str, "admitted_by":
    str, "pub_digest": str}}``. Returns the number written.
    """
    if not admitted:
        return 0
    _files.private_dir(_paths.nodes_dir(opts), opts)
    now = _now_iso()
    for minion_id, info in admitted.items():
        entry = get(opts, minion_id) or {"id": minion_id}
        entry.update(
            site=info["site"],
            admitted_by=info["admitted_by"],
            pub_digest=info.get("pub_digest"),
            admitted_at=now,
            revoked=False,
        )
        # written at every admission, not fsync'd: what a power cut must keep
        # is the accepted key in Salt's key store; a revocation is (below)
        _files.write_private_file(_paths.node_file(opts, minion_id), entry, opts, durable=False)
    return len(admitted)


def set_revoked(opts, minion_id, revoked, by="operator", keys=()):
    """
    Mark ``minion_id`` revoked (or no longer revoked) and add the SPKI
    digests ``keys`` to its revoked keys, which no later admission of the
    id accepts, revoked or not (lifting a revocation keeps them). Returns
    the entry.
    """
    _files.private_dir(_paths.nodes_dir(opts), opts)
    entry = get(opts, minion_id) or {
        "id": minion_id,
        "site": None,
        "admitted_by": None,
        "admitted_at": None,
    }
    entry["revoked"] = bool(revoked)
    barred = [d for d in entry.get("revoked_keys") or () if isinstance(d, str)]
    for digest in keys:
        if digest and digest not in barred:
            barred.append(digest)
    entry["revoked_keys"] = barred[-MAX_REVOKED_KEYS:]
    entry["revoked_at" if revoked else "unrevoked_at"] = _now_iso()
    entry["revoked_by"] = by
    _files.write_private_file(_paths.node_file(opts, minion_id), entry, opts)
    return entry


def key_revoked(entry, pub_digest):
    """True when ``entry`` (a node-index entry or None) bars the key whose SPKI digest is ``pub_digest``."""
    return bool(entry) and pub_digest in (entry.get("revoked_keys") or ())


def revoked_ids(opts):
    """Return the set of revoked minion ids."""
    return {mid for mid, e in all_entries(opts).items() if e.get("revoked")}


def bound_site(entry):
    """The site ``entry`` binds its id to (None when unbound)."""
    return entry.get("site") if entry else None


def node_index(opts, accepted_ids):
    """
    Return ``{id: {"site": str|None, "admitted_by": str|None, "revoked":
    bool, "admitted_at": ISO 8601 str|None, "revoked_keys": [SPKI SHA-256
    hex]}}`` for every id in ``accepted_ids`` and every revoked id.
    """
    entries = all_entries(opts)
    out = {}
    for minion_id in set(accepted_ids) | {m for m, e in entries.items() if e.get("revoked")}:
        entry = entries.get(minion_id) or {}
        out[minion_id] = {
            "site": entry.get("site"),
            "admitted_by": entry.get("admitted_by")
            or ("outside" if minion_id in accepted_ids else None),
            "revoked": bool(entry.get("revoked")),
            "admitted_at": entry.get("admitted_at"),
            "revoked_keys": list(entry.get("revoked_keys") or ()),
        }
    return out
