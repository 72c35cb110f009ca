"""
``edge.http_probe``: one HTTP(S) request with ``requests`` and how it went
(status, latency, TLS, proxy, the class of error), within a time budget
(see ``docs/howto/diagnose.rst``). Credentials in URLs are redacted.
"""

import threading
import time
import urllib.parse

from saltext_edge.uplink.args import DiagArgumentError, validate_seconds
from saltext_edge.uplink.dns import resolve_many

DEFAULT_HTTP_TIMEOUT = 5.0


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
    import requests  # requests is slow to import: only when used

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
    import requests  # requests is slow to import: only when used

    env = requests.utils.get_environ_proxies(url)
    chosen = requests.utils.select_proxy(url, env)
    return (chosen, "environment") if chosen else (None, "none")


def http_probe(
    url,
    timeout=DEFAULT_HTTP_TIMEOUT,
    verify=True,
    ca_bundle=None,
    proxy=None,
    method="GET",
    allow_redirects=False,
    budget=None,
):
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
    timeout = validate_seconds(timeout, "timeout")
    budget = validate_seconds(budget if budget is not None else 2 * timeout + 1, "budget")
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
            _pp, dns_host, _pport = parse_url(
                proxy_url if "://" in proxy_url else "http://" + proxy_url
            )
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
        "tls": (
            {"verify": verify, "verified": None, "error": None}
            if parsed.scheme == "https"
            else None
        ),
        "dns": None,
        "error_class": None,
        "error": None,
    }

    def _done():
        ret["elapsed_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        return ret

    # Resolve first, ourselves: it gives the DNS time, keeps a hung resolver
    # inside the budget and answers names under .invalid locally (RFC 6761).
    res = resolve_many([dns_host], min(timeout, budget))[dns_host]
    ret["dns"] = {"host": dns_host, "addresses": res["addresses"], "time_ms": res["time_ms"]}
    if res["error"]:
        ret["error_class"] = "dns"
        ret["error"] = res["error"]
        return _done()

    box = {}
    finished = threading.Event()

    def _work():
        import requests  # requests is slow to import: only when used

        session = requests.Session()
        session.trust_env = False  # proxies decided above, no netrc surprises
        proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else {}
        try:
            resp = session.request(
                method,
                url,
                timeout=(timeout, timeout),
                verify=verify,
                proxies=proxies,
                allow_redirects=allow_redirects,
                stream=True,
            )
            box["resp"] = resp
            resp.close()
        except Exception as err:  # reported as data, never raised
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
