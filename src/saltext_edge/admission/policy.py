"""
The admission policy read from the master options (``edge:``), typed
strictly: a value that is not of the required type is a configuration error
that refuses admission and says why (docs/configuration.rst, "Admission
policy"). YAML reads unquoted ``no``, ``0042`` or ``1.10`` as a boolean or a
number; such a value never silently matches nothing.
"""

import hashlib
import json

from saltext_edge import config as _config
from saltext_edge import tokens as _token
from saltext_edge.errors import EdgeError

ON_INVALID = ("keep", "reject", "delete")
DEFAULT_LOCK_TIMEOUT = 60


class AdmissionError(EdgeError, ValueError):
    """Bad admission configuration or input; the message holds no secret."""


def edge_conf(opts):
    """Return the ``edge:`` mapping of ``opts`` (``{}`` when unset); raise :class:`AdmissionError` on a non-mapping."""
    return _config.edge_conf(opts, error=AdmissionError)


def _typename(value):
    return "null" if value is None else type(value).__name__


def _site(value, where):
    if not isinstance(value, str):
        raise AdmissionError(
            f"{where}: {value!r} is read as a {_typename(value)}, not a site name; "
            "quote site names in YAML (e.g. '0042', 'no'); admitting nothing"
        )
    try:
        _token.validate_site(value)
    except _token.TokenError as exc:
        raise AdmissionError(
            f"{where}: {value!r} is not a site name ({exc}); admitting nothing"
        ) from None
    return value


def _bool(conf, name, default):
    value = conf.get(name, default)
    if not isinstance(value, bool):
        raise AdmissionError(
            f"edge:{name} must be true or false, not a {_typename(value)}; admitting nothing"
        )
    return value


def policy(opts):
    """
    Return the admission policy of the master options as a dict:
    ``revoked_sites`` (frozenset of site names), ``site_ids`` (``{site:
    tuple of id globs}``), ``on_invalid`` (``keep|reject|delete``),
    ``auto_admit`` (bool), ``bind_ids`` (bool, default true),
    ``require_enrollment`` (bool, default false: refuse v1 site-key tokens) and
    ``lock_timeout`` (seconds, default 60).

    Raises :class:`AdmissionError`, naming the option and why, when any value
    is not exactly of its required type (fail closed).
    """
    conf = edge_conf(opts)
    revoked = conf.get("revoked_sites")
    if revoked is None:
        revoked = []
    if not isinstance(revoked, list):
        raise AdmissionError(
            f"edge:revoked_sites must be a list of site names, not a {_typename(revoked)}; "
            "admitting nothing"
        )
    revoked = frozenset(_site(s, "edge:revoked_sites") for s in revoked)
    site_ids = conf.get("site_ids")
    if site_ids is None:
        site_ids = {}
    if not isinstance(site_ids, dict):
        raise AdmissionError(
            f"edge:site_ids must map site names to lists of id globs, not a {_typename(site_ids)}; "
            "admitting nothing"
        )
    norm_ids = {}
    for site, globs in site_ids.items():
        _site(site, "edge:site_ids")
        if (
            not isinstance(globs, list)
            or not globs
            or not all(isinstance(g, str) and g for g in globs)
        ):
            raise AdmissionError(
                f"edge:site_ids:{site} must be a non-empty list of id globs (strings); "
                "admitting nothing"
            )
        norm_ids[site] = tuple(globs)
    on_invalid = conf.get("on_invalid", "keep")
    if not isinstance(on_invalid, str) or on_invalid not in ON_INVALID:
        raise AdmissionError(
            f"edge:on_invalid must be one of keep, reject, delete, not {on_invalid!r}; admitting nothing"
        )
    timeout = conf.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 1 <= timeout <= 3600
    ):
        raise AdmissionError(
            "edge:lock_timeout must be a number of seconds from 1 to 3600; admitting nothing"
        )
    return {
        "revoked_sites": revoked,
        "site_ids": norm_ids,
        "on_invalid": on_invalid,
        "auto_admit": _bool(conf, "auto_admit", False),
        "bind_ids": _bool(conf, "bind_ids", True),
        "require_enrollment": _bool(conf, "require_enrollment", False),
        "lock_timeout": float(timeout),
    }


def fingerprint(pol, secrets):
    """
    Return a short digest of what a decision depends on (the secrets, by a
    non-reversible fingerprint, and the policy): a refusal remembered under
    one fingerprint is decided again once it changes (docs/concepts.rst).
    """
    data = {
        "secrets": [_token.key_fingerprint(s) for s in secrets],
        "revoked_sites": sorted(pol["revoked_sites"]),
        "site_ids": {k: list(v) for k, v in sorted(pol["site_ids"].items())},
        "bind_ids": pol["bind_ids"],
        "require_enrollment": pol.get("require_enrollment", False),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
