"""
Runner ``edge``: the fleet view on the master (docs/ref/runners.rst).
"""

import logging
import os

import salt.exceptions
import salt.utils.data

try:
    import saltext_edge
    import saltext_edge.report as edge_report
    from saltext_edge import admission as _admission
    from saltext_edge import enrollment_admin as _enr_admin
    from saltext_edge import shared_secret as _secrets
    from saltext_edge import tokens as _token
    from saltext_edge.errors import EdgeCommandError
    from saltext_edge.view import page as _fleet_page  # view: report html=PATH

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or run salt-run saltutil.sync_utils",
        )
    return __virtualname__


def version():
    """
    Return the version of saltext-edge on the master (a string).

    CLI Example:

    .. code-block:: bash

        salt-run edge.version
    """
    return saltext_edge.__version__


def report(ping=False, site=None, timeout=None, details=False, html=None):
    """
    The fleet report, from the record the ``edge_fleet`` engine keeps (no
    node is contacted unless ``ping=True``): per site how many nodes are
    online / late / offline / never seen, whether the site is degraded, the
    uplink quality counts and trend (median and p95 RTT, loss over the last
    hour and day), hourly history; the nodes that are not online (all of
    them with ``details=True``) with last seen as ISO 8601 UTC; flapping
    nodes; pending and refused keys with the admission reason. Progress
    events are fired on the master event bus with the tag
    ``edge/report/progress``.

    ping : False
        ``True``: also one ``test.ping`` broadcast as a live check, reported
        under ``ping`` (``answered``, ``silent``); it does not change the
        status, which comes from the record.

    site : None
        Only report sites matching this glob (``(no site)`` for nodes without one).

    timeout : None
        Seconds to wait for ping answers (default: the master's ``timeout``).

    details : False
        List every node under its site, online ones included.

    html : None
        An absolute file path: write the report as one self-contained HTML
        page there (every node listed; atomically, mode 0644; see
        docs/howto/grafana.rst) and return only ``html`` (the path),
        ``generated_at``, ``totals`` and ``summary``.

    Returns a dict: ``generated_at`` (ISO), ``totals`` (``online``, ``late``,
    ``offline``, ``never_seen``, ``pending``, ``refused``, ``sites``),
    ``summary`` (one flat row per site plus ``TOTAL``, for ``--out=table``),
    ``sites`` (per site: the counts, ``degraded``, ``quality``, ``trend``
    ``{"1h", "24h"}``, ``history``, ``nodes``), ``pending`` (ids),
    ``refused`` (id: reason), ``flapping`` (ids), ``engines`` (per master:
    when its engine started and last wrote the record), ``elapsed_s``;
    ``ping`` with ``ping=True``. See docs/howto/fleet-report.rst.

    CLI Example:

    .. code-block:: bash

        salt-run edge.report
        salt-run edge.report --out=table
        salt-run edge.report site='sh-*' details=True --out=json
        salt-run edge.report ping=True
        salt-run edge.report html=/srv/www/edge/fleet.html
    """
    # --- view: html=PATH (fleet page) -- checked before any work ---------
    if html is not None:
        if not isinstance(html, str) or not os.path.isabs(html) or html.endswith(os.sep):
            raise salt.exceptions.SaltInvocationError(
                "html must be an absolute file path, such as /srv/www/edge/fleet.html"
            )
        if not os.path.isdir(os.path.dirname(html)):
            raise salt.exceptions.SaltInvocationError(
                f"html: the directory {os.path.dirname(html)} does not exist"
            )
        details = True  # the page lists every node
    # --- end view ---------------------------------------------------------
    if timeout is not None:
        try:
            timeout = int(timeout)
        except (TypeError, ValueError):
            raise salt.exceptions.SaltInvocationError(
                "timeout must be a whole number of seconds"
            ) from None
        if not 1 <= timeout <= 3600:
            raise salt.exceptions.SaltInvocationError("timeout must be 1-3600 seconds")
    progress = edge_report.event_progress(__opts__)
    try:
        ret = edge_report.build(
            __opts__,
            ping=salt.utils.data.is_true(ping),
            site=None if site in (None, "") else str(site),
            timeout=timeout,
            details=salt.utils.data.is_true(details),
            progress=progress,
        )
    except ValueError as exc:
        # a bad edge:fleet setting in the master config
        raise salt.exceptions.SaltInvocationError(str(exc)) from exc
    finally:
        progress.close()
    # --- view: write the fleet page ---------------------------------------
    if html is not None:
        try:
            path = _fleet_page.write(ret, html)
        except OSError as exc:
            raise EdgeCommandError(
                f"cannot write the fleet page {html}: {exc.strerror or exc}"
            ) from None
        return {
            "html": path,
            "generated_at": ret.get("generated_at"),
            "totals": ret.get("totals"),
            "summary": ret.get("summary"),
        }
    # --- end view ---------------------------------------------------------
    return ret


def node(minion_id):
    """
    One node's record and history from the ``edge_fleet`` engine's record:
    status, last seen (ISO 8601 UTC) and through what, the thresholds that
    apply to it, its last uplink figures, the trend over the last hour and
    day, the raw samples of the last hour, the hourly rows (30 days), its
    online/offline transitions, its admission state and whether it flaps.

    Returns a dict (see docs/ref/engine.rst); raises an error when the
    master has neither a key nor a record for ``minion_id``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.node sh-3-gw-01
        salt-run edge.node sh-3-gw-01 --out=json
    """
    if not isinstance(minion_id, str) or not minion_id:
        raise salt.exceptions.SaltInvocationError("edge.node needs a minion id")
    try:
        ret = edge_report.node(__opts__, minion_id)
    except ValueError as exc:
        raise salt.exceptions.SaltInvocationError(str(exc)) from exc
    if ret is None:
        raise salt.exceptions.SaltInvocationError(
            f"edge.node: no key and no record for {minion_id!r}"
        )
    return ret


def accept_pending(match="*", dry_run=False, wait=0):
    """
    Admit pending minion keys that prove themselves with a valid
    ``edge_token`` (docs/concepts.rst).

    Every pending key matching ``match`` (a glob, or comma-separated globs)
    is verified against the token recorded for it (by the reactor, or seen
    while listening to ``salt/auth`` events for ``wait`` seconds): the token
    must be made for the public key pending now, by a current or previous
    fleet secret, for a site that is not in ``edge:revoked_sites`` and (if
    ``edge:site_ids`` lists globs for the site) for an allowed minion id.
    Valid keys are accepted; refused ones are kept, rejected or deleted as
    ``edge:on_invalid`` says; keys without a token are left alone.
    ``dry_run=True`` changes nothing (no key moved, nothing stored, no event).

    Returns ``{minion_id: {"decision": "accepted"|"refused"|"no_token",
    "reason": None|"bad_token"|"key_changed"|"revoked_site"|"id_not_allowed"|
    "site_mismatch"|"revoked_node"|"malformed_token"|"no_token_seen", "site": str|None, "action":
    "accepted"|"kept"|"rejected"|"deleted"|"none"}}`` (``{}`` when nothing is
    pending). Never returns a token, site key or secret.

    CLI Example:

    .. code-block:: bash

        salt-run edge.accept_pending
        salt-run edge.accept_pending match='sh-3-*' dry_run=True
        salt-run edge.accept_pending wait=30
    """
    try:
        wait = float(wait or 0)
    except (TypeError, ValueError):
        raise salt.exceptions.SaltInvocationError("wait must be a number of seconds") from None
    if wait < 0 or wait > 3600:
        raise salt.exceptions.SaltInvocationError("wait must be between 0 and 3600 seconds")
    if not isinstance(match, str) or not match:
        raise salt.exceptions.SaltInvocationError("match must be a non-empty glob")
    dry_run = salt.utils.data.is_true(dry_run)
    try:
        # fail closed before listening or touching anything
        secrets = _secrets.master_secrets(__opts__)
        _admission.policy(__opts__)
        fresh = _admission.collect_auth_events(__opts__, wait, match=match) if wait else None
        return _admission.decide_and_act(
            __opts__, match=match, dry_run=dry_run, secrets=secrets, extra_records=fresh
        )
    except (_admission.AdmissionError, _secrets.SecretError) as exc:
        raise EdgeCommandError(str(exc)) from None


def site_key(site, path=None):
    """
    Write the site key ``K_site`` of ``site`` (derived from the master's
    current fleet secret) to a NEW file with mode 0600, for provisioning the
    edge nodes of that site (minion option ``edge:site_key_file``).

    ``path`` defaults to ``<pki_dir>/edge/sites/<site>.key``; an existing file
    is never overwritten. The key itself is never returned or logged (Salt
    logs and caches runner returns); print it with the console script
    ``saltext-edge site-key SITE`` instead if a pipeline needs it on stdout.

    Returns ``{"site": str, "path": str, "fingerprint": str}`` where
    ``fingerprint`` is a short non-reversible digest to compare keys by.

    CLI Example:

    .. code-block:: bash

        salt-run edge.site_key sh-3
        salt-run edge.site_key sh-3 path=/srv/provision/sh-3.key
    """
    try:
        _token.validate_site(site)
    except _token.TokenError as exc:
        raise salt.exceptions.SaltInvocationError(str(exc)) from None
    if path is None:
        path = os.path.join(__opts__["pki_dir"], "edge", "sites", f"{site}.key")
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    elif not isinstance(path, str) or not os.path.isabs(path):
        raise salt.exceptions.SaltInvocationError("path must be an absolute file path")
    try:
        k_site = _secrets.master_site_key(__opts__, site)
    except _secrets.SecretError as exc:
        raise EdgeCommandError(str(exc)) from None
    try:
        _enr_admin.write_new_file(path, k_site)
    except _enr_admin.KeyFileError as exc:
        raise EdgeCommandError(str(exc)) from None
    fingerprint = _token.key_fingerprint(k_site)
    log.info("edge: wrote the site key of %s to %s (fingerprint %s)", site, path, fingerprint)
    return {"site": site, "path": path, "fingerprint": fingerprint}


def revoke_node(minion_id):
    """
    Remove one node for good: its key is deleted from the key store whatever
    its state, its recorded token dropped, and the id is refused
    (``revoked_node``) at every later sign-in, even with a valid token. The
    revocation is kept beside the key store (``<pki_dir>/edge/nodes``), so it
    survives restarts and is shared by masters on one key store; it shows in
    ``salt-run edge.node_index``. Undo with ``salt-run edge.unrevoke_node ID``.

    Returns ``{"id": str, "revoked": True, "key_removed": "accepted"|
    "pending"|"rejected"|None}``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.revoke_node sh-3-edge-17
    """
    return _revoke(minion_id, True)


def unrevoke_node(minion_id):
    """
    Lift the revocation of ``minion_id`` (it is admitted again at its next
    sign-in with a valid token). Returns ``{"id": str, "revoked": False,
    "key_removed": None}``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.unrevoke_node sh-3-edge-17
    """
    return _revoke(minion_id, False)


def _revoke(minion_id, revoked):
    if not isinstance(minion_id, str) or not _admission.valid_id(__opts__, minion_id):
        raise salt.exceptions.SaltInvocationError("give one valid minion id")
    try:
        return _admission.revoke_node(__opts__, minion_id, revoked=revoked)
    except _admission.AdmissionError as exc:
        raise EdgeCommandError(str(exc)) from None


def node_index():
    """
    Return, per accepted minion and per revoked id, the site the master
    verified when it admitted it and what admitted it: ``{id: {"site":
    str|None, "admitted_by": "enrollment:<id>"|"token:<site>"|"token:<site>
    (previous secret)"|"outside"|None, "revoked": bool, "admitted_at": ISO 8601|None}}``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.node_index --out=yaml
    """
    return _admission.node_index(__opts__)


def enrollment_key(site, path, uses=1, expires="24h", ids=None, note=None):
    """
    Create an enrollment key: a key that admits at most ``uses`` nodes of
    ``site`` until it expires (docs/enrollment.rst). The key string is
    written to the NEW file ``path`` (mode 0600, never overwritten) for the
    node's ``edge:enrollment_key_file``; it is never returned or logged.
    The limits are kept beside the key store (``<pki_dir>/edge/enrollments``),
    shared by the masters on that key store.

    site
        The site the key enrolls nodes into.

    path
        Absolute path of a new file to write the key string to.

    uses : 1
        How many nodes it may admit (1 to 100000).

    expires : 24h
        How long it is valid: seconds, or ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` (at most 366 days).

    ids : None
        One minion-id glob the admitted nodes must match.

    note : None
        Free text shown in the listing (at most 200 printable characters).

    Returns ``{"id", "site", "uses", "uses_left", "expires_at",
    "created_at", "creator", "note", "ids", "revoked_at", "status",
    "admitted", "path", "fingerprint"}``; ``creator`` is ``user@host`` of
    whoever ran it (``SUDO_USER`` first), ``fingerprint`` a short
    non-reversible digest of the key.

    CLI Example:

    .. code-block:: bash

        salt-run edge.enrollment_key site=sh-3 path=/srv/provision/sh-3-edge-17.key
        salt-run edge.enrollment_key site=sh-3 uses=20 expires=7d ids='sh-3-*' note='rack B' path=/srv/provision/sh-3-rackB.key
    """
    try:
        ret = _enr_admin.create(
            __opts__,
            site,
            path,
            uses=uses,
            expires=expires,
            ids=ids,
            note=None if note is None else str(note),
        )
    except (_token.TokenError, _enr_admin.KeyFileError) as exc:
        raise EdgeCommandError(str(exc)) from None
    except (_secrets.SecretError, _admission.AdmissionError) as exc:
        raise EdgeCommandError(str(exc)) from None
    log.info(
        "edge: created enrollment %s of site %s (uses %s, expires %s, by %s, fingerprint %s)",
        ret["id"],
        ret["site"],
        ret["uses"],
        ret["expires_at"],
        ret["creator"],
        ret["fingerprint"],
    )
    return ret


def enrollment_keys(site=None, status=None):
    """
    List the enrollment keys (no key material): per enrollment its ``id``,
    ``site``, ``uses``, ``uses_left``, ``expires_at``, ``created_at``,
    ``creator``, ``note``, ``ids``, ``revoked_at``, ``status``
    (``active|expired|exhausted|enrollment_revoked``) and ``admitted`` (the
    ids of every node it admitted).

    site : None
        Only this site (a glob).

    status : None
        Only enrollments in this status.

    Returns a list of dicts, oldest first.

    CLI Example:

    .. code-block:: bash

        salt-run edge.enrollment_keys
        salt-run edge.enrollment_keys site=sh-3 status=active --out=yaml
    """
    import fnmatch

    out = _enr_admin.listing(__opts__)
    if site is not None:
        out = [e for e in out if fnmatch.fnmatchcase(e["site"], str(site))]
    if status is not None:
        out = [e for e in out if e["status"] == status]
    return out


def revoke_enrollment(enrollment_id):
    """
    End enrollment ``enrollment_id`` now: later sign-ins with its key are
    refused (``enrollment_revoked``). Nodes it already admitted keep their
    keys (remove one with ``salt-run edge.revoke_node ID``).

    Returns the enrollment's listing entry (see ``edge.enrollment_keys``).

    CLI Example:

    .. code-block:: bash

        salt-run edge.revoke_enrollment 3f9c0a1b2c3d4e5f
    """
    try:
        ret = _enr_admin.revoke(__opts__, str(enrollment_id))
    except _token.TokenError as exc:
        raise EdgeCommandError(str(exc)) from None
    except _admission.AdmissionError as exc:
        raise EdgeCommandError(str(exc)) from None
    log.warning(
        "edge: enrollment %s of site %s revoked by %s", ret["id"], ret["site"], _enr_admin.creator()
    )
    return ret
