"""
Runner ``edge``: the fleet view on the master (docs/ref/runners.rst).

Every function is wrapped by :func:`saltext_edge.errors.command_errors`: a
bad argument, or any error the library reports, is printed as one line and
``salt-run`` exits 1.
"""

import logging

import salt.utils.data

try:
    import saltext_edge
    from saltext_edge import admission as _admission
    from saltext_edge import enrollment_admin as _enr_admin
    from saltext_edge import report_request as _report_request
    from saltext_edge.errors import command_errors as _command_errors

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

    def _command_errors(func):  # __virtual__ refuses the module anyway
        return func


try:
    # fleet alerts (docs/howto/site-goes-dark.rst)
    from saltext_edge import alerts as _alerts
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


@_command_errors
def version():
    """
    Return the version of saltext-edge on the master (a string).

    CLI Example:

    .. code-block:: bash

        salt-run edge.version
    """
    return saltext_edge.__version__


@_command_errors
def report(ping=False, site=None, timeout=None, details=False, html=None, quiet=False):
    """
    The fleet report, from the running ``edge_fleet`` engine's memory (the
    state its metrics are served from; the stored record only when no engine
    answers, said in ``warning``; no node is contacted unless
    ``ping=True``): per site how many nodes are
    online / late / offline / never seen, whether the site is degraded, the
    uplink quality counts and trend (median and p95 RTT, loss over the last
    hour and day), hourly history; the nodes that are not online (all of
    them with ``details=True``) with last seen as ISO 8601 UTC; flapping
    nodes; pending and refused keys with the admission reason. Progress
    events are fired on the master event bus with the tag
    ``edge/report/progress``.

    ping : False
        ``True``: also ask every node for a signed liveness proof
        (``edge.prove``, checked against its accepted key), reported under
        ``ping`` (``answered``, ``silent``, ``unproven``); the proven nodes
        are sent to the ``edge_fleet`` engine as signs of life.

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
        ``generated_at``, ``answered_by``, ``totals`` and ``summary``.

    quiet : False
        For cron: print nothing and exit 0 when the report came from the
        running engine (and the page was written); print one line and exit
        1 when it did not, or when no engine answered (the page is still
        written, from the stored record).

    Returns a dict: ``generated_at`` (ISO), ``answered_by`` (``engine
    <master id>`` or ``stored record``), ``warning`` (one line, only when
    no engine answered), ``totals`` (``online``, ``late``,
    ``offline``, ``never_seen``, ``pending``, ``refused``, ``sites``),
    ``summary`` (one flat row per site plus ``TOTAL``),
    ``sites`` (per site: the counts, ``degraded``, ``quality``, ``trend``
    ``{"1h", "24h"}``, ``history``, ``nodes``), ``pending`` (ids),
    ``refused`` (id: reason), ``flapping`` (ids), ``engines`` (per master:
    when its engine started and last wrote the record), ``elapsed_s``;
    ``ping`` with ``ping=True``. See docs/howto/fleet-report.rst.

    CLI Example:

    .. code-block:: bash

        salt-run edge.report --out=edge
        salt-run edge.report site='sh-*' details=True --out=json
        salt-run edge.report ping=True --out=edge
        salt-run edge.report html=/srv/www/edge/fleet.html quiet=True
    """
    return _report_request.run(
        __opts__, ping=ping, site=site, timeout=timeout, details=details, html=html, quiet=quiet
    )


@_command_errors
def node(minion_id):
    """
    One node's record and history as the running ``edge_fleet`` engine
    holds it (the stored record when no engine answers, said in
    ``warning``):
    status, last seen (ISO 8601 UTC) and through what, the thresholds that
    apply to it, its last uplink figures, the trend over the last hour and
    day, the raw samples of the last hour, the hourly rows (30 days), its
    online/offline transitions, its admission state and whether it flaps.

    Returns a dict (see docs/ref/engine.rst); raises an error when the
    master has neither a key nor a record for ``minion_id``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.node sh-3-gw-01 --out=edge
        salt-run edge.node sh-3-gw-01 --out=json
    """
    return _report_request.node(__opts__, minion_id)


@_command_errors
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
    When ``match`` names ids without glob characters, ``wait`` ends as soon
    as each of them has signed in with a token.

    Returns ``{minion_id: {"decision": "accepted"|"refused"|"no_token",
    "reason": None|"bad_token"|"key_changed"|"revoked_site"|"id_not_allowed"|
    "site_mismatch"|"revoked_node"|"revoked_key"|"malformed_token"|"no_token_seen",
    "site": str|None, "action":
    "accepted"|"kept"|"rejected"|"deleted"|"none"}}`` (``{}`` when nothing is
    pending). Never returns a token, site key or secret.

    CLI Example:

    .. code-block:: bash

        salt-run edge.accept_pending
        salt-run edge.accept_pending match='sh-3-*' dry_run=True
        salt-run edge.accept_pending wait=30
        salt-run edge.accept_pending match=sh-3-node-07 wait=300
    """
    return _admission.accept_pending(
        __opts__, match=match, dry_run=salt.utils.data.is_true(dry_run), wait=wait
    )


@_command_errors
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
    ret = _enr_admin.write_site_key(__opts__, site, path)
    log.info(
        "edge: wrote the site key of %s to %s (fingerprint %s)",
        site,
        ret["path"],
        ret["fingerprint"],
    )
    return ret


@_command_errors
def revoke_node(minion_id):
    """
    Remove one node for good: its key is deleted from the key store whatever
    its state, its recorded token dropped, and the id is refused
    (``revoked_node``) at every later sign-in, even with a valid token. Every
    public key known for the id (the one in the key store, the one it was
    admitted with, the one its token was presented with) is barred for that
    id for good (``revoked_key``), also after ``edge.unrevoke_node``: a
    stolen key pair never gets back in. The revocation is kept beside the
    key store (``<pki_dir>/edge/nodes``), so it survives restarts and is
    shared by masters on one key store; it shows in ``salt-run
    edge.node_index``. Undo with ``salt-run edge.unrevoke_node ID``.

    Returns ``{"id": str, "revoked": True, "key_removed": "accepted"|
    "pending"|"rejected"|None, "revoked_keys": [SPKI SHA-256 hex],
    "will_admit": None}``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.revoke_node sh-3-edge-17
    """
    return _admission.revoke_node(__opts__, minion_id, revoked=True)


@_command_errors
def unrevoke_node(minion_id):
    """
    Lift the revocation of ``minion_id``: a node with a *new* key pair is
    admitted at its next sign-in with a valid token; the keys revoked before
    stay barred for the id (``revoked_key``), whatever token they bring.
    Returns ``{"id": str, "revoked": False, "key_removed": None,
    "revoked_keys": [SPKI SHA-256 hex] (still barred), "will_admit":
    {"sha256": str, "salt_key_finger": str}|None}``: ``will_admit`` is the
    key pending for the id now, if any and not barred (``salt_key_finger``
    as ``salt-key -f ID`` prints it): compare it with the rebuilt node's
    before it signs in again.

    CLI Example:

    .. code-block:: bash

        salt-run edge.unrevoke_node sh-3-edge-17
    """
    return _admission.revoke_node(__opts__, minion_id, revoked=False)


@_command_errors
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


@_command_errors
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
    ret = _enr_admin.create(__opts__, site, path, uses=uses, expires=expires, ids=ids, note=note)
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


@_command_errors
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

        salt-run edge.enrollment_keys --out=edge
        salt-run edge.enrollment_keys site=sh-3 status=active --out=yaml
    """
    return _enr_admin.listing(__opts__, site=site, status=status)


@_command_errors
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
    ret = _enr_admin.revoke(__opts__, str(enrollment_id))
    log.warning(
        "edge: enrollment %s of site %s revoked by %s", ret["id"], ret["site"], _enr_admin.creator()
    )
    return ret


@_command_errors
def alert(event):
    """
    Post one fleet alert: what the shipped reactor ``edge_alert.sls`` runs for
    each transition of the ``edge_fleet`` engine (docs/howto/site-goes-dark.rst).
    The event must be sealed by this master (``edge_seal``): anything else is
    not posted. The JSON document goes to ``edge:alerts:url`` from the master
    config (never an argument, so the URL stays out of the job cache and the
    event bus), with ``edge:alerts:timeout`` (default 10 s).

    event
        The event as JSON text or a dict: ``{"tag": ..., "data": {...}}``.

    Returns a dict: ``posted`` (bool), ``event`` (the tag), ``status`` (the
    web hook's HTTP status) and, when nothing was posted, ``reason``.

    CLI Example:

    .. code-block:: bash

        # run by the reactor; by hand an unsealed event is refused:
        salt-run edge.alert '{"tag": "edge/node/n1/offline", "data": {"id": "n1"}}'
    """
    return _alerts.post(__opts__, event)
