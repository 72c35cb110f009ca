"""
Benchmark: the fleet engine's memory over time (issue 27; docs/benchmarks.rst,
"Engine memory soak").

A real :class:`saltext_edge.fleet.engine.FleetEngine` in this process (the
real classifier, the real key ring reading a key store of 5,000 accepted keys
from disk, Salt's real ``localfs`` cache in a temporary directory), its clock
simulated so that hours pass in minutes:

A. **Jobs only** (what issue 27 measured against a real master): 300
   fleet-wide jobs, each ``salt/job/<jid>/new`` naming all 5,000 nodes and
   one return per node. Measured: RSS growth per job after the first job.
   Target: < 200 kB per job.
B. **Soak**: every simulated minute each of the 5,000 nodes sends a heartbeat
   signed with a real RSA key (a pool of key pairs, one accepted key per node
   id; RSA-1024 to keep the *senders'* signing time down, the engine's
   verification is the same code at any size) and one fleet-wide job runs
   (``new`` + 5,000 returns). The engine ticks every 10 simulated seconds and
   flushes its record every simulated minute. Measured: the RSS curve every
   ``--every`` simulated minutes, its growth per job over the last third
   (the raw uplink samples fill for the first ``raw_seconds``, 2 h, then the
   record stops growing). Target: flat (< 200 kB per job) under the stated
   ceiling.

    python bench/bench_soak.py                 # 5,000 nodes, 300 simulated minutes
    python bench/bench_soak.py --minutes 1440  # a simulated day
    python bench/bench_soak.py --quick         # 1,000 nodes, 150 minutes
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

T0 = 1_800_000_000.0
KEYS = 32
KEY_BITS = 1024
TARGET_KB_PER_JOB = 200.0
#: stated ceiling of the soak's RSS growth at 5,000 nodes (docs/ref/engine.rst,
#: "Memory and log bounds": the records with 2 h of raw samples, the key ring)
CEILING_MB = 300.0


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


class _Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def _setup(root, nodes, log):
    """Key pairs, the key store (one accepted key file per node id), the engine."""
    import salt.cache
    import salt.config
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from saltext_edge.fleet import engine as fengine
    from saltext_edge.fleet import signing, store

    started = time.perf_counter()
    signers, pubs = [], []
    for i in range(KEYS):
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        path = os.path.join(root, f"k{i}.pem")
        C.write_file(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            0o600,
        )
        signers.append(signing.Signer(path))
        pubs.append(
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    ids = [f"edge-{i:05d}.site-{i % 50:02d}.example" for i in range(nodes)]
    pki = os.path.join(root, "pki")
    os.makedirs(os.path.join(pki, "minions"))
    for i, mid in enumerate(ids):
        C.write_file(os.path.join(pki, "minions", mid), pubs[i % KEYS])
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=os.path.join(root, "cache"),
        pki_dir=pki,
        id="soak-master",
        edge={"fleet": {"interval": 60, "flush_interval": 60, "grace": 0}},
    )
    clock = _Clock()
    eng = fengine.FleetEngine(
        opts,
        store=store.Store(opts, cache=salt.cache.factory(opts)),
        keyring=signing.KeyRing(opts),
        clock=clock,
        index_fn=lambda o: {},
        keys_fn=lambda o: ids,
    )
    log(
        f"  setup: {nodes} node ids, {KEYS} RSA-{KEY_BITS} key pairs, {time.perf_counter() - started:.1f}s"
    )
    return eng, clock, ids, signers


def _job(eng, ids, n):
    jid = f"2027{n:016d}"
    eng.handle(
        f"salt/job/{jid}/new",
        {"jid": jid, "minions": list(ids), "fun": "test.ping", "tgt": "*", "user": "root"},
    )
    for mid in ids:
        eng.handle(
            f"salt/job/{jid}/ret/{mid}",
            {
                "id": mid,
                "jid": jid,
                "fun": "test.ping",
                "return": True,
                "retcode": 0,
                "success": True,
            },
        )


def jobs_only(nodes, jobs, log=print):
    """Part A; returns (rows, data)."""
    import gc

    root = tempfile.mkdtemp(prefix="saltext-edge-soak-a-")
    try:
        eng, clock, ids, _ = _setup(root, nodes, log)
        _job(eng, ids, 0)
        eng.tick()
        gc.collect()
        before = _rss()
        started = time.perf_counter()
        curve = []
        for n in range(1, jobs + 1):
            clock.now += 60
            _job(eng, ids, n)
            eng.tick()
            if n % 50 == 0:
                curve.append([n, round((_rss() - before) / 1e6, 2)])
                log(f"  jobs only: {n} jobs, RSS +{curve[-1][1]} MB")
        gc.collect()
        per_job_kb = (_rss() - before) / 1024.0 / jobs
        # after the first simulated hours (records made, the first hours closed)
        late = [p for p in curve if p[0] >= 100]
        late_kb = (
            (late[-1][1] - late[0][1]) * 1e6 / 1024.0 / (late[-1][0] - late[0][0])
            if len(late) >= 2
            else None
        )
        data = {
            "nodes": nodes,
            "jobs": jobs,
            "seconds": round(time.perf_counter() - started, 1),
            "rss_before_mb": round(before / 1e6, 1),
            "growth_per_job_kb": round(per_job_kb, 1),
            "growth_per_job_after_100_kb": None if late_kb is None else round(late_kb, 1),
            "curve_mb": curve,
        }
    finally:
        C.cleanup(root)
    rows = [
        C.row(
            f"engine RSS growth per fleet-wide job ({nodes} nodes, {jobs} jobs)",
            round(per_job_kb, 1),
            None,
            "kB",
            TARGET_KB_PER_JOB,
            per_job_kb < TARGET_KB_PER_JOB,
            f"was ~900 kB/job (issue 27); after job 100: {data['growth_per_job_after_100_kb']} kB/job",
        )
    ]
    return rows, data


def soak(nodes, minutes, every=10, log=print):
    """Part B; returns (rows, data)."""
    import gc

    from saltext_edge.uplink import heartbeat as _hb

    uplink = {
        "quality": "good",
        "rtt_ms": 12.0,
        "jitter_ms": 1.0,
        "loss_pct": 0.0,
        "checked_at": None,
    }
    root = tempfile.mkdtemp(prefix="saltext-edge-soak-b-")
    try:
        eng, clock, ids, signers = _setup(root, nodes, log)
        gc.collect()
        base = _rss()
        curve = []
        started = time.perf_counter()
        boots = {mid: f"{i:016x}:1" for i, mid in enumerate(ids)}
        slices = 6
        per_slice = (len(ids) + slices - 1) // slices
        for minute in range(1, minutes + 1):
            for part in range(slices):
                clock.now += 60.0 / slices
                for i in range(part * per_slice, min(len(ids), (part + 1) * per_slice)):
                    mid = ids[i]
                    payload = _hb.payload(
                        {"id": mid, "edge": {"site": f"site-{i % 50:02d}"}},
                        uplink,
                        minute,
                        boots[mid],
                        60.0,
                        0.1,
                        now=clock.now,
                    )
                    eng.handle(
                        "edge/heartbeat",
                        {
                            "id": mid,
                            "cmd": "_minion_event",
                            "data": signers[i % KEYS].sign(payload),
                        },
                    )
                eng.tick()
            _job(eng, ids, minute)
            eng.tick()
            if minute % every == 0 or minute == minutes:
                gc.collect()
                curve.append([minute, round((_rss() - base) / 1e6, 1)])
                log(
                    f"  soak: minute {minute}/{minutes}, RSS +{curve[-1][1]} MB, "
                    f"{time.perf_counter() - started:.0f}s, refused {eng.classifier.rejected}"
                )
        online = sum(1 for r in eng.records.values() if r.get("status") == "online")
    finally:
        C.cleanup(root)
    third = [p for p in curve if p[0] >= minutes * 2 / 3]
    tail_kb = (
        (third[-1][1] - third[0][1]) * 1e3 / 1.024 / max(1, third[-1][0] - third[0][0])
        if len(third) >= 2
        else None
    )
    peak = max(p[1] for p in curve)
    data = {
        "nodes": nodes,
        "minutes": minutes,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_base_mb": round(base / 1e6, 1),
        "curve_mb": curve,
        "peak_growth_mb": peak,
        "tail_growth_per_job_kb": None if tail_kb is None else round(tail_kb, 1),
        "online_at_end": online,
        "refused": dict(eng.classifier.refused),
    }
    rows = [
        C.row(
            f"soak: RSS growth per job, last third of {minutes} simulated min ({nodes} nodes)",
            data["tail_growth_per_job_kb"],
            None,
            "kB",
            TARGET_KB_PER_JOB,
            tail_kb is not None and tail_kb < TARGET_KB_PER_JOB,
            f"heartbeats {nodes}/min + 1 fleet-wide job/min; {online} online at the end",
        ),
        C.row(
            "soak: peak RSS growth over the run",
            peak,
            None,
            "MB",
            CEILING_MB,
            peak < CEILING_MB,
            "records with 2 h of raw samples, key ring, snapshot",
        ),
    ]
    return rows, data


def run(quick=False, log=print, keep=False, minutes=None, nodes=None, soak_only=False):
    """Both parts (only B with ``soak_only``); returns ``{"name": "soak", "rows", "data"}``."""
    nodes = nodes or (1000 if quick else 5000)
    rows, data = [], {"machine": C.machine_info()}
    if not soak_only:
        r, data["jobs_only"] = jobs_only(nodes, 300, log=log)
        rows += r
    r, data["soak"] = soak(nodes, minutes or (150 if quick else 300), log=log)
    rows += r
    return {"name": "soak", "rows": rows, "data": data}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--minutes", type=int, default=None)
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--soak-only", action="store_true", help="part B only")
    args = parser.parse_args()
    result = run(quick=args.quick, minutes=args.minutes, nodes=args.nodes, soak_only=args.soak_only)
    C.save_json("soak", result)
    print(json.dumps(result, indent=1, default=str))
