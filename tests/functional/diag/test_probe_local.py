"""saltext_edge.uplink.probe against local listeners: classification and time budget."""

import time

import pytest
from edge_servers import ZmtpListener

from saltext_edge.uplink import probe

# On a shared, loaded 2-core box one loopback sample can take tens of ms, which
# with 2-3 samples reads as jitter; "good" assertions allow for that. Delay-based
# verdicts (fair / poor) use the default thresholds.
LOADED_BOX = {"good": {"jitter_ms": 100}, "fair": {"jitter_ms": 200}}


def _one(ret):
    assert len(ret["targets"]) == 1
    return ret["targets"][0]


def test_immediate_greeting_is_good(zmtp_fast):
    ret = probe.probe([zmtp_fast.target], count=3, timeout=1, budget=3, thresholds=LOADED_BOX)
    assert ret["quality"] == "good", ret
    t = _one(ret)
    assert t["received"] == 3 and t["loss_pct"] == 0.0
    assert ret["rtt_ms"] < 50
    assert ret["target"] == zmtp_fast.target
    assert ret["checked_at"].endswith("Z")


def test_delayed_greeting_is_fair(zmtp_slow):
    ret = probe.probe([zmtp_slow.target], count=3, timeout=1, budget=3)
    assert ret["quality"] == "fair", ret
    assert 140 <= ret["rtt_ms"] < 300


def test_very_delayed_greeting_is_poor(zmtp_very_slow):
    ret = probe.probe([zmtp_very_slow.target], count=2, timeout=1, budget=3)
    assert ret["quality"] == "poor", ret
    assert ret["rtt_ms"] >= 400


def test_thresholds_change_the_verdict(zmtp_slow):
    ret = probe.probe(
        [zmtp_slow.target],
        count=2,
        timeout=1,
        budget=3,
        # the same listener is "fair" with the default thresholds (above);
        # wide margins, so that a loaded box's scheduling delay cannot decide
        thresholds={
            "good": {"rtt_ms": 2000, "jitter_ms": 1000},
            "fair": {"rtt_ms": 4000, "jitter_ms": 2000},
        },
    )
    assert ret["quality"] == "good", ret


def test_closed_port_is_down_fast(closed):
    started = time.perf_counter()
    ret = probe.probe([f"127.0.0.1:{closed}"], count=3, timeout=1, budget=2)
    assert time.perf_counter() - started < 0.5
    assert ret["quality"] == "down"
    assert _one(ret)["errors"] == {"refused": 3}


@pytest.mark.parametrize("budget", [0.5, 2.0])
def test_black_hole_is_down_within_budget(black_hole, budget):
    started = time.perf_counter()
    ret = probe.probe([black_hole.target], count=3, timeout=5, budget=budget)
    elapsed = time.perf_counter() - started
    assert ret["quality"] == "down", ret
    assert elapsed < budget + 0.2, elapsed
    assert set(_one(ret)["errors"]) <= {"timeout", "budget"}


def test_silent_acceptor_is_down_not_good(silent):
    # a load balancer / NAT answering the handshake with nothing behind it
    ret = probe.probe([silent.target], count=2, timeout=0.3, budget=1)
    assert ret["quality"] == "down"
    # ... whereas a bare connect would call it good: that is why we wait for the greeting
    ret = probe.probe(
        [silent.target], count=2, timeout=0.3, budget=1, mode="connect", thresholds=LOADED_BOX
    )
    assert ret["quality"] == "good"


def test_unresolvable_name_is_down_with_dns_error():
    started = time.perf_counter()
    ret = probe.probe(["nonexistent.invalid:4506"], count=2, timeout=1, budget=2)
    assert time.perf_counter() - started < 0.5
    assert ret["quality"] == "down"
    assert _one(ret)["errors"] == {"dns": 2}


def test_all_in_parallel_within_budget(zmtp_fast, zmtp_slow, black_hole, silent, closed):
    targets = [
        zmtp_fast.target,
        zmtp_slow.target,
        black_hole.target,
        silent.target,
        f"127.0.0.1:{closed}",
        "nonexistent.invalid:1",
    ]
    started = time.perf_counter()
    ret = probe.probe(targets, count=3, timeout=1, budget=1.5, thresholds=LOADED_BOX)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5 + 0.2, elapsed
    q = {t["target"]: t["quality"] for t in ret["targets"]}
    assert q[zmtp_fast.target] == "good"
    assert q[zmtp_slow.target] == "fair"
    assert q[black_hole.target] == "down"
    assert q[silent.target] == "down"
    assert q[f"127.0.0.1:{closed}"] == "down"
    assert q["nonexistent.invalid:1"] == "down"
    # one host (127.0.0.1) whose worst port is down; the .invalid host is down too
    assert ret["quality"] == "down"


def test_failover_verdict_is_best_master(black_hole):
    # two "masters": 127.0.0.1 black-holed, ::1 healthy -> good overall,
    # because a failover minion needs only one master
    healthy = ZmtpListener(0.0, host="::1")
    try:
        ret = probe.probe(
            [black_hole.target, healthy.target],
            count=2,
            timeout=1,
            budget=1.5,
            thresholds=LOADED_BOX,
        )
    finally:
        healthy.close()
    assert ret["quality"] == "good"
    assert ret["target"] == f"[::1]:{healthy.port}"
