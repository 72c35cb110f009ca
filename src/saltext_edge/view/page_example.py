"""
A made-up fleet report for previews of the fleet page, the benchmarks and
the page's own tests (:func:`example_report`).
"""

import datetime

from saltext_edge.uplink.quality import QUALITIES
from saltext_edge.view.page_parts import parse_iso


def example_report(nodes=60, sites=6, seed=1, generated_at="2026-12-02T10:00:00Z"):
    """
    Return a made-up report with the shape of ``salt-run edge.report
    details=True`` (``nodes`` nodes spread over ``sites`` sites, a few of
    them late, offline, never seen, flapping, on poor uplinks or refused),
    deterministic for a given ``seed``. For previews, the benchmarks and
    the page's own tests; real pages come from
    :func:`~saltext_edge.view.page.render` of a real
    report.
    """
    import random

    rnd = random.Random(seed)
    now = parse_iso(generated_at)
    report = {
        "generated_at": generated_at,
        "totals": dict.fromkeys(
            ("online", "late", "offline", "never_seen", "pending", "refused"), 0
        ),
        "sites": {},
        "pending": [],
        "refused": {},
        "flapping": [],
    }
    site_names = [f"site-{i:03d}" for i in range(sites)]
    for name in site_names:
        report["sites"][name] = {
            **dict.fromkeys(("online", "late", "offline", "never_seen"), 0),
            "degraded": False,
            "quality": dict.fromkeys(QUALITIES, 0),
            "trend": {},
            "history": [],
            "nodes": {},
        }
    for i in range(nodes):
        name = site_names[i % sites]
        site = report["sites"][name]
        bad_site = name == site_names[0]
        roll = rnd.random()
        if roll < (0.3 if bad_site else 0.02):
            status = "offline"
        elif roll < (0.4 if bad_site else 0.04):
            status = "late"
        elif roll < (0.42 if bad_site else 0.05):
            status = "never_seen"
        else:
            status = "online"
        quality = rnd.choice(("good",) * 6 + ("fair", "fair", "poor", "down"))
        rtt = round(rnd.uniform(8, 60) * (3 if quality in ("poor", "down") else 1), 1)
        seen = None
        if status != "never_seen":
            age = rnd.uniform(5, 50) if status == "online" else rnd.uniform(200, 5000)
            seen = (now - datetime.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
        node_id = f"edge-{name}-{i:05d}"
        flapping = rnd.random() < 0.01
        site["nodes"][node_id] = {
            "status": status,
            "last_seen": seen,
            "last_seen_kind": None
            if seen is None
            else rnd.choice(("heartbeat", "heartbeat", "job_return")),
            "uplink": None
            if status == "never_seen"
            else {
                "quality": quality,
                "rtt_ms": rtt,
                "jitter_ms": round(rnd.uniform(0.2, 6), 1),
                "loss_pct": 0.0 if quality in ("good", "fair") else round(rnd.uniform(1, 30), 1),
            },
            "flapping": flapping,
            "admission": "accepted",
            "admitted_by": "edge_token",
        }
        site[status] += 1
        site["quality"][quality if status != "never_seen" else "unknown"] += 1
        report["totals"][status] += 1
        if flapping:
            report["flapping"].append(node_id)
    for idx, name in enumerate(site_names):
        site = report["sites"][name]
        total = sum(site[s] for s in ("online", "late", "offline", "never_seen")) or 1
        site["degraded"] = site["offline"] / total >= 0.2
        base = 20 + idx
        site["trend"] = {
            "1h": {"rtt_ms_median": base, "rtt_ms_p95": base * 2.5, "loss_pct": 0.4},
            "24h": {"rtt_ms_median": base + 2, "rtt_ms_p95": base * 2.2, "loss_pct": 0.3},
        }
        for hour in range(24):
            at = (now - datetime.timedelta(hours=23 - hour)).strftime("%Y-%m-%dT%H:00:00Z")
            off = site["offline"] if hour > 20 else rnd.randint(0, 1)
            site["history"].append(
                {
                    "at": at,
                    "online": total - off,
                    "offline": off,
                    "rtt_ms_median": base + rnd.uniform(-5, 5),
                }
            )
    report["pending"] = [f"new-node-{i}" for i in range(2)]
    report["refused"] = {"stranger-1": "bad_token"}
    report["totals"]["pending"] = len(report["pending"])
    report["totals"]["refused"] = len(report["refused"])
    return report
