"""
A master set up the way ``docs/howto/site-goes-dark.rst`` says, literally:
the page's marked blocks are extracted and used as they are (the engine
drop-in written to the path its first line names, the ``alerts-on`` commands
run with bash), with only the system paths mapped to the test's directories
and the alerting web hook's URL mapped to an HTTP listener on 127.0.0.1.

Two deviations, both about the clock and the test machine, not about the
product: the beacon's period and the engine's ``interval`` are 2 s instead of
60 s, with no start-up grace and no metrics server (a drop-in of the test,
``zz-test-timing.conf``); and salt-factories' own ``engines: [pytest]``
(which forwards the master's events to the tests) is moved from the main
file into a drop-in, as the how-to's warning tells an operator to do with an
``engines:`` list of the main file -- ``master-config --check`` flags it first.
"""

import http.server
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time

import pytest
import yaml
from saltfactories.utils import random_string
from tests.daemons import allow, own_minions_master
from tests.integration.as_shipped.test_quickstart import Page, marked_blocks
from tests.integration.fleet.conftest import PERIOD, minion_overrides, wait_record

from saltext_edge import eventauth, fsperm

HOWTO = "howto/site-goes-dark.rst"
HOOK_URL = "https://alerts.example.net"
TIMING = {
    "edge": {"fleet": {"interval": PERIOD, "grace": 0, "flush_interval": 1}, "metrics": False}
}


class Hook(http.server.ThreadingHTTPServer):
    """The alerting web hook: keeps every POST body (JSON) it receives."""

    def __init__(self):
        self.posts = []
        self.cond = threading.Condition()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.cond:
                    hook.posts.append(
                        {
                            "path": self.path,
                            "type": self.headers.get("Content-Type"),
                            "body": json.loads(body),
                        }
                    )
                    hook.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, pred=None):
        with self.cond:
            return [p["body"] for p in self.posts if pred is None or pred(p["body"])]

    def wait(self, pred, timeout):
        """Wait for a POST whose body matches ``pred``; return the matching bodies."""
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(pred(p["body"]) for p in self.posts), timeout=timeout
            )
        assert ok, f"no matching alert within {timeout} s; got {self.bodies()}"
        return self.bodies(pred)


@pytest.fixture(scope="package")
def hook():
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _move_main_engines(factory):
    """Move the main file's ``engines:`` (salt-factories' ``pytest``) into a drop-in."""
    with open(factory.config_file, encoding="utf-8") as fh_:
        main = yaml.safe_load(fh_)
    engines = main.pop("engines")
    with open(factory.config_file, "w", encoding="utf-8") as fh_:
        yaml.safe_dump(main, fh_)
    path = os.path.join(factory.config_dir, "master.d", "00-factories.conf")
    with open(path, "w", encoding="utf-8") as fh_:
        yaml.safe_dump({"engines": engines}, fh_)


class HowtoMaster:
    """The master of the how-to, and what setting it up printed."""

    def __init__(self, factory, page, check):
        self.factory = factory
        self.page = page
        self.check = check  # CompletedProcess of the alerts-on block

    def opts(self):
        import salt.config

        return salt.config.master_config(self.factory.config_file)

    def fire_sealed(self, tag, data):
        """Fire ``tag`` sealed with the master's key, as its engine does (a barrier for tests)."""
        import salt.utils.event

        opts = self.opts()
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
            bus.fire_event(eventauth.seal(opts, tag, data), tag)

    def barrier(self, hook):
        """
        Fire a sealed site event and wait until its alert is posted: the
        reactor renders events in their order, so every event fired before
        has been acted on (or not) by then. Returns the barrier's site name.
        """
        site = random_string("barrier-")
        self.fire_sealed(f"edge/site/{site}/recovered", {"site": site, "degraded": False})
        hook.wait(lambda b: b.get("site") == site, 60)
        return site


@pytest.fixture(scope="package")
def howto_master(salt_factories, master_defaults, hook):
    blocks = marked_blocks(HOWTO)
    factory = own_minions_master(
        salt_factories, random_string("howto-master-"), dict(master_defaults), {}
    )
    work = tempfile.mkdtemp(prefix="edge-howto-")
    conf_dir = factory.config_dir
    page = Page(
        os.path.dirname(sys.executable),
        conf_dir,
        {"/etc/salt": conf_dir, "/srv/reactor": os.path.join(work, "reactor"), HOOK_URL: hook.base},
        work,
    )
    try:
        os.makedirs(os.path.join(conf_dir, "master.d"), exist_ok=True)
        # the fleet secret of quickstart step 2 (a master running as root: 0600)
        fsperm.write_secret_file(
            os.path.join(conf_dir, "edge-secret"), secrets.token_urlsafe(32) + "\n", {}
        )
        # step 2: the engine drop-in, at the path its first line names
        engine = page.rewrite(blocks["engine"])
        first = engine.splitlines()[0]
        assert first.startswith("# ") and first.endswith("/master.d/edge-fleet.conf"), first
        with open(first[2:], "w", encoding="utf-8") as fh_:
            fh_.write(engine)
        # the main file's engines list is now lost to the drop-in's, and --check says so
        lost = page.run(
            f"saltext-edge master-config -c /etc/salt --reactor-dir {work}/reactor --check"
        )
        assert lost.returncode == 1 and '"pytest"' in lost.stderr, lost.stdout + lost.stderr
        _move_main_engines(factory)
        with open(os.path.join(conf_dir, "master.d", "zz-test-timing.conf"), "w") as fh_:
            yaml.safe_dump(TIMING, fh_)
        # step 3: write the drop-in, restart, check
        check = page.run(blocks["alerts-on"])
        assert check.returncode == 0, check.stdout + check.stderr
        assert page.systemctl_calls() == ["systemctl restart salt-master"]
        with factory.started(start_timeout=120):
            yield HowtoMaster(factory, page, check)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def howto_minion(master, site, prefix, beacon=True):
    """
    A node configured with the how-to's minion block (its period 2 s instead
    of 60 s); ``beacon=False``: without the beacon.
    """
    block = yaml.safe_load(marked_blocks(HOWTO)["minion"])
    items = [
        {"period": PERIOD} if "period" in item else item
        for item in block["beacons"]["edge_heartbeat"]
    ]
    conf = minion_overrides(master, site)
    conf["beacons"] = {"edge_heartbeat": [*items, {"first_after": 0}]} if beacon else {}
    factory = master.salt_minion_daemon(random_string(prefix), overrides=conf)
    allow(master, factory.id)
    return factory


@pytest.fixture(scope="package")
def attacker(howto_master):
    """An accepted, live minion of another site, under the attacker's control."""
    factory = howto_minion(howto_master.factory, "sh-4", "evil-")
    with factory.started(start_timeout=120):
        wait_record(howto_master.factory, factory.id, lambda r: r.get("status") == "online", 60)
        yield factory


@pytest.fixture(scope="package")
def killed_node(howto_master):
    """
    The how-to's node of site ``sh-3`` (the page's own site): online on its
    heartbeats, then SIGKILLed. Returns ``(factory, killed_at)``.
    """
    from tests.daemons import sigkill

    block = yaml.safe_load(marked_blocks(HOWTO)["minion"])
    factory = howto_minion(howto_master.factory, block["edge"]["site"], "sh3-node-")
    with factory.started(start_timeout=120):
        wait_record(howto_master.factory, factory.id, lambda r: r.get("status") == "online", 60)
        killed_at = time.time()
        sigkill(factory)
    return factory, killed_at


def attacker_opts(minion):
    """The options of the running minion ``minion``, for requests over its own channel."""
    import salt.config

    opts = salt.config.minion_config(minion.config_file)
    opts["master_ip"] = "127.0.0.1"
    opts["master_uri"] = f"tcp://127.0.0.1:{opts['master_port']}"
    return opts


def send_as(mopts, load):
    """Send ``load`` to the master as the accepted minion ``mopts`` (its key, its AES session)."""
    import salt.channel.client

    with salt.channel.client.ReqChannel.factory(mopts) as channel:
        return channel.send(dict(load, id=mopts["id"]), timeout=30, tries=2)
