"""
``salt-run edge.report`` against a real master and real minions in two sites:

* ``site-a``: two minions attached directly; one of them is stopped (down);
* ``site-b``: one minion whose link to the master goes through a listener
  that delays every chunk (a poor uplink);
* a pending key nobody has decided on yet.

Each minion connects from its own loopback address (``source_address``) and its
``ipv4`` grain says so, like edge nodes that each have their own address; so
the cheap TCP-table presence can tell them apart. ``ping=True`` is checked too.

The uplink quality is read from the master's cache of the minions' grains.
``edge_site`` and ``edge_uplink`` come from the extension's grains (measured
through the delaying listener); only when those grains are not installed do
the minions get static ``edge_site``/``edge_uplink`` grains in their config.
"""

import json
import socket
import threading
import time

import pytest
from saltfactories.utils import random_string

pytestmark = pytest.mark.slow

try:
    import saltext_edge.grains.edge_grains as _edge_grains

    HAS_UPLINK_GRAIN = hasattr(_edge_grains, "edge_uplink")
except ImportError:
    HAS_UPLINK_GRAIN = False

DELAY_S = 0.4


class DelayingListener:
    """A TCP relay on 127.0.0.1 that sleeps ``delay`` before forwarding each chunk."""

    def __init__(self, upstream_port, delay, bind_source=None):
        self.upstream_port = upstream_port
        self.delay = delay
        self.bind_source = bind_source
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.socket()
                if self.bind_source:
                    upstream.bind((self.bind_source, 0))
                upstream.connect(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped.set()
        self.sock.close()
        for sock in self.conns:
            try:
                sock.close()
            except OSError:
                pass


def _minion_defaults(site, source_ip, extra_grains=None):
    # each simulated node owns exactly one address (no shared host addresses)
    grains = {"ipv4": [source_ip], "ipv6": []}
    if not HAS_UPLINK_GRAIN:
        # the extension's grains are not installed: edge_site from config
        # (what edge_grains derives from edge:site)
        grains["edge_site"] = site
    grains.update(extra_grains or {})
    return {
        "edge": {"site": site},
        "source_address": source_ip,
        "grains": grains,
        "master_alive_interval": 10,
        "acceptance_wait_time": 1,
    }


@pytest.fixture(scope="module")
def report_master(salt_factories, master_defaults):
    defaults = dict(
        master_defaults,
        timeout=5,
        minion_data_cache=True,
        edge={"shared_secret": "report-3f9a61c07be24d58a1e6c92d07f4b8e5a3c1d9f2e7b6a4c8"},
    )
    factory = salt_factories.salt_master_daemon(random_string("report-master-"), defaults=defaults)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def fleet(report_master):
    ret_port = report_master.config["ret_port"]
    publish_port = report_master.config["publish_port"]
    relays = [
        DelayingListener(ret_port, DELAY_S, bind_source="127.0.0.4"),
        DelayingListener(publish_port, DELAY_S, bind_source="127.0.0.4"),
    ]
    poor_grains = None
    if not HAS_UPLINK_GRAIN:
        poor_grains = {
            "edge_uplink": {
                "quality": "poor",
                "rtt_ms": DELAY_S * 2000,
                "jitter_ms": 5.0,
                "loss_pct": 0.0,
                "target": f"127.0.0.1:{relays[0].port}",
                "checked_at": time.time(),
            }
        }
    specs = {
        "a-up": ("site-a", "127.0.0.2", None, None),
        "a-down": ("site-a", "127.0.0.3", None, None),
        "b-poor": ("site-b", "127.0.0.4", poor_grains, relays),
    }
    factories = {}
    for name, (site, source_ip, extra, relay) in specs.items():
        overrides = {}
        if relay:
            overrides = {"master_port": relay[0].port, "publish_port": relay[1].port}
        factories[name] = report_master.salt_minion_daemon(
            random_string(f"rep-{name}-"),
            defaults=_minion_defaults(site, source_ip, extra),
            overrides=overrides,
            start_timeout=120,
        )
    started = []
    try:
        for name, factory in factories.items():
            factory.start()
            started.append(factory)
        yield factories
    finally:
        for factory in reversed(started):
            factory.terminate()
        for relay in relays:
            relay.close()


def _new_pub():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _store_pending(report_master, minion_id, pub):
    """A pending key as a node that is not admitted leaves it (in Salt's key store)."""
    import salt.cache
    import salt.config

    opts = salt.config.master_config(report_master.config_file)
    cache = salt.cache.Cache(opts, driver=opts["keys.cache_driver"])
    cache.store("keys", minion_id, {"state": "pending", "pub": pub})
    return opts


@pytest.fixture(scope="module")
def pending_key(report_master):
    """A pending key nobody has decided on: no token seen."""
    minion_id = random_string("rep-pending-")
    _store_pending(report_master, minion_id, _new_pub())
    return minion_id


@pytest.fixture(scope="module")
def refused_key(report_master):
    """
    A pending key whose token claims site-b but does not verify: recorded
    like the reactor records it, then refused by the real edge.accept_pending.
    """
    admission = pytest.importorskip("saltext_edge.admission")
    minion_id = random_string("rep-forged-")
    pub = _new_pub()
    opts = _store_pending(report_master, minion_id, pub)
    ret = admission.record(opts, minion_id, pub, "v1:site-b:" + "0" * 64, source="test")
    assert ret["recorded"], ret
    ret = report_master.salt_run_cli(timeout=120).run("edge.accept_pending", f"match={minion_id}")
    assert ret.returncode == 0, ret
    assert ret.data[minion_id]["decision"] == "refused", ret.data
    return minion_id


@pytest.fixture(scope="module")
def fleet_with_one_down(fleet, report_master, pending_key, refused_key):
    # every minion has started (the factory waited for its start event, sent
    # after its first pillar fetch, which is when the master caches grains);
    # now one goes away: the master sees its TCP connection drop at once
    fleet["a-down"].terminate()
    time.sleep(2)
    return fleet


def _report(report_master, *args):
    cli = report_master.salt_run_cli(timeout=120)
    ret = cli.run("edge.report", *args)
    assert ret.returncode == 0, ret
    return ret


def _check_sites(report, fleet, pending_id):
    sites = report["sites"]
    assert set(sites) >= {"site-a", "site-b"}, sites
    site_a, site_b = sites["site-a"], sites["site-b"]
    assert site_a["minions"] == 2 and site_b["minions"] == 1
    assert site_a["down_minions"] == [fleet["a-down"].id], (report["presence"], report["sites"])
    assert site_b["uplink"]["poor"] == 1, site_b
    assert site_b["poor_uplink"][0]["id"] == fleet["b-poor"].id
    if not HAS_UPLINK_GRAIN:
        assert site_a["uplink"]["poor"] == 0
    pending = {p["id"] for s in sites.values() for p in s["pending"]}
    assert pending_id in pending
    refused = {r["id"]: r for r in site_b["refused"]}
    assert len(refused) == 1, site_b
    (entry,) = refused.values()
    assert entry["id"].startswith("rep-forged-")
    assert (entry["key"], entry["decision"], entry["reason"]) == ("pending", "refused", "bad_token")
    assert report["admission_decisions"] is True
    assert report["totals"]["minions"] == 3
    assert report["totals"]["pending"] >= 1
    assert report["summary"][-1]["site"] == "TOTAL"


def test_report_json_cheap_presence(report_master, fleet_with_one_down, pending_key):
    fleet = fleet_with_one_down
    start = time.time()
    ret = _report(report_master, "--out=json")
    report = ret.data if isinstance(ret.data, dict) else json.loads(ret.stdout)
    assert report["presence"]["method"] == "tcp"
    print("uplink of site-b (measured:", HAS_UPLINK_GRAIN, "):", report["sites"]["site-b"])
    _check_sites(report, fleet, pending_key)
    site_a, site_b = report["sites"]["site-a"], report["sites"]["site-b"]
    assert (site_a["up"], site_a["down"]) == (1, 1), report["presence"]
    assert site_b["up"] == 1
    assert report["elapsed_s"] < 30
    assert time.time() - start < 60


def test_report_json_with_ping(report_master, fleet_with_one_down, pending_key):
    fleet = fleet_with_one_down
    # on an overloaded machine a live minion's return can miss the window
    # (Salt logs "failed to return the job information"): ask again, up to
    # three times; the stopped minion must be down every time
    for _ in range(3):
        report = _report(report_master, "ping=True", "timeout=20", "--out=json").data
        assert fleet["a-down"].id in report["sites"]["site-a"]["down_minions"], report["sites"]
        if report["totals"]["down"] == 1:
            break
    assert report["presence"]["method"] == "ping"
    _check_sites(report, fleet, pending_key)
    assert (report["sites"]["site-a"]["up"], report["sites"]["site-a"]["down"]) == (1, 1)
    assert report["sites"]["site-b"]["up"] == 1
    assert report["totals"]["down"] == 1 and report["totals"]["unknown"] == 0


def test_report_site_filter_yaml_and_table(report_master, fleet_with_one_down):
    ret = _report(report_master, "site=site-b", "details=True", "--out=yaml")
    assert "site-b" in ret.stdout and "site-a:" not in ret.stdout
    ret = _report(report_master, "--out=table")
    assert "TOTAL" in ret.stdout and "site-a" in ret.stdout


def test_report_fires_progress_events(report_master, fleet_with_one_down, event_listener):
    start = time.time()
    _report(report_master, "--out=json")
    events = event_listener.wait_for_events(
        [(report_master.id, "edge/report/progress")], timeout=20, after_time=start
    )
    assert events.found_all_events, events
    time.sleep(1)
    stages = [
        e.data.get("stage")
        for e in event_listener.get_events(
            [(report_master.id, "edge/report/progress")], after_time=start
        )
    ]
    # the event forwarder does not keep the order: check the set
    assert {"keys", "grains", "presence", "done"} <= set(stages), stages
