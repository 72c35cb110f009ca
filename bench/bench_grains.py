#!/usr/bin/env python
"""
Minion start-up cost of the saltext-edge grains.

Loads the minion's grains the way a starting minion does
(``salt.loader.grains(opts, force_refresh=True)``, core grains included) in
three set-ups, on the same machine in the same run:

* ``baseline``     -- edge grains disabled (``disable_grains``): Salt alone;
* ``reachable``    -- edge grains on, master = a real salt-master on loopback
                      (started here, random ports; its ZeroMQ greeting is timed);
* ``black_holed``  -- edge grains on, master ports = listeners whose accept
                      queue is full (every probe hangs until the budget ends);
* ``reachable_all`` -- as ``reachable`` plus the ``edge_token`` grain of the
                      admission feature (the whole extension).

``reachable`` and ``black_holed`` measure this module's grains (``edge_site``,
``edge_uplink``; ``edge_token`` disabled) against the baseline.

Prints medians, the added milliseconds and the ratio to the baseline, and
writes JSON to ``bench/results/``. Loopback only; no root needed.

    python bench/bench_grains.py [--runs 7] [--budget 2.0]
"""

import argparse
import datetime
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
EDGE_GRAIN_MODULES = ["edge_grains", "edge_token"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class BlackHole:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def start_master(root):
    """A real salt-master on 127.0.0.1 with random ports; returns (proc, pub, ret)."""
    pub, ret = free_port(), free_port()
    conf_dir = root / "master-conf"
    conf_dir.mkdir()
    (conf_dir / "master").write_text(
        json.dumps(
            {
                "root_dir": str(root / "master-root"),
                "interface": "127.0.0.1",
                "publish_port": pub,
                "ret_port": ret,
                "user": os.environ.get("USER") or __import__("getpass").getuser(),
                "log_file": str(root / "master.log"),
                "log_level_logfile": "warning",
                "worker_threads": 1,
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import salt.scripts; salt.scripts.salt_master()",
            "-c",
            str(conf_dir),
            "-l",
            "quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    from saltext_edge.uplink import probe

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        res = probe.probe([f"127.0.0.1:{pub}", f"127.0.0.1:{ret}"], count=1, budget=1)
        if res["quality"] == "good":
            return proc, pub, ret
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError("salt-master did not come up within 90 s")


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the master we started
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def minion_opts(root, name, master_port, publish_port, disable, budget):
    """``disable``: grain modules to leave out (``disable_grains``)."""
    import salt.config

    conf_dir = root / f"minion-{name}"
    conf_dir.mkdir()
    (conf_dir / "minion").write_text(
        json.dumps(
            {
                "id": f"bench-{name}",
                "root_dir": str(root / f"minion-root-{name}"),
                "master": "127.0.0.1",
                "master_port": master_port,
                "publish_port": publish_port,
                "log_file": str(root / f"minion-{name}.log"),
                "disable_grains": list(disable),
                "enable_fqdns_grains": False,
                "edge": {"site": "bench", "uplink": {"budget": budget}},
            }
        )
    )
    return salt.config.minion_config(str(conf_dir / "minion"))


def time_grains(setups, runs):
    """Interleaved runs (one of each set-up per round) so machine load hits all alike."""
    import salt.loader

    times = {name: [] for name in setups}
    last = {}
    for opts in setups.values():
        salt.loader.grains(opts, force_refresh=True)  # warm imports once
    for _ in range(runs):
        for name, opts in setups.items():
            started = time.perf_counter()
            last[name] = salt.loader.grains(opts, force_refresh=True)
            times[name].append((time.perf_counter() - started) * 1000.0)
    return times, last


def time_edge_grains_alone(setups, runs):
    """Our two grain functions alone, called through Salt's grain loader."""
    import salt.loader

    out = {}
    for name, opts in setups.items():
        if name not in ("reachable", "black_holed"):
            continue
        funcs = salt.loader.grain_funcs(opts)
        site, uplink = funcs["edge_grains.edge_site"], funcs["edge_grains.edge_uplink"]
        out[name] = []
        for _ in range(runs):
            started = time.perf_counter()
            site()
            uplink()
            out[name].append((time.perf_counter() - started) * 1000.0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        root = pathlib.Path(tmp)
        master, pub, ret = start_master(root)
        holes = [BlackHole(), BlackHole()]
        try:
            # our grains (edge_site, edge_uplink) alone; edge_token (admission,
            # another module) once more for the whole extension's cost
            setups = {
                "baseline": minion_opts(
                    root, "baseline", ret, pub, EDGE_GRAIN_MODULES, args.budget
                ),
                "reachable": minion_opts(root, "reachable", ret, pub, ["edge_token"], args.budget),
                "black_holed": minion_opts(
                    root, "black_holed", holes[1].port, holes[0].port, ["edge_token"], args.budget
                ),
                "reachable_all": minion_opts(root, "reachable_all", ret, pub, [], args.budget),
            }
            times, grains = time_grains(setups, args.runs)
            alone = time_edge_grains_alone(setups, args.runs)
            for name in setups:
                results[name] = {
                    "runs_ms": [round(t, 1) for t in times[name]],
                    "median_ms": round(statistics.median(times[name]), 1),
                    "min_ms": round(min(times[name]), 1),
                    "edge_uplink": grains[name].get("edge_uplink"),
                }
                if name in alone:
                    results[name]["edge_grains_alone_median_ms"] = round(
                        statistics.median(alone[name]), 2
                    )
        finally:
            for hole in holes:
                hole.close()
            stop(master)

    base = results["baseline"]["median_ms"]
    base_min = results["baseline"]["min_ms"]
    for name in ("reachable", "black_holed", "reachable_all"):
        med = results[name]["median_ms"]
        results[name]["added_ms"] = round(med - base, 1)
        results[name]["added_min_ms"] = round(results[name]["min_ms"] - base_min, 1)
        results[name]["ratio_to_baseline"] = round(med / base, 2) if base else None
    import salt.version

    report = {
        "bench": "grains_startup_cost",
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "salt": salt.version.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "budget_s": args.budget,
        "results": results,
    }
    print(f"salt {report['salt']}, {args.runs} runs each, grain budget {args.budget:g} s")
    print(
        f"{'setup':<14}{'median ms':>10}{'min ms':>9}{'added ms':>10}{'(by min)':>10}"
        f"{'ratio':>7}  edge_uplink"
    )
    for name, res in results.items():
        up = res["edge_uplink"] or {}
        print(
            f"{name:<14}{res['median_ms']:>10.1f}{res['min_ms']:>9.1f}"
            f"{res.get('added_ms', 0.0):>10.1f}{res.get('added_min_ms', 0.0):>10.1f}"
            f"{res.get('ratio_to_baseline', 1.0) or 0:>7.2f}  "
            f"{up.get('quality')} rtt={up.get('rtt_ms')} target={up.get('target')}"
        )
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench_grains-{report['when'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("reachable", "black_holed"):
        print(
            f"edge_site + edge_uplink alone, {name}: "
            f"{results[name]['edge_grains_alone_median_ms']:.1f} ms (median)"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
