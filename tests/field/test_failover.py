"""
Field lab, scenario 8 (docs/howto/field-lab.rst): failover away from a
black-holed master. Masters A (198.18.K.1) and B (198.18.K.3) share one key
store (master key pair and accepted minion keys, as a shared volume gives
them) and the same ports; the node is configured by ``edge.minion_config``
with both (``master_type: failover``, ``master_alive_interval: 30``). Then
every packet between the node and A is dropped while A keeps running: no
reset, no refused connection, the minion's connection to A stays
``ESTABLISHED`` until TCP keep-alive gives up on it (60 s + 5 x 15 s with
the enforced settings), then the next ``master_alive_interval`` check sees
no connection and the minion signs in to B. The node must answer through B
within :data:`FAILOVER_BOUND_S`.
"""

import pathlib
import shutil
import time

import pytest
from tests.daemons import answers_ping, share_pki
from tests.field import conftest as _fc

from adversarial.conftest import start_master
from saltext_edge import settings

pytestmark = pytest.mark.slow

SITE = "fo-1"
# the enforced settings: keep-alive gives up after idle + cnt x intvl, then
# the next master_alive_interval check sees no connection and fails over
_S = {**settings.RECOMMENDED, **settings.RECOMMENDED_CORE}
KEEPALIVE_GIVES_UP_S = (
    _S["tcp_keepalive_idle"] + _S["tcp_keepalive_cnt"] * _S["tcp_keepalive_intvl"]
)
#: the bound stated in docs/howto/field-lab.rst for a black-holed master
FAILOVER_BOUND_S = KEEPALIVE_GIVES_UP_S + 2 * _S["master_alive_interval"] + 30


@pytest.fixture(scope="module")
def master_b(lab, salt_factories, lab_master):
    conf = _fc.lab_master_config(lab.master_b)
    conf.update(
        publish_port=lab_master.config["publish_port"], ret_port=lab_master.config["ret_port"]
    )
    factory = start_master(salt_factories, "lab-master-b-", conf)
    share_pki(factory, lab_master)
    # Salt 3008 names the master key pair after the master's id
    # (<id>.pem): on a shared key store, B must find A's pair under its own
    # id or it makes a new one, and minions refuse it ("the master key has
    # changed")
    pki = pathlib.Path(lab_master.config["pki_dir"])
    for ext in ("pem", "pub"):
        shutil.copy2(pki / f"{lab_master.id}.{ext}", pki / f"{factory.id}.{ext}")
    with factory.started(start_timeout=120):
        yield factory


def test_failover_from_a_blackholed_master(lab, lab_master, master_b, lab_node):
    node = lab_node(SITE, masters=[lab.master_a, lab.master_b], prefix="lab-fo-")
    with node.started(start_timeout=120):
        assert answers_ping(lab_master, node.id, within=60)
        cut = time.monotonic()
        lab.blackhole(node.netns, to=lab.master_a)
        reached = answers_ping(master_b, node.id, within=FAILOVER_BOUND_S + 30, each=5)
        took = time.monotonic() - cut
        shutil.copy(
            pathlib.Path(node.config["root_dir"]) / "logs" / "minion.log",
            "/tmp/fieldlab-fo3-minion.log",
        )
        shutil.copy(
            pathlib.Path(master_b.config["root_dir"]) / "logs" / "master.log",
            "/tmp/fieldlab-fo3-master.log",
        )
        print(f"field-lab: master A black-holed -> node answers through B after {took:.0f} s")
        assert reached, f"no answer through master B within {FAILOVER_BOUND_S + 30} s"
        assert took <= FAILOVER_BOUND_S, (took, FAILOVER_BOUND_S)
