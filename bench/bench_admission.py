"""
Benchmark 1: admission throughput.

N pending keys, each with a valid recorded ``edge_token``, on one real
salt-master: ``salt-run edge.accept_pending`` against Salt's own
``salt-key -A -y`` on the same N, same master, same key store.

Set-up (never timed): keys are put pending through Salt's key store API
(``salt.cache.Cache(opts, driver=opts["keys.cache_driver"]).store("keys", id,
{"pub": ..., "state": "pending"})``, as ``salt/master.py`` does for a new
minion) and tokens are recorded through the admission library's
:func:`saltext_edge.admission.record`, as the reactor would. RSA generation is
slow, so ids reuse a pool of pre-generated key pairs (id ``i`` gets pair
``i mod P``); tokens are per id *and* key, so every token is still distinct
and verifies only for its own id.

Timed: the whole CLI process, as an operator runs it (interpreter and loader
start-up included; stdout to a file). Also timed with 0 pending keys to
separate that fixed start-up cost from the per-key cost. Runs alternate
baseline / ours (``reps`` times at N=1000, once at N=5000); the median is
reported. Before every timed run the state written once through the APIs is
restored by copying the key store and admission bank directories back, so
both commands start from byte-identical state.
"""

import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position


def _ids(count):
    return [f"edge-{C.site_of(i)}-{i:05d}" for i in range(count)]


def _reset(master):
    """Empty the key store and the admission banks (set-up, untimed)."""
    from saltext_edge import admission

    keys = master.key_cache()
    for minion_id in keys.list("keys"):
        keys.flush("keys", minion_id)
    data = master.data_cache()
    for bank in (admission.TOKENS_BANK, admission.DECISIONS_BANK):
        try:
            data.flush(bank)
        except Exception:
            pass


def _prepare(master, count, pool):
    """N pending keys through Salt's key store API + recorded tokens."""
    from saltext_edge import admission

    _reset(master)
    keys = master.key_cache()
    data = master.data_cache()
    opts = master.opts
    for i, minion_id in enumerate(_ids(count)):
        _, pub, digest = pool[i % len(pool)]
        keys.store("keys", minion_id, {"pub": pub.strip(), "state": "pending"})
        tok = C.make_token(C.BENCH_SECRET, C.site_of(i), minion_id, digest)
        ret = admission.record(opts, minion_id, pub, tok, source="bench", cache=data)
        if not ret.get("recorded"):
            raise RuntimeError(f"admission.record refused {minion_id}: {ret.get('reason')}")


def _state_dirs(master):
    """The directories Salt's key store and the admission banks wrote to."""
    from saltext_edge import admission

    pki = master.opts["pki_dir"]
    cachedir = master.opts["cachedir"]
    return [os.path.join(pki, name) for name in ("minions", "minions_pre", "minions_rejected")] + [
        os.path.join(cachedir, admission.BANK)
    ]


def _snapshot(master, dest):
    """Copy the state :func:`_prepare` produced, to restore it before each run."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for i, path in enumerate(_state_dirs(master)):
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(dest, str(i)), symlinks=True)


def _restore(master, src):
    for i, path in enumerate(_state_dirs(master)):
        shutil.rmtree(path, ignore_errors=True)
        saved = os.path.join(src, str(i))
        if os.path.isdir(saved):
            shutil.copytree(saved, path, symlinks=True)
        else:
            os.makedirs(path, exist_ok=True)


def _timed(master, which, count, out_dir):
    if which == "ours":
        argv = master.cli("salt-run", "edge.accept_pending", "--out=json")
    else:
        argv = master.cli("salt-key", "-A", "-y")
    out = os.path.join(out_dir, f"{which}-{count}.out")
    res = C.timed_run(argv, timeout=900, stdout_to=out)
    states = master.key_states()
    accepted = states.get("minions", 0)
    res["accepted"] = accepted
    res["pending_left"] = states.get("minions_pre", 0)
    res["ok"] = res["rc"] == 0 and accepted == count
    if which == "ours" and count:
        try:
            with open(out, encoding="utf-8") as fh_:
                decisions = json.load(fh_)
            res["decisions"] = {
                d: sum(1 for v in decisions.values() if v.get("decision") == d)
                for d in ("accepted", "refused", "no_token")
            }
        except (OSError, ValueError, AttributeError):
            res["decisions"] = None
    res.pop("stdout", None)
    res["stderr"] = res["stderr"][-500:]
    return res


def _sizes_and_reps(quick):
    """
    The fleet sizes and repetitions: ``EDGE_BENCH_ADMISSION_SIZES`` (e.g.
    ``1000``) and ``EDGE_BENCH_ADMISSION_REPS`` (pairs per size) override the
    defaults, to time one size alone while working on it.
    """
    sizes = [100, 500] if quick else [1000, 5000]
    reps = {100: 1, 500: 1, 1000: 2, 5000: 1}
    env_sizes = os.environ.get("EDGE_BENCH_ADMISSION_SIZES")
    if env_sizes:
        sizes = [int(s) for s in env_sizes.split(",") if s.strip()]
    env_reps = os.environ.get("EDGE_BENCH_ADMISSION_REPS")
    if env_reps:
        reps = dict.fromkeys(sizes, max(1, int(env_reps)))
    return sizes, {n: reps.get(n, 1) for n in sizes}


def run(quick=False, log=print, keep=False):
    sizes, reps = _sizes_and_reps(quick)
    pool_size = 100 if quick else 500
    pool = C.key_pool(pool_size, log=log)
    root = C.mkroot("admission")
    master = C.Master(
        os.path.join(root, "master"),
        {"edge": {"shared_secret": C.BENCH_SECRET}},
        name="bench-admission",
    )
    data = {"sizes": sizes, "key_pool": pool_size, "runs": []}
    try:
        master.start()
        # fixed cost: both CLIs with nothing pending
        fixed_runs = {"baseline": [], "ours": []}
        for _ in range(1 if quick else 2):
            for which in ("baseline", "ours"):
                _reset(master)
                res = _timed(master, which, 0, root)
                fixed_runs[which].append(res["elapsed_s"])
                data["runs"].append(dict(res, which=which, n=0))
        fixed = {k: statistics.median(v) for k, v in fixed_runs.items()}
        log(
            f"  admission N=0 (start-up): salt-key {fixed['baseline']:.2f}s, edge.accept_pending {fixed['ours']:.2f}s"
        )
        data["fixed_s"] = fixed
        medians = {}
        for count in sizes:
            started = time.perf_counter()
            _prepare(master, count, pool)
            snap = os.path.join(root, f"snapshot-{count}")
            _snapshot(master, snap)
            log(
                f"  admission N={count}: {count} keys pending + tokens recorded through the APIs in {time.perf_counter() - started:.1f}s (untimed)"
            )
            times = {"baseline": [], "ours": []}
            loads = []
            for rep in range(reps[count]):

                def pair(count=count, snap=snap, rep=rep):
                    out = {}
                    for which in ("baseline", "ours"):
                        _restore(master, snap)
                        res = _timed(master, which, count, root)
                        res.update(which=which, n=count, rep=rep)
                        if not res["ok"]:
                            log(
                                f"  !! {which} N={count}: rc={res['rc']} accepted={res['accepted']}/{count} {res['stderr'][-200:]}"
                            )
                        log(
                            f"  admission N={count} rep {rep}: {which:8s} {res['elapsed_s']:.2f}s (accepted {res['accepted']}/{count}, peak RSS {res['maxrss_mib']:.0f} MiB)"
                        )
                        out[which] = res
                    return out

                out, load = C.load_checked_pair(pair, f"admission N={count} rep {rep}", log=log)
                loads.append(load)
                for which, res in out.items():
                    res["load"] = load
                    data["runs"].append(res)
                    times[which].append(res["elapsed_s"])
            medians[count] = {k: statistics.median(v) for k, v in times.items()}
            data.setdefault("loads", {})[str(count)] = loads
        data["median_s"] = medians
    finally:
        master.stop()
        C.cleanup(root, keep)

    rows = []
    all_ok = all(r["ok"] for r in data["runs"] if r["n"])
    for count in sizes:
        med = medians[count]
        ratio = med["ours"] / med["baseline"]
        rows.append(
            C.row(
                f"admission N={count}: accept all pending",
                med["ours"],
                med["baseline"],
                "s",
                "ratio <= 1.5",
                ratio <= 1.5 and all_ok,
                f"median of {reps[count]}; edge.accept_pending vs salt-key -A -y; "
                + "; ".join(C.load_note(load) for load in data["loads"][str(count)]),
            )
        )
    if len(sizes) != 2:
        for count in sizes:
            for which in ("ours", "baseline"):
                data.setdefault("per_key_ms", {}).setdefault(which, {})[str(count)] = (
                    (medians[count][which] - fixed[which]) / count * 1000
                )
            rows.append(
                C.row(
                    f"admission N={count}: per key, net of CLI start-up",
                    data["per_key_ms"]["ours"][str(count)],
                    data["per_key_ms"]["baseline"][str(count)],
                    "ms",
                    None,
                    None,
                    f"(time(N) - time(0)) / N; start-up ours {fixed['ours']:.2f}s, salt-key {fixed['baseline']:.2f}s",
                )
            )
        return {"name": "admission", "rows": rows, "data": data}
    # linearity: marginal per-key cost between the two sizes vs each size's own
    small, large = sizes
    for which in ("ours", "baseline"):
        marginal = (medians[large][which] - medians[small][which]) / (large - small) * 1000
        per_small = (medians[small][which] - fixed[which]) / small * 1000
        per_large = (medians[large][which] - fixed[which]) / large * 1000
        data.setdefault("per_key_ms", {})[which] = {
            "marginal": marginal,
            str(small): per_small,
            str(large): per_large,
        }
    pko, pkb = data["per_key_ms"]["ours"], data["per_key_ms"]["baseline"]
    for count in sizes:
        rows.append(
            C.row(
                f"admission N={count}: per key, net of CLI start-up",
                pko[str(count)],
                pkb[str(count)],
                "ms",
                None,
                None,
                f"(time(N) - time(0)) / N; start-up ours {fixed['ours']:.2f}s, salt-key {fixed['baseline']:.2f}s",
            )
        )
    growth = pko[str(large)] / pko[str(small)] if pko[str(small)] > 0 else None
    growth_base = pkb[str(large)] / pkb[str(small)] if pkb[str(small)] > 0 else None
    data["linearity"] = {"ours": growth, "baseline": growth_base}
    rows.append(
        C.row(
            f"admission linearity: per-key cost at N={large} / at N={small}",
            growth,
            growth_base,
            "x",
            "linear: <= 1.3",
            growth is not None and growth <= 1.3,
            "1.0 = perfectly linear time in N",
        )
    )
    return {"name": "admission", "rows": rows, "data": data}


if __name__ == "__main__":
    C.script_main(run, __doc__)
