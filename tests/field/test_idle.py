"""
Field lab, scenario 6 (docs/howto/field-lab.rst): a NAT that forgets idle
connections. The NAT namespace's established-TCP conntrack timeout is cut
to :data:`CT_TIMEOUT_S`; the nodes then get no job for :data:`IDLE_S` (their
heartbeats keep the return connection busy, the publish connection carries
only what the master sends on its own). Both the node with the enforced
settings and the one with Salt's defaults must answer a job within
:data:`ANSWER_BOUND_S` after the idle time: Salt 3008's master sends ZMTP
heartbeats on the publish connection every 10 s (``zmq_heartbeat_ivl``),
which refresh a NAT entry that lives longer than that, whatever the
minion's keep-alive settings.
"""

import time

import pytest
from tests.daemons import answers_ping
from tests.field import conftest as _fc

pytestmark = pytest.mark.slow

CT_TIMEOUT_S = 15
IDLE_S = 2 * CT_TIMEOUT_S
ANSWER_BOUND_S = 10


def test_nat_forgets_idle_connections(lab, lab_master, pair, event_listener):
    for factory in pair.values():
        assert answers_ping(lab_master, factory.id, within=60)
    before = lab.conntrack_timeout()
    try:
        assert lab.conntrack_timeout(CT_TIMEOUT_S) == CT_TIMEOUT_S
        # the idle time itself (no job, nothing to wait for)
        time.sleep(IDLE_S)
        asked = time.time()
        figures = _fc.first_answers(lab_master, event_listener, pair, asked, ANSWER_BOUND_S + 20)
    finally:
        lab.conntrack_timeout(before)
    print(f"field-lab: conntrack {CT_TIMEOUT_S} s, idle {IDLE_S} s -> first answer: {figures}")
    for name, seconds in figures.items():
        assert seconds is not None and seconds <= ANSWER_BOUND_S, (name, figures)
