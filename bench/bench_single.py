"""
Benchmark: one brand-new node.

Time from starting a brand-new ``salt-minion`` (no key yet: it makes its
RSA key pair at start, as a freshly racked node does) until it is connected
and ready: its ``salt/minion/<id>/start`` event on the master's bus (a
timed ``test.ping`` loop is the wrong instrument: a ping published between
the key's acceptance and the minion's subscription costs the CLI's
``gather_job_timeout``), against a real salt-master:

* ours: the ``edge_token`` grain (the minion's ``edge: {site,
  shared_secret}``), ``auth_events_autosign_grains: [pend, denied]`` and the
  package's ``edge_admission`` engine (``EDGE_BENCH_SINGLE_OURS=reactor``:
  the reactor SLS) with ``edge: {auto_admit: true}`` on the master: the key
  is admitted shortly after the first sign-in and the minion is in on its
  next sign-in;
* baseline: Salt's static ``autosign_grains_dir`` (one shared value, no
  proof): the minion is in on its first sign-in.

Each both with Salt's default minion retry (``acceptance_wait_time: 10``, no
back-off) and with the retry settings ``edge.minion_config`` writes
(``acceptance_wait_time: 1``, ``acceptance_wait_time_max: 10``). Median of 5
pairs each; every pair runs under :func:`_common.load_checked_pair`.

``EDGE_BENCH_SINGLE_RETRY`` adds a retry variant ``WAIT,MAX`` (for example
``0.25,10``: the shorter first retry of issue 25).
"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # pylint: disable=wrong-import-position

STATIC_VALUE = "bench-static-enrollment-value"
SITE = "site-single"
RUNS = 5
TARGET = 1.5
#: Salt's defaults, and what edge.minion_config writes (settings catalogue)
VARIANTS = {
    "salt-default": {"acceptance_wait_time": 10, "acceptance_wait_time_max": 0},
    "edge-settings": {"acceptance_wait_time": 1, "acceptance_wait_time_max": 10},
}
if os.environ.get("EDGE_BENCH_SINGLE_RETRY"):
    _wait, _max = (float(x) for x in os.environ["EDGE_BENCH_SINGLE_RETRY"].split(","))
    VARIANTS[f"retry-{_wait:g}-{_max:g}"] = {
        "acceptance_wait_time": _wait,
        "acceptance_wait_time_max": _max,
    }
#: ours: ``engine`` (the default set-up) or ``reactor``
OURS = os.environ.get("EDGE_BENCH_SINGLE_OURS", "engine")
DEADLINE = 90


class _Setup:
    """A running master of one kind (``edge`` or ``autosign``) and its listener."""

    def __init__(self, kind, keep=False):
        import salt.utils.event

        self.kind = kind
        self.keep = keep
        self.root = C.mkroot(f"single-{kind}")
        if kind == "edge":
            conf = {
                "auth_events": True,
                "auth_events_autosign_grains": ["pend", "denied"],
                "edge": {"shared_secret": C.BENCH_SECRET, "auto_admit": True},
            }
            if OURS == "reactor":
                conf["reactor"] = [{"salt/auth": [C.REACTOR_SLS]}]
            else:
                conf["engines"] = [{"edge_admission": {}}]
        else:
            grains_dir = os.path.join(self.root, "master", "autosign_grains")
            C.write_file(os.path.join(grains_dir, "edge_token"), STATIC_VALUE + "\n", 0o600)
            conf = {"autosign_grains_dir": grains_dir}
        self.master = C.Master(os.path.join(self.root, "master"), conf, name=f"bench-single-{kind}")
        self.master.start()
        self.event = salt.utils.event.get_master_event(
            self.master.opts, self.master.opts["sock_dir"], listen=True
        )
        self.event.subscribe("salt/minion/")
        self.count = 0
        self.sock_dirs = []

    def minion_conf(self, minion_id, retry):
        # a short root: the minion's event sockets live under it and
        # AF_UNIX paths are limited to 107 bytes
        conf_dir = tempfile.mkdtemp(prefix="es-", dir="/tmp")
        self.sock_dirs.append(conf_dir)
        conf = {
            "id": minion_id,
            "root_dir": conf_dir,
            "user": C.getpass.getuser(),
            "master": "127.0.0.1",
            "master_port": self.master.ret_port,
            "publish_port": self.master.pub_port,
            "autosign_grains": ["edge_token"],
            "log_file": os.path.join(conf_dir, "minion.log"),
            "log_level_logfile": "warning",
            "enable_fqdns_grains": False,
        }
        if self.kind == "edge":
            conf["edge"] = {"site": SITE, "shared_secret": C.BENCH_SECRET}
        else:
            conf["grains"] = {"edge_token": STATIC_VALUE}
        conf.update(retry)
        C.write_yaml(os.path.join(conf_dir, "minion"), conf)
        return conf_dir

    def once(self, variant):
        """Start a brand-new minion; seconds until its ``salt/minion/<id>/start`` event (None: never)."""
        self.count += 1
        minion_id = f"edge-single-{self.kind}-{variant}-{self.count:02d}"
        conf_dir = self.minion_conf(minion_id, VARIANTS[variant])
        # drain what earlier runs left on the bus
        while self.event.get_event(wait=0.01, full=True):
            pass
        out = open(os.path.join(conf_dir, "minion.out"), "wb")  # noqa: SIM115  pylint: disable=consider-using-with
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [C.salt_bin("salt-minion"), "-c", conf_dir, "-l", "error"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = None
        tag = f"salt/minion/{minion_id}/start"
        try:
            while time.perf_counter() - t0 < DEADLINE and ready is None:
                evt = self.event.get_event(wait=0.2, tag=tag, full=True)
                if evt and evt.get("tag") == tag:
                    ready = time.perf_counter() - t0
                if proc.poll() is not None and ready is None:
                    raise RuntimeError(f"salt-minion exited {proc.returncode}; see {conf_dir}")
        finally:
            # measured; a brand-new minion has nothing to shut down cleanly
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            out.close()
        return ready

    def close(self):
        try:
            self.event.destroy()
        finally:
            self.master.stop()
            C.cleanup(self.root, self.keep)
            for path in self.sock_dirs:
                C.cleanup(path)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(quick=False, log=print, keep=False):
    runs = 3 if quick else RUNS
    setups = {}
    data = {"runs": runs, "variants": VARIANTS, "by_variant": {}}
    rows = []
    try:
        for kind in ("edge", "autosign"):
            setups[kind] = _Setup(kind, keep=keep)
        for variant in VARIANTS:
            pairs = []
            for index in range(runs):

                def pair(variant=variant):
                    return {
                        "ours": setups["edge"].once(variant),
                        "baseline": setups["autosign"].once(variant),
                    }

                result, load = C.load_checked_pair(pair, f"single {variant} #{index + 1}", log=log)
                result["load"] = load
                pairs.append(result)
                log(
                    f"  single {variant} #{index + 1}: ours {_fmt(result['ours'])} s, "
                    f"static autosign {_fmt(result['baseline'])} s"
                )
            ours = _median([p["ours"] for p in pairs])
            base = _median([p["baseline"] for p in pairs])
            disturbed = sum(1 for p in pairs if p["load"]["disturbed"])
            lost = sum(1 for p in pairs if p["ours"] is None)
            data["by_variant"][variant] = {
                "pairs": pairs,
                "ours_median_s": ours,
                "baseline_median_s": base,
            }
            loads = [x for p in pairs for x in (p["load"]["before"], p["load"]["after"])]
            ratio = ours / base if ours is not None and base else None
            retry = VARIANTS[variant]
            note = (
                f"acceptance_wait_time {retry['acceptance_wait_time']}, _max "
                f"{retry['acceptance_wait_time_max']}; median of {runs}; load "
                f"{min(loads):.1f}-{max(loads):.1f}; {disturbed} pair(s) load-disturbed"
                + (f"; {lost} never ready" if lost else "")
            )
            is_target = variant == "edge-settings"
            rows.append(
                C.row(
                    f"one new node, start to ready ({variant} retry, ours: {OURS})",
                    ours,
                    base,
                    "s",
                    f"ratio <= {TARGET:g}" if is_target else None,
                    (ratio is not None and ratio <= TARGET and not lost) if is_target else None,
                    note,
                )
            )
    finally:
        for setup in setups.values():
            setup.close()
    return {"name": "single", "rows": rows, "data": data}


def _fmt(value):
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    # a SIGTERM still stops the masters (the finally clauses run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    C.script_main(run, __doc__)
