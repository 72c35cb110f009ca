"""
The field lab's fixtures (docs/howto/field-lab.rst): the network of
:mod:`tests.field.lab`, one master in the root namespace with the
``edge_fleet`` engine and admission by enrollment key, and real
``salt-minion`` processes started inside node namespaces behind the NAT
(``ip netns exec``), optionally under libfaketime (the whole process tree).

Nodes are configured either as ``edge.minion_config`` writes them (its own
plan, :func:`saltext_edge.minion_config.build_plan`) or with Salt's defaults
plus only what an edge node needs to enrol and to heartbeat. Short engine
settings (2 s heartbeats, offline after 5 missed) keep each test to seconds.
"""

import concurrent.futures
import contextlib
import itertools
import pathlib
import time

import attr
import pytest
from saltfactories.daemons.minion import SaltMinion
from saltfactories.utils import random_string
from tests.field import lab as _lab
from tests.integration.fleet.conftest import FLEET_CONF, PERIOD, heartbeat_of
from tests.support.events import events, wait_event
from tests.support.net import free_port

from adversarial.conftest import edge_conf, reactor_sls, salt_run, start_master
from saltext_edge import minion_config

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# the heartbeat every 2 s; a quick probe of the master's ports (3 tries, so
# loss shows) that stays within its budget on a lossy link
BEACON = {"edge_heartbeat": [{"period": PERIOD}, {"jitter": 0.1}, {"first_after": 0}]}
UPLINK = {"budget": 1.0, "count": 3, "timeout": 0.25}
# offline after 3 missed heartbeats (a lab minute is short)
LAB_FLEET = dict(FLEET_CONF, offline_after=3)
#: seconds of silence after which the engine reports a lab node offline:
#: missed heartbeats x period + slack (jitter, probe budget, 1 s)
OFFLINE_S = LAB_FLEET["offline_after"] * PERIOD + PERIOD * 0.1 + UPLINK["budget"] + 1.0


@attr.s(kw_only=True, slots=True)
class LabMinion(SaltMinion):
    """A salt-minion started inside network namespace ``netns`` (``ip netns exec`` execs it: same pid)."""

    netns = attr.ib()

    def cmdline(self, *args):
        return ["ip", "netns", "exec", self.netns, *super().cmdline(*args)]


@pytest.fixture(scope="package")
def lab():
    """The lab's network (skips with one line when it cannot be built); removed at the end, failed or not."""
    try:
        _lab.check_available()
        _lab.sweep()
        net = _lab.Lab()
    except _lab.LabUnavailable as exc:
        pytest.skip(f"field lab: {exc}")
    try:
        net.build()
    except _lab.LabUnavailable as exc:
        net.close()
        pytest.skip(f"field lab: {exc}")
    except BaseException:
        net.close()
        raise
    try:
        yield net
    finally:
        net.close()


def lab_master_config(address, fleet=None, metrics_port=None):
    """Overrides of a lab master: bound to ``address``, the engine, admission by enrollment key."""
    return {
        "interface": address,
        # Salt's own presence detection, measured beside the engine's
        "presence_events": True,
        "engines": [{"edge_fleet": {}}],
        "reactor": [{"salt/auth": [str(reactor_sls())]}],
        "edge": edge_conf(
            auto_admit=True,
            require_enrollment=True,
            on_invalid="keep",
            fleet=dict(LAB_FLEET, **(fleet or {})),
            metrics={"address": "127.0.0.1", "port": metrics_port} if metrics_port else False,
        ),
    }


@pytest.fixture(scope="package")
def metrics_port():
    return free_port()


@pytest.fixture(scope="package")
def lab_master(lab, salt_factories, metrics_port):
    """Master A on 198.18.0.1, its metrics server on a free loopback port."""
    conf = lab_master_config(lab.master_a, metrics_port=metrics_port)
    factory = start_master(salt_factories, "lab-master-", conf)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="package")
def lab_run(lab_master):
    return lab_master.salt_run_cli(timeout=120)


@pytest.fixture(scope="package")
def node_index():
    """Node namespace numbers, one per node of the run."""
    return itertools.count(1)


@pytest.fixture(scope="package")
def enroll(lab_master, tmp_path_factory):
    """``enroll(site)``: the path of an enrollment key file of ``site`` (made once per site, 20 uses)."""
    keys = {}
    folder = tmp_path_factory.mktemp("enrollment")

    def key_of(site):
        if site not in keys:
            path = folder / f"{site}.key"
            code, _, out, err = salt_run(
                lab_master, "edge.enrollment_key", f"site={site}", "uses=20", f"path={path}"
            )
            assert code == 0, (out + err)[-2000:]
            keys[site] = (path.read_text().strip(), str(path))
        return keys[site]

    return key_of


def enforced_options(masters, site, key, failover=False):
    """The options ``edge.minion_config`` writes for such a node (its own plan), beacon period shortened."""
    text, path = key
    plan = minion_config.build_plan(
        "/etc/salt/minion.d/edge.conf",
        masters,
        site=site,
        enrollment_key=text,
        secret_file=path,
        failover=failover,
    )
    return dict(plan["data"], beacons=BEACON)


def default_options(master, site, key):
    """Salt's defaults plus only what an edge node needs: enrol, heartbeat."""
    return {
        "master": master,
        "autosign_grains": ["edge_token"],
        "edge": {"site": site, "enrollment_key_file": key[1]},
        "beacons": BEACON,
        # salt-factories' quicker sign-in retries, undone
        "acceptance_wait_time": 10,
        "acceptance_wait_time_max": 0,
    }


@pytest.fixture(scope="package")
def lab_node(lab, lab_master, enroll, node_index):
    """
    ``lab_node(site, settings="enforced"|"default", clock=None, master=None,
    masters=None)``: a started-later :class:`LabMinion` in a new node
    namespace (its name in ``.netns``), admitted by the site's enrollment key.
    ``clock`` is a libfaketime ``FAKETIME`` value for the whole process tree.
    ``forward_to`` is the address through which the node reaches
    salt-factories' log server and event listener (default master A's): a
    job process blocks on its first log record while that address is
    black-holed, so a node that must work while A is cut forwards via B.
    """

    def make(
        site,
        settings="enforced",
        clock=None,
        master=None,
        masters=None,
        prefix="lab-",
        forward_to=None,
    ):
        master = master or lab_master
        ns = lab.node(next(node_index))
        key = enroll(site)
        if settings == "enforced":
            options = enforced_options(masters or [lab.master_a], site, key, failover=bool(masters))
        else:
            options = default_options(lab.master_a, site, key)
        options["edge"] = dict(options["edge"], uplink=UPLINK)
        # Salt's loop (salt-factories sets 0.05 s); the master's publish
        # port; salt-factories' log server and event listener (they listen
        # on every address) reached through the NAT, not on the node's own
        # loopback
        via_nat = {"host": forward_to or lab.master_a}
        options.update(
            loop_interval=1,
            publish_port=master.config["publish_port"],
            **{"pytest-minion": {"returner_address": via_nat, "log": via_nat}},
        )
        environ = {}
        if clock is not None:
            environ = {
                "LD_PRELOAD": LIBFAKETIME,
                "FAKETIME": clock,
                # Salt's and ZeroMQ's timers stay real: only the wall clock is wrong
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_NO_CACHE": "1",
            }
        factory = master.salt_minion_daemon(
            random_string(prefix),
            overrides=options,
            factory_class=LabMinion,
            netns=ns,
        )
        # a copy: salt-factories hands every daemon its manager's own dict
        factory.environ = dict(factory.environ, **environ)
        return factory

    return make


def _timed_start(factory):
    """Start ``factory``; keep in ``FIGURES["started_s"]`` the seconds until its start event came."""
    started = time.monotonic()
    factory.start(start_timeout=120)
    _lab.FIGURES.setdefault("started_s", {})[factory.id] = time.monotonic() - started


@contextlib.contextmanager
def running(nodes):
    """Start every factory of ``nodes`` (``{name: factory}``) at once; stop them all at once at the end."""
    factories = list(nodes.values())
    with concurrent.futures.ThreadPoolExecutor(len(factories)) as pool:
        try:
            for future in [pool.submit(_timed_start, f) for f in factories]:
                future.result()
            yield nodes
        finally:
            for future in [pool.submit(f.terminate) for f in factories]:
                future.result()


@pytest.fixture(scope="package")
def pair(lab_node):
    """Two nodes of site ``pair-1``: ``enforced`` (edge.minion_config's settings) and ``default`` (Salt's)."""
    nodes = {
        "enforced": lab_node("pair-1", settings="enforced", prefix="lab-pair-e-"),
        "default": lab_node("pair-1", settings="default", prefix="lab-pair-d-"),
    }
    with running(nodes):
        yield nodes


def heard(listener, master, factory, since=None, timeout=60, pred=None):
    """Wait for a heartbeat of ``factory`` on ``master`` (after ``since``, default 2 min ago) matching ``pred``; return it."""
    mine = heartbeat_of(factory.id)
    return wait_event(
        listener,
        master,
        "edge/heartbeat",
        time.time() - 120 if since is None else since,
        timeout,
        lambda data: mine(data) and (pred is None or pred(data.get("data") or data)),
    )


def first_answers(master, listener, nodes, since, bound, need=None):
    """
    Send ``test.ping`` to each of ``nodes`` (``{name: factory}``) every
    second (asynchronously, as an operator's retries) until each (or each of
    the names in ``need``) has answered one; return ``{name: seconds from
    since to its first answer}`` (None for a node that had not answered).
    """
    need = set(nodes if need is None else need)
    import salt.client  # noqa: PLC0415
    import salt.config  # noqa: PLC0415

    opts = salt.config.client_config(master.config["conf_file"])
    found = {}
    with salt.client.get_local_client(mopts=opts) as client:
        while not need <= set(found) and time.time() < since + bound:
            for name, factory in nodes.items():
                if name in found:
                    continue
                ret = events(listener, master, f"salt/job/*/ret/{factory.id}", since)
                if ret:
                    found[name] = ret[0].stamp.timestamp() - since
                else:
                    client.cmd_async(factory.id, "test.ping")
            time.sleep(1)  # the retry cadence
    return {name: found.get(name) for name in nodes}


def have_faketime():
    return pathlib.Path(LIBFAKETIME).exists()
