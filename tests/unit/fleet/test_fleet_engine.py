"""
The fleet engine's state machine against Salt's real ``localfs`` cache in a
temporary directory, on a simulated clock: transitions fire once, the record
survives an engine restart without false transitions, two engines sharing a
cache merge their records; the minion's measurement file.
"""

import os

import pytest
import salt.cache
import salt.config
from tests.support.keys import key_file

from saltext_edge.fleet import engine as fengine
from saltext_edge.fleet import evidence, signing, store
from saltext_edge.uplink import heartbeat, measure

T0 = 1_800_000_000.0


@pytest.fixture
def opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        id="m1",
        edge={"fleet": {"interval": 2, "flush_interval": 1, "grace": 10}},
    )
    return opts


@pytest.fixture
def keys(tmp_path):
    out = {}
    for mid in ("n1", "n2"):
        path, pub = key_file(tmp_path, mid)
        out[mid] = (signing.Signer(path), pub)
    return out


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def _engine(opts, keys, clock, fired, master="m1"):
    return fengine.FleetEngine(
        dict(opts, id=master),
        store=store.Store(opts, cache=salt.cache.factory(opts)),
        keyring=signing.KeyRing(opts, fetch=lambda mid: keys.get(mid, (None, None))[1]),
        fire=lambda tag, data: fired.append((tag, data)),
        clock=clock,
        index_fn=lambda o: {},
        keys_fn=lambda o: list(keys),
    )


def _beat(keys, mid, seq, clock):
    payload = heartbeat.payload(
        {"id": mid, "edge": {"site": "sh-1"}},
        {"quality": "good", "rtt_ms": 5.0, "jitter_ms": 0.5, "loss_pct": 0.0, "checked_at": None},
        seq,
        "boot-1",
        2.0,
        0.1,
        now=clock.now,
    )
    return {
        "id": mid,
        "tag": "edge/heartbeat",
        "data": keys[mid][0].sign(payload),
        "cmd": "_minion_event",
    }


def _run(eng, clock, seconds, beats=(), keys=None, seq=None):
    for _ in range(int(seconds)):
        clock.now += 1
        for mid in beats:
            seq[mid] += 1
            eng.handle("edge/heartbeat", _beat(keys, mid, seq[mid], clock))
        eng.tick()


def test_offline_once_then_restart_without_storm(opts, keys):
    clock, fired, seq = Clock(), [], {"n1": 0, "n2": 0}
    eng = _engine(opts, keys, clock, fired)
    # grace = 5 * 2 s: nothing fires during it
    _run(eng, clock, 12, beats=("n1", "n2"), keys=keys, seq=seq)
    assert fired == []
    # n2 dies: offline after 5 * 2 + (0.2 + 2 + 1) s, once
    _run(eng, clock, 30, beats=("n1",), keys=keys, seq=seq)
    tags = [t for t, _ in fired]
    assert tags.count("edge/node/n2/offline") == 1, tags
    assert "edge/node/n1/offline" not in tags
    off = dict(fired)["edge/node/n2/offline"]
    assert off["last_seen"].endswith("Z") and off["last_seen_kind"] == "heartbeat"
    eng.flush()

    # the master is down for 60 s, then a new engine starts on the same record
    clock.now += 60
    fired2 = []
    eng2 = _engine(opts, keys, clock, fired2)
    assert eng2.records["n2"]["alerted"] == "offline"
    _run(eng2, clock, 40, beats=("n1",), keys=keys, seq=seq)
    assert fired2 == [], fired2  # n1 kept beating, n2 was already reported offline
    # n2 comes back: online, once
    _run(eng2, clock, 5, beats=("n1", "n2"), keys=keys, seq=seq)
    assert [t for t, _ in fired2].count("edge/node/n2/online") == 1


def test_two_engines_share_one_cache(opts, keys):
    clock, seq = Clock(), {"n1": 0, "n2": 0}
    one = _engine(opts, keys, clock, [], master="m1")
    two = _engine(opts, keys, clock, [], master="m2")
    for _ in range(3):
        clock.now += 1
        seq["n1"] += 1
        one.handle("edge/heartbeat", _beat(keys, "n1", seq["n1"], clock))
        seq["n2"] += 1
        two.handle("edge/heartbeat", _beat(keys, "n2", seq["n2"], clock))
        one.flush()
        two.flush()
    recs = store.Store(opts).load_all()
    assert recs["n1"]["seen_by"] == "m1" and recs["n2"]["seen_by"] == "m2"
    assert set(store.Store(opts).engines()) == {"m1", "m2"}
    # one node heard by both masters: the later sighting wins whatever the
    # order of the writes, the raw samples are the union
    clock.now += 1
    seq["n1"] += 1
    one.handle("edge/heartbeat", _beat(keys, "n1", seq["n1"], clock))
    clock.now += 1
    seq["n1"] += 1
    two.handle("edge/heartbeat", _beat(keys, "n1", seq["n1"], clock))
    two.flush()
    one.flush()
    rec = store.Store(opts).load("n1")
    assert rec["seen_by"] == "m2" and rec["last_seen"] == clock.now
    assert len(rec["samples"]) == 5


def test_snapshot_shape(opts, keys):
    clock, seq = Clock(), {"n1": 0, "n2": 0}
    eng = _engine(opts, keys, clock, [])
    _run(eng, clock, 2, beats=("n1",), keys=keys, seq=seq)
    snap = eng.refresh_snapshot()
    assert set(snap) == {"nodes", "engine", "admissions"}
    assert snap["nodes"]["n1"]["status"] == "online"
    assert snap["nodes"]["n1"]["uplink"] == {
        "quality": "good",
        "rtt_ms": 5.0,
        "jitter_ms": 0.5,
        "loss_pct": 0.0,
    }
    assert snap["nodes"]["n2"]["status"] == "never_seen"
    assert set(snap["engine"]) == {
        "events_seen",
        "lag_seconds",
        "store_errors",
        "started_at",
        "heartbeats_refused",
    }
    assert snap["nodes"]["n1"]["clock_offset_s"] is not None


def test_measurement_file_fresh_then_stale(tmp_path):
    opts = {"cachedir": str(tmp_path), "edge": {"uplink": {"ttl": 30}}}
    assert measure.load_fresh(opts) is None
    uplink = {
        "quality": "fair",
        "rtt_ms": 150.0,
        "jitter_ms": 3.0,
        "loss_pct": 0.0,
        "target": "m:4506",
        "checked_at": "t",
    }
    assert measure.save(opts, uplink, now=T0)
    assert measure.load_fresh(opts, now=T0 + 29) == uplink
    assert measure.load_fresh(opts, now=T0 + 31) is None
    assert not [n for n in os.listdir(tmp_path / "edge") if n.startswith(".uplink-")]
    (tmp_path / "edge" / "uplink.json").write_text("{broken")
    assert measure.load_fresh(opts, now=T0) is None


def test_key_change_is_seen_at_once(opts, keys):
    clock, seq = Clock(), {"n1": 0, "n2": 0}
    current = dict(keys)
    eng = fengine.FleetEngine(
        opts,
        store=store.Store(opts, cache=salt.cache.factory(opts)),
        keyring=signing.KeyRing(opts, fetch=lambda mid: current.get(mid, (None, None))[1]),
        clock=clock,
        index_fn=lambda o: {},
        keys_fn=lambda o: list(current),
    )
    seq["n1"] += 1
    assert eng.handle("edge/heartbeat", _beat(keys, "n1", seq["n1"], clock)).trusted
    # the key of n1 is deleted (salt-key -d): its heartbeats no longer count
    del current["n1"]
    eng.handle("salt/key", {"id": "n1", "act": "delete", "result": True})
    seq["n1"] += 1
    refused = eng.handle("edge/heartbeat", _beat(keys, "n1", seq["n1"], clock))
    assert isinstance(refused, evidence.Refusal) and refused.reason == "unknown_key"
    assert eng.classifier.rejected == 1


def test_sealed_proof_is_a_sign_of_life_forged_is_not(opts, keys, tmp_path):
    from saltext_edge import eventauth
    from saltext_edge.fleet import proof

    opts = dict(opts, pki_dir=str(tmp_path / "pki"))
    clock, fired = Clock(), []
    eng = _engine(opts, keys, clock, fired)
    # what the runner fires for the ids that proved themselves (seal at real time)
    sealed = eventauth.seal(opts, proof.PROVEN_TAG, {"ids": ["n1"], "master": "m1"})
    forged = dict(sealed, ids=["n2"])
    assert eng.handle(proof.PROVEN_TAG, forged) is None
    assert eng.handle(proof.PROVEN_TAG, {"ids": ["n2"], "master": "m1"}) is None
    (ev,) = eng.handle(proof.PROVEN_TAG, sealed)
    assert (ev.kind, ev.id, ev.trusted) == ("proof", "n1", True)
    assert eng.records["n1"]["last_kind"] == "proof"
    assert "n2" not in eng.records
