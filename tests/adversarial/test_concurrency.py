"""
Concurrency against real masters and the real key store:

* two ``salt-run edge.accept_pending`` at once;
* the reactor (auto_admit) admitting while an operator runs ``accept_pending``;
* two masters sharing one key store (multi-master with a shared ``pki_dir``,
  as with the seed's ReadWriteMany volume), both running ``accept_pending``
  and both reactors admitting at the same time.

Every valid key is accepted exactly once (one accept, one ``salt/key`` accept
event, one ``accepted`` in the runs' returns), refused and token-less keys
stay pending, no run errors, and no key is lost or swapped.
"""

import os
import pathlib
import re
import subprocess
import threading
import time

import pytest
import salt.utils.event
from tests.daemons import share_pki
from tests.support.waits import wait_until

from saltext_edge import admission

from .conftest import (
    REVOKED_SITE,
    ROTATED_OUT,
    SECRET,
    SITE,
    BusRecorder,
    edge_conf,
    fake_auth,
    key_states,
    make_token,
    master_opts,
    per_minion,
    place_pending,
    reactor_sls,
    salt_run_argv,
    start_master,
)

pytestmark = pytest.mark.slow

N_VALID = 100
N_BAD = 10
N_NONE = 5
# fewer keys where the reactor decides (each event is fired from the test)
REACTOR_SCALE = 0.4


def _populate(opts_list, prefix, key_pool, record=True, scale=1.0):
    """Pending keys under ``prefix``: valid, bad (rotated-out secret), no token."""
    expected = {}
    n_valid, n_bad, n_none = (max(1, int(n * scale)) for n in (N_VALID, N_BAD, N_NONE))
    for i in range(n_valid + n_bad + n_none):
        pub = key_pool[i % len(key_pool)][1]
        if i < n_valid:
            mid, tok, want = f"{prefix}ok-{i:04d}", None, "accepted"
            tok = make_token(SECRET, SITE, mid, pub)
        elif i < n_valid + n_bad:
            mid, want = f"{prefix}bad-{i:04d}", "refused"
            tok = make_token(ROTATED_OUT, SITE, mid, pub)
        else:
            mid, tok, want = f"{prefix}none-{i:04d}", None, "no_token"
        if record and tok is not None:
            for opts in opts_list:
                assert admission.record(opts, mid, pub, tok)["recorded"]
        place_pending(opts_list[0], mid, pub)
        expected[mid] = (want, pub, tok)
    return expected


def _popen_run(master, *args):
    env = dict(os.environ)
    env.pop("SALT_SHARED_SECRET", None)
    return subprocess.Popen(
        salt_run_argv(master, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _finish(procs, timeout=240):
    import json

    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        data = None
        try:
            data = json.loads(out)
        except ValueError:
            pass
        results.append((proc.returncode, data, out, err))
    return results


def _accept_events(recorders, prefix):
    counts = {}
    for rec in recorders:
        for _tag, data in rec.tagged("salt/key"):
            if (
                isinstance(data, dict)
                and data.get("act") == "accept"
                and str(data.get("id", "")).startswith(prefix)
            ):
                counts[data["id"]] = counts.get(data["id"], 0) + 1
    return counts


def _check_outcome(opts, expected, results, recorders, prefix):
    for rc, _data, out, err in results:
        assert rc == 0, (out[-1500:], err[-1500:])
        assert "Traceback" not in out + err
    states = key_states(opts)
    lost = [mid for mid in expected if mid not in states]
    assert not lost, f"keys lost: {lost[:10]}"
    for mid, (want, pub, _tok) in expected.items():
        state, stored = states[mid]
        assert stored.strip() == pub.strip(), f"{mid}: key swapped"
        assert state == ("accepted" if want == "accepted" else "pending"), (mid, state)
    # exactly once: one run reports the acceptance, Salt's accept event fires once
    reported = {}
    for _rc, data, _out, _err in results:
        for mid, entry in per_minion(data).items():
            if mid.startswith(prefix) and entry.get("action") == "accepted":
                reported[mid] = reported.get(mid, 0) + 1
    twice = {m: n for m, n in reported.items() if n > 1}
    assert not twice, (
        f"{len(twice)} keys reported accepted by more than one run, e.g. {sorted(twice)[:5]}"
    )
    events = _accept_events(recorders, prefix)
    twice = {m: n for m, n in events.items() if n > 1}
    assert not twice, (
        f"{len(twice)} keys got more than one salt/key accept event, e.g. {sorted(twice)[:5]}"
    )
    valid = {m for m, e in expected.items() if e[0] == "accepted"}
    assert set(events) == valid


def test_two_accept_pending_runs_at_once(adv_master, adv_opts, key_pool):
    prefix = "cc2-"
    expected = _populate([adv_opts], prefix, key_pool)
    bus = BusRecorder(adv_opts).start()
    start = time.monotonic()
    procs = [_popen_run(adv_master, "edge.accept_pending", f"match={prefix}*") for _ in range(2)]
    results = _finish(procs)
    elapsed = time.monotonic() - start
    time.sleep(1)
    bus.stop()
    _check_outcome(adv_opts, expected, results, [bus], prefix)
    assert elapsed < 120


def test_reactor_and_operator_at_once(adv_master, adv_opts, key_pool):
    """
    Tokens arrive only through real ``salt/auth`` events handled by the
    master's reactor (auto_admit); meanwhile the operator runs accept_pending
    over and over. The valid ones end up accepted exactly once.
    """
    prefix = "ccr-"
    expected = _populate([adv_opts], prefix, key_pool, record=False, scale=REACTOR_SCALE)
    bus = BusRecorder(adv_opts).start()
    log_file = pathlib.Path(adv_master.config["log_file"])
    log_offset = log_file.stat().st_size

    def fire():
        for mid, (_want, pub, tok) in expected.items():
            if tok is not None:
                fake_auth(adv_opts, mid, pub, tok)

    firing = threading.Thread(target=fire)
    firing.start()
    results = []
    while firing.is_alive() or len(results) < 2:
        results.extend(_finish([_popen_run(adv_master, "edge.accept_pending", f"match={prefix}*")]))
    firing.join()
    valid = [m for m, e in expected.items() if e[0] == "accepted"]
    done = wait_until(
        lambda: all(key_states(adv_opts)[m][0] == "accepted" for m in valid), timeout=120
    )
    assert done, "the reactor did not admit every valid key"
    # refused keys were decided (by the reactor) and stay pending
    time.sleep(1)
    bus.stop()
    _check_outcome(adv_opts, expected, results, [bus], prefix)
    new_log = log_file.read_bytes()[log_offset:].decode(errors="replace")
    ours = [
        ln
        for ln in new_log.splitlines()
        if "saltext_edge" in ln and ("[ERROR" in ln or "Traceback" in ln)
    ]
    assert not ours, ours[:5]
    assert "Traceback" not in new_log, new_log[new_log.find("Traceback") - 500 :][:3000]


def test_reactor_decides_a_burst_in_batches(adv_master, adv_opts, key_pool):
    """
    A burst of ``salt/auth`` events (an auth storm) is decided in a few
    batches, not one decision per event, and each valid key is still accepted
    exactly once while refused and token-less keys stay pending.
    """
    prefix = "ccb-"
    expected = _populate([adv_opts], prefix, key_pool, record=False)
    with_token = [m for m, e in expected.items() if e[2] is not None]
    bus = BusRecorder(adv_opts).start()
    log_file = pathlib.Path(adv_master.config["log_file"])
    log_offset = log_file.stat().st_size
    # one connection, as the master's own auth handlers fire in a storm
    with salt.utils.event.get_master_event(adv_opts, adv_opts["sock_dir"], listen=False) as event:
        for mid in with_token:
            _want, pub, tok = expected[mid]
            fake_auth(adv_opts, mid, pub, tok, event=event)
    valid = [m for m, e in expected.items() if e[0] == "accepted"]
    done = wait_until(
        lambda: all(key_states(adv_opts)[m][0] == "accepted" for m in valid), timeout=120
    )
    assert done, "the reactor did not admit every valid key"
    refused = [m for m, e in expected.items() if e[0] == "refused"]
    assert wait_until(
        lambda: all(
            admission.list_decisions(adv_opts).get(m, {}).get("decision") == "refused"
            for m in refused
        ),
        timeout=60,
    ), "the refused keys were not decided"
    bus.stop()
    _check_outcome(adv_opts, expected, [], [bus], prefix)
    new_log = log_file.read_bytes()[log_offset:].decode(errors="replace")
    sizes = [
        int(n)
        for n in re.findall(r"deciding (\d+) pending minion\(s\) queued by the reactor", new_log)
    ]
    assert sum(sizes) >= len(with_token), sizes
    # batched: far fewer decisions than events (100+ events, 0.1 s window)
    assert len(sizes) <= len(with_token) // 4, sizes


@pytest.fixture(scope="module")
def twin_master(salt_factories, adv_master):
    """A second master on the same key store (shared pki_dir), its own cache."""
    factory = start_master(
        salt_factories,
        "adv-twin-",
        overrides={
            "reactor": [{"salt/auth": [str(reactor_sls())]}],
            "edge": edge_conf(auto_admit=True, revoked_sites=[REVOKED_SITE]),
        },
    )
    share_pki(factory, adv_master)
    with factory.started():
        yield factory


def test_two_masters_shared_store_accept_pending(adv_master, adv_opts, twin_master, key_pool):
    twin_opts = master_opts(twin_master)
    assert os.path.realpath(twin_opts["pki_dir"]) == os.path.realpath(adv_opts["pki_dir"])
    prefix = "cct-"
    # in multi-master every master sees the minion's auth: both recorded the token
    expected = _populate([adv_opts, twin_opts], prefix, key_pool)
    buses = [BusRecorder(adv_opts).start(), BusRecorder(twin_opts).start()]
    procs = [
        _popen_run(adv_master, "edge.accept_pending", f"match={prefix}*"),
        _popen_run(twin_master, "edge.accept_pending", f"match={prefix}*"),
    ]
    results = _finish(procs)
    time.sleep(1)
    for bus in buses:
        bus.stop()
    _check_outcome(adv_opts, expected, results, buses, prefix)


def test_two_masters_shared_store_reactors(adv_master, adv_opts, twin_master, key_pool):
    """Both masters' reactors get every minion's auth event at once (multi-master)."""
    twin_opts = master_opts(twin_master)
    prefix = "ccx-"
    expected = _populate([adv_opts], prefix, key_pool, record=False, scale=REACTOR_SCALE)
    buses = [BusRecorder(adv_opts).start(), BusRecorder(twin_opts).start()]

    def fire(opts):
        for mid, (_want, pub, tok) in expected.items():
            if tok is not None:
                fake_auth(opts, mid, pub, tok)

    threads = [threading.Thread(target=fire, args=(o,)) for o in (adv_opts, twin_opts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    valid = [m for m, e in expected.items() if e[0] == "accepted"]
    done = wait_until(
        lambda: all(key_states(adv_opts)[m][0] == "accepted" for m in valid), timeout=120
    )
    assert done, "the reactors did not admit every valid key"
    time.sleep(2)
    for bus in buses:
        bus.stop()
    _check_outcome(adv_opts, expected, [], buses, prefix)
