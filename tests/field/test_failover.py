"""
Field lab, scenario 8 (docs/howto/field-lab.rst): failover away from a
black-holed master. Masters A (198.18.K.1) and B (198.18.K.3) share one key
store (the master key pair and the accepted minion keys, as a shared volume
gives them) and the same ports; the node is configured by
``edge.minion_config`` with both (``master_type: failover``). Then every
packet between the node and A is dropped while A keeps running: no reset, no
refused connection. The minion's publish connection to A stays
``ESTABLISHED`` until TCP keep-alive gives up on it, the next
``master_alive_interval`` check (``status.master``) sees no connection and
the minion signs in to B. The node must answer a job through B within
:data:`FAILOVER_BOUND_S`, the bound ``edge.minion_config`` documents.
"""

import pathlib
import shutil
import time

import pytest
from tests.daemons import answers_ping, share_pki
from tests.field import conftest as _fc
from tests.support.events import wait_event

from adversarial.conftest import start_master
from saltext_edge import settings

pytestmark = pytest.mark.slow

SITE = "fo-1"
#: the bound ``edge.minion_config`` documents for a black-holed master, at
#: the settings it writes (docs/howto/keep-settings.rst)
FAILOVER_BOUND_S = settings.failover_bound()


@pytest.fixture(scope="module")
def master_b(lab, salt_factories, lab_master):
    """Master B on 198.18.K.3: A's ports, A's key store, A's master key pair."""
    conf = _fc.lab_master_config(lab.master_b)
    conf.update(
        publish_port=lab_master.config["publish_port"], ret_port=lab_master.config["ret_port"]
    )
    factory = start_master(salt_factories, "lab-master-b-", conf)
    share_pki(factory, lab_master)
    # Salt 3008 names a master's key pair after its id (salt/crypt.py,
    # MasterKeys: <pki_dir>/<id>.pem and .pub, master.pem a link to them):
    # B must find A's pair under its own id, or it makes one of its own and
    # minions refuse it ("the master key has changed")
    pki = pathlib.Path(lab_master.config["pki_dir"])
    for ext in ("pem", "pub"):
        shutil.copy2(pki / f"{lab_master.id}.{ext}", pki / f"{factory.id}.{ext}")
    with factory.started(start_timeout=120):
        yield factory


def test_failover_from_a_blackholed_master(lab, lab_master, master_b, lab_node, event_listener):
    node = lab_node(
        SITE, masters=[lab.master_a, lab.master_b], prefix="lab-fo-", forward_to=lab.master_b
    )
    with node.started(start_timeout=120):
        assert answers_ping(lab_master, node.id, within=60)
        cut = time.time()
        lab.blackhole(node.netns, to=lab.master_a)
        try:
            start = wait_event(
                event_listener,
                master_b,
                f"salt/minion/{node.id}/start",
                cut,
                FAILOVER_BOUND_S + 60,
            )
            figures = _fc.first_answers(
                master_b, event_listener, {"enforced": node}, cut, FAILOVER_BOUND_S + 60
            )
        finally:
            lab.clear(node.netns)
    signed_in = start.stamp.timestamp() - cut
    print(
        f"field-lab: master A black-holed -> signed in to B after {signed_in:.1f} s, "
        f"first job answered through B after {figures['enforced']} s "
        f"(bound {FAILOVER_BOUND_S:.0f} s)"
    )
    assert figures["enforced"] is not None, (signed_in, figures)
    assert figures["enforced"] <= FAILOVER_BOUND_S, (signed_in, figures)
