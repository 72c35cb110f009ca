"""
Diagnostics for an edge minion (DESIGN.md §5): is the master reachable, over
which path, how well, and are the minion's settings fit for a NAT'ed uplink.

Plain library code with no Salt loader dunders: every function takes the
minion ``opts`` (or explicit arguments) and returns JSON-friendly data.
Network failures are data (``error`` / ``error_class`` fields), never
exceptions; bad arguments raise :class:`DiagArgumentError`. Every function
that touches the network is bounded by a total time budget.

:data:`RECOMMENDED` (setting -> value) and :data:`RECOMMENDED_WHY`
(setting -> reason) are the single definition of the NAT keep-alive and
reconnect settings; the state ``edge.minion_config`` writes the same values.
"""

import threading
import time
import urllib.parse

from saltext_edge import probe as _probe

# --------------------------------------------------------------------------
# recommended settings: defined once, imported by saltext_edge.minion_config
# --------------------------------------------------------------------------

#: NAT keep-alive and reconnect settings of an edge minion (setting -> value).
#: ``edge.minion_config`` with ``nat_keepalive: True`` writes exactly these.
RECOMMENDED = {
    "tcp_keepalive": True,
    "tcp_keepalive_idle": 60,
    "tcp_keepalive_cnt": 5,
    "tcp_keepalive_intvl": 15,
    "ping_interval": 5,
    "random_reauth_delay": 60,
    "recon_default": 1000,
    "recon_max": 60000,
    "recon_randomize": True,
    "retry_dns": 30,
}

#: Settings the state sets from its own parameters (master list, failover,
#: enrollment); audited here with these recommended values.
RECOMMENDED_CORE = {
    "master_type": "failover",
    "master_alive_interval": 30,
    "autosign_grains": ["edge_token"],
    "rejected_retry": True,
}

#: Why each recommended setting matters on an edge node behind NAT.
RECOMMENDED_WHY = {
    "master": (
        "A list of two or more masters gives a failover minion somewhere to go when its "
        "master or the path to it dies."
    ),
    "master_type": (
        "'failover' connects to one master of the list at a time and moves to the next when "
        "it stops answering; 'str' with a list keeps a connection to every master (twice the "
        "NAT state) and a single 'str' master has no fallback."
    ),
    "master_alive_interval": (
        "Seconds between the minion's checks that its master is still alive; 0 disables the "
        "check, so a minion whose master vanished behind NAT never notices and never fails over."
    ),
    "tcp_keepalive": (
        "Kernel keep-alive probes refresh NAT and firewall state on the idle publish "
        "connection; without them a middlebox silently drops the flow and the minion stops "
        "receiving jobs while still believing it is connected."
    ),
    "tcp_keepalive_idle": (
        "First keep-alive probe after this many idle seconds; must be well below common NAT "
        "idle timeouts (AWS NLB 350 s, many NATs 300 s or less). -1 means the OS default "
        "(7200 s on Linux), far too late."
    ),
    "tcp_keepalive_cnt": (
        "Unanswered keep-alive probes before the connection is declared dead; with "
        "tcp_keepalive_intvl it sets how quickly a dead path is noticed (-1: OS default 9)."
    ),
    "tcp_keepalive_intvl": (
        "Seconds between keep-alive probes (-1: OS default 75 s, so a dead path takes "
        "over 11 minutes to notice)."
    ),
    "ping_interval": (
        "Minutes between minion-to-master pings: application traffic on the return channel "
        "that keeps its NAT mapping alive and makes the minion re-connect when pings fail; "
        "0 disables it."
    ),
    "random_reauth_delay": (
        "Upper bound (seconds) of the random wait before re-authenticating, so hundreds of "
        "edge minions do not hit a restarted master at the same instant."
    ),
    "recon_default": (
        "First ZeroMQ reconnect interval in milliseconds; too small hammers the master and "
        "the uplink during an outage."
    ),
    "recon_max": (
        "Cap (milliseconds) of the ZeroMQ reconnect back-off; a larger cap spreads a fleet's "
        "reconnects after a long outage."
    ),
    "recon_randomize": (
        "Randomise the reconnect back-off so a fleet does not reconnect in lock-step."
    ),
    "retry_dns": (
        "Seconds between retries when the master name does not resolve; 0 makes a minion "
        "without DNS at start-up give up (or, outside failover, fall back to 127.0.0.1) "
        "instead of waiting for the uplink."
    ),
    "retry_dns_failover": (
        "With master_type: failover Salt sets retry_dns to 0 itself: a master name that does "
        "not resolve makes the minion move on to the next master instead of waiting."
    ),
    "retry_dns_count": (
        "A retry limit makes the minion exit when DNS is down for long enough; unset means "
        "retry for ever, which is what an unattended edge node needs."
    ),
    "autosign_grains": (
        "The master admits a new edge node only when it presents the edge_token grain; "
        "without 'edge_token' in autosign_grains the token never reaches the master."
    ),
    "rejected_retry": (
        "A new node whose id is squatted by a stranger's pending key is denied until the "
        "master frees the id (edge:on_invalid: delete); Salt's minion exits on a denial "
        "unless rejected_retry is true, and then waits for its service manager."
    ),
}

SEVERITIES = ("ok", "info", "warning", "critical")
_SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}

VERDICTS = ("ok", "degraded", "down")

DEFAULT_DIAG_BUDGET = 5.0
DEFAULT_HTTP_TIMEOUT = 5.0


class DiagArgumentError(ValueError):
    """Bad arguments (network failures are returned as data instead)."""


def _ms(seconds):
    return round(seconds * 1000.0, 3)


# --------------------------------------------------------------------------
# masters from opts
# --------------------------------------------------------------------------


def configured_masters(opts):
    """
    The minion's configured masters as a list of strings, in order: the
    ``master_list`` Salt keeps for a failover minion once it has connected,
    else ``master`` (a string or a list).
    """
    masters = opts.get("master_list") or opts.get("master")
    if masters is None:
        return []
    if isinstance(masters, str):
        masters = [masters]
    out = []
    for entry in masters:
        if isinstance(entry, str) and entry.strip() and entry.strip() not in out:
            out.append(entry.strip())
    return out


def active_master(opts):
    """
    Which master this minion is attached to, as far as its opts tell: a
    running minion (or salt-call) that has connected holds the chosen master
    in ``master`` (a string; for failover the full list moves to
    ``master_list``) and its resolved URI in ``master_uri``. Returns
    ``{"master", "master_uri", "master_ip", "source"}``; ``master`` is None
    when no connection was made (e.g. ``salt-call --local``).
    """
    master = opts.get("master")
    connected = bool(opts.get("master_uri")) and isinstance(master, str) and master != ""
    local = opts.get("file_client") == "local" and not opts.get("use_master_when_local")
    if local or not connected:
        return {
            "master": None,
            "master_uri": None,
            "master_ip": None,
            "source": "local mode" if local else "not connected",
        }
    return {
        "master": master,
        "master_uri": opts.get("master_uri"),
        "master_ip": opts.get("master_ip"),
        "source": "opts.master" + (" (failover list in master_list)" if opts.get("master_list") else ""),
    }


def _learned_publish_port(opts):
    """
    The publish port the master announced when this minion authenticated
    (Salt keeps it in ``salt.crypt.AsyncAuth.creds_map`` in the minion's
    memory; job processes forked from the minion inherit it). None if unknown.
    """
    import sys  # pylint: disable=import-outside-toplevel

    crypt = sys.modules.get("salt.crypt")
    try:
        creds_map = crypt.AsyncAuth.creds_map if crypt else {}
        found = []
        for key, creds in list(creds_map.items()):
            port = creds.get("publish_port") if isinstance(creds, dict) else None
            if port:
                found.append((key, int(port)))
        uri = opts.get("master_uri")
        for key, port in found:
            if uri and uri in repr(key):
                return port
        if len({port for _key, port in found}) == 1:
            return found[0][1]
    except Exception:  # pylint: disable=broad-except
        pass
    return None


def _master_ports(opts):
    """
    ``(publish_port, return_port)`` of the master: the minion's
    ``publish_port`` when set (needed anyway for a non-default master publish
    port), else what the master announced at authentication, else 4505.
    """
    ret_port = _probe.validate_port(opts.get("master_port") or 4506)
    pub = opts.get("publish_port")
    if not pub:
        pub = _learned_publish_port(opts) or 4505
    return _probe.validate_port(pub), ret_port


def master_targets(masters, opts):
    """
    ``[(label, host, [(role, port), ...]), ...]`` for each master string
    (``host``, ``host:port`` overriding the return port, ``[v6]:port``).
    """
    pub_port, ret_port = _master_ports(opts)
    out = []
    for entry in masters:
        pairs = _probe.parse_target(entry, default_ports=(ret_port,))
        host, port = pairs[0]
        out.append((entry, host, [("publish", pub_port), ("return", port)]))
    return out


# --------------------------------------------------------------------------
# check_master
# --------------------------------------------------------------------------


def check_master(opts, masters=None, count=1, timeout=_probe.DEFAULT_TIMEOUT,
                 budget=3.0, thresholds=None):
    """
    Per master: DNS answer and time, reachability and latency of the publish
    (4505) and return (4506) ports measured up to the ZeroMQ greeting, and
    which master is active. All masters and ports are probed at once.

    Returns ``{"masters": [...], "active": {...}, "master_type", "reachable",
    "quality", "uplink": {...}, "elapsed_ms", "budget_s"}``; each master has
    ``master``, ``host``, ``dns`` (``addresses``, ``time_ms``, ``error``,
    ``error_class``), ``ports`` (list of ``role``, ``port``, ``reachable``,
    ``rtt_ms``, ``quality``, ``loss_pct``, ``error``), ``reachable`` (both
    ports answered), ``quality`` and ``active``.
    """
    started = time.perf_counter()
    budget = _probe.validate_seconds(budget, "budget")
    count = _probe.validate_count(count)
    timeout = _probe.validate_seconds(timeout, "timeout")
    if masters is None:
        masters = configured_masters(opts)
    elif isinstance(masters, str):
        masters = [m for m in masters.split(",") if m.strip()]
    try:
        plan = master_targets([str(m).strip() for m in masters], opts)
    except _probe.ProbeArgumentError as err:
        raise DiagArgumentError(str(err)) from err
    active = active_master(opts)

    hosts = [host for _label, host, _ports in plan]
    dns = _probe.resolve_many(hosts, min(timeout, budget / 2.0)) if hosts else {}
    targets = [(host, port) for _label, host, ports in plan for _role, port in ports]
    remaining = max(0.05, budget - (time.perf_counter() - started))
    result = _probe.probe(
        targets, count=count, timeout=timeout, budget=remaining, thresholds=thresholds,
        resolved=dns,
    ) if targets else None
    by_target = {(t["host"], t["port"]): t for t in (result["targets"] if result else [])}

    out_masters = []
    for label, host, ports in plan:
        res = dns.get(host, {})
        port_rows = []
        for role, port in ports:
            t = by_target.get((host, port), {})
            errors = t.get("errors") or {}
            port_rows.append(
                {
                    "role": role,
                    "port": port,
                    "reachable": bool(t.get("received")),
                    "rtt_ms": t.get("rtt_ms"),
                    "loss_pct": t.get("loss_pct"),
                    "quality": t.get("quality", "unknown"),
                    "error": (", ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
                              or None),
                }
            )
        is_active = False
        if active["master"]:
            if active["master"] == label:
                is_active = True
            else:
                # Salt strips ":port" from opts["master"] into master_port;
                # the port of master_uri tells same-host masters apart
                try:
                    act_host = _probe.parse_target(active["master"], (1,))[0][0]
                except _probe.ProbeArgumentError:
                    act_host = active["master"]
                uri_port = None
                try:
                    uri_port = urllib.parse.urlsplit(active["master_uri"] or "").port
                except ValueError:
                    pass
                ret_port = dict(ports)["return"]
                is_active = act_host == host and uri_port in (None, ret_port)
        out_masters.append(
            {
                "master": label,
                "host": host,
                "dns": {
                    "addresses": res.get("addresses", []),
                    "time_ms": res.get("time_ms"),
                    "error": res.get("error"),
                    "error_class": res.get("error_class"),
                },
                "ports": port_rows,
                "reachable": all(p["reachable"] for p in port_rows),
                "quality": _probe.worst(p["quality"] for p in port_rows),
                "active": is_active,
            }
        )
    uplink = None
    if result:
        uplink = {k: result[k] for k in ("quality", "rtt_ms", "jitter_ms", "loss_pct",
                                         "target", "checked_at")}
    return {
        "masters": out_masters,
        "active": active,
        "master_type": opts.get("master_type"),
        "reachable": sum(1 for m in out_masters if m["reachable"]),
        "quality": uplink["quality"] if uplink else "unknown",
        "uplink": uplink,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        "budget_s": budget,
    }


# --------------------------------------------------------------------------
# http_probe
# --------------------------------------------------------------------------


def parse_url(url):
    """Validate an http(s) URL; return ``(parsed, host, port)`` or raise."""
    if not isinstance(url, str) or not url.strip():
        raise DiagArgumentError(f"url must be a non-empty string, not {url!r}")
    text = url.strip()
    if any(ch.isspace() for ch in text):
        raise DiagArgumentError(f"url {url!r} contains whitespace")
    try:
        parsed = urllib.parse.urlsplit(text)
        port = parsed.port
    except ValueError as err:
        raise DiagArgumentError(f"cannot parse url {url!r}: {err}") from err
    if parsed.scheme not in ("http", "https"):
        raise DiagArgumentError(f"url {url!r}: scheme must be http or https")
    host = parsed.hostname
    if not host:
        raise DiagArgumentError(f"url {url!r} has no host")
    if port is None:
        port = 443 if parsed.scheme == "https" else 80
    elif not 1 <= port <= 65535:
        raise DiagArgumentError(f"url {url!r}: port {port} out of range 1-65535")
    return parsed, host, port


def redact_url(url):
    """``url`` without user:password (proxies often carry credentials)."""
    if not url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _find_in_chain(err, names):
    seen = set()
    cur = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in names:
            return cur
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException) and type(arg).__name__ in names:
                return arg
            reason = getattr(arg, "reason", None)
            if isinstance(reason, BaseException) and type(reason).__name__ in names:
                return reason
        cur = getattr(cur, "reason", None) or cur.__cause__ or cur.__context__
    return None


def classify_http_error(err):
    """Error class of a ``requests`` exception: dns, connect, tls, timeout or http."""
    import requests  # pylint: disable=import-outside-toplevel

    if isinstance(err, requests.exceptions.SSLError):
        return "tls"
    if isinstance(err, requests.exceptions.Timeout):
        return "timeout"
    if _find_in_chain(err, {"NameResolutionError", "gaierror"}):
        return "dns"
    if _find_in_chain(err, {"SSLError", "SSLCertVerificationError"}):
        return "tls"
    if isinstance(err, requests.exceptions.HTTPError):
        return "http"
    if isinstance(err, (requests.exceptions.ConnectionError, OSError)):
        return "connect"
    return "connect"


def _select_proxy(url, proxy):
    """Proxy URL used for ``url``: explicit, none, or from the environment."""
    if proxy is False or (isinstance(proxy, str) and proxy.lower() in ("", "none", "off")):
        return None, "disabled"
    if proxy:
        return str(proxy), "argument"
    import requests  # pylint: disable=import-outside-toplevel

    env = requests.utils.get_environ_proxies(url)
    chosen = requests.utils.select_proxy(url, env)
    return (chosen, "environment") if chosen else (None, "none")


def http_probe(url, timeout=DEFAULT_HTTP_TIMEOUT, verify=True, ca_bundle=None, proxy=None,
               method="GET", allow_redirects=False, budget=None):
    """
    One HTTP(S) request with ``requests``: status, latency, TLS verification,
    proxy in use, and the error class when it fails.

    :param url: http:// or https:// URL.
    :param timeout: seconds for connect and for read.
    :param verify: verify TLS certificates (default True).
    :param ca_bundle: path of a CA bundle to verify against (implies verify).
    :param proxy: proxy URL; None uses the environment (``HTTPS_PROXY``,
        ``NO_PROXY``...); False or "none" disables proxies.
    :param method: GET or HEAD.
    :param budget: hard limit for the whole call (default ``2 * timeout + 1``).

    Returns ``url`` (credentials redacted), ``ok``, ``status``, ``reason``,
    ``latency_ms`` (until the response headers), ``elapsed_ms``, ``proxy``,
    ``proxy_source``, ``tls`` (``verify``, ``verified``, ``error``; None for
    http), ``dns`` (``addresses``, ``time_ms``; of the proxy when one is used),
    ``error_class`` (dns, connect, tls, timeout, http or None) and ``error``.
    """
    started = time.perf_counter()
    parsed, host, _port = parse_url(url)
    timeout = _probe.validate_seconds(timeout, "timeout")
    budget = _probe.validate_seconds(budget if budget is not None else 2 * timeout + 1, "budget")
    method = str(method).upper()
    if method not in ("GET", "HEAD"):
        raise DiagArgumentError(f"method must be GET or HEAD, not {method!r}")
    if ca_bundle:
        verify = str(ca_bundle)
    else:
        verify = bool(verify)
    proxy_url, proxy_source = _select_proxy(url, proxy)
    if proxy_url:
        try:
            _pp, dns_host, _pport = parse_url(proxy_url if "://" in proxy_url else "http://" + proxy_url)
        except DiagArgumentError as err:
            raise DiagArgumentError(f"bad proxy {redact_url(proxy_url)!r}: {err}") from err
    else:
        dns_host = host

    ret = {
        "url": redact_url(url),
        "method": method,
        "ok": False,
        "status": None,
        "reason": None,
        "latency_ms": None,
        "elapsed_ms": None,
        "proxy": redact_url(proxy_url),
        "proxy_source": proxy_source,
        "tls": ({"verify": verify, "verified": None, "error": None}
                if parsed.scheme == "https" else None),
        "dns": None,
        "error_class": None,
        "error": None,
    }

    def _done():
        ret["elapsed_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        return ret

    # Resolve first, ourselves: it gives the DNS time, keeps a hung resolver
    # inside the budget and answers names under .invalid locally (RFC 6761).
    res = _probe.resolve_many([dns_host], min(timeout, budget))[dns_host]
    ret["dns"] = {"host": dns_host, "addresses": res["addresses"], "time_ms": res["time_ms"]}
    if res["error"]:
        ret["error_class"] = "dns"
        ret["error"] = res["error"]
        return _done()

    box = {}
    finished = threading.Event()

    def _work():
        import requests  # pylint: disable=import-outside-toplevel

        session = requests.Session()
        session.trust_env = False  # proxies decided above, no netrc surprises
        proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else {}
        try:
            resp = session.request(
                method, url, timeout=(timeout, timeout), verify=verify, proxies=proxies,
                allow_redirects=allow_redirects, stream=True,
            )
            box["resp"] = resp
            resp.close()
        except Exception as err:  # pylint: disable=broad-except
            box["error"] = err
        finally:
            session.close()
            finished.set()

    worker = threading.Thread(target=_work, name="edge-http-probe", daemon=True)
    worker.start()
    finished.wait(max(0.0, budget - (time.perf_counter() - started)))
    if not finished.is_set():
        ret["error_class"] = "timeout"
        ret["error"] = f"no complete answer within the {budget:g} s budget"
        return _done()
    if "error" in box:
        err = box["error"]
        ret["error_class"] = classify_http_error(err)
        text = str(err)
        if proxy_url:
            text = text.replace(proxy_url, redact_url(proxy_url))
        ret["error"] = f"{type(err).__name__}: {text}"[:500]
        if ret["tls"] is not None and ret["error_class"] == "tls":
            ret["tls"]["verified"] = False
            ret["tls"]["error"] = ret["error"]
        return _done()
    resp = box["resp"]
    ret["status"] = resp.status_code
    ret["reason"] = resp.reason
    ret["latency_ms"] = round(resp.elapsed.total_seconds() * 1000.0, 3)
    if ret["tls"] is not None:
        ret["tls"]["verified"] = bool(verify)
    if resp.status_code >= 400:
        ret["error_class"] = "http"
        ret["error"] = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
    else:
        ret["ok"] = True
    return _done()


# --------------------------------------------------------------------------
# config_audit (pure)
# --------------------------------------------------------------------------


def _int_or_none(value):
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _finding(setting, current, recommended, severity, why, note=None):
    return {
        "setting": setting,
        "current": current,
        "recommended": recommended,
        "severity": severity,
        "ok": severity == "ok",
        "why": why if note is None else f"{note} {why}",
    }


def config_audit(opts):
    """
    Audit the minion's settings against edge best practice. Returns
    ``{"findings": [...], "summary": {severity: count}, "worst": severity,
    "ok": bool}``; each finding has ``setting``, ``current``, ``recommended``,
    ``severity`` (ok, info, warning, critical), ``ok`` and ``why``.
    """
    why = RECOMMENDED_WHY
    rec = dict(RECOMMENDED, **RECOMMENDED_CORE)
    findings = []
    masters = configured_masters(opts)
    master_type = opts.get("master_type", "str")
    failover = master_type == "failover"

    # master list
    if len(masters) >= 2:
        findings.append(_finding("master", masters, "a list of 2 or more masters", "ok",
                                 why["master"]))
    else:
        findings.append(_finding("master", opts.get("master"), "a list of 2 or more masters",
                                 "warning", why["master"],
                                 "Only one master is configured: no failover target."))

    # master_type
    if failover:
        sev = "ok" if len(masters) >= 2 else "info"
        findings.append(_finding("master_type", master_type, rec["master_type"], sev,
                                 why["master_type"]))
    else:
        findings.append(_finding("master_type", master_type, rec["master_type"], "warning",
                                 why["master_type"]))

    # master_alive_interval
    mai = _int_or_none(opts.get("master_alive_interval"))
    if not mai or mai <= 0:
        findings.append(_finding("master_alive_interval", opts.get("master_alive_interval"),
                                 rec["master_alive_interval"],
                                 "critical" if failover else "warning",
                                 why["master_alive_interval"]))
    elif mai > 120:
        findings.append(_finding("master_alive_interval", mai, rec["master_alive_interval"],
                                 "warning", why["master_alive_interval"],
                                 f"A dead master is noticed only after {mai} s."))
    else:
        findings.append(_finding("master_alive_interval", mai, rec["master_alive_interval"],
                                 "ok", why["master_alive_interval"]))

    # TCP keepalive
    keep = opts.get("tcp_keepalive", True)
    findings.append(_finding("tcp_keepalive", keep, rec["tcp_keepalive"],
                             "ok" if keep is True or keep in (1, "true", "True") else "critical",
                             why["tcp_keepalive"]))
    idle = _int_or_none(opts.get("tcp_keepalive_idle"))
    if idle is None or idle <= 0:
        sev = "warning"
    elif idle <= 2 * rec["tcp_keepalive_idle"]:
        sev = "ok"
    elif idle < 300:
        sev = "info"
    else:
        sev = "warning"
    findings.append(_finding("tcp_keepalive_idle", opts.get("tcp_keepalive_idle"),
                             rec["tcp_keepalive_idle"], sev, why["tcp_keepalive_idle"]))
    cnt = _int_or_none(opts.get("tcp_keepalive_cnt"))
    sev = "info" if cnt is None or cnt <= 0 else ("ok" if cnt <= 10 else "info")
    findings.append(_finding("tcp_keepalive_cnt", opts.get("tcp_keepalive_cnt"),
                             rec["tcp_keepalive_cnt"], sev, why["tcp_keepalive_cnt"]))
    intvl = _int_or_none(opts.get("tcp_keepalive_intvl"))
    if intvl is None or intvl <= 0:
        sev = "info"
    elif intvl <= 2 * rec["tcp_keepalive_intvl"]:
        sev = "ok"
    else:
        sev = "warning" if intvl > 60 else "info"
    findings.append(_finding("tcp_keepalive_intvl", opts.get("tcp_keepalive_intvl"),
                             rec["tcp_keepalive_intvl"], sev, why["tcp_keepalive_intvl"]))

    # ping_interval (minutes)
    ping = _int_or_none(opts.get("ping_interval"))
    if ping is None or ping <= 0:
        sev = "warning"
    elif ping <= 10:
        sev = "ok"
    else:
        sev = "info"
    findings.append(_finding("ping_interval", opts.get("ping_interval"), rec["ping_interval"],
                             sev, why["ping_interval"]))

    # random_reauth_delay
    rrd = _int_or_none(opts.get("random_reauth_delay"))
    sev = "ok" if rrd is not None and rrd >= 30 else "info"
    findings.append(_finding("random_reauth_delay", opts.get("random_reauth_delay"),
                             rec["random_reauth_delay"], sev, why["random_reauth_delay"]))

    # recon_*
    rdef = _int_or_none(opts.get("recon_default"))
    sev = "ok" if rdef is not None and 500 <= rdef <= 10000 else "warning"
    findings.append(_finding("recon_default", opts.get("recon_default"), rec["recon_default"],
                             sev, why["recon_default"]))
    rmax = _int_or_none(opts.get("recon_max"))
    if rmax is None or (rdef is not None and rmax < rdef):
        sev = "warning"
    elif rmax >= 30000:
        sev = "ok"
    else:
        sev = "info"
    findings.append(_finding("recon_max", opts.get("recon_max"), rec["recon_max"], sev,
                             why["recon_max"]))
    rrand = opts.get("recon_randomize", True)
    findings.append(_finding("recon_randomize", rrand, rec["recon_randomize"],
                             "ok" if rrand else "warning", why["recon_randomize"]))

    # DNS retries
    rdns = _int_or_none(opts.get("retry_dns"))
    if opts.get("master_type") == "failover":
        # Salt forces retry_dns to 0 under failover (a DNS error moves on to
        # the next master), so 0 is the right value there
        findings.append(_finding("retry_dns", opts.get("retry_dns"), 0,
                                 "ok" if not rdns else "info", why["retry_dns_failover"]))
    else:
        findings.append(_finding("retry_dns", opts.get("retry_dns"), rec["retry_dns"],
                                 "ok" if rdns and rdns > 0 else "critical", why["retry_dns"]))
    rcount = opts.get("retry_dns_count")
    findings.append(_finding("retry_dns_count", rcount, None,
                             "ok" if rcount is None else "warning", why["retry_dns_count"]))

    # enrollment
    asg = opts.get("autosign_grains") or []
    if isinstance(asg, str):
        asg = [asg]
    findings.append(_finding("autosign_grains", opts.get("autosign_grains"),
                             rec["autosign_grains"],
                             "ok" if "edge_token" in asg else "warning", why["autosign_grains"]))
    if "edge_token" in asg:
        findings.append(_finding("rejected_retry", opts.get("rejected_retry"),
                                 rec["rejected_retry"],
                                 "ok" if opts.get("rejected_retry") is True else "info",
                                 why["rejected_retry"]))

    summary = {s: 0 for s in SEVERITIES}
    for f in findings:
        summary[f["severity"]] += 1
    worst_sev = max((f["severity"] for f in findings), key=_SEV_RANK.__getitem__)
    return {
        "findings": findings,
        "summary": summary,
        "worst": worst_sev,
        "ok": _SEV_RANK[worst_sev] < _SEV_RANK["warning"],
    }


# --------------------------------------------------------------------------
# diagnose
# --------------------------------------------------------------------------


def verdict(master_report, uplink=None, audit=None, http=None, missing=()):
    """
    One verdict (ok, degraded, down) and the reasons, from the parts of a
    diagnosis (pure). ``missing`` names parts that did not finish in time.
    """
    reasons = []
    level = "ok"

    def bump(new):
        nonlocal level
        if VERDICTS.index(new) > VERDICTS.index(level):
            level = new

    if master_report is not None:
        masters = master_report.get("masters") or []
        if not masters:
            bump("down")
            reasons.append("no master is configured")
        else:
            for m in masters:
                if m["dns"].get("error"):
                    reasons.append(f"master {m['master']}: DNS failed: {m['dns']['error']}")
                else:
                    for p in m["ports"]:
                        if not p["reachable"]:
                            reasons.append(
                                f"master {m['master']}: port {p['port']} ({p['role']}) "
                                f"unreachable ({p['error'] or 'no answer'})"
                            )
            if not any(m["reachable"] for m in masters):
                bump("down")
                reasons.insert(0, "no configured master is reachable on both 4505 and 4506"
                               if len(masters) > 1 else
                               "the master is not reachable on both its ports")
            elif not all(m["reachable"] for m in masters):
                bump("degraded")
            quality = master_report.get("quality")
            if quality in ("fair", "poor"):
                bump("degraded")
                up = master_report.get("uplink") or {}
                reasons.append(f"uplink to the master is {quality} (rtt {up.get('rtt_ms')} ms, "
                               f"jitter {up.get('jitter_ms')} ms, loss {up.get('loss_pct')} %)")
    if uplink is not None:
        q = uplink.get("quality")
        if q == "down":
            bump("down")
            reasons.append(f"uplink probe: every target is down ({uplink.get('target')})")
        elif q in ("fair", "poor"):
            bump("degraded")
            reasons.append(f"uplink probe: quality {q} via {uplink.get('target')} "
                           f"(rtt {uplink.get('rtt_ms')} ms, loss {uplink.get('loss_pct')} %)")
    if audit is not None:
        for f in audit["findings"]:
            if f["severity"] == "critical":
                bump("degraded")
                reasons.append(f"config: {f['setting']} = {f['current']!r} "
                               f"(recommended {f['recommended']!r})")
    for probe_ret in http or []:
        if not probe_ret.get("ok"):
            bump("degraded")
            reasons.append(f"http {probe_ret.get('url')}: {probe_ret.get('error_class')}: "
                           f"{probe_ret.get('error')}")
    for name in missing:
        bump("degraded")
        reasons.append(f"{name} did not finish within the time budget")
    return level, reasons


def diagnose(opts, masters=None, targets=None, urls=None, count=3,
             timeout=_probe.DEFAULT_TIMEOUT, budget=DEFAULT_DIAG_BUDGET, thresholds=None,
             verify=True, ca_bundle=None):
    """
    Everything at once, in parallel: :func:`check_master` (masters from opts
    or ``masters``), an extra uplink probe when ``targets`` are given,
    :func:`http_probe` for each of ``urls`` and :func:`config_audit`; one
    verdict (ok, degraded, down) with reasons, within ``budget`` seconds.
    """
    started = time.perf_counter()
    budget = _probe.validate_seconds(budget, "budget")
    count = _probe.validate_count(count)
    timeout = _probe.validate_seconds(timeout, "timeout")
    if urls is None:
        urls = []
    elif isinstance(urls, str):
        urls = [u for u in urls.split(",") if u.strip()]
    for u in urls:
        parse_url(u)
    if masters is not None:
        if isinstance(masters, str):
            masters = [m for m in masters.split(",") if m.strip()]
        try:
            master_targets([str(m).strip() for m in masters], opts)
        except _probe.ProbeArgumentError as err:
            raise DiagArgumentError(str(err)) from err
    if targets is not None:
        try:
            _probe.normalize_targets(targets)
        except _probe.ProbeArgumentError as err:
            raise DiagArgumentError(str(err)) from err
    _probe.merge_thresholds(thresholds)
    # sub-checks get most of the budget; the rest is for collecting results
    inner = max(0.1, budget * 0.9 - 0.05)

    jobs = {
        "check_master": lambda: check_master(opts, masters=masters, count=count,
                                             timeout=timeout, budget=inner,
                                             thresholds=thresholds),
    }
    if targets is not None:
        jobs["uplink"] = lambda: _probe.probe(targets, count=count, timeout=timeout,
                                              budget=inner, thresholds=thresholds)
    for i, u in enumerate(urls):
        jobs[f"http:{i}"] = (lambda u=u: http_probe(
            u, timeout=min(timeout * 2, inner), verify=verify, ca_bundle=ca_bundle,
            budget=inner))
    results, errors = {}, {}
    events = {}

    def _run(name, fn):
        try:
            results[name] = fn()
        except Exception as err:  # pylint: disable=broad-except
            errors[name] = f"{type(err).__name__}: {err}"
        finally:
            events[name].set()

    for name, fn in jobs.items():
        events[name] = threading.Event()
        threading.Thread(target=_run, args=(name, fn), name=f"edge-diag-{name}",
                         daemon=True).start()
    audit = config_audit(opts)
    deadline = started + budget
    for name, ev in events.items():
        ev.wait(max(0.0, deadline - time.perf_counter()))
    missing = [n for n, ev in events.items() if not ev.is_set()]

    master_report = results.get("check_master")
    uplink = results.get("uplink")
    http = [results[n] for n in sorted(results) if n.startswith("http:")]
    level, reasons = verdict(master_report, uplink, audit, http, missing)
    for name, msg in errors.items():
        if level == "ok":
            level = "degraded"
        reasons.append(f"{name} failed: {msg}")
    return {
        "verdict": level,
        "reasons": reasons,
        "check_master": master_report,
        "uplink": uplink if uplink is not None else (master_report or {}).get("uplink"),
        "http": http,
        "config_audit": audit,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        "budget_s": budget,
    }
