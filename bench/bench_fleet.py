"""
Benchmark: fleet health (the ``edge_fleet`` engine, ``edge.report`` from its
record, the ``edge_uplink`` grain with a fresh measurement).

1. Heartbeats: a real ``salt-master`` running the ``edge_fleet`` engine, 5,000
   accepted keys (a pool of real RSA key pairs, one per node id in the key
   store), and a sender putting 5,000 nodes' signed heartbeats (each node every
   60 s, spread evenly: 83 events/s) on the master's event bus through Salt's
   own event transport (``salt.utils.event`` ``fire_event`` on the master's
   IPC publisher: the path a minion's ``fire_master`` ends on). Measured: CPU
   of the engine's process (% of one core, from its CPU time), its peak RSS,
   and whether every heartbeat landed (each node's stored sequence number
   equals the last one sent). Target: <= 10 % of one core, no loss.
2. Report: the record of 5,000 and 20,000 nodes (with one hour of raw samples
   each) and the same nodes' cached grains, then ``report.build`` (from the
   record) against Salt's own read of the same nodes' cached grains
   (``MasterPillarUtil.get_minion_grains()``, what ``salt-run cache.grains``
   does), in-library; plus ``salt-run edge.report`` at 5,000. Target: <= 2 s at 5,000, linear growth.
3. Grain: ``edge_uplink`` through Salt's grain loader with a fresh stored
   measurement, against the probe it replaces (black-holed master, 2 s budget).
"""

import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

PERIOD = 60.0


def _engine_proc(master):
    import psutil

    deadline = time.time() + 60
    while time.time() < deadline:
        for proc in C._tree(master.proc.pid):
            try:
                if "edge_fleet" in " ".join(proc.cmdline()):
                    return proc
            except psutil.Error:
                pass
        time.sleep(0.5)
    raise RuntimeError("no edge_fleet engine process found")


def _store_keys(master, ids, pool):
    keys = master.key_cache()
    for i, mid in enumerate(ids):
        keys.store("keys", mid, {"pub": pool[i % len(pool)][1].strip(), "state": "accepted"})


def heartbeats(count, seconds, log=print, keep=False):
    """Part 1; returns rows and data."""
    import psutil
    import salt.utils.event
    from cryptography.hazmat.primitives import serialization

    from saltext_edge.fleet import (
        signing,
        store,
    )
    from saltext_edge.uplink import heartbeat as hb

    pool = C.key_pool(100, log=log)

    class MemSigner(signing.Signer):
        """A node's signer from a key pair of the pool (no file)."""

        def __init__(self, priv):
            self._key = serialization.load_pem_private_key(priv.encode(), password=None)

        def _load(self):
            return self._key

    signers = [MemSigner(priv) for priv, _pub, _ in pool]
    root = C.mkroot("fleet")
    master = C.Master(
        os.path.join(root, "master"),
        {
            "engines": [{"edge_fleet": {}}],
            "edge": {"metrics": False, "fleet": {"flush_interval": 15}},
        },
        name="bench-fleet",
    )
    ids = [f"edge-{C.site_of(i)}-{i:05d}" for i in range(count)]
    index = {mid: i for i, mid in enumerate(ids)}
    data = {"nodes": count, "period_s": PERIOD, "seconds": seconds}
    try:
        _store_keys(master, ids, pool)
        master.start()
        eng = _engine_proc(master)
        time.sleep(2)
        bus = salt.utils.event.get_master_event(master.opts, master.opts["sock_dir"], listen=False)
        rng = random.Random(3)
        offsets = {mid: rng.random() * PERIOD for mid in ids}
        order = sorted(ids, key=offsets.get)
        seq = dict.fromkeys(ids, 0)
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], eng.memory_info().rss)
                except psutil.Error:
                    return
                stop.wait(0.5)

        threading.Thread(target=sample, daemon=True).start()
        cpu0 = sum(eng.cpu_times()[:2])
        started = time.time()
        sent = 0
        behind = 0.0
        warm = None  # (time, cpu) once every node has sent its first heartbeat
        while time.time() - started < seconds:
            if warm is None and time.time() - started >= PERIOD:
                warm = (time.time(), sum(eng.cpu_times()[:2]))
            cycle = int((time.time() - started) // PERIOD)
            for mid in order:
                due = started + cycle * PERIOD + offsets[mid]
                if due > started + seconds:
                    break
                now = time.time()
                if due > now:
                    time.sleep(due - now)
                else:
                    behind = max(behind, now - due)
                if seq[mid] > cycle:
                    continue
                seq[mid] += 1
                i = index[mid]
                payload = hb.payload(
                    {"id": mid, "edge": {"site": C.site_of(i)}},
                    {
                        "quality": "good",
                        "rtt_ms": 20.0 + i % 50,
                        "jitter_ms": 1.0,
                        "loss_pct": 0.0,
                        "checked_at": None,
                    },
                    seq[mid],
                    "bench",
                    PERIOD,
                    0.1,
                )
                signed = signers[i % len(signers)].sign(payload)
                bus.fire_event(
                    {"id": mid, "tag": "edge/heartbeat", "data": signed, "cmd": "_minion_event"},
                    "edge/heartbeat",
                )
                sent += 1
        send_s = time.time() - started
        # let the engine drain and flush (flush_interval 15 s)
        time.sleep(17)
        cpu1 = sum(eng.cpu_times()[:2])
        wall = time.time() - started
        stop.set()
        bus.destroy()
        records = store.Store(master.opts).load_all()
        landed = sum(
            1 for mid in ids if seq[mid] and (records.get(mid) or {}).get("seq") == seq[mid]
        )
        expected = sum(1 for mid in ids if seq[mid])
        cpu_pct = 100.0 * (cpu1 - cpu0) / wall
        warm_pct = 100.0 * (cpu1 - warm[1]) / (time.time() - warm[0]) if warm else None
        data["cpu_pct_steady"] = round(warm_pct, 2) if warm_pct is not None else None
        data.update(
            sent=sent,
            send_s=round(send_s, 1),
            rate_per_s=round(sent / send_s, 1),
            cpu_pct=round(cpu_pct, 2),
            peak_rss_mib=round(peak[0] / 2**20, 1),
            nodes_with_last_seq=landed,
            nodes_sent=expected,
            sender_max_behind_s=round(behind, 3),
        )
        log(
            f"  fleet: {sent} heartbeats from {expected} nodes in {send_s:.0f}s ({sent / send_s:.0f}/s); engine "
            f"CPU {cpu_pct:.1f}% of one core over the run, {data['cpu_pct_steady']}% after the first period, peak RSS {peak[0] / 2**20:.0f} MiB; last heartbeat stored for "
            f"{landed}/{expected} nodes"
        )
    finally:
        master.stop()
        C.cleanup(root, keep)
    rows = [
        C.row(
            f"edge_fleet engine, {count} nodes / {PERIOD:.0f} s: CPU (steady)",
            data["cpu_pct_steady"],
            None,
            "%",
            "<= 10 % of one core",
            data["cpu_pct_steady"] is not None and data["cpu_pct_steady"] <= 10.0,
            f"{data['rate_per_s']} signed heartbeats/s through the master event bus, after every node's first "
            f"heartbeat; {data['cpu_pct']} % over the whole run, first keys read included",
        ),
        C.row(
            f"edge_fleet engine, {count} nodes: heartbeats lost",
            expected - landed,
            None,
            "nodes",
            "0",
            landed == expected,
            f"peak RSS of the engine process {data['peak_rss_mib']} MiB",
        ),
    ]
    return rows, data


def _records(ids, now, rng):
    from saltext_edge.fleet import record

    out = {}
    for i, mid in enumerate(ids):
        rec = record.new(mid, now - 86400)
        age = rng.choice([5] * 90 + [200] * 4 + [4000] * 6)
        rec.update(
            site=C.site_of(i),
            last_seen=now - age,
            last_kind="heartbeat",
            period=60.0,
            jitter=0.1,
            budget=2.0,
            seq=100,
            boot="b",
            status="online",
            uplink={
                "quality": "good",
                "rtt_ms": 20.0,
                "jitter_ms": 1.0,
                "loss_pct": 0.0,
                "checked_at": None,
            },
            samples=[[now - age - k * 60, 20.0 + k % 7, 1.0, 0.0, "good"] for k in range(60)],
        )
        out[mid] = rec
    return out


def reports(sizes, log=print, keep=False, cli_at=5000):
    """Part 2; returns rows and data."""
    import bench_report
    from saltext_edge.fleet import (
        record,
        store,
    )

    pool = C.key_pool(100, log=log)
    rows, data = [], {}
    for count in sizes:
        root = C.mkroot("fleet-report")
        master = C.Master(
            os.path.join(root, "master"), {"edge": {"metrics": False}}, name="bench-fleet-report"
        )
        try:
            ids = [f"edge-{C.site_of(i)}-{i:05d}" for i in range(count)]
            t0 = time.perf_counter()
            _store_keys(master, ids, pool)
            rng = random.Random(5)
            st = store.Store(master.opts)
            st.write_records(_records(ids, time.time(), rng), record.merge)
            cache = master.data_cache()
            for i, mid in enumerate(ids):
                cache.store("grains", mid, bench_report.grains_for(i, mid, rng))
            log(
                f"  fleet report N={count}: record + grains + keys stored in {time.perf_counter() - t0:.0f}s (untimed)"
            )
            ours, before, base_count, rep = bench_report._in_library(master)
            ok = sum(rep["totals"][k] for k in ("online", "late", "offline", "never_seen")) == count
            ok = ok and base_count == count
            data[count] = {"ours_s": round(ours, 3), "base_s": round(before, 3), "correct": ok}
            if count == cli_at:
                master.start()
                res = C.timed_run(
                    master.cli("salt-run", "edge.report", "--out=json"),
                    stdout_to=os.path.join(root, "ours.json"),
                )
                data[count]["cli_s"] = round(res["elapsed_s"], 2)
                data[count]["cli_rss_mib"] = round(res["maxrss_mib"], 1)
            log(
                f"  fleet report N={count}: from the record {ours:.2f}s, Salt's cached grains {before:.2f}s; totals ok: {ok}"
            )
        finally:
            master.stop()
            C.cleanup(root, keep)
        rows.append(
            C.row(
                f"edge.report from the record, {count} nodes (in-library)",
                data[count]["ours_s"],
                data[count]["base_s"],
                "s",
                "<= 2 s at 5000" if count == 5000 else "linear",
                (data[count]["ours_s"] <= 2.0 and ok) if count == 5000 else ok,
                "baseline: MasterPillarUtil.get_minion_grains() (salt-run cache.grains) on the same nodes",
            )
        )
        if "cli_s" in data[count]:
            rows.append(
                C.row(
                    f"salt-run edge.report, {count} nodes (CLI)",
                    data[count]["cli_s"],
                    None,
                    "s",
                    "reported",
                    None,
                    f"peak RSS {data[count]['cli_rss_mib']} MiB",
                )
            )
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        growth = data[b]["ours_s"] / data[a]["ours_s"] if data[a]["ours_s"] else None
        rows.append(
            C.row(
                f"edge.report growth {a} -> {b} nodes",
                growth,
                b / a,
                "x",
                "about linear",
                growth is not None and growth <= 1.5 * b / a,
                "ratio of times vs ratio of sizes",
            )
        )
    return rows, data


def grain(log=print, keep=False):
    """Part 3; returns rows and data."""
    import salt.config
    import salt.loader

    from saltext_edge.uplink import measure

    root = C.mkroot("fleet-grain")
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1)  # never accepted, never greets: a black-holed master port
    try:
        opts = salt.config.minion_config(None)
        opts.update(
            cachedir=os.path.join(root, "cache"),
            id="bench-grain",
            edge={
                "uplink": {
                    "targets": [f"127.0.0.1:{hole.getsockname()[1]}"],
                    "budget": 2.0,
                    "timeout": 5,
                }
            },
        )
        func = salt.loader.grain_funcs(opts)["edge_grains.edge_uplink"]
        t0 = time.perf_counter()
        probed = func()
        probe_s = time.perf_counter() - t0
        measure.save(opts, dict(probed["edge_uplink"]))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            fresh = func()
            times.append(time.perf_counter() - t0)
        fresh_ms = sorted(times)[len(times) // 2] * 1000
        same = fresh["edge_uplink"]["quality"] == probed["edge_uplink"]["quality"]
        log(
            f"  grain: fresh measurement {fresh_ms:.2f} ms (median of 20) vs probing {probe_s * 1000:.0f} ms"
        )
    finally:
        hole.close()
        C.cleanup(root, keep)
    data = {"fresh_ms": round(fresh_ms, 3), "probe_ms": round(probe_s * 1000, 1)}
    return [
        C.row(
            "edge_uplink grain with a fresh measurement",
            fresh_ms,
            probe_s * 1000,
            "ms",
            "no probe budget added",
            fresh_ms < 50 and same,
            "baseline: probing a black-holed master, 2 s budget",
        )
    ], data


def run(quick=False, log=print, keep=False):
    rows, data = [], {}
    r, data["heartbeats"] = heartbeats(
        1000 if quick else 5000, 75 if quick else 130, log=log, keep=keep
    )
    rows += r
    r, data["report"] = reports(
        [1000, 4000] if quick else [5000, 20000], log=log, keep=keep, cli_at=1000 if quick else 5000
    )
    rows += r
    r, data["grain"] = grain(log=log, keep=keep)
    rows += r
    return {"name": "fleet", "rows": rows, "data": data}


if __name__ == "__main__":
    C.script_main(run, __doc__)
