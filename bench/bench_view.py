#!/usr/bin/env python
"""
Fleet view benchmarks (``python bench/run.py --only view`` or run directly):

* metrics: scrape ``/metrics`` over HTTP (gzip, as Prometheus asks) from
  :func:`saltext_edge.view.metrics_server.serve` over a 5,000-node snapshot (and
  20,000 for the cardinality figure); baseline: prometheus-client's own
  ``generate_latest`` over the same collector (no HTTP);
* "does not block the engine": an event-handling thread in the same process
  handles 500 events/s (5,000 nodes heartbeating every 10 s) while scrapes
  run back to back; the delay from an event's arrival to its handling is
  compared with the same loop without scrapes;
* the fleet page for 5,000 nodes in 50 sites (``details=True``: every node
  listed): size, render time in Python, and parse + layout time in headless
  Chromium (the page records ``performance.now()`` after parsing and after a
  forced layout on ``load``), plus Chromium's wall time against a 1-node page.

Synthetic data (``view.page_example.example_report`` and a snapshot of the same
shape); the master's own record is not involved, so these figures isolate
the view.
"""

import argparse
import gzip
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position
from saltext_edge.view import (  # pylint: disable=wrong-import-position
    metrics_collector,
    metrics_server,
    page,
    page_example,
)


def snapshot(nodes, sites=50, now=None):
    """A snapshot of ``nodes`` nodes with the shape the engine hands the collector."""
    now = now or time.time()
    out = {}
    statuses = ("online",) * 17 + ("late", "offline", "never_seen")
    qualities = ("good",) * 6 + ("fair", "fair", "poor", "down")
    for i in range(nodes):
        node_id = f"edge-{i:05d}.site-{i % sites:03d}.example.net"
        status = statuses[(i * 7) % len(statuses)]
        out[node_id] = {
            "id": node_id,
            "site": f"site-{i % sites:03d}",
            "status": status,
            "last_seen_ts": None if status == "never_seen" else now - (i % 300),
            "last_seen_kind": None if status == "never_seen" else "heartbeat",
            "uplink": None
            if status == "never_seen"
            else {
                "quality": qualities[i % len(qualities)],
                "rtt_ms": 10.0 + (i % 90) * 1.7,
                "jitter_ms": 0.5 + (i % 13) * 0.3,
                "loss_pct": float(i % 5),
            },
            "admitted_by": "edge_token",
        }
    return {
        "nodes": out,
        "engine": {
            "events_seen": nodes * 60,
            "lag_seconds": 0.01,
            "store_errors": 0,
            "started_at": now - 3600,
        },
        "admissions": {
            ("accepted", None): nodes,
            ("refused", "bad_token"): 12,
            ("refused", "key_changed"): 2,
        },
    }


def _scrape(url):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return len(body), len(gzip.decompress(body))


def scrape_times(nodes, runs):
    snap = snapshot(nodes)
    server = metrics_server.serve("127.0.0.1", 0, lambda: snap)
    try:
        _scrape(server.url)  # warm up
        times = []
        sizes = None
        for _ in range(runs):
            t0 = time.perf_counter()
            sizes = _scrape(server.url)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        server.close()
    series = sum(
        1
        for line in metrics_collector.FleetCollector(lambda: snap).exposition().splitlines()
        if not line.startswith(b"#")
    )
    return {
        "median_ms": statistics.median(times),
        "max_ms": max(times),
        "times_ms": times,
        "gzip_bytes": sizes[0],
        "bytes": sizes[1],
        "series": series,
    }


def stock_times(nodes, runs):
    from prometheus_client import generate_latest

    snap = snapshot(nodes)
    registry = metrics_collector.registry_for(lambda: snap, process=False)
    generate_latest(registry)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        generate_latest(registry)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(times), "times_ms": times}


def event_delays(nodes, seconds, scraping, rate=500):
    """
    Delays (ms) between an event's arrival and its handling by a thread that
    updates the in-memory record (as the engine does), at ``rate`` events/s,
    with or without scrapes running back to back meanwhile.
    """
    snap = snapshot(nodes)
    record = snap["nodes"]
    ids = list(record)
    events = queue.Queue()
    delays = []
    stop = threading.Event()

    def engine():
        while True:
            item = events.get()
            if item is None:
                return
            put_at, node_id = item
            node = dict(record[node_id])
            node["last_seen_ts"] = time.time()
            record[node_id] = node
            delays.append((time.perf_counter() - put_at) * 1000)

    scrapes = [0]

    def scraper(url):
        while not stop.is_set():
            _scrape(url)
            scrapes[0] += 1

    server = metrics_server.serve("127.0.0.1", 0, lambda: snap)
    worker = threading.Thread(target=engine, daemon=True)
    worker.start()
    scr = threading.Thread(target=scraper, args=(server.url,), daemon=True) if scraping else None
    try:
        if scr:
            scr.start()
        interval = 1.0 / rate
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            events.put((time.perf_counter(), ids[i % len(ids)]))
            i += 1
            next_at = start + i * interval
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        events.put(None)
        worker.join(30)
    finally:
        stop.set()
        if scr:
            scr.join(30)
        server.close()
    delays.sort()
    return {
        "events": len(delays),
        "sent": i,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99)],
        "max_ms": delays[-1],
        "scrapes": scrapes[0],
    }


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_times(path, runs=3):
    """Chromium --dump-dom of ``path``: wall time and the page's own parse/layout marks."""
    exe = chromium()
    if exe is None:
        return None
    out = []
    profile = tempfile.mkdtemp(prefix="saltext-edge-bench-chromium-")
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    f"--user-data-dir={profile}",
                    "--window-size=1280,900",
                    "--dump-dom",
                    f"file://{path}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            wall = (time.perf_counter() - t0) * 1000
            parsed = re.search(r'data-parsed-ms="(\d+)"', proc.stdout)
            layout = re.search(r'data-layout-ms="(\d+)"', proc.stdout)
            out.append(
                {
                    "wall_ms": wall,
                    "parsed_ms": int(parsed.group(1)) if parsed else None,
                    "layout_ms": int(layout.group(1)) if layout else None,
                }
            )
    finally:
        shutil.rmtree(profile, ignore_errors=True)

    def med(key):
        vals = [r[key] for r in out if r[key] is not None]
        return statistics.median(vals) if vals else None

    return {
        "runs": out,
        "wall_ms": med("wall_ms"),
        "parsed_ms": med("parsed_ms"),
        "layout_ms": med("layout_ms"),
    }


def run(quick=False, log=print, keep=False):
    """Run the view benchmarks; returns ``{"name", "rows", "data"}`` (see bench/_common.py)."""
    runs = 5 if quick else 15
    rows = []
    data = {}

    log("  metrics: scrape 5,000 nodes over HTTP")
    s5 = scrape_times(5000, runs)
    b5 = stock_times(5000, max(3, runs // 3))
    data["scrape_5000"], data["stock_5000"] = s5, b5
    rows.append(
        C.row(
            "metrics scrape, 5,000 nodes (HTTP, gzip)",
            s5["median_ms"],
            b5["median_ms"],
            "ms",
            "<= 200 ms",
            s5["median_ms"] <= 200,
            f"median of {runs}, max {s5['max_ms']:.0f} ms; {s5['series']} series, {s5['bytes'] / 1e6:.1f} MB "
            f"({s5['gzip_bytes'] / 1e6:.2f} MB gzip); baseline: prometheus-client generate_latest, no HTTP",
        )
    )
    log(f"    median {s5['median_ms']:.0f} ms, stock generate_latest {b5['median_ms']:.0f} ms")
    if not quick:
        log("  metrics: scrape 20,000 nodes")
        s20 = scrape_times(20000, 5)
        data["scrape_20000"] = s20
        rows.append(
            C.row(
                "metrics scrape, 20,000 nodes (HTTP, gzip)",
                s20["median_ms"],
                None,
                "ms",
                "reported",
                None,
                f"{s20['series']} series, {s20['bytes'] / 1e6:.1f} MB ({s20['gzip_bytes'] / 1e6:.2f} MB gzip)",
            )
        )

    seconds = 5 if quick else 15
    log(
        f"  metrics: event handling at 500 events/s for {seconds} s, without and with back-to-back scrapes"
    )
    quiet = event_delays(5000, seconds, scraping=False)
    busy = event_delays(5000, seconds, scraping=True)
    data["events_quiet"], data["events_scraping"] = quiet, busy
    rows.append(
        C.row(
            "engine event handling during scrapes: p99 delay",
            busy["p99_ms"],
            quiet["p99_ms"],
            "ms",
            "<= 50 ms",
            busy["p99_ms"] <= 50 and busy["events"] == busy["sent"],
            f"{busy['scrapes']} back-to-back scrapes of 5,000 nodes meanwhile; max {busy['max_ms']:.1f} ms "
            f"(without: {quiet['max_ms']:.1f} ms); {busy['events']} events handled, none lost",
        )
    )
    log(f"    p99 {busy['p99_ms']:.1f} ms with scrapes, {quiet['p99_ms']:.1f} ms without")

    log("  page: 5,000 nodes in 50 sites, every node listed")
    rep = page_example.example_report(nodes=5000, sites=50)
    times = []
    for _ in range(max(3, runs // 3)):
        t0 = time.perf_counter()
        text = page.render(rep)
        times.append((time.perf_counter() - t0) * 1000)
    size = len(text.encode("utf-8"))
    json_size = len(json.dumps(rep).encode("utf-8"))
    data["page_5000"] = {"bytes": size, "render_ms": times, "report_json_bytes": json_size}
    rows.append(
        C.row(
            "fleet page, 5,000 nodes: size",
            size / 1e6,
            json_size / 1e6,
            "MB",
            "< 2 MB",
            size < 2_000_000,
            "baseline: the same report as JSON",
        )
    )
    rows.append(
        C.row(
            "fleet page, 5,000 nodes: render in Python",
            statistics.median(times),
            None,
            "ms",
            "reported",
            None,
            "view.page.render",
        )
    )
    tmp = tempfile.mkdtemp(prefix="saltext-edge-bench-view-")
    try:
        big = os.path.join(tmp, "fleet-5000.html")
        small = os.path.join(tmp, "fleet-1.html")
        page.write(rep, big)
        page.write(page_example.example_report(nodes=1, sites=1), small)
        b_big = browser_times(big)
        b_small = browser_times(small)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    data["browser_5000"], data["browser_1"] = b_big, b_small
    if b_big is None:
        rows.append(
            C.row(
                "fleet page in Chromium",
                None,
                None,
                "ms",
                "<= 2000 ms",
                None,
                "chromium not installed",
            )
        )
    else:
        rows.append(
            C.row(
                "fleet page, 5,000 nodes: parse + layout in Chromium",
                b_big["layout_ms"],
                b_small["layout_ms"],
                "ms",
                "<= 2000 ms",
                b_big["layout_ms"] is not None and b_big["layout_ms"] <= 2000,
                f"performance.now() after a forced layout on load (median of 3); parsed at {b_big['parsed_ms']} ms; "
                "baseline: a 1-node page",
            )
        )
        rows.append(
            C.row(
                "fleet page, 5,000 nodes: headless Chromium start to DOM dump",
                b_big["wall_ms"],
                b_small["wall_ms"],
                "ms",
                "reported",
                None,
                "whole chromium --dump-dom process; baseline: a 1-node page",
            )
        )
        log(f"    layout {b_big['layout_ms']} ms (1-node page {b_small['layout_ms']} ms)")
    return {"name": "view", "rows": rows, "data": data}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    res = run(quick=args.quick)
    for r in res["rows"]:
        print(
            f"{r['metric']}: {r['ours']} {r['unit']} (baseline {r['baseline']}) target {r['target']} met {r['met']}"
            f" -- {r['note']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
