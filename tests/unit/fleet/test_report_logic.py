"""Pure logic of the fleet report: assembling it from the record (no Salt daemons)."""

import json

import yaml

from saltext_edge import report
from saltext_edge.fleet import conf as fconf
from saltext_edge.fleet import record

NOW = 1_800_000_000.0
CONF = fconf.parse({"fleet": {"interval": 60}})


def _keys(acc=(), pre=(), rej=(), den=()):
    return {
        "minions": list(acc),
        "minions_pre": list(pre),
        "minions_rejected": list(rej),
        "minions_denied": list(den),
    }


def _rec(mid, site, age, quality="good", rtt=20.0, period=60.0, offline_times=()):
    rec = record.new(mid, NOW - 86400)
    rec.update(
        site=site,
        last_seen=NOW - age,
        last_kind="heartbeat",
        period=period,
        jitter=0.1,
        budget=2.0,
        uplink={
            "quality": quality,
            "rtt_ms": rtt,
            "jitter_ms": 1.0,
            "loss_pct": 0.0,
            "checked_at": None,
        },
        samples=[[NOW - age - i * 60, rtt + i, 1.0, 0.0, quality] for i in range(10)],
        transitions=[[t, "offline"] for t in offline_times],
    )
    return rec


def _walk_floats(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _walk_floats(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk_floats(value)


def test_counts_statuses_and_sites():
    records = {
        "a1": _rec("a1", "sh-1", 10),
        "a2": _rec("a2", "sh-1", 200),  # late: > 2 * 60 + 9, < 5 * 60 + 9
        "a3": _rec("a3", "sh-1", 4000),  # offline
        "b1": _rec("b1", "sh-2", 5, quality="poor", rtt=400.0),
    }
    rep = report.assemble(records, _keys(acc=["a1", "a2", "a3", "b1", "c1"]), {}, CONF, now=NOW)
    sh1, sh2 = rep["sites"]["sh-1"], rep["sites"]["sh-2"]
    assert (sh1["online"], sh1["late"], sh1["offline"], sh1["never_seen"]) == (1, 1, 1, 0)
    assert rep["sites"][report.NO_SITE]["never_seen"] == 1  # c1: accepted, never heard of
    assert sh2["quality"]["poor"] == 1 and sh2["degraded"] is True
    assert sh1["degraded"] is False  # 1 bad of 3 < 0.5
    assert rep["totals"] == {
        "online": 2,
        "late": 1,
        "offline": 1,
        "never_seen": 1,
        "pending": 0,
        "refused": 0,
        "sites": 3,
    }
    # only nodes that are not online are listed by default
    assert set(sh1["nodes"]) == {"a2", "a3"}
    assert sh1["nodes"]["a3"]["last_seen"] == "2027-01-15T06:53:20Z"
    assert rep["generated_at"] == "2027-01-15T08:00:00Z"
    assert sh2["trend"]["1h"]["rtt_ms_median"] == 404.5
    assert rep["summary"][-1]["site"] == report.TOTAL
    # no epoch float anywhere, and the whole thing serialises
    assert all(f < 1e8 for f in _walk_floats(rep))
    json.dumps(rep)
    yaml.safe_dump(rep)


def test_details_lists_every_node_and_filter():
    records = {"a1": _rec("a1", "sh-1", 10), "b1": _rec("b1", "sh-2", 10)}
    rep = report.assemble(
        records, _keys(acc=["a1", "b1"]), {}, CONF, now=NOW, details=True, site="sh-1"
    )
    assert list(rep["sites"]) == ["sh-1"]
    assert rep["sites"]["sh-1"]["nodes"]["a1"]["status"] == "online"
    assert rep["sites"]["sh-1"]["nodes"]["a1"]["admission"] == "accepted"


def test_verified_site_wins_over_heartbeat_site():
    records = {"a1": _rec("a1", "claimed", 10)}
    index = {
        "a1": {"site": "verified", "admitted_by": "token", "decision": "accepted", "reason": None}
    }
    rep = report.assemble(records, _keys(acc=["a1"]), index, CONF, now=NOW, details=True)
    assert list(rep["sites"]) == ["verified"]
    assert rep["sites"]["verified"]["nodes"]["a1"]["admitted_by"] == "token"


def test_pending_refused_and_revoked():
    index = {
        "p2": {"site": None, "decision": "refused", "reason": "bad_token", "admitted_by": None},
        "r1": {"site": None, "decision": "refused", "reason": "site_revoked", "admitted_by": None},
    }
    records = {"gone": _rec("gone", "sh-1", 10)}
    rep = report.assemble(
        records, _keys(pre=["p1", "p2"], rej=["r1"], den=["d1"]), index, CONF, now=NOW
    )
    assert rep["pending"] == ["p1"]
    assert rep["refused"] == {
        "d1": "key denied: a different key is accepted for this id",
        "p2": "bad_token",
        "r1": "site_revoked",
    }
    # a record whose key is gone stays visible, marked revoked
    assert rep["sites"]["sh-1"]["nodes"]["gone"]["admission"] == "revoked"


def test_flapping():
    flappy = _rec("f1", "sh-1", 10, offline_times=(NOW - 100, NOW - 2000, NOW - 5000))
    calm = _rec("c1", "sh-1", 10, offline_times=(NOW - 100,))
    rep = report.assemble({"f1": flappy, "c1": calm}, _keys(acc=["f1", "c1"]), {}, CONF, now=NOW)
    assert rep["flapping"] == ["f1"]
    assert rep["sites"]["sh-1"]["nodes"]["f1"]["flapping"] is True
    assert "c1" not in rep["sites"]["sh-1"]["nodes"]


def test_history_and_24h_trend_from_site_rows():
    hour = int(NOW // 3600) * 3600
    # newest first on purpose: the report sorts them
    rows = [[hour - 3600 * i, 5, 0, 1, 30.0 + i, 60.0 + i, 1.0, 100] for i in range(1, 30)]
    rep = report.assemble(
        {"a1": _rec("a1", "sh-1", 10)},
        _keys(acc=["a1"]),
        {},
        CONF,
        now=NOW,
        site_meta={"hours": {"sh-1": rows}},
    )
    site = rep["sites"]["sh-1"]
    assert len(site["history"]) == 24
    assert site["history"][-1] == {
        "at": "2027-01-15T07:00:00Z",
        "online": 5,
        "offline": 1,
        "rtt_ms_median": 31.0,
    }
    assert site["trend"]["24h"]["rtt_ms_p95"] == 84.0  # the worst hourly p95 of the last day
    assert site["trend"]["24h"]["loss_pct"] is not None


def test_site_degraded_with_the_engines_flag():
    """The report judges a site as the engine does: with its stored degraded flag (hysteresis)."""
    lossy = _rec("l1", "sh-9", 5)
    # the last 5 samples, oldest first: one poor among good ones
    lossy["samples"][-5:] = [[NOW - 300 + i * 60, 20.0, 1.0, 0.0, "good"] for i in range(5)]
    lossy["samples"][-2][4] = "poor"
    recs = {"l1": lossy, "c1": _rec("c1", "sh-9", 5)}
    keys = _keys(acc=["l1", "c1"])
    was_clean = report.assemble(recs, keys, {}, CONF, now=NOW)
    assert was_clean["sites"]["sh-9"]["degraded"] is False
    was_degraded = report.assemble(
        recs, keys, {}, CONF, site_meta={"degraded": {"sh-9": True}}, now=NOW
    )
    assert was_degraded["sites"]["sh-9"]["degraded"] is True
