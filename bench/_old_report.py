"""
The fleet report as it was before the edge_fleet engine (kept only so bench_report.py can compare): minions per site, presence, uplink quality
from cached grains, pending and refused keys, minions with no site.

It reads what the master already has, so it stays fast on thousands of
minions:

* keys from Salt's key store (``salt.key.Key(opts).list_keys()``, which in
  3008 reads the ``keys`` cache driver, not files);
* grains from the minion data cache (``salt.cache`` bank ``grains``, key
  ``<minion id>``; the master fills it whenever a minion fetches its pillar:
  at start and on ``saltutil.refresh_pillar`` / ``saltutil.sync_grains``);
* admission decisions from :mod:`saltext_edge.admission` when it is present;
* presence either from the master's TCP table (cheap, see
  :func:`tcp_presence`) or, with ``ping=True``, from one ``test.ping``
  broadcast.

:func:`aggregate` is the pure part (no Salt, no I/O) and is what the unit
tests exercise; :func:`build` gathers the inputs and calls it.
"""

import fnmatch
import ipaddress
import logging
import os
import time

from saltext_edge import admission as _admission

log = logging.getLogger(__name__)

PROGRESS_TAG = "edge/report/progress"
QUALITIES = ("good", "fair", "poor", "down", "unknown")
STATUSES = ("up", "down", "unknown")
NO_SITE = "(no site)"
TOTAL = "TOTAL"
# grains read between two progress events
PROGRESS_EVERY = 1000

_PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")


# --------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------


def uplink_of(grains):
    """
    Return ``(quality, detail)`` from a minion's cached grains: ``quality``
    is one of :data:`QUALITIES` (``unknown`` when the ``edge_uplink`` grain
    is missing or malformed), ``detail`` a small dict of the measured values.
    """
    uplink = grains.get("edge_uplink") if isinstance(grains, dict) else None
    if not isinstance(uplink, dict):
        return "unknown", {}
    quality = uplink.get("quality")
    if quality not in QUALITIES:
        quality = "unknown"
    detail = {
        k: uplink.get(k)
        for k in ("rtt_ms", "jitter_ms", "loss_pct", "checked_at")
        if uplink.get(k) is not None
    }
    return quality, detail


def site_of(grains):
    """Return the ``edge_site`` grain if it is a usable string, else ``None``."""
    site = grains.get("edge_site") if isinstance(grains, dict) else None
    if isinstance(site, str) and site.strip():
        return site.strip()
    return None


def _norm_addr(addr):
    """Normalise an address string (IPv4-mapped IPv6 to IPv4); ``None`` if not an IP."""
    try:
        ip = ipaddress.ip_address(str(addr).split("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _is_loopback(addr):
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def tcp_presence(connections, claims, local_addrs=()):
    """
    Decide presence from the master's TCP table, without asking any minion.

    ``connections`` maps a remote address to the number of established
    connections from it to the master's publish port (every attached minion
    holds exactly one). ``claims`` maps a minion id to the addresses its
    cached ``ipv4``/``ipv6`` grains report (``None`` when no grains are
    cached). ``local_addrs`` are the master host's own non-loopback
    addresses: a connection from loopback is from a minion on the master's
    host, i.e. one that claims one of those.

    Returns ``({minion_id: "up" | "down" | "unknown"}, unattributed)``:

    * ``up`` -- the minion claims an address connections come from, and no
      more minions claim it than there are connections from it;
    * ``unknown`` -- more minions claim an address than are connected from it
      (shared or loopback addresses), or some connections come from addresses
      no minion reports (NAT, a load balancer: then any unmatched minion may
      be one of them), or the minion has no cached grains;
    * ``down`` -- every connection is accounted for and none is this minion's.

    ``unattributed`` is the number of connections from addresses no minion
    reports.
    """
    index = {}
    for minion, addrs in claims.items():
        for addr in addrs or ():
            norm = _norm_addr(addr)
            if norm is not None:
                index.setdefault(norm, set()).add(minion)
    on_master_host = set()
    for addr in local_addrs:
        norm = _norm_addr(addr)
        if norm is not None and not _is_loopback(norm):
            on_master_host |= index.get(norm, set())

    up, ambiguous = set(), set()
    unattributed = 0
    for addr, count in connections.items():
        norm = _norm_addr(addr)
        if norm is None:
            unattributed += count
            continue
        claimants = set(index.get(norm, set()))
        if _is_loopback(norm):
            # every host reports 127.0.0.1: only minions that are on the
            # master's host (or claim exactly this loopback address, not
            # the universal 127.0.0.1/::1) can be behind it
            if norm in ("127.0.0.1", "::1"):
                claimants = on_master_host or claimants
            else:
                claimants |= on_master_host
        if not claimants:
            unattributed += count
        elif len(claimants) <= count:
            up |= claimants
        else:
            ambiguous |= claimants

    status = {}
    for minion, addrs in claims.items():
        if minion in up:
            status[minion] = "up"
        elif minion in ambiguous or unattributed or addrs is None:
            status[minion] = "unknown"
        else:
            status[minion] = "down"
    return status, unattributed


def _entry(minion_id, decision):
    entry = {"id": minion_id, "decision": None, "reason": None}
    if isinstance(decision, dict):
        entry["decision"] = decision.get("decision")
        entry["reason"] = decision.get("reason")
        if decision.get("time") is not None:
            entry["time"] = decision.get("time")
    return entry


def _empty_site():
    return {
        "minions": 0,
        "up": 0,
        "down": 0,
        "unknown": 0,
        "uplink": dict.fromkeys(QUALITIES, 0),
        "down_minions": [],
        "poor_uplink": [],
        "pending": [],
        "refused": [],
    }


def aggregate(
    keys,
    grains,
    presence,
    decisions=None,
    site=None,
    presence_info=None,
    details=False,
    cached_at=None,
    now=None,
):
    """
    Build the report from its inputs (pure; no Salt, no I/O).

    :param keys: ``salt.key.Key.list_keys()`` shape: ``minions``,
        ``minions_pre``, ``minions_rejected``, ``minions_denied`` lists.
    :param grains: ``{minion_id: grains dict or None}`` for accepted minions
        (``None``: nothing cached or unreadable).
    :param presence: ``{minion_id: "up" | "down" | "unknown"}``.
    :param decisions: ``{minion_id: {"decision", "reason", "site", "time"}}``
        from the admission library, or ``None``.
    :param site: only report sites matching this glob (``None``: all).
    :param details: add a per-minion table under ``minions``.
    :param cached_at: ``{minion_id: epoch}`` of the cached grains (details).
    """
    decisions = decisions or {}
    cached_at = cached_at or {}
    sites = {}
    no_site = []
    per_minion = {}

    def wanted(name):
        if site is None:
            return True
        return fnmatch.fnmatchcase(name, site)

    def bucket(name):
        return sites.setdefault(name, _empty_site())

    for minion in keys.get("minions", []):
        mgrains = grains.get(minion)
        name = site_of(mgrains or {})
        if name is None:
            dec = decisions.get(minion)
            if isinstance(dec, dict) and isinstance(dec.get("site"), str):
                name = dec["site"]
        label = name if name is not None else NO_SITE
        if not wanted(label):
            continue
        if name is None:
            no_site.append(minion)
        status = presence.get(minion, "unknown")
        if status not in STATUSES:
            status = "unknown"
        quality, detail = uplink_of(mgrains or {})
        data = bucket(label)
        data["minions"] += 1
        data[status] += 1
        data["uplink"][quality] += 1
        if status == "down":
            data["down_minions"].append(minion)
        if quality in ("poor", "down"):
            data["poor_uplink"].append(dict({"id": minion, "quality": quality}, **detail))
        if details:
            row = {
                "site": label,
                "status": status,
                "uplink": quality,
                "grains_cached": mgrains is not None,
            }
            row.update(detail)
            if minion in cached_at:
                row["grains_cached_at"] = cached_at[minion]
            per_minion[minion] = row

    def key_site(minion):
        dec = decisions.get(minion)
        if isinstance(dec, dict) and isinstance(dec.get("site"), str) and dec["site"]:
            return dec["site"]
        return NO_SITE

    for minion in keys.get("minions_pre", []):
        label = key_site(minion)
        if not wanted(label):
            continue
        entry = _entry(minion, decisions.get(minion))
        entry["key"] = "pending"
        if entry["decision"] == "refused":
            bucket(label)["refused"].append(entry)
        else:
            if entry["decision"] is None:
                entry["reason"] = "no admission decision recorded yet"
            elif entry["decision"] == "no_token" and not entry["reason"]:
                entry["reason"] = "no edge_token grain seen"
            elif entry["decision"] == "recorded" and not entry["reason"]:
                entry["reason"] = "token seen, not admitted yet (salt-run edge.accept_pending)"
            bucket(label)["pending"].append(entry)

    for state, default_reason in (
        ("minions_rejected", "key rejected"),
        ("minions_denied", "key denied: a different key is accepted for this id"),
    ):
        for minion in keys.get(state, []):
            label = key_site(minion)
            if not wanted(label):
                continue
            entry = _entry(minion, decisions.get(minion))
            entry["key"] = state[len("minions_") :]
            if entry["decision"] != "refused" or not entry["reason"]:
                entry["reason"] = default_reason
            bucket(label)["refused"].append(entry)

    totals = _empty_site()
    del totals["down_minions"], totals["poor_uplink"], totals["pending"], totals["refused"]
    totals.update({"sites": 0, "pending": 0, "refused": 0, "no_site": len(no_site)})
    summary = []
    for name in sorted(sites, key=lambda n: (n == NO_SITE, n)):
        data = sites[name]
        data["down_minions"].sort()
        data["poor_uplink"].sort(key=lambda r: r["id"])
        data["pending"].sort(key=lambda r: r["id"])
        data["refused"].sort(key=lambda r: r["id"])
        if name != NO_SITE:
            totals["sites"] += 1
        for k in ("minions", "up", "down", "unknown"):
            totals[k] += data[k]
        for q in QUALITIES:
            totals["uplink"][q] += data["uplink"][q]
        totals["pending"] += len(data["pending"])
        totals["refused"] += len(data["refused"])
        summary.append(_summary_row(name, data))
    summary.append(_summary_row(TOTAL, totals))

    report = {
        "generated_at": round(now if now is not None else time.time(), 3),
        "site_filter": site,
        "presence": dict(presence_info or {}),
        "totals": totals,
        "summary": summary,
        "sites": sites,
        "no_site": sorted(no_site),
    }
    if details:
        report["minions"] = per_minion
    return report


def _summary_row(name, data):
    pending = data["pending"]
    refused = data["refused"]
    return {
        "site": name,
        "minions": data["minions"],
        "up": data["up"],
        "down": data["down"],
        "unknown": data["unknown"],
        "good": data["uplink"]["good"],
        "fair": data["uplink"]["fair"],
        "poor": data["uplink"]["poor"],
        "uplink_down": data["uplink"]["down"],
        "uplink_unknown": data["uplink"]["unknown"],
        "pending": pending if isinstance(pending, int) else len(pending),
        "refused": refused if isinstance(refused, int) else len(refused),
    }


# --------------------------------------------------------------------------
# gathering from the master
# --------------------------------------------------------------------------


def read_tcp_connections(port, proc_files=_PROC_TCP):
    """
    Return ``{remote_addr: count}`` of established TCP connections to local
    ``port``, from ``/proc/net/tcp{,6}``; falls back to Salt's
    ``local_port_tcp`` (a set, so counts of 1) where ``/proc`` is missing.
    """
    port = int(port)
    counts = {}
    found = False
    for path in proc_files:
        try:
            with open(path, encoding="ascii") as fh_:
                lines = fh_.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != "01":  # ESTABLISHED
                continue
            try:
                local = parts[1].rsplit(":", 1)
                if int(local[1], 16) != port:
                    continue
                addr = _proc_addr(parts[2].rsplit(":", 1)[0])
            except (ValueError, IndexError):
                continue
            addr = _norm_addr(addr)
            if addr is not None:
                counts[addr] = counts.get(addr, 0) + 1
    if not found:
        import salt.utils.network

        counts = dict.fromkeys(salt.utils.network.local_port_tcp(port), 1)
    return counts


def _proc_addr(hexaddr):
    raw = bytes.fromhex(hexaddr)
    # /proc stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def load_decisions(opts):
    """
    Return the admission decisions (``{minion_id: {...}}``) or ``None`` when
    they cannot be read (the report is still useful without reasons).
    """
    try:
        decisions = _admission.list_decisions(opts)
    except Exception as exc:
        log.warning("edge.report: admission decisions unavailable: %s", exc.__class__.__name__)
        return None
    return decisions if isinstance(decisions, dict) else None


def _read_grains(opts, minions, progress, stamps=False):
    """
    Return ``({id: grains or None}, {id: mtime})`` from the minion data cache
    (``stamps``: also the time each minion's grains were cached).

    With the default ``localfs`` cache driver the files
    ``<cachedir>/grains/<id>.p`` are read directly, one directory listing and
    one read per minion: going through ``salt.cache`` costs a loader call, id
    validation and two ``realpath`` per minion, which is most of the time on a
    large fleet. Other drivers go through ``salt.cache``.
    """
    import salt.cache

    total = len(minions)
    grains = dict.fromkeys(minions)
    cached_at = {}
    driver = opts.get("cache", "localfs") or "localfs"
    if driver == "localfs" and not opts.get("memcache_expire_seconds", 0):
        import salt.payload

        bank = os.path.join(opts.get("cachedir", ""), "grains")
        try:
            present = {n[:-2] for n in os.listdir(bank) if n.endswith(".p")}
        except OSError:
            present = set()
        for done, minion in enumerate(minions, 1):
            if minion in present and os.sep not in minion and not minion.startswith("."):
                path = os.path.join(bank, minion + ".p")
                try:
                    with open(path, "rb") as fh_:
                        data = salt.payload.load(fh_)
                    if stamps and isinstance(data, dict) and data:
                        cached_at[minion] = int(os.path.getmtime(path))
                except Exception as exc:
                    log.warning("edge.report: unreadable cached grains for %s: %s", minion, exc)
                    data = None
                if isinstance(data, dict) and data:
                    grains[minion] = data
            if progress and done % PROGRESS_EVERY == 0:
                progress("grains", done=done, total=total)
        return grains, cached_at

    cache = salt.cache.factory(opts)
    try:
        listed = set(cache.list("grains") or ())
    except Exception as exc:
        log.warning("edge.report: cannot list the grains cache: %s", exc)
        listed = set()
    for done, minion in enumerate(minions, 1):
        if minion in listed:
            try:
                data = cache.fetch("grains", minion)
            except Exception as exc:
                log.warning("edge.report: unreadable cached grains for %s: %s", minion, exc)
                data = None
            if isinstance(data, dict) and data:
                grains[minion] = data
                if stamps:
                    try:
                        stamp = cache.updated("grains", minion)
                    except Exception:
                        stamp = None
                    if stamp:
                        cached_at[minion] = stamp
        if progress and done % PROGRESS_EVERY == 0:
            progress("grains", done=done, total=total)
    return grains, cached_at


def _ping(opts, minions, timeout, site_filtered):
    import salt.client

    if not minions:
        return {}
    with salt.client.get_local_client(mopts=opts) as client:
        if site_filtered:
            ret = client.cmd(sorted(minions), "test.ping", tgt_type="list", timeout=timeout)
        else:
            ret = client.cmd("*", "test.ping", timeout=timeout)
    return {m: ("up" if ret.get(m) is True else "down") for m in minions}


def event_progress(opts):
    """
    Return a ``progress(stage, **data)`` callable firing ``edge/report/progress``
    events on the master event bus (errors are logged, never raised).
    """
    state = {"event": None}

    def progress(stage, **data):
        try:
            if state["event"] is None:
                import salt.utils.event

                state["event"] = salt.utils.event.get_master_event(
                    opts, opts["sock_dir"], listen=False
                )
            payload = dict(data, stage=stage)
            state["event"].fire_event(payload, PROGRESS_TAG)
        except Exception as exc:
            log.debug("edge.report: progress event not sent: %s", exc)

    def close():
        if state["event"] is not None:
            try:
                state["event"].destroy()
            except Exception:
                pass

    progress.close = close
    return progress


def build(opts, ping=False, site=None, timeout=None, details=False, progress=None):
    """
    Gather keys, cached grains, decisions and presence on the master and
    return :func:`aggregate`'s report. ``progress(stage, **data)`` is called
    at each stage and every :data:`PROGRESS_EVERY` minions.
    """
    import salt.key
    import salt.utils.network

    started = time.time()

    def step(stage, **data):
        if progress:
            progress(stage, elapsed_s=round(time.time() - started, 3), **data)

    keys = salt.key.Key(opts).list_keys()
    minions = list(keys.get("minions", []))
    step("keys", accepted=len(minions), pending=len(keys.get("minions_pre", [])))

    grains, cached_at = _read_grains(opts, minions, step, stamps=details)
    step("grains", done=len(minions), total=len(minions))

    decisions = load_decisions(opts)
    if site is not None:
        # presence is only needed for minions of the wanted sites
        def in_site(minion):
            name = site_of(grains.get(minion) or {})
            if name is None and decisions and isinstance(decisions.get(minion), dict):
                name = decisions[minion].get("site")
            return fnmatch.fnmatchcase(name if name else NO_SITE, site)

        scoped = [m for m in minions if in_site(m)]
    else:
        scoped = minions

    if ping:
        timeout = int(timeout or opts.get("timeout", 5) or 5)
        step("ping", minions=len(scoped), timeout_s=timeout)
        presence = _ping(opts, scoped, timeout, site is not None)
        info = {
            "method": "ping",
            "timeout_s": timeout,
            "note": "one test.ping broadcast; down = no answer within the timeout",
        }
    else:
        claims = {}
        for minion in minions:
            mgrains = grains.get(minion)
            if mgrains is None:
                claims[minion] = None
            else:
                addrs = []
                for name in ("ipv4", "ipv6"):
                    value = mgrains.get(name)
                    if isinstance(value, list):
                        addrs.extend(a for a in value if isinstance(a, str))
                claims[minion] = addrs
        connections = read_tcp_connections(opts.get("publish_port", 4505))
        local = list(salt.utils.network.ip_addrs(include_loopback=False)) + list(
            salt.utils.network.ip_addrs6(include_loopback=False)
        )
        presence, unattributed = tcp_presence(connections, claims, local)
        info = {
            "method": "tcp",
            "connections": sum(connections.values()),
            "unattributed_connections": unattributed,
            "note": (
                "from the master's TCP table matched to cached ipv4/ipv6 grains; "
                "unknown where NAT, a load balancer or shared addresses hide who "
                "is connected: use ping=True for an exact answer"
            ),
        }
    step("presence", method=info["method"])

    report = aggregate(
        keys,
        grains,
        presence,
        decisions=decisions,
        site=site,
        presence_info=info,
        details=details,
        cached_at=cached_at,
    )
    report["admission_decisions"] = decisions is not None
    report["elapsed_s"] = round(time.time() - started, 3)
    step("done", minions=report["totals"]["minions"], elapsed_s_total=report["elapsed_s"])
    return report
