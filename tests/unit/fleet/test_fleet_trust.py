"""
The fleet engine's input side (docs/ref/engine.rst, "Replay and clocks",
"Refused heartbeats", "Memory and log bounds"): the clock-free replay rule,
refusals counted by reason and noted on the node's record, rate-limited and
escaped log lines, and the bounds of every per-id structure. Real RSA keys,
Salt's real ``localfs`` cache, a simulated clock.
"""

import logging

import pytest
import salt.cache
import salt.config

from saltext_edge.fleet import conf as fconf
from saltext_edge.fleet import engine as fengine
from saltext_edge.fleet import evidence, record, signing, store
from saltext_edge.uplink import heartbeat

T0 = 1_800_000_000.0
UPLINK = {"quality": "good", "rtt_ms": 5.0, "jitter_ms": 0.5, "loss_pct": 0.0, "checked_at": None}


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def node_key(tmp_path_factory):
    """``(Signer, public PEM)`` of one RSA-2048 key pair, made by Salt's own code."""
    import salt.crypt

    priv, pub = salt.crypt.gen_keys(2048)
    path = tmp_path_factory.mktemp("keys") / "n1.pem"
    path.write_text(priv)
    return signing.Signer(str(path)), pub


@pytest.fixture
def opts(tmp_path):
    """Master options: Salt's defaults, a temporary cache, 2 s heartbeats, no grace."""
    fleet = {"interval": 2, "flush_interval": 1, "grace": 0}
    return dict(
        salt.config.master_config(None),
        cachedir=str(tmp_path / "cache"),
        id="m1",
        edge={"fleet": fleet},
    )


def _engine(opts, keys, clock, keyring=None):
    return fengine.FleetEngine(
        opts,
        store=store.Store(opts, cache=salt.cache.factory(opts)),
        keyring=keyring or signing.KeyRing(opts, fetch=keys.get),
        clock=clock,
        index_fn=lambda o: {},
        keys_fn=lambda o: list(keys),
    )


def _beat(signer, seq, boot="00112233aabbccdd:1", sent_at=T0, mid="n1"):
    payload = heartbeat.payload(
        {"id": mid, "edge": {"site": "sh-1"}}, UPLINK, seq, boot, 2.0, 0.1, now=sent_at
    )
    return {"id": mid, "data": signer.sign(payload), "cmd": "_minion_event"}


# --------------------------------------------------------------------------
# replay rule
# --------------------------------------------------------------------------
def test_replay_rule_orders_by_boot_number_then_seq():
    rec = record.new("n1", T0)
    p = {"boot": "00112233aabbccdd:5", "seq": 10, "sent_at": T0}
    assert not record.heartbeat(rec, p, T0)
    # the same heartbeat again, an older seq, an older boot: replays
    assert record.replayed(rec, p)
    assert record.replayed(rec, dict(p, seq=9))
    assert record.replayed(rec, dict(p, boot="00112233aabbccdd:4", seq=1000))
    # a later boot of the same generation starts again at seq 1
    assert not record.replayed(rec, dict(p, boot="00112233aabbccdd:6", seq=1))
    assert not record.replayed(rec, dict(p, seq=11))
    # a new generation (the node lost its state file) is taken
    assert not record.replayed(rec, dict(p, boot="ffffffffffffffff:1", seq=1))


def test_replay_generations_bounded_and_merged_by_max():
    rec = record.new("n1", T0)
    for i in range(record.MAX_GENERATIONS + 3):
        record.heartbeat(rec, {"boot": f"{i:016x}:1", "seq": 1, "sent_at": T0}, T0 + i)
    assert len(rec["boots"]) == record.MAX_GENERATIONS
    # the oldest generations were evicted (the documented limit), the newest kept
    assert not record.replayed(rec, {"boot": f"{0:016x}:1", "seq": 1})
    assert record.replayed(rec, {"boot": f"{record.MAX_GENERATIONS + 2:016x}:1", "seq": 1})
    other = record.new("n1", T0)
    record.heartbeat(other, {"boot": f"{10:016x}:3", "seq": 7, "sent_at": T0}, T0 + 50)
    merged = record.merge(rec, other)
    assert record.replayed(merged, {"boot": f"{10:016x}:3", "seq": 7})
    assert not record.replayed(merged, {"boot": f"{10:016x}:3", "seq": 8})
    assert len(merged["boots"]) == record.MAX_GENERATIONS


def test_record_from_before_the_rule_keeps_its_last_seq():
    rec = record.new("n1", T0)
    rec.update(boot="1234-1700000000", seq=40, last_seen=T0)
    del rec["boots"]
    assert record.replayed(rec, {"boot": "1234-1700000000", "seq": 40})
    assert not record.replayed(rec, {"boot": "1234-1700000000", "seq": 41})


def test_beacon_boot_number_grows_across_starts(tmp_path):
    opts = {"cachedir": str(tmp_path)}
    first, second = heartbeat.next_boot(opts), heartbeat.next_boot(opts)
    gen1, n1 = record.boot_key(first)
    gen2, n2 = record.boot_key(second)
    assert gen1 == gen2 and len(gen1) == 16 and n2 == n1 + 1
    # a lost or corrupt state file: a new generation
    (tmp_path / "edge" / heartbeat.BOOT_FILE).write_text("{junk")
    assert record.boot_key(heartbeat.next_boot(opts))[0] != gen1


# --------------------------------------------------------------------------
# the engine: wrong clocks, replays, refusals
# --------------------------------------------------------------------------
@pytest.mark.parametrize("skew", [-7200.0, 600.0, -T0])
def test_wrong_clock_online_with_offset_shown(opts, node_key, skew, caplog):
    signer, pub = node_key
    clock = Clock()
    eng = _engine(opts, {"n1": pub}, clock)
    with caplog.at_level(logging.WARNING):
        for seq in range(1, 4):
            clock.now += 2
            ev = eng.handle("edge/heartbeat", _beat(signer, seq, sent_at=clock.now + skew))
            assert isinstance(ev, evidence.Evidence) and ev.trusted
        eng.tick()
    rec = eng.records["n1"]
    assert rec["status"] == "online"
    assert rec["clock_offset_s"] == pytest.approx(-skew, abs=0.01)
    assert eng.refresh_snapshot()["nodes"]["n1"]["clock_offset_s"] == pytest.approx(-skew, abs=0.01)
    warned = [r for r in caplog.records if "clock of 'n1'" in r.getMessage()]
    assert len(warned) == (1 if abs(skew) > 300 else 0)


def test_replayed_heartbeat_refused_counted_and_noted(opts, node_key, caplog):
    signer, pub = node_key
    clock = Clock()
    eng = _engine(opts, {"n1": pub}, clock)
    captured = _beat(signer, 5)
    assert eng.handle("edge/heartbeat", captured).trusted
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            clock.now += 60
            ref = eng.handle("edge/heartbeat", captured)
            assert isinstance(ref, evidence.Refusal) and ref.reason == "replay"
    assert eng.classifier.refused["replay"] == 20
    rec = eng.records["n1"]
    assert rec["last_seen"] == T0 and rec["refusal"]["reason"] == "replay"
    # once per node per reason per hour
    assert len([r for r in caplog.records if "refused: replay" in r.getMessage()]) == 1
    eng.flush()
    stored = store.Store(opts).load("n1")
    assert stored["refusal"]["reason"] == "replay"
    assert store.Store(opts).meta("engine.m1")["refused_heartbeats"]["replay"] == 20


def test_refusals_by_reason(opts, node_key):
    signer, pub = node_key
    clock = Clock()
    eng = _engine(opts, {"n1": pub}, clock)
    good = _beat(signer, 1)
    cases = [
        ({"id": "n1", "data": dict(good["data"], seq=2)}, "bad_signature"),
        ({"id": "x", "data": dict(good["data"], id="ghost")}, "unknown_key"),
        ({"data": dict(good["data"], id="a\nb")}, "bad_id"),
        ({"data": dict(good["data"], id="x" * 900_000)}, "bad_id"),
        ({"data": dict(good["data"], id=None)}, "bad_id"),
        ({"data": {k: v for k, v in good["data"].items() if k != "seq"}}, "malformed"),
        ({"data": dict(good["data"], boot="b" * 65)}, "malformed"),
        ({"data": dict(good["data"], sent_at=float("nan"))}, "malformed"),
        ({"_oversize": 900_000}, "oversize"),
    ]
    for data, reason in cases:
        ref = eng.handle("edge/heartbeat", data)
        assert isinstance(ref, evidence.Refusal) and ref.reason == reason, (reason, ref)
    assert eng.classifier.refused == {
        "oversize": 1,
        "malformed": 3,
        "bad_id": 3,
        "unknown_key": 1,
        "bad_signature": 1,
        "replay": 0,
    }
    # only the accepted node got a record (never_seen, with its last refusal)
    assert set(eng.records) == {"n1"}
    assert eng.records["n1"]["status"] == "never_seen"
    assert eng.records["n1"]["refusal"]["reason"] == "malformed"
    assert eng.refresh_snapshot()["engine"]["heartbeats_refused"]["bad_id"] == 3


def test_flood_of_unknown_ids_is_bounded_in_log_and_memory(opts, node_key, caplog):
    signer, pub = node_key
    clock = Clock()
    ring = signing.KeyRing(opts, fetch={"n1": pub}.get)
    eng = _engine(opts, {"n1": pub}, clock, keyring=ring)
    good = _beat(signer, 1)["data"]
    with caplog.at_level(logging.WARNING):
        for i in range(5000):
            if i % 500 == 0:
                clock.now += 61
            eng.handle("edge/heartbeat", {"data": dict(good, id=f"ghost-{i}\nINJECTED x")})
            eng.handle("edge/heartbeat", {"data": dict(good, id=f"ghost-{i}-" + "y" * 240)})
    lines = [r.getMessage() for r in caplog.records]
    # 10 minutes of flood: at most LOG_UNKNOWN_PER_MIN lines a minute, plus one summary each
    assert len(lines) <= 10 * (fengine.LOG_UNKNOWN_PER_MIN + 1) + fengine.LOG_UNKNOWN_PER_MIN
    assert not any("\n" in line for line in lines)
    assert all(len(line) < 400 for line in lines)
    assert any("not logged one by one" in line for line in lines)
    assert ring.sizes()[1] <= signing.MAX_ABSENT and ring.sizes()[0] == 0
    assert set(eng.records) == set()


def test_keyring_bounded_in_entries_and_age(node_key):
    _, pub = node_key
    clock = Clock()
    reads = []

    def fetch(mid):
        reads.append(mid)
        return pub if mid.startswith("n") else None

    ring = signing.KeyRing({}, fetch=fetch, clock=clock, max_keys=50, max_absent=20)
    for i in range(200):
        ring.get(f"n{i}")
        ring.get(f"ghost{i}")
    assert ring.sizes() == (50, 20)
    # answers are cached: a second ask within the TTL reads nothing
    count = len(reads)
    ring.get("n199")
    ring.get("ghost199")
    assert len(reads) == count
    # an absence is remembered briefly, a key at most KEY_TTL
    clock.now += signing.ABSENT_TTL + 1
    ring.get("ghost199")
    assert len(reads) == count + 1
    clock.now += signing.KEY_TTL
    ring.get("n0")
    assert ring.sizes()[0] == 1


@pytest.mark.parametrize("trust", [False, True])
def test_claims_make_records_only_of_accepted_keys(opts, node_key, trust):
    _, pub = node_key
    opts["edge"]["fleet"]["trust_unsigned"] = trust
    eng = _engine(opts, {"n1": pub}, Clock())
    ev = eng.handle("salt/job/20260101000000000001/ret/n1", {"id": "n1", "return": True})
    assert ev.trusted is trust
    for i in range(100):
        assert eng.handle("minion_start", {"id": f"forged-{i}"}) is None
    assert set(eng.records) == {"n1"}
    rec = eng.records["n1"]
    # an answered job is shown, but only trust_unsigned makes it a sign of life
    assert (rec["last_kind"] == "job_return") is trust
    assert (rec["claim"] is not None) is not trust


def test_nothing_kept_per_job(opts, node_key):
    """A fleet-wide job (new + a return from every target) leaves no trace in the engine."""
    import tracemalloc

    _, pub = node_key
    clock = Clock()
    ids = [f"n{i}" for i in range(2000)]
    eng = _engine(opts, {"n1": pub}, clock)

    def job(jid):
        eng.handle(f"salt/job/{jid}/new", {"jid": jid, "minions": ids, "fun": "test.ping"})
        for mid in ids:
            eng.handle(f"salt/job/{jid}/ret/{mid}", {"id": mid, "jid": jid, "return": True})

    tracemalloc.start()
    try:
        # warm up: the key ring's bounded cache of absent ids fills and churns
        for n in range(1, 4):
            job(f"202601010000000000{n:02d}")
        before = tracemalloc.get_traced_memory()[0]
        for n in range(4, 34):
            job(f"202601010000000000{n:02d}")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 30 * 1024, f"{grown} bytes for 30 jobs"


def test_inbox_bounded_in_bytes():
    inbox = fengine.Inbox(max_bytes=10_000, max_event=1_000)
    # nothing is read of a job but its returns
    assert not inbox.offer("salt/job/1/new", 10, ("x", {}))
    assert not inbox.offer("some/other/tag", 10, ("x", {}))
    assert inbox.skipped == 2
    assert not inbox.offer("edge/heartbeat", 5_000, ("x", {}))
    for _ in range(10):
        assert inbox.offer("edge/heartbeat", 1_000, ("edge/heartbeat", {}))
    assert not inbox.offer("edge/heartbeat", 1_000, ("edge/heartbeat", {}))
    assert inbox.dropped == 1 and inbox.bytes == 10_000
    inbox.get(timeout=0.1)
    assert inbox.bytes == 9_000
    # the engine's own requests (saltext_edge.fleet.live) count nothing
    inbox.put(("request", None))
    for _ in range(9):
        inbox.get(timeout=0.1)
    assert inbox.get(timeout=0.1) == ("request", None) and inbox.bytes == 0
    assert fengine.peek_tag(b"edge/heartbeat\n\n\x81\xa1a\x01") == "edge/heartbeat"


def test_valid_id_and_shown():
    assert evidence.valid_id("node-1.example") and evidence.valid_id("ノード")
    for bad in ("", ".", "..", "a/b", "a\\b", "a\nb", "a\rb", "a\x00b", "a\u2028b", "x" * 256, 7):
        assert not evidence.valid_id(bad), bad
    assert signing.shown("a\nINJECTED") == "'a\\nINJECTED'"
    assert len(signing.shown("x" * 900_000)) < 100


def test_clock_warn_setting_and_its_old_name():
    assert fconf.parse({})["clock_warn"] == 300.0
    assert fconf.parse({"fleet": {"max_skew": 60}})["clock_warn"] == 60.0
    with pytest.raises(ValueError, match="clock_warn"):
        fconf.parse({"fleet": {"max_skew": 60, "clock_warn": 60}})


def test_samples_share_strings_and_merge_keeps_the_engines_rows():
    """Memory per raw sample (docs/ref/engine.rst, "Memory and log bounds")."""
    rec = record.new("n1", T0)
    for seq in (1, 2):
        uplink = dict(UPLINK, quality="".join(["go", "od"]))  # a fresh string, as decoded
        record.heartbeat(
            rec,
            {"boot": "00112233aabbccdd:1", "seq": seq, "sent_at": T0, "uplink": uplink},
            T0 + seq,
        )
    assert rec["samples"][0][4] is rec["samples"][1][4]
    stored = {**rec, "samples": [list(s) for s in rec["samples"]]}
    merged = record.merge(rec, stored)
    assert all(a is b for a, b in zip(merged["samples"], rec["samples"]))


def test_stored_record_keeps_only_raw_seconds_of_samples(opts, node_key):
    """The record written at each flush holds ``raw_seconds`` of samples, not the union of all flushes."""
    signer, pub = node_key
    opts["edge"]["fleet"].update(interval=60, flush_interval=60, raw_seconds=3600)
    clock = Clock()
    eng = _engine(opts, {"n1": pub}, clock)
    for seq in range(1, 151):
        clock.now += 60
        eng.handle("edge/heartbeat", _beat(signer, seq, sent_at=clock.now))
        eng.tick()
    stored = store.Store(opts).load("n1")
    assert len(stored["samples"]) <= 61, len(stored["samples"])
    assert len(eng.records["n1"]["samples"]) <= 61
