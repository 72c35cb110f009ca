"""
Two masters sharing one record through Salt's ``redis`` cache driver, against
a real ``redis-server`` on loopback started here (docs/ref/engine.rst,
"Several masters"): a node attached to one master is seen, with its status
and history, from the other master's ``edge.node`` and ``edge.report``.
"""

import shutil
import subprocess
import time

import pytest
from tests.integration.fleet.conftest import heartbeat_of, new_master, new_minion
from tests.support.events import wait_event
from tests.support.net import free_port
from tests.support.waits import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not installed (./dev installs it)",
    ),
]

redis = pytest.importorskip(
    "redis", reason="the redis client is not installed (pip install .[redis])"
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers():
        assert proc.poll() is None, "redis-server exited"
        return client.ping()

    wait_until(
        answers,
        30,
        interval=0.1,
        what="redis-server to answer",
        retry_on=(redis.exceptions.ConnectionError,),
    )
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def _redis_conf(port):
    return {
        "cache": "redis",
        "cache.redis.host": "127.0.0.1",
        "cache.redis.port": port,
        "cache.redis.db": "0",
    }


@pytest.fixture(scope="module")
def masters(salt_factories, master_defaults, redis_server):
    one = new_master(salt_factories, master_defaults, _redis_conf(redis_server), prefix="fleet-r1-")
    two = new_master(salt_factories, master_defaults, _redis_conf(redis_server), prefix="fleet-r2-")
    with one.started(start_timeout=120), two.started(start_timeout=120):
        yield one, two


def test_two_masters_share_the_record(masters, event_listener, redis_server):
    one, two = masters
    node = new_minion(one, "shared", prefix="fleet-r-node-")
    with node.started(start_timeout=120):
        wait_event(
            event_listener, one, "edge/heartbeat", time.time() - 60, 60, heartbeat_of(node.id)
        )
        # the record is in redis (written by master one's engine) ...
        client = redis.Redis(host="127.0.0.1", port=redis_server)
        wait_until(
            lambda: any(b"edge_fleet" in k for k in client.keys("*")),
            30,
            interval=0.2,
            what="the record in redis",
        )
        # ... and master two, which this node never talked to, answers from it
        run_two = two.salt_run_cli(timeout=120)

        def online_on_two():
            ret = run_two.run("edge.node", node.id)
            return ret if ret.returncode == 0 and ret.data.get("status") == "online" else None

        ret = wait_until(online_on_two, 60, interval=1, what="edge.node online on master two")
        data = ret.data
        assert data["seen_by"] == one.id
        assert data["last_seen_kind"] == "heartbeat"
        assert data["site"] == "shared"
        # master two has no key for it: the report says so rather than hide it
        assert data["admission"] == "revoked"

        ret = run_two.run("edge.report", "details=True")
        assert ret.returncode == 0, ret
        assert ret.data["sites"]["shared"]["nodes"][node.id]["status"] == "online"
        assert {one.id, two.id} <= set(ret.data["engines"]), ret.data["engines"]
