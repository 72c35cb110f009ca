#!/usr/bin/env python
"""
Run every saltext-edge benchmark, print one table (metric, ours, Salt
baseline, ratio, target, met?) and write the results as JSON to
``bench/results/`` (plus an SVG plot of time against fleet size).

    python bench/run.py            # full run (about an hour on 2 cores, most of it the storms)
    python bench/run.py --quick    # smoke run with small fleets (~6 min on the same box)
    python bench/run.py --only admission,storm
    python bench/run.py --write-docs   # also copy the plot to docs/_static/
    python bench/run.py --recipe       # storm: also Salt's reactor recipe (slow)

Every number comes from real Salt processes on loopback, as the current
user, in temporary directories that are removed afterwards. Absolute times
depend on the machine and on what else runs on it; the contract is the ratio
to Salt's own mechanism measured in the same run.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

BENCHES = ("admission", "storm", "single", "report", "diagnose", "grains", "fleet", "view", "soak")


# --------------------------------------------------------------------------
# bench_grains.py (written by the diagnostics side): run it as a script and
# fold its JSON into the table
# --------------------------------------------------------------------------


def run_grains(quick=False, log=print, keep=False):
    script = os.path.join(C.BENCH_DIR, "bench_grains.py")
    if not os.path.exists(script):
        return {
            "name": "grains",
            "rows": [
                C.row(
                    "grains start-up cost", None, None, "ms", None, None, "bench_grains.py absent"
                )
            ],
            "data": {},
        }
    out_dir = tempfile.mkdtemp(prefix="saltext-edge-bench-grains-")
    budget = 2.0
    runs = 3 if quick else 7
    try:
        res = C.timed_run(
            [
                sys.executable,
                script,
                "--runs",
                str(runs),
                "--budget",
                str(budget),
                "--out",
                out_dir,
            ],
            timeout=600,
        )
        for line in res["stdout"].splitlines():
            log("  grains: " + line)
        files = sorted(glob.glob(os.path.join(out_dir, "*.json")))
        if res["rc"] != 0 or not files:
            raise RuntimeError(f"bench_grains.py exited {res['rc']}: {res['stderr'][-400:]}")
        with open(files[-1], encoding="utf-8") as fh_:
            report = json.load(fh_)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    results = report.get("results", {})
    budget = report.get("budget_s", budget)
    base = results.get("baseline", {}).get("median_ms")
    rows = []
    for name, target_ms, label in (
        ("reachable", 100.0, "reachable master"),
        ("black_holed", budget * 1000 + 100.0, "black-holed master"),
        ("reachable_all", 100.0, "reachable, with edge_token too"),
    ):
        res_ = results.get(name)
        if not res_:
            continue
        added = res_.get("added_ms")
        rows.append(
            C.row(
                f"minion grains load, {label}",
                res_.get("median_ms"),
                base,
                "ms",
                f"added <= {target_ms:g} ms",
                added is not None and added <= target_ms,
                f"added {added} ms (median of {report.get('runs')}); by min {res_.get('added_min_ms')} ms",
            )
        )
    return {"name": "grains", "rows": rows, "data": report}


def _load(name):
    if name == "grains":
        return run_grains
    module = __import__(f"bench_{name}")
    return module.run


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def _num(value, unit):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if unit in ("ms",) and abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def table(rows):
    head = ("metric", "ours", "Salt baseline", "ratio", "target", "met?")
    lines = []
    body = []
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        body.append(
            (
                r["metric"],
                f"{_num(r['ours'], r['unit'])} {r['unit']}" if r["ours"] is not None else "-",
                f"{_num(r['baseline'], r['unit'])} {r['unit']}"
                if r["baseline"] is not None
                else "-",
                f"{r['ratio']:.2f}" if r["ratio"] is not None else "-",
                r["target"] or "-",
                met,
            )
        )
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i in (0, 4) else '>'}{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*head))
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append(fmt.format(*b))
    return "\n".join(lines)


def rst_table(rows):
    """The same table as a reStructuredText list-table (for docs/benchmarks.rst)."""
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - metric",
        "     - ours",
        "     - Salt baseline",
        "     - ratio",
        "     - target",
        "     - met?",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "--"}[r["met"]]
        ours = f"{_num(r['ours'], r['unit'])} {r['unit']}" if r["ours"] is not None else "--"
        base = (
            f"{_num(r['baseline'], r['unit'])} {r['unit']}" if r["baseline"] is not None else "--"
        )
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "--"
        out += [
            f"   * - {r['metric']}",
            f"     - {ours}",
            f"     - {base}",
            f"     - {ratio}",
            f"     - {r['target'] or '--'}",
            f"     - {met}",
        ]
    return "\n".join(out) + "\n"


def svg_plot(results):
    """
    Time against fleet size, hand-written SVG (no plotting library needed):
    admission (edge.accept_pending vs salt-key -A -y over N, with N=0 = start-up),
    auth storm (time to accept all K, over K) and fleet report (edge.report vs
    cache.grains) as points.
    """
    series = []  # (label, colour, dash, [(x, y)], line?)
    adm = results.get("admission", {}).get("data", {})
    if adm.get("median_s"):
        fixed = adm.get("fixed_s", {})
        for which, label, colour in (
            ("ours", "edge.accept_pending", "#1f77b4"),
            ("baseline", "salt-key -A -y", "#ff7f0e"),
        ):
            pts = [(0, fixed.get(which))] if fixed.get(which) is not None else []
            pts += [
                (int(n), v[which])
                for n, v in sorted(adm["median_s"].items(), key=lambda kv: int(kv[0]))
            ]
            series.append((f"admission: {label}", colour, "", pts, True))
    by_k = results.get("storm", {}).get("data", {}).get("by_K", {})
    for key, label, colour in (
        ("edge", "storm: reactor + auto_admit", "#2ca02c"),
        ("autosign_grains_dir", "storm: autosign_grains_dir", "#d62728"),
        ("reactor_key_accept", "storm: Salt reactor key.accept", "#7f7f7f"),
    ):
        # the plot shows Salt's default retry ("K"); other retries are "K/retry"
        pts = [
            (int(k), (run.get(key) or {}).get("all_accepted_s"))
            for k, run in by_k.items()
            if k.isdigit()
        ]
        pts = sorted((k, v) for k, v in pts if v is not None)
        if pts:
            series.append((label, colour, "", pts, len(pts) > 1))
    rep = results.get("report", {}).get("data", {})
    if rep.get("ours"):
        n = rep["minions"]
        series.append(
            ("report: edge.report", "#9467bd", "", [(n, rep["ours"]["elapsed_s"])], False)
        )
        series.append(
            ("report: cache.grains", "#8c564b", "", [(n, rep["baseline"]["elapsed_s"])], False)
        )
    if not series:
        return None
    width, height = 720, 420
    left, right, top, bottom = 70, 250, 30, 60
    pw, ph = width - left - right, height - top - bottom
    import math

    xmax = max(x for s in series for x, _ in s[3]) or 1
    values = [y for s in series for _, y in s[3] if y is not None and y > 0] or [1]
    xmax = _nice(xmax)
    # log scale: start-up seconds and storm minutes on one chart
    lo = math.floor(math.log10(min(values)))
    hi = math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo + 1

    def sx(x):
        return left + pw * x / xmax

    def sy(y):
        y = max(y, 10**lo)
        return top + ph - ph * (math.log10(y) - lo) / (hi - lo)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">Time against fleet size '
        f"(same machine, same run)</text>",
    ]
    for exp in range(lo, hi + 1):
        for mult in (1, 2, 5):
            yv = mult * 10**exp
            if yv > 10**hi:
                break
            parts.append(
                f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" '
                f'stroke="{"#ccc" if mult == 1 else "#eee"}"/>'
            )
            parts.append(
                f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:g}</text>'
            )
    for i in range(6):
        xv = xmax * i / 5
        parts.append(
            f'<line x1="{sx(xv):.1f}" x2="{sx(xv):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{sx(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">{xv:g}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
    )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 20}" text-anchor="middle">fleet size '
        f"(pending keys N / minions K signing in at once / cached minions)</text>"
    )
    parts.append(
        f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + ph / 2})">wall time (s, log scale)</text>'
    )
    markers = ("circle", "square", "triangle", "diamond")
    for idx, (label, colour, _dash, pts, line) in enumerate(series):
        pts = [(x, y) for x, y in pts if y is not None]
        if line and len(pts) > 1:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts)
            )
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        shape = markers[idx % len(markers)]
        for x, y in pts:
            parts.append(_marker(shape, sx(x), sy(y), colour))
        ly = top + 10 + idx * 20
        lx = left + pw + 15
        if line:
            parts.append(
                f'<line x1="{lx}" x2="{lx + 20}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/>'
            )
        parts.append(_marker(shape, lx + 10, ly, colour))
        parts.append(f'<text x="{lx + 26}" y="{ly + 4}">{_esc(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _marker(shape, x, y, colour):
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "triangle":
        return f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 4:.1f} L{x - 5:.1f},{y + 4:.1f} Z" fill="{colour}"/>'
    return f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z" fill="{colour}"/>'


def _esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _nice(value):
    """Round up to 1, 2 or 5 times a power of ten."""
    import math

    if value <= 0:
        return 1
    exp = math.floor(math.log10(value))
    for mult in (1, 2, 2.5, 5, 10):
        if value <= mult * 10**exp:
            return mult * 10**exp
    return 10 ** (exp + 1)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small fleets, one repetition")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument(
        "--recipe",
        action="store_true",
        help="storm: also time Salt's reactor key.accept recipe (slow; context only)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="also write docs/_static/benchmarks-fleet.svg"
    )
    args = parser.parse_args(argv)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    if args.recipe:
        os.environ["EDGE_BENCH_RECIPE"] = "1"
    unknown = set(wanted) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    def log(text):
        print(text, flush=True)

    started = time.time()
    info = C.machine_info()
    log(
        f"saltext-edge benchmarks ({'quick' if args.quick else 'full'}): {info['nproc']} CPU "
        f"({info['cpu_model']}), {info['ram_gib']} GiB RAM, Salt {info['salt']}, Python "
        f"{info['python']}, load average {info['loadavg_at_start'][0]:.1f}"
    )
    results = {}
    rows = []
    for name in wanted:
        log(f"\n== {name}")
        t0 = time.time()
        try:
            res = _load(name)(quick=args.quick, log=log, keep=args.keep)
        except Exception as exc:
            traceback.print_exc()
            res = {
                "name": name,
                "rows": [
                    C.row(
                        f"{name}: FAILED",
                        None,
                        None,
                        "",
                        None,
                        False,
                        f"{type(exc).__name__}: {exc}",
                    )
                ],
                "data": {"error": f"{type(exc).__name__}: {exc}"},
            }
        res["elapsed_s"] = time.time() - t0
        log(f"   ({name} took {res['elapsed_s']:.0f}s)")
        results[name] = res
        rows.extend(res["rows"])
    total = time.time() - started
    info["loadavg_at_end"] = list(os.getloadavg())
    out = {
        "mode": "quick" if args.quick else "full",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": total,
        "machine": info,
        "rows": rows,
        "results": results,
    }
    print("\n" + table(rows))
    unmet = [r["metric"] for r in rows if r["met"] is False]
    print(
        f"\n{len(rows)} rows, {sum(1 for r in rows if r['met'] is True)} targets met, "
        f"{len(unmet)} missed; total {total / 60:.1f} min; load average at end "
        f"{info['loadavg_at_end'][0]:.1f} on {info['nproc']} CPUs"
    )
    path = C.save_json(f"bench-{out['mode']}", out)
    with open(
        os.path.join(C.RESULTS_DIR, f"bench-{out['mode']}-latest.rst"), "w", encoding="utf-8"
    ) as fh_:
        fh_.write(rst_table(rows))
    svg = svg_plot(results)
    if svg:
        with open(
            os.path.join(C.RESULTS_DIR, f"bench-{out['mode']}-latest.svg"), "w", encoding="utf-8"
        ) as fh_:
            fh_.write(svg)
        if args.write_docs:
            static = os.path.join(C.REPO, "docs", "_static")
            os.makedirs(static, exist_ok=True)
            with open(os.path.join(static, "benchmarks-fleet.svg"), "w", encoding="utf-8") as fh_:
                fh_.write(svg)
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
