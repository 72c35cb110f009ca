"""
Field lab, scenario 6 (docs/howto/field-lab.rst): a NAT that forgets idle
connections faster than anything refreshes them.

Salt 3008's master sends ZMTP heartbeats on the publish connection every
10 s (``zmq_heartbeat_ivl``): a NAT that keeps an idle entry longer than
that never forgets a Salt connection, whatever the minion's settings (the
lab's figure: both nodes answer at once after idling 30 s behind a 15 s
timeout). Here the NAT namespace's established-TCP conntrack timeout is
:data:`CT_TIMEOUT_S`, shorter than those heartbeats: the master's next one
finds no NAT entry, the NAT answers with a reset, the master drops the
subscriber, and the minion -- its side still ``ESTABLISHED`` -- hears no
job until its own TCP keep-alive probe meets the master's reset and it
reconnects. With the settings ``edge.minion_config`` writes
(``tcp_keepalive_idle: 20``) the node answers within
:data:`ANSWER_BOUND_S` of the idle time; the node on Salt's defaults
(``tcp_keepalive_idle: 300``) has not answered by then (the lab measured
about 290 s).
"""

import time

import pytest
from tests.daemons import answers_ping
from tests.field import conftest as _fc

from saltext_edge import settings

pytestmark = pytest.mark.slow

CT_TIMEOUT_S = 5
IDLE_S = 20
_S = settings.RECOMMENDED
#: a keep-alive probe after tcp_keepalive_idle, one interval of slack, and 10 s
ANSWER_BOUND_S = _S["tcp_keepalive_idle"] + _S["tcp_keepalive_intvl"] + 10


def test_nat_forgets_idle_connections(lab, lab_master, pair, event_listener):
    for factory in pair.values():
        assert answers_ping(lab_master, factory.id, within=60)
    before = lab.conntrack_timeout()
    try:
        assert lab.conntrack_timeout(CT_TIMEOUT_S) == CT_TIMEOUT_S
        # the idle time itself (no job, nothing to wait for)
        time.sleep(IDLE_S)
        asked = time.time()
        figures = _fc.first_answers(
            lab_master, event_listener, pair, asked, ANSWER_BOUND_S, need=["enforced"]
        )
    finally:
        lab.conntrack_timeout(before)
    print(f"field-lab: conntrack {CT_TIMEOUT_S} s, idle {IDLE_S} s -> first answer: {figures}")
    assert figures["enforced"] is not None, figures
    # Salt's defaults are still deaf then: the settings make the difference
    assert figures["default"] is None, figures
