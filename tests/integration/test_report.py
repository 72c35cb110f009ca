"""
``salt-run edge.report`` and ``edge.node`` against a real master running the
``edge_fleet`` engine and real minions running the ``edge_heartbeat`` beacon,
in two sites:

* ``site-a``: two minions attached directly; one of them is stopped and the
  engine reports it offline;
* ``site-b``: one minion whose link to the master goes through a listener
  that delays every chunk (a poor uplink, measured by its heartbeats);
* a pending key nobody has decided on, and a pending key refused by admission.

The report answers from the engine's record (no ping); ``ping=True`` adds a
live check. Each minion connects from its own loopback address.
"""

import json
import socket
import threading
import time

import pytest
from saltfactories.utils import random_string
from tests.daemons import allow, own_minions_master, reap
from tests.support.events import events, wait_event
from tests.support.keys import new_pub
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow

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


PERIOD = 2.0
# offline after 5 heartbeats of 2 s + slack (jitter 0.2 + budget 2 + 1)
OFFLINE_S = 5 * PERIOD + 0.2 + 2.0 + 1.0


def _minion_defaults(site, source_ip):
    return {
        "edge": {"site": site},
        "source_address": source_ip,
        "beacons": {"edge_heartbeat": [{"period": PERIOD}, {"jitter": 0.1}, {"first_after": 0}]},
        "master_alive_interval": 10,
        "acceptance_wait_time": 1,
        "random_reauth_delay": 0,
    }


@pytest.fixture(scope="module")
def report_master(salt_factories, master_defaults):
    defaults = dict(
        master_defaults,
        timeout=5,
        engines=[{"edge_fleet": {}}],
        edge={
            "shared_secret": "report-3f9a61c07be24d58a1e6c92d07f4b8e5a3c1d9f2e7b6a4c8",
            "fleet": {"interval": PERIOD, "flush_interval": 1, "grace": 0},
            "metrics": False,
        },
    )
    # the report counts every node: accept only the minions of this module
    factory = own_minions_master(salt_factories, random_string("report-master-"), defaults, {})
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
    specs = {
        "a-up": ("site-a", "127.0.0.2", None),
        "a-down": ("site-a", "127.0.0.3", None),
        "b-poor": ("site-b", "127.0.0.4", relays),
    }
    factories = {}
    for name, (site, source_ip, relay) in specs.items():
        overrides = {"publish_port": publish_port}
        if relay:
            overrides = {"master_port": relay[0].port, "publish_port": relay[1].port}
        factories[name] = report_master.salt_minion_daemon(
            random_string(f"rep-{name}-"),
            defaults=_minion_defaults(site, source_ip),
            overrides=overrides,
            start_timeout=120,
        )
    allow(report_master, *(f.id for f in factories.values()))
    started = []
    try:
        for factory in factories.values():
            factory.start()
            started.append(factory)
        yield factories
    finally:
        for factory in reversed(started):
            factory.terminate()
            reap(factory)
        for relay in relays:
            relay.close()


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
    _store_pending(report_master, minion_id, new_pub())
    return minion_id


@pytest.fixture(scope="module")
def refused_key(report_master):
    """
    A pending key whose token claims site-b but does not verify: recorded
    like the reactor records it, then refused by the real edge.accept_pending.
    """
    admission = pytest.importorskip("saltext_edge.admission")
    minion_id = random_string("rep-forged-")
    pub = new_pub()
    opts = _store_pending(report_master, minion_id, pub)
    ret = admission.record(opts, minion_id, pub, "v1:site-b:" + "0" * 64, source="test")
    assert ret["recorded"], ret
    ret = report_master.salt_run_cli(timeout=120).run("edge.accept_pending", f"match={minion_id}")
    assert ret.returncode == 0, ret
    assert ret.data[minion_id]["decision"] == "refused", ret.data
    return minion_id


def _beat_from(minion_id):
    return lambda data: (data.get("data") or {}).get("id") == minion_id


@pytest.fixture(scope="module")
def fleet_with_one_down(fleet, report_master, pending_key, refused_key, event_listener):
    start = time.time() - 120
    for factory in fleet.values():
        wait_event(
            event_listener, report_master, "edge/heartbeat", start, 60, _beat_from(factory.id)
        )
    # b-poor's heartbeats carry an uplink measured through the delaying relay
    wait_event(
        event_listener,
        report_master,
        "edge/heartbeat",
        start,
        60,
        lambda d: (
            (d.get("data") or {}).get("id") == fleet["b-poor"].id
            and (d["data"].get("uplink") or {}).get("quality") == "poor"
        ),
    )
    stopped = time.time()
    fleet["a-down"].terminate()
    wait_event(
        event_listener,
        report_master,
        f"edge/node/{fleet['a-down'].id}/offline",
        stopped,
        OFFLINE_S + 20,
    )
    return fleet


def _report(report_master, *args):
    cli = report_master.salt_run_cli(timeout=120)
    ret = cli.run("edge.report", *args)
    assert ret.returncode == 0, ret
    return ret


def _check(report, fleet, pending_id, refused_id):
    sites = report["sites"]
    assert set(sites) >= {"site-a", "site-b"}, sites
    site_a, site_b = sites["site-a"], sites["site-b"]
    assert (site_a["online"], site_a["offline"]) == (1, 1), site_a
    down = site_a["nodes"][fleet["a-down"].id]
    assert down["status"] == "offline" and down["last_seen"].endswith("Z"), down
    assert down["last_seen_kind"] == "heartbeat"
    assert site_b["online"] == 1, site_b
    assert site_b["quality"]["poor"] == 1, site_b
    assert site_b["degraded"] is True
    assert site_b["trend"]["1h"]["rtt_ms_median"] >= DELAY_S * 1000, site_b["trend"]
    assert pending_id in report["pending"]
    assert report["refused"][refused_id] == "bad_token", report["refused"]
    assert report["totals"]["online"] == 2 and report["totals"]["offline"] == 1, report["totals"]
    assert report["totals"]["pending"] >= 1 and report["totals"]["refused"] >= 1
    assert report["summary"][-1]["site"] == "TOTAL"
    assert report["generated_at"].endswith("Z")


def test_report_from_the_running_engine(
    report_master, fleet_with_one_down, pending_key, refused_key
):
    fleet = fleet_with_one_down
    ret = _report(report_master, "--out=json")
    report = ret.data if isinstance(ret.data, dict) else json.loads(ret.stdout)
    _check(report, fleet, pending_key, refused_key)
    # the engine answered (its memory, what the metrics serve), not the record
    assert report["answered_by"] == f"engine {report_master.id}", report
    assert "warning" not in report
    assert report["engines"][report_master.id]["stale"] is False
    # details=False lists only the nodes that are not online
    assert fleet["a-up"].id not in report["sites"]["site-a"]["nodes"]
    assert "ping" not in report
    assert report["elapsed_s"] < 30


def test_report_with_ping_live_check(report_master, fleet_with_one_down, pending_key, refused_key):
    fleet = fleet_with_one_down
    report = _report(report_master, "ping=True", "timeout=20", "details=True", "--out=json").data
    _check(report, fleet, pending_key, refused_key)
    assert fleet["a-down"].id in report["ping"]["silent"], report["ping"]
    assert report["ping"]["answered"] >= 1


def test_node_record(report_master, fleet_with_one_down):
    fleet = fleet_with_one_down
    cli = report_master.salt_run_cli(timeout=120)
    ret = cli.run("edge.node", fleet["b-poor"].id)
    assert ret.returncode == 0, ret
    node = ret.data
    assert node["status"] == "online" and node["site"] == "site-b"
    assert node["uplink"]["quality"] == "poor"
    assert node["samples"] and all(s["at"].endswith("Z") for s in node["samples"])
    assert node["trend"]["1h"]["rtt_ms_p95"] >= DELAY_S * 1000
    assert node["answered_by"] == f"engine {report_master.id}"
    ret = cli.run("edge.node", fleet["a-down"].id, "--out=edge")
    assert ret.returncode == 0, ret
    first, *rest = ret.stdout.splitlines()
    assert first.startswith(f"{fleet['a-down'].id} (site site-a): offline since"), ret.stdout
    assert "uplink        unknown (stale)" in ret.stdout, ret.stdout
    ret = cli.run("edge.node", "no-such-node-anywhere")
    # one line and a non-zero exit code (saltext_edge.errors.command_errors)
    assert ret.returncode != 0, ret
    assert "edge.node: no key and no record" in ret.stdout + ret.stderr, ret


def test_a_denied_squatter_leaves_the_accepted_node_alone(report_master, fleet_with_one_down):
    """A second key for an accepted id is denied by Salt; the accepted node stays accepted."""
    import salt.cache
    import salt.config

    victim = fleet_with_one_down["a-up"].id
    opts = salt.config.master_config(report_master.config_file)
    cache = salt.cache.Cache(opts, driver=opts["keys.cache_driver"])
    # what the master keeps when a squatter signs in with the id (salt/master.py)
    cache.store("denied_keys", victim, [new_pub()])
    try:
        ret = report_master.salt_run_cli(timeout=120).run("edge.node", victim)
        assert ret.returncode == 0, ret
        assert ret.data["admission"] == "accepted" and ret.data["status"] == "online", ret.data
        report = _report(report_master, "details=True", "--out=json").data
        node = report["sites"]["site-a"]["nodes"][victim]
        assert node["admission"] == "accepted" and node["status"] == "online", node
        assert report["refused"][victim].startswith("key denied"), report["refused"]
    finally:
        cache.flush("denied_keys", victim)


def test_report_site_filter_yaml_and_table(report_master, fleet_with_one_down):
    ret = _report(report_master, "site=site-b", "details=True", "--out=yaml")
    assert "site-b" in ret.stdout and "site-a:" not in ret.stdout
    ret = _report(report_master, "--out=table")
    assert "TOTAL" in ret.stdout and "site-a" in ret.stdout


def test_report_fires_progress_events(report_master, fleet_with_one_down, event_listener):
    start = time.time()
    _report(report_master, "--out=json")
    progress = event_listener.wait_for_events(
        [(report_master.id, "edge/report/progress")], timeout=20, after_time=start
    )
    assert progress.found_all_events, progress
    # the event forwarder does not keep the order: check the set
    wait_until(
        lambda: (
            {"keys", "record", "done"}
            <= {
                e.data.get("stage")
                for e in events(event_listener, report_master, "edge/report/progress", start)
            }
        ),
        20,
        interval=0.2,
        what="the keys, record and done progress events",
    )


def test_report_out_edge_reads_as_an_operator_reads(report_master, fleet_with_one_down):
    fleet = fleet_with_one_down
    ret = _report(report_master, "--out=edge")
    lines = ret.stdout.splitlines()
    assert len(lines) > 6, ret
    assert (
        lines[0].startswith("Edge fleet at ")
        and f"(from the engine {report_master.id})" in lines[0]
    )
    assert "2 online, 0 late, 1 offline" in lines[0], lines[0]
    assert lines[2].split()[:4] == ["SITE", "NODES", "ONLINE", "LATE"], lines
    rows = [line.split() for line in lines[3 : lines.index("", 3)]]
    names = [row[0] for row in rows]
    # worst first: site-a has a node offline, site-b only a poor uplink
    assert names[:2] == ["site-a", "site-b"] and names[-1] == "TOTAL", lines
    total = rows[-1]
    assert total[1:5] == ["3", "2", "0", "1"] and total[-3] != "-", total
    down = [line for line in lines if line.startswith(fleet["a-down"].id)]
    assert len(down) == 1 and " offline " in down[0] and "unknown (stale)" in down[0], lines


def test_report_quiet_for_cron(report_master, fleet_with_one_down, tmp_path):
    page = tmp_path / "fleet.html"
    ret = report_master.salt_run_cli(timeout=120).run(
        "edge.report", f"html={page}", "quiet=True", "--out=edge"
    )
    assert ret.returncode == 0 and ret.stdout.strip() == "", ret
    assert "site-a" in page.read_text()


def test_no_engine_says_so_in_one_line(salt_run_cli, tmp_path):
    """The shared master runs no edge_fleet engine: the stored record, said in one line."""
    ret = salt_run_cli.run("edge.report", "--out=edge")
    assert ret.returncode == 0, ret
    warnings = [line for line in ret.stdout.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 1 and "no edge_fleet engine answered" in warnings[0], ret.stdout
    page = tmp_path / "fleet.html"
    ret = salt_run_cli.run("edge.report", f"html={page}", "quiet=True")
    # cron hears of it: one line, exit 1; the page is written all the same
    assert ret.returncode == 1, ret
    out = (ret.stdout + ret.stderr).strip().splitlines()
    assert len(out) == 1 and "no edge_fleet engine answered" in out[0], out
    assert page.exists()
