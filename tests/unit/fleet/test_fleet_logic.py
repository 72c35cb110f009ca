"""Pure logic of fleet health: settings, status, record, history, signatures, evidence."""

import pytest
from tests.support.keys import key_file

from saltext_edge.fleet import conf as fconf
from saltext_edge.fleet import evidence, record, rows, signing, status
from saltext_edge.uplink import heartbeat

NOW = 1_800_000_000.0
CONF = fconf.parse({"fleet": {"interval": 10, "grace": 0}})


def test_conf_defaults_and_errors():
    conf = fconf.parse({})
    assert (conf["late_after"], conf["offline_after"], conf["interval"]) == (2, 5, 60.0)
    assert fconf.grace(conf) == 300.0
    assert fconf.grace(fconf.parse({"fleet": {"interval": 2}})) == 120.0
    assert fconf.grace(fconf.parse({"fleet": {"interval": 2, "grace": 0}})) == 0
    for bad, word in (
        ({"late_after": 0}, "late_after"),
        ({"offline_after": 2}, "greater than late_after"),
        ({"degraded_share": 2}, "degraded_share"),
        ({"bogus": 1}, "unknown setting"),
        ({"sites": {"x": {"late_after": 9}}}, "sites:x"),
        ({"trust_unsigned": "yes"}, "trust_unsigned"),
    ):
        with pytest.raises(ValueError, match=word):
            fconf.parse({"fleet": bad})
    conf = fconf.parse({"fleet": {"sites": {"slow": {"interval": 300, "offline_after": 10}}}})
    assert fconf.for_site(conf, "slow")["interval"] == 300.0
    assert fconf.for_site(conf, "other")["interval"] == 60.0


def test_classify_thresholds():
    rec = record.new("n", NOW)
    assert status.classify(rec, fconf.for_site(CONF, None), NOW) == "never_seen"
    rec.update(last_seen=NOW, period=10.0, jitter=0.1, budget=2.0)
    late_s, offline_s = status.limits(rec, fconf.for_site(CONF, None))
    assert (late_s, offline_s) == (24.0, 54.0)  # 2*10 + (1 + 2 + 1), 5*10 + 4
    site = fconf.for_site(CONF, None)
    assert status.classify(rec, site, NOW + 24) == "online"
    assert status.classify(rec, site, NOW + 25) == "late"
    assert status.classify(rec, site, NOW + 55) == "offline"
    # measured from the engine's start when that is later (restart)
    assert status.classify(rec, site, NOW + 55, started_at=NOW + 50) == "online"


def test_step_fires_each_transition_once():
    rec = record.new("n", NOW)
    rec.update(last_seen=NOW, period=10.0, jitter=0.1, budget=2.0)
    assert status.step(rec, CONF, NOW) is None and rec["alerted"] == "online"
    assert status.step(rec, CONF, NOW + 30) is None and rec["status"] == "late"
    fired = status.step(rec, CONF, NOW + 60)
    assert fired[0] == "offline" and "5 heartbeats" in fired[1]
    assert status.step(rec, CONF, NOW + 61) is None
    rec["last_seen"] = NOW + 70
    assert status.step(rec, CONF, NOW + 70)[0] == "online"
    assert status.step(rec, CONF, NOW + 71) is None
    assert [t[1] for t in rec["transitions"]] == ["online", "offline", "online"]


def test_step_holds_events_during_grace_then_fires():
    rec = record.new("n", NOW)
    rec.update(last_seen=NOW, period=10.0, jitter=0.1, budget=2.0, alerted="online")
    assert status.step(rec, CONF, NOW + 60, in_grace=True) is None
    assert rec["status"] == "offline" and rec["alerted"] == "online"
    assert status.step(rec, CONF, NOW + 61)[0] == "offline"


def test_site_health_and_flapping():
    conf = fconf.parse({"fleet": {"degraded_share": 0.5, "flap_count": 2}})
    recs = []
    for i, (st, quality) in enumerate(
        (("online", "good"), ("offline", "good"), ("online", "poor"), ("never_seen", None))
    ):
        rec = record.new(f"n{i}", NOW)
        rec["status"] = st
        rec["last_seen"] = None if st == "never_seen" else NOW
        rec["uplink"] = {"quality": quality} if quality else None
        recs.append(rec)
    assert status.site_health(recs, fconf.for_site(conf, None)) == (True, 2, 3)
    assert status.site_health(recs[:2], fconf.for_site(conf, None)) == (True, 1, 2)
    assert status.site_health(recs[:1], fconf.for_site(conf, None)) == (False, 0, 1)
    rec = record.new("f", NOW)
    rec["transitions"] = [[NOW - 10, "offline"], [NOW - 90000, "offline"]]
    assert not status.flapping(rec, conf, NOW)
    rec["transitions"].append([NOW - 20, "offline"])
    assert status.flapping(rec, conf, NOW)


def _beats(rec, qualities):
    """Apply one heartbeat per quality to ``rec`` (2 s apart), as the engine does."""
    for i, quality in enumerate(qualities):
        seq = (rec["seq"] or 0) + 1
        at = NOW + 2 * seq
        payload = dict(_payload(rec["id"], seq=seq, now=at), uplink={"quality": quality})
        assert record.heartbeat(rec, payload, at) is False, i
    rec["status"] = "online"


def _site_events(qualities, share=0.5):
    """Feed a two-node site (one clean node, one on ``qualities``) beat by beat; return the site events."""
    site_conf = fconf.for_site(fconf.parse({"fleet": {"degraded_share": share}}), None)
    clean, lossy = record.new("c", NOW), record.new("l", NOW)
    degraded, fired = False, []
    for quality in qualities:
        _beats(clean, ["good"])
        _beats(lossy, [quality])
        now_bad = status.site_health([clean, lossy], site_conf, degraded)[0]
        if now_bad != degraded:
            degraded = now_bad
            fired.append("degraded" if now_bad else "recovered")
    return fired


def test_site_health_window_and_hysteresis():
    # a lossy link read as poor / down with the odd good sample (the field
    # lab's 20 % loss): one degraded, no flapping
    lossy = ["poor", "poor", "down", "good", "poor", "good", "poor", "down", "good", "poor"]
    assert _site_events(lossy) == ["degraded"]
    # on the last sample only, the same link flapped the site
    last_only = []
    for quality in lossy:
        bad = quality in status.BAD_UPLINK
        if bad != bool(last_only and last_only[-1] == "degraded"):
            last_only.append("degraded" if bad else "recovered")
    assert len(last_only) > 2
    # cleaned: recovered once the last window holds no bad sample (5 beats)
    assert _site_events(lossy + ["good"] * 4) == ["degraded"]
    assert _site_events(lossy + ["good"] * 5) == ["degraded", "recovered"]
    # one bad sample on a clean link degrades nothing; half of the window does
    assert _site_events(["good"] * 5 + ["poor"] + ["good"] * 5) == []
    assert _site_events(["good"] * 2 + ["poor", "good", "poor", "poor"]) == ["degraded"]
    # a new node is judged on what it has: its first sample
    assert _site_events(["down"]) == ["degraded"]


def test_uplink_bad_rule():
    rec = record.new("n", NOW)
    assert status.recent_qualities(rec) == [] and not status.uplink_bad(rec)
    # no samples (a record from before them): the last uplink stands alone
    rec["uplink"] = {"quality": "poor"}
    assert status.uplink_bad(rec) and status.uplink_bad(rec, degraded=True)
    rec = record.new("n", NOW)
    _beats(rec, ["poor", "poor", "good", "good", "good", "poor"])
    assert status.recent_qualities(rec) == ["poor", "good", "good", "good", "poor"]
    # entering: 2 of 5 bad is less than half; staying degraded: any bad
    assert not status.uplink_bad(rec)
    assert status.uplink_bad(rec, degraded=True)
    _beats(rec, ["fair"] * 5)
    assert not status.uplink_bad(rec, degraded=True)


def _payload(mid="n1", seq=1, boot="b", now=NOW):
    return {
        "v": 1,
        "id": mid,
        "site": "sh-1",
        "seq": seq,
        "boot": boot,
        "uptime_s": 5.0,
        "sent_at": now,
        "period": 10.0,
        "jitter": 0.1,
        "budget": 2.0,
        "uplink": {
            "quality": "good",
            "rtt_ms": 12.5,
            "jitter_ms": 1.0,
            "loss_pct": 0.0,
            "checked_at": "x",
        },
    }


def test_record_heartbeat_replay_and_bounds():
    rec = record.new("n1", NOW)
    assert record.heartbeat(rec, _payload(seq=5), NOW) is False
    assert rec["last_kind"] == "heartbeat" and rec["site"] == "sh-1" and rec["seq"] == 5
    # an older or equal sequence of the same boot is a replay: ignored
    assert record.heartbeat(rec, _payload(seq=5), NOW + 1) is True
    assert rec["last_seen"] == NOW
    # a new boot restarts the sequence
    assert record.heartbeat(rec, _payload(seq=1, boot="b2"), NOW + 2) is False
    for i in range(3000):
        record.heartbeat(rec, _payload(seq=10 + i, boot="b2"), NOW + 3 + i)
    assert len(rec["samples"]) <= record.MAX_SAMPLES
    bad = record.clean_uplink({"quality": "excellent", "rtt_ms": float("nan"), "loss_pct": 400})
    assert bad == {
        "quality": "unknown",
        "rtt_ms": None,
        "jitter_ms": None,
        "loss_pct": None,
        "checked_at": None,
    }


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("boot", "b" * 65, None),
        ("boot", float("inf"), None),
        ("boot", True, None),
        ("boot", ["list"], None),
        ("boot", 1733130000, 1733130000),
    ],
)
def test_record_heartbeat_bounds_what_a_node_sends(field, value, stored):
    rec = record.new("n1", NOW)
    record.heartbeat(rec, dict(_payload(seq=1), **{field: value}), NOW)
    assert rec[field] == stored


@pytest.mark.parametrize("site", ["", "x" * 65, "sh 1", "<b>sh</b>", "sh/1", 42])
def test_record_heartbeat_keeps_only_valid_site_names(site):
    rec = record.new("n1", NOW)
    record.heartbeat(rec, _payload(seq=1), NOW)
    record.heartbeat(rec, dict(_payload(seq=2), site=site), NOW + 1)
    assert rec["site"] == "sh-1"


def test_hours_close_once_and_merge():
    hour = int(NOW // 3600) * 3600
    rec = record.new("n1", NOW)
    rec["samples"] = [[hour - 3600 + i * 60, 10.0 + i, 1.0, 0.0, "good"] for i in range(60)]
    rec["samples"] += [[hour + 5, 99.0, 1.0, 0.0, "poor"]]
    rows = record.close_hours(rec, hour + 10)
    assert len(rows) == 1 and rows[0][0] == hour - 3600 and rows[0][1] == 60
    assert rows[0][2] == 39.5 and rows[0][3] == 66.0 and rows[0][6] == "good"
    assert record.close_hours(rec, hour + 20) == []
    assert (
        record.merge_hours(rows, [[hour - 7200, 1, 1, 1, 0, 1, "good"]], 720)[0][0] == hour - 7200
    )
    assert record.percentile([], 95) is None and record.median([3, 1, 2]) == 2
    a = dict(record.new("n1", NOW), last_seen=NOW, seen_by="m1", samples=[[NOW, 1, 1, 0, "good"]])
    b = dict(
        record.new("n1", NOW - 50),
        last_seen=NOW + 5,
        seen_by="m2",
        samples=[[NOW + 5, 2, 1, 0, "good"]],
    )
    merged = record.merge(a, b)
    assert (
        merged["seen_by"] == "m2"
        and len(merged["samples"]) == 2
        and merged["first_seen"] == NOW - 50
    )


def test_signatures(tmp_path):
    path_a, pub_a = key_file(tmp_path, "a")
    _, pub_b = key_file(tmp_path, "b")
    signed = signing.Signer(path_a).sign(_payload())
    assert signing.verify_with_pem(pub_a, signed)
    assert not signing.verify_with_pem(pub_b, signed)
    assert not signing.verify_with_pem(pub_a, dict(signed, seq=2))
    assert not signing.verify_with_pem(pub_a, dict(signed, sig="not base64!"))
    assert not signing.verify_with_pem(pub_a, {k: v for k, v in signed.items() if k != "sig"})
    ring = signing.KeyRing({}, fetch={"n1": pub_a, "n2": pub_b}.get)
    assert ring.verify(signed)
    assert not ring.verify(dict(signed, id="n2"))
    assert not ring.verify(dict(signed, id="unknown"))


def test_evidence_trust(tmp_path):
    path_a, pub_a = key_file(tmp_path, "a")
    ring = signing.KeyRing({}, fetch={"n1": pub_a}.get)
    clf = evidence.Classifier(ring)
    signed = signing.Signer(path_a).sign(_payload())
    ev = clf.classify("edge/heartbeat", {"id": "n1", "data": signed, "cmd": "_minion_event"})
    assert (ev.kind, ev.id, ev.trusted) == ("heartbeat", "n1", True)
    # whatever the node's clock says: taken (the clock is only shown)
    for skew in (-7200, 600, -NOW):
        old = signing.Signer(path_a).sign(_payload(now=NOW + skew))
        assert clf.classify("edge/heartbeat", {"id": "n1", "data": old}).trusted
    # no accepted key for the id, or signed by the wrong key: refused, by reason
    ref = clf.classify("edge/heartbeat", {"id": "n9", "data": dict(signed, id="n9")})
    assert (ref.reason, ref.id, ref.known) == ("unknown_key", "n9", False)
    ref = clf.classify("edge/heartbeat", {"id": "n1", "data": dict(signed, seq=99)})
    assert (ref.reason, ref.known) == ("bad_signature", True)
    assert clf.refused["unknown_key"] == 1 and clf.refused["bad_signature"] == 1
    # job returns prove nothing (forgeable through pretag / _syndic_return /
    # resource_id): claims, and nothing is remembered per job
    assert clf.classify("salt/job/1/new", {"minions": ["n1"]}) is None
    assert clf.classify("salt/job/1/ret/n1", {"id": "n1"}).trusted is False
    assert clf.classify("salt/job/1/ret/n1", {"id": "n2"}) is None
    assert not hasattr(clf, "jobs")
    # minion-fired and sign-in events are claims unless trust_unsigned
    assert clf.classify("salt/minion/n1/start", {"id": "n1"}).trusted is False
    assert clf.classify("salt/minion/n1/start", {"id": "n2"}) is None
    assert clf.classify("salt/auth", {"id": "n1", "act": "accept", "result": True}).kind == "auth"
    assert clf.classify("salt/auth", {"id": "n1", "act": "pend", "result": True}) is None
    trusting = evidence.Classifier(ring, trust_unsigned=True)
    assert trusting.classify("minion_ping", {"id": "n1"}).trusted is True
    assert trusting.classify("salt/job/1/ret/n1", {"id": "n1"}).trusted is True
    # a claim never carries an id that is not one
    assert trusting.classify("minion_ping", {"id": "a\nb"}) is None


def test_beacon_settings():
    assert heartbeat.beacon_settings() == {
        "beacons": {"edge_heartbeat": [{"period": 60}, {"jitter": 0.1}]}
    }
    assert heartbeat.beacon_settings(interval=30, jitter=0)["beacons"]["edge_heartbeat"][0] == {
        "period": 30
    }
    assert heartbeat.beacon_settings(enabled=False) == {
        "beacons": {"edge_heartbeat": [{"enabled": False}]}
    }
    for bad in ({"interval": 0}, {"interval": True}, {"jitter": 0.9}):
        with pytest.raises(ValueError):
            heartbeat.beacon_settings(**bad)


def test_beacon_enabled():
    assert heartbeat.beacon_enabled(heartbeat.beacon_settings())
    assert not heartbeat.beacon_enabled(heartbeat.beacon_settings(enabled=False))
    assert not heartbeat.beacon_enabled({})
    assert not heartbeat.beacon_enabled(
        {"beacons": {"enabled": False, "edge_heartbeat": [{"period": 60}]}}
    )
    assert not heartbeat.beacon_enabled({"beacons": {"inotify": [{"files": {}}]}})


def test_stored_rows_load_by_name_whatever_their_layout():
    """History rows are stored as lists in field order; fields are only appended (fleet.rows)."""
    hour = int(NOW // 3600) * 3600
    on_disk = [hour, 3, 10.0, 20.0, 0.5, 4, "fair"]  # a node's hour row as stored so far
    row = rows.load(rows.HourRow, on_disk)
    assert (row.hour, row.samples, row.heartbeats, row.worst_quality) == (hour, 3, 4, "fair")
    assert rows.stored(row) == on_disk
    older = rows.load(rows.HourRow, on_disk[:5])  # a layout without the last two fields
    assert older.loss_pct == 0.5 and older.heartbeats is None and older.worst_quality is None
    assert rows.load(rows.HourRow, (*on_disk, "a later field")) == row
    site = rows.load(rows.SiteHourRow, [hour, 5, 1, 2, 30.0, 80.0, 1.0, 12])
    assert (site.online, site.late, site.offline, site.samples) == (5, 1, 2, 12)
    assert site.as_hour_row() == rows.HourRow(hour, 12, 30.0, 80.0, 1.0, 12, None)
    samples = [[hour + 1, 10.0, 1.0, 0.0, "good"], [hour + 2, None, None, 100.0, "down"]]
    assert rows.load(rows.Sample, samples[0]).quality == "good"
    assert record.aggregate_hour(hour, samples) == [hour, 1, 10.0, 10.0, 50.0, 2, "down"]
    assert record.hours_trend([on_disk, on_disk[:5]]) == {
        "rtt_ms_median": 10.0,
        "rtt_ms_p95": 20.0,
        "loss_pct": 0.5,
    }
