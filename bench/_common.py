"""
Shared helpers for the saltext-edge benchmarks (``python bench/run.py``).

Everything runs as the current user, in temporary directories, on loopback
only: a real ``salt-master`` subprocess (:class:`Master`) on free ports, Salt's
own CLIs (``salt-run``, ``salt-key``, ``salt-call``) timed as subprocesses
(:func:`timed_run`), RSS sampling of a process tree (:class:`RssSampler`), a
cached pool of pre-generated RSA key pairs (:func:`key_pool`).

A benchmark module exposes ``run(quick=False, log=print) -> dict`` returning
``{"name": ..., "rows": [row, ...], "data": {...}}`` where each row comes from
:func:`row`. ``bench/run.py`` prints every row in one table and writes the
whole result as JSON under ``bench/results/``.
"""

import getpass
import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
KEYPOOL_DIR = os.path.join(RESULTS_DIR, "keypool")
SRC = os.path.join(REPO, "src")
REACTOR_SLS = os.path.join(SRC, "saltext_edge", "reactor", "edge_auth.sls")
# a fixed, benchmark-only fleet secret (never used anywhere else)
BENCH_SECRET = "bench-7c4e2a9f1d6b8e3a5c0f9d2b7e4a1c8f6d3b9e2a5c7f0d4b"
KEYSIZE = 2048


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------


def salt_bin(name):
    """Salt's console script beside this interpreter (the venv), else PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_file(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh_:
        fh_.write(text)
    os.chmod(path, mode)


def write_yaml(path, data, mode=0o644):
    write_file(path, yaml.safe_dump(data, default_flow_style=False), mode)


def mkroot(prefix):
    return tempfile.mkdtemp(prefix=f"saltext-edge-bench-{prefix}-")


def row(metric, ours, baseline=None, unit="s", target=None, met=None, note=""):
    """
    One line of the result table. ``ours``/``baseline`` are numbers (or
    None); ``target`` is a human string such as ``"ratio <= 1.5"``; ``met``
    True/False/None (None: no target or not measurable).
    """
    ratio = None
    if isinstance(ours, (int, float)) and isinstance(baseline, (int, float)) and baseline > 0:
        ratio = ours / baseline
    return {
        "metric": metric,
        "ours": ours,
        "baseline": baseline,
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }


def machine_info():
    """nproc, CPU model, RAM, kernel, Python and Salt versions."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh_:
            for line in fh_:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh_:
            for line in fh_:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
                    break
    except OSError:
        pass
    try:
        import salt.version

        salt_version = salt.version.__version__
    except ImportError:  # pragma: no cover
        salt_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "salt": salt_version,
        "loadavg_at_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------
# processes: timing and memory
# --------------------------------------------------------------------------


def _tree(pid):
    import psutil

    try:
        proc = psutil.Process(pid)
        return [proc] + proc.children(recursive=True)
    except psutil.Error:
        return []


def tree_rss(pid, pss=False):
    """
    Sum of the RSS (bytes) of ``pid`` and all its descendants; with ``pss``
    the sum of their PSS instead: each shared page counted once in all
    (split among the processes that map it), where RSS counts it once per
    process. A forked process (Salt's workers and engines) shares most of
    its pages with the master.
    """
    import psutil

    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_full_info().pss if pss else proc.memory_info().rss
        except psutil.Error:
            pass
    return total


class RssSampler:
    """
    Sample the summed RSS of a process tree every ``interval`` seconds in a
    thread, and its summed PSS every ``pss_every`` samples (reading PSS
    costs more); ``peak`` and ``pss_peak`` (bytes) are the highest sums
    seen. Use as a context manager.
    """

    def __init__(self, pid, interval=0.2, pss_every=5):
        self.pid = pid
        self.interval = interval
        self.pss_every = pss_every
        self.peak = 0
        self.pss_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self, pss):
        self.peak = max(self.peak, tree_rss(self.pid))
        if pss:
            self.pss_peak = max(self.pss_peak, tree_rss(self.pid, pss=True))
        self.samples += 1

    def _loop(self):
        while not self._stop.is_set():
            self._sample(pss=self.samples % self.pss_every == 0)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._sample(pss=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._sample(pss=True)


def timed_run(argv, timeout=900, env=None, cwd=None, stdout_to=None):
    """
    Run ``argv``; return ``{elapsed_s, rc, stdout, stderr, maxrss_mib}``.
    ``maxrss_mib`` is the peak RSS of the process itself (from ``wait4``)
    and, if it forked, the largest of its children is sampled as well.
    ``stdout_to``: a path to send stdout to instead of capturing it.
    """
    out_fh = open(stdout_to, "wb") if stdout_to else subprocess.PIPE  # noqa: SIM115  (the child's stdout; closed below)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=out_fh,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    sampler = RssSampler(proc.pid, interval=0.1)
    with sampler:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            elapsed = time.perf_counter() - started
            if stdout_to:
                out_fh.close()
            return {
                "elapsed_s": elapsed,
                "rc": None,
                "stdout": (stdout or b"").decode("utf-8", "replace"),
                "stderr": f"timeout after {timeout}s\n" + stderr.decode("utf-8", "replace"),
                "maxrss_mib": sampler.peak / 2**20,
                "timed_out": True,
            }
    elapsed = time.perf_counter() - started
    if stdout_to:
        out_fh.close()
    return {
        "elapsed_s": elapsed,
        "rc": proc.returncode,
        "stdout": (stdout or b"").decode("utf-8", "replace"),
        "stderr": (stderr or b"").decode("utf-8", "replace"),
        "maxrss_mib": sampler.peak / 2**20,
        "timed_out": False,
    }


# --------------------------------------------------------------------------
# key pairs
# --------------------------------------------------------------------------


def _gen_pair(_):
    import salt.crypt

    return salt.crypt.gen_keys(KEYSIZE)  # (private PEM, public PEM), as a minion makes them


def key_pool(count, log=print):
    """
    Return ``count`` distinct RSA key pairs ``[(priv_pem, pub_pem, digest)]``
    (``digest``: sha256 hex of the DER SubjectPublicKeyInfo, as the token
    wants). Generated once (in parallel) and cached under
    ``bench/results/keypool/`` so later runs start at once; generation is
    never part of a timed section.
    """
    from saltext_edge import tokens as token

    os.makedirs(KEYPOOL_DIR, exist_ok=True)
    have = sorted(glob.glob(os.path.join(KEYPOOL_DIR, "*.pem")))
    if len(have) < count:
        missing = count - len(have)
        log(f"  generating {missing} RSA-{KEYSIZE} key pairs (once; cached in {KEYPOOL_DIR})")
        import multiprocessing

        started = time.perf_counter()
        with multiprocessing.Pool(max(1, os.cpu_count() or 1)) as pool:
            pairs = pool.map(_gen_pair, range(missing), chunksize=8)
        for i, (priv, pub) in enumerate(pairs, start=len(have)):
            write_file(os.path.join(KEYPOOL_DIR, f"{i:06d}.pem"), priv, 0o600)
            write_file(os.path.join(KEYPOOL_DIR, f"{i:06d}.pub"), pub, 0o644)
        log(f"  generated in {time.perf_counter() - started:.1f}s")
    out = []
    for i in range(count):
        base = os.path.join(KEYPOOL_DIR, f"{i:06d}")
        with open(base + ".pem", encoding="utf-8") as fh_:
            priv = fh_.read()
        with open(base + ".pub", encoding="utf-8") as fh_:
            pub = fh_.read()
        out.append((priv, pub, token.pubkey_digest(pub)))
    return out


def site_of(index, sites=50):
    return f"site-{index % sites:02d}"


def make_token(secret, site, minion_id, digest):
    from saltext_edge import tokens as token

    return token.make_token(token.site_key(secret, site), site, minion_id, digest)


# --------------------------------------------------------------------------
# a real salt-master
# --------------------------------------------------------------------------


class Master:
    """
    A real ``salt-master`` subprocess in ``root`` (its ``root_dir``), as the
    current user, on free loopback ports. ``conf`` is merged into the base
    configuration.
    """

    def __init__(self, root, conf=None, name="master"):
        self.root = root
        self.name = name
        self.conf_dir = os.path.join(root, "conf")
        self.pub_port = free_port()
        self.ret_port = free_port()
        self.proc = None
        self.user = getpass.getuser()
        base = {
            "id": name,
            "root_dir": root,
            "user": self.user,
            "interface": "127.0.0.1",
            "publish_port": self.pub_port,
            "ret_port": self.ret_port,
            "log_file": os.path.join(root, "master.log"),
            "log_level_logfile": "warning",
            "key_logfile": os.path.join(root, "key.log"),
            "loop_interval": 60,
            "enable_fqdns_grains": False,
            "fileserver_backend": ["roots"],
            "file_roots": {"base": [os.path.join(root, "srv")]},
            "pillar_roots": {"base": [os.path.join(root, "pillar")]},
            # the bench has thousands of keys: stop Salt nagging about ulimit
            "max_open_files": 100000,
        }
        base.update(conf or {})
        self.conf = base
        write_yaml(os.path.join(self.conf_dir, "master"), base)
        os.makedirs(os.path.join(root, "srv"), exist_ok=True)
        os.makedirs(os.path.join(root, "pillar"), exist_ok=True)
        self._opts = None

    # -- opts and key store (in this process, the same way Salt's CLIs do) --
    @property
    def opts(self):
        if self._opts is None:
            import salt.config

            self._opts = salt.config.master_config(os.path.join(self.conf_dir, "master"))
        return self._opts

    def key_cache(self):
        import salt.cache

        return salt.cache.Cache(self.opts, driver=self.opts["keys.cache_driver"])

    def data_cache(self):
        import salt.cache

        return salt.cache.factory(self.opts)

    def key_states(self):
        """``{state: count}`` over the key store (pending/accepted/rejected)."""
        import salt.key

        keys = salt.key.Key(self.opts).list_keys()
        return {k: len(v) for k, v in keys.items()}

    def accepted_count(self):
        """Number of accepted keys, by listing the accepted bucket of the key store."""
        pki = self.opts["pki_dir"]
        try:
            return len(os.listdir(os.path.join(pki, "minions")))
        except FileNotFoundError:
            return 0

    # -- life cycle ---------------------------------------------------------
    def start(self, timeout=120):
        log_fh = open(os.path.join(self.root, "master.out"), "wb")  # noqa: SIM115  (the master's output, for its life)
        env = dict(os.environ)
        env.update(self.env())
        self.proc = subprocess.Popen(
            [salt_bin("salt-master"), "-c", self.conf_dir, "-l", "error"],
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self.wait_ready(timeout)
        return self

    def env(self):
        return {}

    def wait_ready(self, timeout=120):
        """Ready: both ports answer and the master's event publisher is up."""
        deadline = time.monotonic() + timeout
        sock_dir = self.opts["sock_dir"]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"salt-master exited with {self.proc.returncode}; see {self.root}/master.out"
                )
            ok = all(self._port_open(p) for p in (self.pub_port, self.ret_port))
            ok = ok and os.path.exists(os.path.join(sock_dir, "master_event_pub.ipc"))
            workers = self._count_processes("MWorker-")
            ok = ok and workers >= int(self.opts.get("worker_threads", 5))
            if (
                ok
                and (not self.conf.get("reactor") or self._count_processes("Reactor"))
                and (not self.conf.get("engines") or self._count_processes("Engine"))
            ):
                time.sleep(1.0)
                return
            time.sleep(0.25)
        raise RuntimeError(f"salt-master not ready after {timeout}s; see {self.root}")

    def _count_processes(self, word):
        import psutil

        count = 0
        for proc in _tree(self.proc.pid):
            try:
                if word in " ".join(proc.cmdline()):
                    count += 1
            except psutil.Error:
                pass
        return count

    @staticmethod
    def _port_open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def rss(self):
        return tree_rss(self.proc.pid) if self.proc else 0

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.proc = None

    def cli(self, name, *args):
        return [salt_bin(name), "-c", self.conf_dir, *args]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# load hygiene: a pair (ours + Salt's baseline) run while the load was steady
# --------------------------------------------------------------------------
#: a pair whose 1-minute load average moved by more than this is repeated
LOAD_TOLERANCE = 1.0
#: ... at most this many times (EDGE_BENCH_LOAD_REPEATS: fewer, 0-2); then
#: it is reported as "load-disturbed"
LOAD_REPEATS = max(0, min(2, int(os.environ.get("EDGE_BENCH_LOAD_REPEATS", "2"))))


def loadavg():
    """The machine's 1-minute load average (a float)."""
    return os.getloadavg()[0]


def load_checked_pair(run_pair, label, log=print, tolerance=LOAD_TOLERANCE, repeats=LOAD_REPEATS):
    """
    Run ``run_pair()`` (one measurement of ours and of Salt's baseline, in
    the same conditions) and print the 1-minute load average before and
    after. When it moved by more than ``tolerance`` the pair is run again,
    at most ``repeats`` more times; the last result is kept and, when even
    that one moved, marked load-disturbed. Returns ``(result, load)`` where
    ``load`` is ``{before, after, attempts: [[before, after], ...],
    disturbed: bool}``.
    """
    attempts = []
    result = None
    for attempt in range(repeats + 1):
        before = loadavg()
        log(f"  [{label}] load before {before:.2f}" + (f" (repeat {attempt})" if attempt else ""))
        result = run_pair()
        after = loadavg()
        attempts.append([round(before, 2), round(after, 2)])
        steady = abs(after - before) <= tolerance
        log(
            f"  [{label}] load after {after:.2f}"
            + ("" if steady else f": moved {after - before:+.2f} > {tolerance:g}")
        )
        if steady:
            break
    disturbed = not steady
    if disturbed:
        log(f"  [{label}] load-disturbed after {repeats} repeats: this pair's ratio is suspect")
    return result, {
        "before": attempts[-1][0],
        "after": attempts[-1][1],
        "attempts": attempts,
        "disturbed": disturbed,
    }


def load_note(load):
    """A short text for a row's note: the load around the pair it comes from."""
    text = f"load {load['before']:.1f}->{load['after']:.1f}"
    if len(load["attempts"]) > 1:
        text += f", {len(load['attempts']) - 1} repeat(s)"
    if load["disturbed"]:
        text += ", LOAD-DISTURBED"
    return text


def cleanup(root, keep=False):
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def save_json(name, data):
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(RESULTS_DIR, f"{name}-{stamp}.json")
    with open(path, "w", encoding="utf-8") as fh_:
        json.dump(data, fh_, indent=2, sort_keys=True, default=str)
    latest = os.path.join(RESULTS_DIR, f"{name}-latest.json")
    with open(latest, "w", encoding="utf-8") as fh_:
        json.dump(data, fh_, indent=2, sort_keys=True, default=str)
    return path


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def script_main(run, doc):
    """
    Command line of one benchmark script run alone: ``--quick`` and
    ``--keep``; prints ``run(...)``'s result as JSON.
    """
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, keep=args.keep), indent=1, default=str))
