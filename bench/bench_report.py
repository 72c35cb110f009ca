"""
Benchmark 3: ``salt-run edge.report`` on a cache of 5,000 minions across 50
sites. (Since the report answers from the ``edge_fleet`` engine's record,
``bench_fleet.py`` times it on a full record against the previous,
grains-based report; this benchmark keeps the CLI and memory figures on a
master with keys and grains only.)

Set-up (untimed): 5,000 accepted keys put in Salt's key store through its API
(``salt.cache.Cache(opts, driver=opts["keys.cache_driver"])``), plus 50
pending ones, and one realistic grains document per minion (about 4 KB: OS,
CPU, memory, network grains, ``edge_site``, ``edge_uplink``) stored in the
master's minion data cache (``salt.cache.factory(opts).store("grains", id,
...)``, what the master does when a minion sends its grains).

Baseline: ``salt-run cache.grains tgt='*'``. It is Salt's own way to read the
cached grains of the whole fleet -- exactly the I/O ``edge.report`` cannot
avoid -- without talking to any minion. ``manage.status`` is not a fair
baseline: it pings every minion and waits for the timeout. Both commands run
with ``--out=json`` into a file; note that the baseline prints every grain of
every minion (~20 MB) while the report prints a summary, so the in-library
timing (same process, no CLI start-up, no output:
``MasterPillarUtil.get_minion_grains()`` vs ``saltext_edge.report.build``)
is reported too.

Memory: peak RSS of the ``salt-run`` process.
"""

import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

QUALITY_MIX = [("good", 70), ("fair", 15), ("poor", 8), ("down", 2), ("unknown", 5)]


def grains_for(index, minion_id, rng):
    """A realistic grains document (~4 KB) for one edge minion."""
    quality = rng.choices([q for q, _ in QUALITY_MIX], [w for _, w in QUALITY_MIX])[0]
    octet2, octet3, octet4 = (index // 65536) % 256, (index // 256) % 256, index % 256
    ipv4 = [f"10.{octet2}.{octet3}.{octet4}", "127.0.0.1"]
    grains = {
        "id": minion_id,
        "host": minion_id,
        "nodename": minion_id,
        "fqdn": f"{minion_id}.edge.example.net",
        "domain": "edge.example.net",
        "localhost": minion_id,
        "kernel": "Linux",
        "kernelrelease": "5.15.0-122-generic",
        "kernelversion": "#132-Ubuntu SMP Thu Aug 29 13:45:52 UTC 2024",
        "os": "Ubuntu",
        "os_family": "Debian",
        "osfullname": "Ubuntu",
        "osrelease": "22.04",
        "osrelease_info": [22, 4],
        "oscodename": "jammy",
        "osarch": "amd64",
        "cpuarch": "x86_64",
        "num_cpus": 8,
        "cpu_model": "Intel(R) Xeon(R) E-2278G CPU @ 3.40GHz",
        "cpu_flags": [
            "fpu",
            "vme",
            "de",
            "pse",
            "tsc",
            "msr",
            "pae",
            "mce",
            "cx8",
            "apic",
            "sep",
            "mtrr",
            "pge",
            "mca",
            "cmov",
            "pat",
            "pse36",
            "clflush",
            "dts",
            "acpi",
            "mmx",
            "fxsr",
            "sse",
            "sse2",
            "ss",
            "ht",
            "tm",
            "pbe",
            "syscall",
            "nx",
            "pdpe1gb",
            "rdtscp",
            "lm",
            "constant_tsc",
            "art",
            "arch_perfmon",
            "pebs",
            "bts",
            "rep_good",
            "nopl",
            "xtopology",
            "nonstop_tsc",
            "cpuid",
            "aperfmperf",
            "pni",
            "pclmulqdq",
            "dtes64",
            "monitor",
            "ds_cpl",
            "vmx",
            "smx",
            "est",
            "tm2",
            "ssse3",
            "sdbg",
            "fma",
            "cx16",
            "xtpr",
            "pdcm",
            "pcid",
            "sse4_1",
            "sse4_2",
            "x2apic",
            "movbe",
            "popcnt",
            "aes",
            "xsave",
            "avx",
            "f16c",
            "rdrand",
        ],
        "mem_total": 31867,
        "swap_total": 2047,
        "virtual": "physical",
        "manufacturer": "Supermicro",
        "productname": "SYS-E300-9D",
        "serialnumber": f"S{index:09d}",
        "uuid": f"00000000-0000-4000-8000-{index:012d}",
        "biosversion": "1.4",
        "ipv4": ipv4,
        "ipv6": ["::1", f"fe80::{index % 65536:x}:1"],
        "ip4_interfaces": {"lo": ["127.0.0.1"], "eno1": ipv4[:1]},
        "ip6_interfaces": {"lo": ["::1"], "eno1": [f"fe80::{index % 65536:x}:1"]},
        "hwaddr_interfaces": {
            "lo": "00:00:00:00:00:00",
            "eno1": f"ac:1f:6b:{octet2:02x}:{octet3:02x}:{octet4:02x}",
        },
        "dns": {
            "nameservers": ["127.0.0.53"],
            "ip4_nameservers": ["127.0.0.53"],
            "ip6_nameservers": [],
            "sortlist": [],
            "domain": "",
            "search": ["edge.example.net"],
            "options": ["edns0", "trust-ad"],
        },
        "disks": ["sda", "sdb"],
        "SSDs": ["nvme0n1"],
        "init": "systemd",
        "systemd": {
            "version": "249",
            "features": "+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT +GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY -P11KIT -QRENCODE +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -XKBCOMMON +UTMP +SYSVINIT",
        },
        "saltversion": "3008.4",
        "saltversioninfo": [3008, 4],
        "pythonversion": [3, 10, 12, "final", 0],
        "pythonexecutable": "/opt/saltstack/salt/bin/python3.10",
        "path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "shell": "/bin/sh",
        "locale_info": {"defaultlanguage": "en_US", "defaultencoding": "UTF-8", "timezone": "UTC"},
        "machine_id": f"{index:032x}",
        "master": "salt.example.net",
        "edge_site": C.site_of(index),
        "edge_uplink": {
            "quality": quality,
            "rtt_ms": round(rng.uniform(8, 400), 1) if quality != "down" else None,
            "jitter_ms": round(rng.uniform(0.1, 40), 1) if quality != "down" else None,
            "loss_pct": {"good": 0.0, "fair": 1.0, "poor": 8.0, "down": 100.0, "unknown": None}[
                quality
            ],
            "target": "salt.example.net:4506",
            "checked_at": "2026-01-01T00:00:00Z",
        },
    }
    return grains


def populate(master, count, pending, pool, log=print):
    keys = master.key_cache()
    data = master.data_cache()
    rng = random.Random(7)
    started = time.perf_counter()
    for i in range(count):
        minion_id = f"edge-{C.site_of(i)}-{i:05d}"
        _, pub, _ = pool[i % len(pool)]
        keys.store("keys", minion_id, {"pub": pub.strip(), "state": "accepted"})
        data.store("grains", minion_id, grains_for(i, minion_id, rng))
    for j in range(pending):
        i = count + j
        minion_id = f"edge-{C.site_of(i)}-{i:05d}"
        _, pub, _ = pool[i % len(pool)]
        keys.store("keys", minion_id, {"pub": pub.strip(), "state": "pending"})
    log(
        f"  report: {count} accepted minions with cached grains + {pending} pending keys stored through the APIs in {time.perf_counter() - started:.1f}s (untimed)"
    )


def _in_library(master):
    """Both reads in this process: no CLI start-up, no output."""
    import salt.utils.master

    from saltext_edge import report

    opts = dict(master.opts)
    started = time.perf_counter()
    util = salt.utils.master.MasterPillarUtil(
        "*", "glob", use_cached_grains=True, grains_fallback=False, opts=opts
    )
    grains = util.get_minion_grains()
    base = time.perf_counter() - started
    started = time.perf_counter()
    rep = report.build(opts)
    ours = time.perf_counter() - started
    return ours, base, len(grains), rep


def run(quick=False, log=print, keep=False):
    count = 1000 if quick else 5000
    pending = 10 if quick else 50
    pool = C.key_pool(100 if quick else 500, log=log)
    root = C.mkroot("report")
    master = C.Master(os.path.join(root, "master"), {}, name="bench-report")
    data = {"minions": count, "sites": 50, "pending": pending}
    try:
        populate(master, count, pending, pool, log=log)
        master.start()
        base = C.timed_run(
            master.cli("salt-run", "cache.grains", "tgt=*", "--out=json"),
            stdout_to=os.path.join(root, "baseline.json"),
        )
        ours = C.timed_run(
            master.cli("salt-run", "edge.report", "--out=json"),
            stdout_to=os.path.join(root, "ours.json"),
        )
        for name, res in (("baseline", base), ("ours", ours)):
            res.pop("stdout", None)
            res["stderr"] = res["stderr"][-500:]
            res["out_bytes"] = os.path.getsize(os.path.join(root, f"{name}.json"))
        try:
            with open(os.path.join(root, "ours.json"), encoding="utf-8") as fh_:
                rep = json.load(fh_)
            totals = rep.get("totals", {})
        except (OSError, ValueError):
            totals = {}
        try:
            with open(os.path.join(root, "baseline.json"), encoding="utf-8") as fh_:
                base_count = len(json.load(fh_))
        except (OSError, ValueError):
            base_count = None
        data.update(baseline=base, ours=ours, report_totals=totals, baseline_minions=base_count)
        lib_ours, lib_base, lib_count, lib_rep = _in_library(master)
        data["in_library"] = {
            "ours_s": lib_ours,
            "baseline_s": lib_base,
            "baseline_minions": lib_count,
        }
        # the report answers from the edge_fleet engine's record (none here:
        # every node is never_seen); bench_fleet.py times it on a full record
        correct = (
            ours["rc"] == 0
            and sum(totals.get(k, 0) for k in ("online", "late", "offline", "never_seen")) == count
            and totals.get("pending") == pending
        )
        data["correct"] = correct
        log(
            f"  report N={count}: edge.report {ours['elapsed_s']:.2f}s ({ours['maxrss_mib']:.0f} MiB), "
            f"cache.grains {base['elapsed_s']:.2f}s ({base['maxrss_mib']:.0f} MiB); in-library "
            f"{lib_ours:.2f}s vs {lib_base:.2f}s; totals ok: {correct}"
        )
    finally:
        master.stop()
        C.cleanup(root, keep)
    rows = [
        C.row(
            f"edge.report, {count} minions / 50 sites (CLI)",
            ours["elapsed_s"],
            base["elapsed_s"],
            "s",
            "reported (time and memory)",
            None if correct else False,
            "baseline: salt-run cache.grains tgt='*'; both --out=json to a file",
        ),
        C.row(
            f"edge.report, {count} minions: in-library read",
            lib_ours,
            lib_base,
            "s",
            None,
            None,
            "report.build vs MasterPillarUtil.get_minion_grains, no start-up, no output",
        ),
        C.row(
            f"edge.report, {count} minions: peak RSS of salt-run",
            ours["maxrss_mib"],
            base["maxrss_mib"],
            "MiB",
            "reported",
            None,
            f"output: {ours['out_bytes'] / 1024:.0f} KiB vs {base['out_bytes'] / 2**20:.1f} MiB",
        ),
    ]
    return {"name": "report", "rows": rows, "data": data}


if __name__ == "__main__":
    C.script_main(run, __doc__)
