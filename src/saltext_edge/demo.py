"""
End-to-end demo: a real salt-master and edge minions on loopback, in a
temporary directory, as the current user (no root, no network beyond
127.0.0.1). Run with ``python -m saltext_edge.demo``; cleans up every process
and file on exit, also on Ctrl-C.

What it shows: admission of a node holding its site key and refusal of one
with a wrong key (with the reason), a diagnosis of the admitted node, an
``edge.minion_config`` apply with its diff, the fleet report, the fleet
engine's Prometheus metrics and the fleet page (an HTML file that stays
after the demo).
"""

import argparse
import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

REACTOR_SLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reactor", "edge_auth.sls")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name):
    """Salt's console scripts beside this interpreter (the venv), else PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class Demo:
    """Owns the temporary directory and every daemon it starts."""

    def __init__(self, root, verbose=False, page=None):
        self.root = root
        self.verbose = verbose
        self.procs = []
        self.user = getpass.getuser()
        self.pub_port = _free_port()
        self.ret_port = _free_port()
        # view: the engine's metrics server and the fleet page (kept after exit)
        self.metrics_port = _free_port()
        self.page = page or os.path.join(tempfile.gettempdir(), "saltext-edge-fleet.html")
        self.master_dir = os.path.join(root, "master")
        self.secret_file = os.path.join(root, "secrets", "shared_secret")

    # --- plumbing -------------------------------------------------------
    def say(self, text):
        print(f"\n=== {text}", flush=True)

    def run(self, *cmd, show=True, check=True, timeout=120):
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
        if show:
            sys.stdout.write(proc.stdout)
            if proc.returncode and proc.stderr:
                sys.stdout.write(proc.stderr)
        if check and proc.returncode:
            raise RuntimeError(f"{cmd[0]} {cmd[1:3]} failed with exit code {proc.returncode}")
        return proc

    def salt(self, *args, **kw):
        return self.run(_bin("salt"), "-c", self.master_dir, "--timeout=30", *args, **kw)

    def salt_run(self, *args, **kw):
        return self.run(_bin("salt-run"), "-c", self.master_dir, *args, **kw)

    def start(self, kind, conf_dir):
        log = open(os.path.join(conf_dir, f"{kind}.out"), "w")  # noqa: SIM115  (the daemon's output; closed in stop())
        proc = subprocess.Popen(
            [_bin(f"salt-{kind}"), "-c", conf_dir, "-l", "error"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs = []

    def wait_for(self, what, check, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    # --- configuration --------------------------------------------------
    def write_master(self):
        _write(self.secret_file, secrets.token_urlsafe(32) + "\n", 0o600)
        conf = {
            "root_dir": self.master_dir,
            "user": self.user,
            "interface": "127.0.0.1",
            "publish_port": self.pub_port,
            "ret_port": self.ret_port,
            "auth_events": True,
            "auth_events_autosign_grains": ["pend", "denied"],
            "reactor": [{"salt/auth": [REACTOR_SLS]}],
            "edge": {
                "shared_secret_file": self.secret_file,
                "revoked_sites": ["old-site"],
                # view: fleet health engine with its metrics on loopback
                "fleet": {"interval": 5, "late_after": 2, "offline_after": 5},
                "metrics": {"address": "127.0.0.1", "port": self.metrics_port},
            },
            "engines": [{"edge_fleet": {}}],
            "log_file": os.path.join(self.master_dir, "master.log"),
            "file_roots": {"base": [os.path.join(self.root, "srv")]},
        }
        _write(os.path.join(self.master_dir, "master"), yaml.safe_dump(conf))

    def site_key_file(self, site, wrong=False):
        """Provision a site key the way an operator would: the console script."""
        path = os.path.join(self.root, "secrets", f"{site}{'-wrong' if wrong else ''}.key")
        if wrong:
            _write(path, secrets.token_hex(32) + "\n", 0o600)
        else:
            out = self.run(
                _bin("saltext-edge"), "site-key", site, "-c", self.master_dir, show=False
            )
            _write(path, out.stdout.strip() + "\n", 0o600)
        return path

    def write_minion(self, minion_id, site, key_file, extra=None):
        conf_dir = os.path.join(self.root, minion_id)
        conf = {
            "id": minion_id,
            "root_dir": conf_dir,
            "user": self.user,
            "master": "127.0.0.1",
            "master_port": self.ret_port,
            "publish_port": self.pub_port,
            "acceptance_wait_time": 2,
            "autosign_grains": ["edge_token"],
            "edge": {"site": site, "site_key_file": key_file},
            "log_file": os.path.join(conf_dir, "minion.log"),
            # view: a heartbeat every 5 s for the fleet engine
            "beacons": {"edge_heartbeat": [{"period": 5}, {"first_after": 0}]},
        }
        conf.update(extra or {})
        _write(os.path.join(conf_dir, "minion"), yaml.safe_dump(conf))
        return conf_dir

    def pending(self):
        out = self.run(_bin("salt-key"), "-c", self.master_dir, "-L", "--out=json", show=False)
        return json.loads(out.stdout or "{}").get("minions_pre", [])

    # --- the story ------------------------------------------------------
    def main(self):
        self.say(
            f"Starting a salt-master on 127.0.0.1:{self.pub_port}/{self.ret_port} in {self.root}"
        )
        self.write_master()
        self.start("master", self.master_dir)
        self.wait_for(
            "the master",
            lambda: (
                self.run(
                    _bin("salt-run"), "-c", self.master_dir, "manage.up", check=False, show=False
                ).returncode
                == 0
            ),
        )

        self.say(
            "Provisioning site 'sh-3': saltext-edge site-key sh-3 (the key goes to a 0600 file)"
        )
        good_key = self.site_key_file("sh-3")
        bad_key = self.site_key_file("sh-3", wrong=True)
        good = self.write_minion("edge-sh3-a", "sh-3", good_key)
        bad = self.write_minion("edge-sh3-stranger", "sh-3", bad_key)
        self.say("Starting two brand-new edge minions: one with the site key, one with a wrong key")
        self.start("minion", good)
        self.start("minion", bad)
        self.wait_for("both keys pending", lambda: len(self.pending()) >= 2)
        self.run(_bin("salt-key"), "-c", self.master_dir, "-L")

        self.say("salt-run edge.accept_pending dry_run=True  (what would happen)")
        self.salt_run("edge.accept_pending", "dry_run=True", "--out=yaml")
        self.say("salt-run edge.accept_pending  (admit by token, no human judgement)")
        self.salt_run("edge.accept_pending", "--out=yaml")
        self.wait_for(
            "the admitted minion to answer",
            lambda: self.salt(
                "edge-sh3-a", "test.ping", "--out=json", check=False, show=False
            ).stdout.count("true"),
        )
        self.salt("*", "test.ping")

        self.say("salt edge-sh3-a edge.diagnose  (uplink, masters, config audit; one verdict)")
        self.salt("edge-sh3-a", "edge.diagnose", "--out=yaml")

        self.say(
            "salt edge-sh3-a state.single edge.minion_config ...  (failover + NAT keep-alive drop-in)"
        )
        dropin = os.path.join(good, "minion.d", "edge.conf")
        self.salt(
            "edge-sh3-a",
            "state.single",
            "edge.minion_config",
            f"name={dropin}",
            "masters=[127.0.0.1]",
            "failover=False",
            "restart=False",
            "--out=yaml",
        )
        self.say("... and again: nothing to change")
        self.salt(
            "edge-sh3-a",
            "state.single",
            "edge.minion_config",
            f"name={dropin}",
            "masters=[127.0.0.1]",
            "failover=False",
            "restart=False",
            "--out=yaml",
        )

        self.fleet_view()
        self.say("Demo finished; stopping every daemon and removing " + self.root)

    def metrics(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    def fleet_view(self):
        """view: the engine's Prometheus metrics and the fleet page (docs/howto/grafana.rst)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.say(f"Prometheus metrics of the edge_fleet engine: {url}")
        self.wait_for(
            "the admitted node online in the metrics",
            lambda: 'edge_node_status{id="edge-sh3-a",site="sh-3"} 3.0' in self.metrics(),
        )
        for line in self.metrics().splitlines():
            if line.startswith(("edge_nodes{", "edge_node_up{", "edge_node_uplink_rtt_ms{")):
                print(line)
        # the report and the page answer from the engine's memory, as the metrics do
        self.say("salt-run edge.report --out=edge  (what an operator opens first)")
        self.salt_run("edge.report", "--out=edge")
        self.say(
            f"salt-run edge.report html={self.page} --out=edge  (the fleet page, one self-contained file)"
        )
        self.salt_run("edge.report", f"html={self.page}", "--out=edge")
        print(f"\nFleet page: {self.page}  (open it in a browser; it stays after the demo)")
        print(f"Metrics:    {url}  (while the demo runs)")


def main(argv=None):
    """Run the demo. Returns a process exit code (0 on success)."""
    parser = argparse.ArgumentParser(prog="python -m saltext_edge.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--page", help="where to write the fleet page (default: $TMPDIR/saltext-edge-fleet.html)"
    )
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="saltext-edge-demo-")
    demo = Demo(root, page=args.page)

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.main()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", flush=True)
        return 130
    except Exception as err:
        print(f"\ndemo failed: {err}", flush=True)
        return 1
    finally:
        demo.stop_all()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
