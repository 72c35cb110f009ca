"""
Name resolution for the probes, bounded in time: every name is resolved in a
daemon thread and the caller waits at most ``timeout`` seconds in total;
names under ``.invalid`` (RFC 6761) are answered locally.
"""

import ipaddress
import socket
import threading
import time

from saltext_edge.uplink.quality import _round


def _is_ip_literal(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_reserved_invalid(host):
    """
    True for names under the ``invalid`` TLD. RFC 6761 §6.4: name resolution
    APIs "SHOULD recognize these names as special and SHOULD always return
    immediately with a negative response"; we do, so no query leaves the host.
    """
    name = host.rstrip(".").lower()
    return name == "invalid" or name.endswith(".invalid")


def _getaddrinfo(host, port):
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen, out = set(), []
    for family, _type, _proto, _canon, sockaddr in infos:
        key = (family, sockaddr[0])
        if key not in seen:
            seen.add(key)
            out.append((family, sockaddr))
    return out


def _resolution(host, addrinfos, started, error=None, error_class=None):
    return {
        "host": host,
        "addresses": [sockaddr[0] for _f, sockaddr in addrinfos],
        "addrinfo": addrinfos,
        "time_ms": _round((time.perf_counter() - started) * 1000.0),
        "error": error,
        "error_class": error_class,
    }


def resolve_many(hosts, timeout):
    """
    Resolve several host names in parallel; return ``{host: result}`` within
    ``timeout`` seconds. Each result has ``addresses`` (list of strings),
    ``addrinfo`` (list of ``(family, sockaddr)``), ``time_ms``, ``error`` and
    ``error_class`` (``dns`` when the name does not resolve, ``timeout`` when
    the resolver did not answer in time). Lookups run in daemon threads, so a
    hung resolver never holds up the caller or interpreter exit.
    """
    results = {}
    pending = {}
    started = time.perf_counter()
    for host in dict.fromkeys(hosts):
        if _is_ip_literal(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sockaddr = (host, 0, 0, 0) if family == socket.AF_INET6 else (host, 0)
            results[host] = _resolution(host, [(family, sockaddr)], started)
            continue
        if is_reserved_invalid(host):
            results[host] = _resolution(
                host, [], started, f"{host}: name does not resolve (RFC 6761 .invalid)", "dns"
            )
            continue
        box = {}
        done = threading.Event()

        def _work(h=host, b=box, d=done):
            t0 = time.perf_counter()
            try:
                b["infos"] = _getaddrinfo(h, None)
            except (OSError, UnicodeError) as err:
                b["error"] = err
            b["time"] = time.perf_counter() - t0
            d.set()

        thread = threading.Thread(target=_work, name=f"edge-dns-{host}", daemon=True)
        thread.start()
        pending[host] = (box, done)
    deadline = started + max(0.0, timeout)
    for host, (box, done) in pending.items():
        done.wait(max(0.0, deadline - time.perf_counter()))
        if not done.is_set():
            results[host] = _resolution(
                host,
                [],
                started,
                f"{host}: resolver did not answer within {timeout:.3g} s",
                "timeout",
            )
            continue
        if "error" in box:
            err = box["error"]
            msg = getattr(err, "strerror", None) or str(err)
            res = _resolution(host, [], started, f"{host}: {msg}", "dns")
        else:
            res = _resolution(host, box["infos"], started)
        res["time_ms"] = _round(box["time"] * 1000.0)
        results[host] = res
    return results
