"""Pure logic of the fleet report: aggregation, uplink parsing, TCP presence."""

import json
import time

import yaml

from saltext_edge import report


def _keys(acc=(), pre=(), rej=(), den=()):
    return {
        "minions": list(acc),
        "minions_pre": list(pre),
        "minions_rejected": list(rej),
        "minions_denied": list(den),
    }


def _grains(site=None, quality=None, **uplink):
    grains = {"id": "x", "ipv4": ["10.0.0.1"]}
    if site:
        grains["edge_site"] = site
    if quality:
        grains["edge_uplink"] = dict(quality=quality, **uplink)
    return grains


def test_uplink_of():
    assert report.uplink_of({}) == ("unknown", {})
    assert report.uplink_of({"edge_uplink": "poor"}) == ("unknown", {})
    assert report.uplink_of({"edge_uplink": {"quality": "bogus"}})[0] == "unknown"
    quality, detail = report.uplink_of(
        {"edge_uplink": {"quality": "poor", "rtt_ms": 420.0, "loss_pct": 5, "target": "m:4506"}}
    )
    assert quality == "poor"
    assert detail == {"rtt_ms": 420.0, "loss_pct": 5}


def test_site_of():
    assert report.site_of({"edge_site": "sh-3"}) == "sh-3"
    assert report.site_of({"edge_site": ""}) is None
    assert report.site_of({"edge_site": ["x"]}) is None
    assert report.site_of(None) is None


def test_aggregate_sites_presence_uplink_and_keys():
    keys = _keys(
        acc=["a1", "a2", "b1", "b2", "lonely", "nograins"],
        pre=["new1", "bad1", "quiet"],
        rej=["evil"],
        den=["dup"],
    )
    grains = {
        "a1": _grains("site-a", "good", rtt_ms=3.0),
        "a2": _grains("site-a", "fair"),
        "b1": _grains("site-b", "poor", rtt_ms=480.0, loss_pct=10.0),
        "b2": _grains("site-b"),
        "lonely": _grains(),
        "nograins": None,
    }
    presence = {"a1": "up", "a2": "up", "b1": "up", "b2": "down", "lonely": "unknown"}
    decisions = {
        "new1": {"decision": "recorded", "reason": None, "site": "site-a", "time": 1.0},
        "bad1": {"decision": "refused", "reason": "bad_token", "site": "site-b", "time": 2.0},
        "evil": {"decision": "refused", "reason": "site_revoked", "site": "site-b", "time": 3.0},
        "nograins": {"decision": "accepted", "reason": None, "site": "site-a", "time": 0.5},
    }
    rep = report.aggregate(keys, grains, presence, decisions=decisions, now=100.0)

    assert set(rep["sites"]) == {"site-a", "site-b", report.NO_SITE}
    site_a = rep["sites"]["site-a"]
    # nograins falls back to the site its admission decision recorded
    assert site_a["minions"] == 3
    assert (site_a["up"], site_a["down"], site_a["unknown"]) == (2, 0, 1)
    assert site_a["uplink"] == {"good": 1, "fair": 1, "poor": 0, "down": 0, "unknown": 1}
    assert [p["id"] for p in site_a["pending"]] == ["new1"]

    site_b = rep["sites"]["site-b"]
    assert site_b["down_minions"] == ["b2"]
    assert site_b["poor_uplink"] == [
        {"id": "b1", "quality": "poor", "rtt_ms": 480.0, "loss_pct": 10.0}
    ]
    refused = {r["id"]: r for r in site_b["refused"]}
    assert refused["bad1"]["reason"] == "bad_token" and refused["bad1"]["key"] == "pending"
    assert refused["evil"]["reason"] == "site_revoked" and refused["evil"]["key"] == "rejected"

    nosite = rep["sites"][report.NO_SITE]
    assert rep["no_site"] == ["lonely"]
    assert [p["id"] for p in nosite["pending"]] == ["quiet"]
    assert nosite["pending"][0]["reason"] == "no admission decision recorded yet"
    assert nosite["refused"][0]["id"] == "dup" and nosite["refused"][0]["key"] == "denied"

    totals = rep["totals"]
    assert totals["sites"] == 2
    assert totals["minions"] == 6
    assert (totals["up"], totals["down"], totals["unknown"]) == (3, 1, 2)
    assert totals["uplink"]["poor"] == 1 and totals["uplink"]["unknown"] == 3
    assert totals["pending"] == 2 and totals["refused"] == 3
    assert totals["no_site"] == 1

    rows = {r["site"]: r for r in rep["summary"]}
    assert list(rows)[-1] == report.TOTAL and list(rows)[-2] == report.NO_SITE
    assert rows[report.TOTAL]["minions"] == 6 and rows["site-b"]["poor"] == 1
    assert all(set(r) == set(rep["summary"][0]) for r in rep["summary"])
    assert rep["generated_at"] == 100.0


def test_aggregate_without_decisions_and_site_filter():
    keys = _keys(acc=["a1", "b1"], pre=["p1"])
    grains = {"a1": _grains("sh-1", "good"), "b1": _grains("bj-2", "down")}
    rep = report.aggregate(keys, grains, {"a1": "up", "b1": "up"}, decisions=None, site="sh-*")
    assert set(rep["sites"]) == {"sh-1"}
    assert rep["totals"]["minions"] == 1 and rep["totals"]["pending"] == 0
    rep = report.aggregate(keys, grains, {}, site=None)
    assert rep["totals"]["unknown"] == 2  # no presence info
    assert rep["sites"]["bj-2"]["poor_uplink"][0]["quality"] == "down"
    assert rep["sites"][report.NO_SITE]["pending"][0]["id"] == "p1"


def test_aggregate_details_and_outputters():
    keys = _keys(acc=["a1"])
    rep = report.aggregate(
        keys,
        {"a1": _grains("s", "fair", rtt_ms=80.0)},
        {"a1": "up"},
        details=True,
        cached_at={"a1": 12.0},
    )
    assert rep["minions"]["a1"] == {
        "site": "s",
        "status": "up",
        "uplink": "fair",
        "grains_cached": True,
        "rtt_ms": 80.0,
        "grains_cached_at": 12.0,
    }
    # plain data: serialisable by the json and yaml outputters
    assert json.loads(json.dumps(rep)) == rep
    assert yaml.safe_load(yaml.safe_dump(rep)) == rep


def test_aggregate_empty_fleet():
    rep = report.aggregate(_keys(), {}, {})
    assert rep["sites"] == {} and rep["no_site"] == []
    assert rep["summary"] == [report._summary_row(report.TOTAL, rep["totals"])]


def test_aggregate_is_fast_on_a_large_fleet():
    ids = [f"edge-{i:05d}" for i in range(5000)]
    grains = {
        m: _grains(f"site-{i % 50:02d}", ("good", "fair", "poor")[i % 3], rtt_ms=float(i % 400))
        for i, m in enumerate(ids)
    }
    presence = {m: ("up" if i % 7 else "down") for i, m in enumerate(ids)}
    start = time.perf_counter()
    rep = report.aggregate(_keys(acc=ids), grains, presence)
    elapsed = time.perf_counter() - start
    assert rep["totals"]["sites"] == 50 and rep["totals"]["minions"] == 5000
    assert sum(s["minions"] for s in rep["sites"].values()) == 5000
    assert elapsed < 2.0, elapsed


# -- presence from the TCP table ------------------------------------------


def test_tcp_presence_direct_attached():
    claims = {"a": ["10.0.0.1", "127.0.0.1"], "b": ["10.0.0.2", "127.0.0.1"], "c": ["10.0.0.3"]}
    status, unattributed = report.tcp_presence({"10.0.0.1": 1, "10.0.0.2": 1}, claims)
    assert status == {"a": "up", "b": "up", "c": "down"}
    assert unattributed == 0


def test_tcp_presence_nat_makes_unmatched_unknown():
    claims = {"a": ["10.0.0.1"], "b": ["192.168.1.5"], "c": ["192.168.1.6"]}
    # b and c sit behind a NAT: their connections come from 203.0.113.9
    status, unattributed = report.tcp_presence({"10.0.0.1": 1, "203.0.113.9": 2}, claims)
    assert status == {"a": "up", "b": "unknown", "c": "unknown"}
    assert unattributed == 2


def test_tcp_presence_shared_address_is_ambiguous():
    claims = {"a": ["10.0.0.9"], "b": ["10.0.0.9"], "c": ["10.0.0.9"]}
    status, _ = report.tcp_presence({"10.0.0.9": 2}, claims)
    assert set(status.values()) == {"unknown"}
    status, _ = report.tcp_presence({"10.0.0.9": 3}, claims)
    assert set(status.values()) == {"up"}


def test_tcp_presence_loopback_and_no_grains():
    # two minions on the master's host (they report its address 10.1.1.1)
    claims = {"a": ["10.1.1.1", "127.0.0.1"], "b": ["10.1.1.1", "127.0.0.1"], "r": ["10.2.2.2"]}
    status, _ = report.tcp_presence({"127.0.0.1": 2}, claims, local_addrs=["10.1.1.1"])
    assert status == {"a": "up", "b": "up", "r": "down"}
    # a loopback alias used as a minion's own address is matched exactly
    claims = {"x": ["127.0.0.2"], "y": ["127.0.0.3"], "z": ["127.0.0.4"], "n": None}
    status, _ = report.tcp_presence({"127.0.0.2": 1, "::ffff:127.0.0.3": 1}, claims)
    assert status == {"x": "up", "y": "up", "z": "down", "n": "unknown"}


def test_read_tcp_connections(tmp_path):
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        # 127.0.0.1:4505 <- 127.0.0.2:40000 established
        "   0: 0100007F:1199 0200007F:9C40 01 00000000:00000000\n"
        "   1: 0100007F:1199 0200007F:9C41 01 00000000:00000000\n"
        # listening socket, and another port
        "   2: 00000000:1199 00000000:0000 0A 00000000:00000000\n"
        "   3: 0100007F:119A 0300007F:9C42 01 00000000:00000000\n"
        "   4: garbage\n"
    )
    tcp6 = tmp_path / "tcp6"
    tcp6.write_text(
        "  sl  local_address                         remote_address                        st\n"
        # ::ffff:127.0.0.1:4505 <- ::ffff:10.0.0.7
        "   0: 0000000000000000FFFF00000100007F:1199 0000000000000000FFFF0000070000 0A:9C40 01\n"
        "   1: 0000000000000000FFFF00000100007F:1199 0000000000000000FFFF00000700000A:9C40 01\n"
    )
    counts = report.read_tcp_connections(4505, proc_files=(str(tcp), str(tcp6)))
    assert counts == {"127.0.0.2": 2, "10.0.0.7": 1}


def test_load_decisions_tolerates_a_failing_store(monkeypatch):
    def boom(opts):
        raise RuntimeError("secret-ish details")

    monkeypatch.setattr(report._admission, "list_decisions", boom)
    assert report.load_decisions({}) is None

    monkeypatch.setattr(
        report._admission, "list_decisions", lambda opts: {"m": {"decision": "accepted"}}
    )
    assert report.load_decisions({}) == {"m": {"decision": "accepted"}}


def test_read_grains_from_localfs_cache_tolerates_corrupt_entries(tmp_path):
    import salt.payload

    bank = tmp_path / "grains"
    bank.mkdir()
    with open(bank / "good.p", "wb") as fh_:
        salt.payload.dump({"id": "good", "edge_site": "s1"}, fh_)
    (bank / "corrupt.p").write_bytes(b"\xc1\xc1 not msgpack")
    (bank / "empty.p").write_bytes(b"")
    seen = []
    grains, stamps = report._read_grains(
        {"cachedir": str(tmp_path), "cache": "localfs"},
        ["good", "corrupt", "empty", "missing"],
        lambda stage, **data: seen.append(stage),
        stamps=True,
    )
    assert grains == {
        "good": {"id": "good", "edge_site": "s1"},
        "corrupt": None,
        "empty": None,
        "missing": None,
    }
    assert set(stamps) == {"good"}
    rep = report.aggregate({"minions": list(grains)}, grains, {})
    assert rep["sites"]["s1"]["minions"] == 1 and rep["totals"]["no_site"] == 3
