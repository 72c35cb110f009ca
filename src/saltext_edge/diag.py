"""
``edge.diagnose``: every check of an edge minion at once, in parallel, and
one verdict with reasons (see ``docs/howto/diagnose.rst``). The checks live
in modules named for their job: :mod:`saltext_edge.masters`
(``check_master``), :mod:`saltext_edge.http_check` (``http_probe``),
:mod:`saltext_edge.audit` (``config_audit``) and the uplink probe.
"""

import threading
import time

from saltext_edge.audit import config_audit
from saltext_edge.http_check import http_probe, parse_url
from saltext_edge.masters import check_master
from saltext_edge.uplink.args import (
    DEFAULT_TIMEOUT,
    DiagArgumentError,
    ProbeArgumentError,
    merge_thresholds,
    normalize_targets,
    validate_count,
    validate_seconds,
)
from saltext_edge.uplink.probe import probe
from saltext_edge.uplink.targets import master_targets

VERDICTS = ("ok", "degraded", "down")
DEFAULT_DIAG_BUDGET = 5.0


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
                reasons.insert(
                    0,
                    "no configured master is reachable on both 4505 and 4506"
                    if len(masters) > 1
                    else "the master is not reachable on both its ports",
                )
            elif not all(m["reachable"] for m in masters):
                bump("degraded")
            quality = master_report.get("quality")
            if quality in ("fair", "poor"):
                bump("degraded")
                up = master_report.get("uplink") or {}
                reasons.append(
                    f"uplink to the master is {quality} (rtt {up.get('rtt_ms')} ms, "
                    f"jitter {up.get('jitter_ms')} ms, loss {up.get('loss_pct')} %)"
                )
    if uplink is not None:
        q = uplink.get("quality")
        if q == "down":
            bump("down")
            reasons.append(f"uplink probe: every target is down ({uplink.get('target')})")
        elif q in ("fair", "poor"):
            bump("degraded")
            reasons.append(
                f"uplink probe: quality {q} via {uplink.get('target')} "
                f"(rtt {uplink.get('rtt_ms')} ms, loss {uplink.get('loss_pct')} %)"
            )
    if audit is not None:
        for f in audit["findings"]:
            if f["severity"] == "critical":
                bump("degraded")
                reasons.append(
                    f"config: {f['setting']} = {f['current']!r} (recommended {f['recommended']!r})"
                )
    for probe_ret in http or []:
        if not probe_ret.get("ok"):
            bump("degraded")
            reasons.append(
                f"http {probe_ret.get('url')}: {probe_ret.get('error_class')}: "
                f"{probe_ret.get('error')}"
            )
    for name in missing:
        bump("degraded")
        reasons.append(f"{name} did not finish within the time budget")
    return level, reasons


def diagnose(
    opts,
    masters=None,
    targets=None,
    urls=None,
    count=3,
    timeout=DEFAULT_TIMEOUT,
    budget=DEFAULT_DIAG_BUDGET,
    thresholds=None,
    verify=True,
    ca_bundle=None,
):
    """
    Everything at once, in parallel: :func:`check_master` (masters from opts
    or ``masters``), an extra uplink probe when ``targets`` are given,
    :func:`http_probe` for each of ``urls`` and :func:`config_audit`; one
    verdict (ok, degraded, down) with reasons, within ``budget`` seconds.
    """
    started = time.perf_counter()
    budget = validate_seconds(budget, "budget")
    count = validate_count(count)
    timeout = validate_seconds(timeout, "timeout")
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
        except ProbeArgumentError as err:
            raise DiagArgumentError(str(err)) from err
    if targets is not None:
        try:
            normalize_targets(targets)
        except ProbeArgumentError as err:
            raise DiagArgumentError(str(err)) from err
    merge_thresholds(thresholds)
    # sub-checks get most of the budget; the rest is for collecting results
    inner = max(0.1, budget * 0.9 - 0.05)

    jobs = {
        "check_master": lambda: check_master(
            opts, masters=masters, count=count, timeout=timeout, budget=inner, thresholds=thresholds
        ),
    }
    if targets is not None:
        jobs["uplink"] = lambda: probe(
            targets, count=count, timeout=timeout, budget=inner, thresholds=thresholds
        )
    for i, u in enumerate(urls):
        jobs[f"http:{i}"] = lambda u=u: http_probe(
            u, timeout=min(timeout * 2, inner), verify=verify, ca_bundle=ca_bundle, budget=inner
        )
    results, errors = {}, {}
    events = {}

    def _run(name, fn):
        try:
            results[name] = fn()
        except Exception as err:  # reported as data, never raised
            errors[name] = f"{type(err).__name__}: {err}"
        finally:
            events[name].set()

    for name, fn in jobs.items():
        events[name] = threading.Event()
        threading.Thread(
            target=_run, args=(name, fn), name=f"edge-diag-{name}", daemon=True
        ).start()
    audit = config_audit(opts)
    deadline = started + budget
    for ev in events.values():
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
