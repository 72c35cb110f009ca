"""
Execution module ``edge``: diagnostics on an edge node (``docs/howto/diagnose.rst``),
the node's answer to a liveness challenge (``edge.prove``) and, on the master
in a reactor SLS, the check of a sealed event (``edge.event_verified``,
``docs/howto/site-goes-dark.rst``).

Thin layer: parses arguments, calls :mod:`saltext_edge` library code, shapes
the return. Library modules are imported at load time (a synced copy finds
them in ``_utils`` only while Salt loads it).
"""

import logging

from salt.exceptions import CommandExecutionError

try:
    import saltext_edge
    from saltext_edge import audit as _audit
    from saltext_edge import config as _config
    from saltext_edge import diag as _diag
    from saltext_edge import errors as _errors
    from saltext_edge import http_check as _http_check
    from saltext_edge import masters as _masters
    from saltext_edge.uplink import args as _args
    from saltext_edge.uplink import probe as _probe
    from saltext_edge.uplink import targets as _targets

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

try:
    # trust (docs/howto/site-goes-dark.rst): sealed events, liveness proofs
    from saltext_edge import eventauth as _eventauth
    from saltext_edge.fleet import proof as _proof
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or sync it with saltutil.sync_all",
        )
    return __virtualname__


def _edge_errors(func):
    # one error rule for runner, wheel and this module (errors.edge_errors):
    # bad input is one CommandExecutionError line, our own TypeError an internal error
    if not HAS_LIB:  # pragma: no cover - __virtual__ refuses the module anyway
        return func
    return _errors.edge_errors(
        error=CommandExecutionError, usage="salt-call sys.doc {name}", log_place="the minion's log"
    )(func)


@_edge_errors
def version():
    """
    Return the version of saltext-edge this minion runs (a string).

    CLI Example:

    .. code-block:: bash

        salt '*' edge.version
    """
    return saltext_edge.__version__


# --------------------------------------------------------------------------
# diagnostics: thin wrappers over saltext_edge.uplink / .diag
# --------------------------------------------------------------------------


def _uplink_conf():
    return _config.edge_section(__opts__, "uplink")


@_edge_errors
def uplink(targets=None, count=None, timeout=None, budget=5.0, thresholds=None, mode="zmtp"):
    """
    Probe the uplink now and classify it: every target is timed from TCP
    connect to the ZeroMQ greeting a Salt master sends at once on 4505/4506,
    all targets in parallel, within ``budget`` seconds in total.

    targets
        List (or comma-separated string) of ``host``, ``host:port`` or
        ``[v6]:port``; a bare host means ports 4505 and 4506. Default:
        ``edge:uplink:targets`` from the minion config, else the configured
        master(s) on their publish and return ports.

    count
        Samples per target, 1-100 (default ``edge:uplink:count`` or 3).

    timeout
        Seconds one sample may take (default ``edge:uplink:timeout`` or 1).

    budget
        Hard limit in seconds for the whole call (default 5).

    thresholds
        Override the classification limits, e.g.
        ``{good: {rtt_ms: 50}, fair: {loss_pct: 10}}`` (default
        ``edge:uplink:thresholds``, else good <= 100 ms / 30 ms jitter / 0 %
        loss, fair <= 300 ms / 100 ms / 20 %).

    mode
        ``zmtp`` (default: wait for the ZeroMQ greeting) or ``connect`` (a
        bare TCP connect, for targets that are not ZeroMQ sockets).

    Returns a dict: ``quality`` (good, fair, poor, down, unknown), ``rtt_ms``,
    ``jitter_ms``, ``loss_pct``, ``target`` (the target the verdict rests
    on), ``checked_at``, ``elapsed_ms``, ``budget_s`` and ``targets`` (per
    target: samples, loss, quality and the reasons samples were lost, e.g.
    ``timeout``, ``refused``, ``dns``, ``closed_without_greeting``).

    CLI Example:

    .. code-block:: bash

        salt '*' edge.uplink
        salt node7 edge.uplink targets='[salt-a.example.net, "10.0.0.5:4506"]' count=5
    """
    conf = _uplink_conf()
    if targets is None:
        try:
            targets = _targets.targets(__opts__, conf)
        except ValueError as err:
            raise ValueError(f"bad uplink target or master in the minion config: {err}") from err
    return _probe.probe(
        targets,
        count=count if count is not None else conf.get("count", _args.DEFAULT_COUNT),
        timeout=timeout if timeout is not None else conf.get("timeout", _args.DEFAULT_TIMEOUT),
        budget=budget,
        thresholds=thresholds if thresholds is not None else conf.get("thresholds"),
        mode=mode,
    )


@_edge_errors
def check_master(masters=None, count=1, timeout=1.0, budget=3.0):
    """
    Check each configured master: DNS answer and time, reachability and
    latency of the publish (4505) and return (4506) ports up to the ZeroMQ
    greeting, and which master this minion is attached to. All masters are
    checked at once, within ``budget`` seconds.

    masters
        Check these instead of the configured ones (list or comma-separated
        ``host`` / ``host:port``, the port being the return port).

    count
        Samples per port (default 1).

    timeout
        Seconds per sample (default 1).

    budget
        Hard limit for the whole call in seconds (default 3).

    Returns a dict: ``masters`` (per master ``master``, ``host``, ``dns``
    {addresses, time_ms, error, error_class}, ``ports`` [{role, port,
    reachable, rtt_ms, loss_pct, quality, error}], ``reachable``,
    ``quality``, ``active``), ``active`` {master, master_uri, master_ip,
    source}, ``master_type``, ``reachable`` (count), ``quality``, ``uplink``,
    ``elapsed_ms``, ``budget_s``.

    CLI Example:

    .. code-block:: bash

        salt node7 edge.check_master
        salt-call edge.check_master masters='[salt-a.example.net, salt-b.example.net]'
    """
    return _masters.check_master(
        __opts__,
        masters=masters,
        count=count,
        timeout=timeout,
        budget=budget,
        thresholds=_uplink_conf().get("thresholds"),
    )


@_edge_errors
def http_probe(
    url, timeout=5.0, verify=True, ca_bundle=None, proxy=None, method="GET", budget=None
):
    """
    Make one HTTP(S) request with ``requests`` and report how it went.

    url
        ``http://`` or ``https://`` URL (credentials in it are redacted in
        the return).

    timeout
        Seconds for connecting and for reading (default 5).

    verify
        Verify the server's TLS certificate (default True).

    ca_bundle
        Path of a CA bundle to verify against (implies ``verify``).

    proxy
        Proxy URL to use; default: the environment (``HTTPS_PROXY``,
        ``HTTP_PROXY``, ``NO_PROXY``); ``none`` or False: no proxy.

    method
        ``GET`` (default) or ``HEAD``.

    budget
        Hard limit for the whole call in seconds (default ``2 * timeout + 1``).

    Returns a dict: ``ok``, ``status``, ``reason``, ``latency_ms`` (until the
    response headers), ``elapsed_ms``, ``url``, ``method``, ``proxy`` and
    ``proxy_source`` (argument, environment, none, disabled), ``tls``
    (``verify``, ``verified``, ``error``; None for http), ``dns``
    (addresses and time of the host resolved: the proxy's when one is used),
    ``error_class`` (``dns``, ``connect``, ``tls``, ``timeout``, ``http`` or
    None) and ``error``.

    CLI Example:

    .. code-block:: bash

        salt node7 edge.http_probe https://repo.saltproject.io/
        salt node7 edge.http_probe https://10.0.0.5:8443/ ca_bundle=/etc/ssl/edge-ca.pem
    """
    return _http_check.http_probe(
        url,
        timeout=timeout,
        verify=verify,
        ca_bundle=ca_bundle,
        proxy=proxy,
        method=method,
        budget=budget,
    )


@_edge_errors
def config_audit():
    """
    Audit this minion's settings against edge best practice: failover with a
    master list, ``master_alive_interval``, TCP keep-alive for NAT
    (``tcp_keepalive*``), ``ping_interval``, ``random_reauth_delay``,
    ``recon_*``, ``retry_dns`` / ``retry_dns_count`` and ``autosign_grains``.

    Returns a dict: ``findings`` (each ``setting``, ``current``,
    ``recommended``, ``severity`` (ok, info, warning, critical), ``ok``,
    ``why``), ``summary`` (count per severity), ``worst`` and ``ok`` (no
    warning or critical finding).

    CLI Example:

    .. code-block:: bash

        salt -G 'edge_site:*' edge.config_audit --out=json
    """
    return _audit.config_audit(__opts__)


@_edge_errors
def diagnose(
    masters=None,
    targets=None,
    urls=None,
    count=3,
    timeout=1.0,
    budget=5.0,
    verify=True,
    ca_bundle=None,
):
    """
    Why did this node go quiet? Runs :py:func:`check_master`, an uplink probe
    (when ``targets`` are given), :py:func:`http_probe` for each of ``urls``
    and :py:func:`config_audit` in parallel, and returns one verdict, all
    within ``budget`` seconds.

    masters
        Masters to check instead of the configured ones.

    targets
        Extra uplink targets to probe (see :py:func:`uplink`).

    urls
        List (or comma-separated string) of URLs to probe over HTTP(S).

    count, timeout
        Samples per target and seconds per sample (defaults 3 and 1).

    budget
        Hard limit for the whole diagnosis in seconds (default 5).

    verify, ca_bundle
        TLS verification for ``urls`` (see :py:func:`http_probe`).

    Returns a dict: ``verdict`` (``ok``, ``degraded`` or ``down``),
    ``reasons`` (list of strings), ``check_master``, ``uplink``, ``http``,
    ``config_audit``, ``elapsed_ms`` and ``budget_s``.

    CLI Example:

    .. code-block:: bash

        salt node7 edge.diagnose
        salt node7 edge.diagnose urls='[https://registry.example.net/v2/]' budget=8
    """
    return _diag.diagnose(
        __opts__,
        masters=masters,
        targets=targets,
        urls=urls,
        count=count,
        timeout=timeout,
        budget=budget,
        thresholds=_uplink_conf().get("thresholds"),
        verify=verify,
        ca_bundle=ca_bundle,
    )


# --------------------------------------------------------------------------
# trust: events sealed by the master, liveness proofs (docs/howto/site-goes-dark.rst)
# --------------------------------------------------------------------------


def event_verified(tag, data):
    """
    Return ``True`` when the event ``tag`` with ``data`` was fired by a
    process of this master (the ``edge_fleet`` engine, ``edge.report
    ping=True``): its ``edge_seal`` is a valid MAC under the master's event
    key and at most 10 minutes old. ``False`` for anything else, on a minion
    (no key there) included. Meant for reactor SLS files, which render on the
    master with ``salt[...]`` (the shipped ``edge_alert.sls`` does this).

    tag
        The event's tag (``tag`` in a reactor SLS).

    data
        The event's data (``data`` in a reactor SLS).

    CLI Example:

    .. code-block:: bash

        # in a reactor SLS: {% if salt['edge.event_verified'](tag, data) %}
        salt-call edge.event_verified edge/node/n1/offline '{"id": "n1"}'   # False
    """
    return _eventauth.verify(__opts__, tag, data)


@_edge_errors
def prove(challenge):
    """
    Answer a liveness challenge of ``salt-run edge.report ping=True``: return
    this minion's answer signed with its own key (``pki_dir/minion.pem``),
    which the master checks against the key it accepted for this id.

    challenge
        The challenge string the runner publishes (``v1.<nonce>.<time>.<MAC>``).

    Returns a dict: ``proof``, ``id``, ``challenge``, ``uptime_s``,
    ``answered_at`` and ``sig`` (base64). Nothing secret is in it.

    CLI Example:

    .. code-block:: bash

        # published by the runner; by hand only to see the shape:
        salt node7 edge.prove challenge=v1.AAAAAAAAAAAAAAAAAAAAAAAA.0.AAAA
    """
    try:
        return _proof.answer(__opts__, challenge)
    except OSError as err:
        raise CommandExecutionError(
            f"edge: cannot sign with this minion's key: {err.__class__.__name__}"
        ) from err
