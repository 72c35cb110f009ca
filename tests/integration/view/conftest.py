"""
Real-daemon fixtures for the fleet view (docs/howto/grafana.rst): one master
running the ``edge_fleet`` engine with its metrics server on a free loopback
port, three minions heartbeating every 2 s (two at site ``view-a``, one at
``view-b``), a real Prometheus server (Debian package ``prometheus``)
scraping the engine every second, and headless Chromium (Debian package
``chromium``) to open the fleet page. Shared by the whole package; one
minion is SIGKILLed by the ``killed_node`` fixture.
"""

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
import yaml
from saltfactories.utils import random_string
from tests.daemons import allow, own_minions_master, reap, sigkill
from tests.support.events import wait_event
from tests.support.net import free_port
from tests.support.waits import wait_until

PERIOD = 2.0
FLEET_CONF = {
    "interval": PERIOD,
    "late_after": 2,
    "offline_after": 4,
    "flush_interval": 1,
    "grace": 0,
}
SITES = {"a1": "view-a", "a2": "view-a", "b1": "view-b"}
KILLED = "b1"


@pytest.fixture(scope="package")
def metrics_port():
    return free_port()


@pytest.fixture(scope="package")
def view_master(salt_factories, master_defaults, metrics_port):
    overrides = {
        "engines": [{"edge_fleet": {}}],
        "edge": {
            "fleet": dict(FLEET_CONF),
            "metrics": {"address": "127.0.0.1", "port": metrics_port},
        },
    }
    # the tests count every node the engine serves: accept only ours
    factory = own_minions_master(
        salt_factories, random_string("view-master-"), copy.deepcopy(master_defaults), overrides
    )
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="package")
def view_minions(view_master):
    """{short name: started minion factory}; ids are random, sites as in SITES."""
    factories = {}
    for short, site in SITES.items():
        factories[short] = view_master.salt_minion_daemon(
            random_string(f"view-{short}-"),
            overrides={
                "beacons": {
                    "edge_heartbeat": [{"period": PERIOD}, {"jitter": 0.1}, {"first_after": 0}]
                },
                # count 3: jitter needs more than one probe
                "edge": {"site": site, "uplink": {"budget": 1.0, "count": 3, "timeout": 0.4}},
                "publish_port": view_master.config["publish_port"],
                "random_reauth_delay": 0,
                "master_alive_interval": 5,
            },
        )
    allow(view_master, *(f.id for f in factories.values()))
    for factory in factories.values():
        factory.start(start_timeout=120)
    try:
        yield factories
    finally:
        for factory in factories.values():
            factory.terminate()
            reap(factory)


class Prometheus:
    """A real Prometheus server on loopback with its own config and data directory."""

    def __init__(self, binary, target, root):
        self.port = free_port()
        self.root = root
        self.url = f"http://127.0.0.1:{self.port}"
        conf = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {"job_name": "saltext-edge", "static_configs": [{"targets": [target]}]}
            ],
        }
        self.config = os.path.join(root, "prometheus.yml")
        with open(self.config, "w", encoding="utf-8") as fh_:
            yaml.safe_dump(conf, fh_)
        self.log = open(os.path.join(root, "prometheus.log"), "wb")  # noqa: SIM115  (the server's output; closed on stop)
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={os.path.join(root, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--query.lookback-delta=3s",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )

    def get(self, path, **params):
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read().decode())

    def ready(self):
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def query(self, promql):
        """Instant query through the HTTP API: [(labels, float value)]."""
        ret = self.get("/api/v1/query", query=promql)
        assert ret["status"] == "success", ret
        return [(r["metric"], float(r["value"][1])) for r in ret["data"]["result"]]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="package")
def prometheus(view_master, metrics_port):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the Debian package prometheus is not installed (./dev installs it)")
    root = tempfile.mkdtemp(prefix="edge-prom-")
    prom = Prometheus(binary, f"127.0.0.1:{metrics_port}", root)
    try:
        wait_until(prom.ready, 60, what="Prometheus to be ready")
        yield prom
    finally:
        prom.stop()
        shutil.rmtree(root, ignore_errors=True)


def scrape(port):
    """The engine's metrics as text, straight from its HTTP server."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def node_status(port, minion_id):
    """The engine's ``edge_node_status`` of ``minion_id`` (None when not served)."""
    prefix = f'edge_node_status{{id="{minion_id}",'
    for line in scrape(port).splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="package")
def all_online(view_master, view_minions, metrics_port):
    """Wait until the engine serves every minion as online (status 3); return {short: id}."""
    for factory in view_minions.values():
        wait_until(
            lambda f=factory: node_status(metrics_port, f.id) == 3,
            120,
            what=f"{factory.id} online",
            retry_on=(OSError,),
        )
    return {short: f.id for short, f in view_minions.items()}


@pytest.fixture(scope="package")
def killed_node(view_master, view_minions, all_online, event_listener):
    """SIGKILL minion b1 (online until then); wait for the engine's offline event. Returns its id."""
    victim = view_minions[KILLED]
    after = time.time()
    sigkill(victim)
    wait_event(event_listener, view_master, f"edge/node/{victim.id}/offline", after, 120)
    return victim.id


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("the Debian package chromium is not installed (./dev installs it)")
    return None


def chromium(page, *args, tz="UTC", timeout=120):
    """Run headless Chromium on a local file with a throw-away profile; return the CompletedProcess."""
    profile = tempfile.mkdtemp(prefix="edge-chromium-")
    try:
        return subprocess.run(
            [
                chromium_binary(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
                f"file://{page}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(os.environ, TZ=tz),
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
