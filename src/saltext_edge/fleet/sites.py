"""
Where a node belongs: the ONE place the fleet code asks which site a node is
in and what admitted it (see ``docs/ref/engine.rst``, "Sites").

Preference: the site the master verified when it admitted the key
(admission records), then the site the node's own heartbeat names.
"""

import logging

from saltext_edge import admission as _admission

log = logging.getLogger(__name__)


def node_index(opts):
    """
    Return ``{minion_id: {"site": str|None, "admitted_by": str|None,
    "decision": str|None, "reason": str|None}}`` from the master's admission
    records; ``{}`` when they cannot be read (logged, never raised).

    Uses ``admission.node_index(opts)`` when the admission library has it
    (master-verified site and what admitted the key), else
    ``admission.list_decisions(opts)``.
    """
    try:
        index = getattr(_admission, "node_index", None)
        if callable(index):
            data = index(opts)
            if isinstance(data, dict):
                out = {}
                for mid, entry in data.items():
                    if isinstance(entry, dict):
                        out[mid] = {
                            "site": entry.get("site"),
                            "admitted_by": entry.get("admitted_by"),
                            "decision": entry.get("decision", "accepted"),
                            "reason": entry.get("reason"),
                        }
                return out
        decisions = _admission.list_decisions(opts)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("edge_fleet: admission records unavailable: %s", exc.__class__.__name__)
        return {}
    out = {}
    for mid, entry in (decisions or {}).items():
        if not isinstance(entry, dict):
            continue
        decision = entry.get("decision")
        verified = decision == "accepted"
        out[mid] = {
            # only an accepted decision's site was checked against a site key
            "site": entry.get("site") if verified else None,
            "admitted_by": "token" if verified else None,
            "decision": decision,
            "reason": entry.get("reason"),
        }
    return out


def site_of(minion_id, index, rec=None):
    """Return the site of ``minion_id``: the verified one from ``index``, else the heartbeat's, else ``None``."""
    entry = index.get(minion_id)
    if entry and isinstance(entry.get("site"), str) and entry["site"]:
        return entry["site"]
    if rec and isinstance(rec.get("site"), str) and rec["site"]:
        return rec["site"]
    return None


def keys(opts):
    """
    Return ``{"minions": [...], "minions_pre": [...], "minions_rejected": [...],
    "minions_denied": [...]}`` from Salt's key store (empty lists when it cannot be read).
    """
    import salt.key  # pylint: disable=import-outside-toplevel

    try:
        found = salt.key.Key(opts).list_keys()
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("edge_fleet: cannot list keys: %s", exc.__class__.__name__)
        found = {}
    return {
        k: list(found.get(k) or [])
        for k in ("minions", "minions_pre", "minions_rejected", "minions_denied")
    }
