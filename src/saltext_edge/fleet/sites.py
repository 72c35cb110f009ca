"""
Where a node belongs: the ONE place the fleet code asks which site a node is
in and what admitted it (see ``docs/ref/engine.rst``, "Sites").

Preference: the site the master verified when it admitted the key
(admission records), then the site the node's own heartbeat names.
"""

import logging
import os

from saltext_edge import admission as _admission

log = logging.getLogger(__name__)


def node_index(opts):
    """
    Return ``{minion_id: {"site": str|None, "admitted_by": str|None,
    "decision": str|None, "reason": str|None, "revoked": bool}}`` from the
    master's admission records; ``{}`` when they cannot be read (logged,
    never raised).

    ``decision`` and ``reason`` are the latest admission decision
    (``admission.list_decisions``: refused keys keep their reason); ``site``
    and ``admitted_by`` come from the node index of admitted keys
    (``admission.node_index``: the master-verified site, what admitted it,
    per-node revocation), else from an accepted decision.
    """
    try:
        decisions = _admission.list_decisions(opts) or {}
        admitted = _admission.node_index(opts) or {}
    except Exception as exc:
        log.warning("edge_fleet: admission records unavailable: %s", exc.__class__.__name__)
        return {}
    out = {}
    for mid, entry in decisions.items():
        if not isinstance(entry, dict):
            continue
        decision = entry.get("decision")
        verified = decision == "accepted"
        out[mid] = {
            # only an accepted decision's site was checked against a key
            "site": entry.get("site") if verified else None,
            "admitted_by": "token" if verified else None,
            "decision": decision,
            "reason": entry.get("reason"),
            "revoked": False,
        }
    for mid, entry in admitted.items():
        if not isinstance(entry, dict):
            continue
        cur = out.setdefault(mid, {"decision": "accepted", "reason": None})
        cur.update(
            site=entry.get("site"),
            admitted_by=entry.get("admitted_by"),
            revoked=bool(entry.get("revoked")),
        )
    return out


def site_of(minion_id, index, rec=None):
    """Return the site of ``minion_id``: the verified one from ``index``, else the heartbeat's, else ``None``."""
    entry = index.get(minion_id)
    if entry and isinstance(entry.get("site"), str) and entry["site"]:
        return entry["site"]
    if rec and isinstance(rec.get("site"), str) and rec["site"]:
        return rec["site"]
    return None


_KEY_DIRS = ("minions", "minions_pre", "minions_rejected", "minions_denied")


def _scan_pki(pki_dir):
    out = {}
    for name in _KEY_DIRS:
        ids = []
        try:
            with os.scandir(os.path.join(pki_dir, name)) as entries:
                for entry in entries:
                    # what Salt's localfs_key driver lists: regular files, not
                    # links, no dot files (a child of the directory, so the
                    # path checks Salt adds cannot fail)
                    if entry.name.startswith(".") or entry.is_symlink() or not entry.is_file():
                        continue
                    ids.append(entry.name)
        except FileNotFoundError:
            pass
        out[name] = sorted(ids)
    return out


def keys(opts):
    """
    Return ``{"minions": [...], "minions_pre": [...], "minions_rejected": [...],
    "minions_denied": [...]}`` from Salt's key store (empty lists when it
    cannot be read). With the default ``localfs_key`` driver the key
    directories are listed directly (Salt's listing resolves two real paths
    per key, most of a report's time on a large fleet); other drivers go
    through ``salt.key``.
    """
    import salt.key

    if (opts.get("keys.cache_driver") or "localfs_key") == "localfs_key" and opts.get("pki_dir"):
        try:
            return _scan_pki(opts["pki_dir"])
        except OSError as exc:
            log.warning("edge_fleet: cannot list the key directories: %s", exc.__class__.__name__)
    try:
        found = salt.key.Key(opts).list_keys()
    except Exception as exc:
        log.warning("edge_fleet: cannot list keys: %s", exc.__class__.__name__)
        found = {}
    return {k: list(found.get(k) or []) for k in _KEY_DIRS}


def admission_states(keys):
    """
    Return ``{minion_id: "accepted"|"pending"|"refused"}`` from a
    :func:`keys` listing: the ONE mapping of key state to the admission word
    the report, ``edge.node`` and the page show. An accepted key wins: the
    same id also listed as rejected or denied is another key claiming it
    (Salt denies a second key for an accepted id), which says nothing
    against the accepted node. An id with a record but no key is
    ``revoked`` (:func:`admission_of`).
    """
    states = {}
    for state in ("minions_rejected", "minions_denied"):
        for mid in keys.get(state) or ():
            states[mid] = "refused"
    for mid in keys.get("minions_pre") or ():
        states[mid] = "pending"
    for mid in keys.get("minions") or ():
        states[mid] = "accepted"
    return states


def admission_of(minion_id, states):
    """Return the admission word of ``minion_id`` in :func:`admission_states`; ``revoked`` without a key."""
    return states.get(minion_id, "revoked")
