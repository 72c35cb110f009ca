"""Pure logic of saltext_edge.uplink: parsing, statistics, classification, aggregation."""

import pytest

from saltext_edge.uplink import args, dns, probe, targets
from saltext_edge.uplink import quality as qual


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("salt-a", [("salt-a", 4505), ("salt-a", 4506)]),
        ("salt-a:4506", [("salt-a", 4506)]),
        ("10.0.0.1:1234", [("10.0.0.1", 1234)]),
        ("[::1]:4505", [("::1", 4505)]),
        ("2001:db8::1", [("2001:db8::1", 4505), ("2001:db8::1", 4506)]),
        (("h", "99"), [("h", 99)]),
        ({"host": "h", "port": 7}, [("h", 7)]),
        ({"host": "h"}, [("h", 4505), ("h", 4506)]),
    ],
)
def test_parse_target(spec, expected):
    assert args.parse_target(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "host:0",
        "host:65536",
        "host:-1",
        "host:abc",
        "[::1",
        "[nope]:1",
        "a b",
        "x@y",
        "1:2:3:zz",
        ("h",),
        {"port": 1},
        42,
        "a" * 300,
    ],
)
def test_parse_target_rejects(spec):
    with pytest.raises(args.ProbeArgumentError):
        args.parse_target(spec)


def test_normalize_targets_dedup_and_csv():
    assert args.normalize_targets("a:1, a:1,b:2") == [("a", 1), ("b", 2)]
    assert args.normalize_targets(["a"], default_ports=[1]) == [("a", 1)]
    assert args.normalize_targets(None) == []


@pytest.mark.parametrize("count", [0, -1, 101, "x", 1.5, True, None])
def test_validate_count_rejects(count):
    with pytest.raises(args.ProbeArgumentError):
        args.validate_count(count)


@pytest.mark.parametrize("value", [0, -1, "x", float("nan"), True, 1e9])
def test_validate_seconds_rejects(value):
    with pytest.raises(args.ProbeArgumentError):
        args.validate_seconds(value, "timeout")


def test_summarize():
    s = qual.summarize([10.0, None, 14.0, 12.0])
    assert s["sent"] == 4 and s["received"] == 3
    assert s["loss_pct"] == 25.0
    assert s["rtt_ms"] == 12.0
    assert s["jitter_ms"] == 3.0  # |14-10|, |12-14| -> mean 3
    assert s["min_ms"] == 10.0 and s["max_ms"] == 14.0
    one = qual.summarize([5.0])
    assert one["jitter_ms"] is None and one["rtt_ms"] == 5.0
    none = qual.summarize([None, None])
    assert none["rtt_ms"] is None and none["loss_pct"] == 100.0
    assert qual.summarize([])["loss_pct"] is None


@pytest.mark.parametrize(
    "samples,quality",
    [
        ([1.0, 2.0, 1.5], "good"),
        ([150.0, 150.0, 150.0], "fair"),
        ([500.0, 500.0, 500.0], "poor"),
        ([1.0, 200.0, 1.0], "poor"),  # jitter 199 ms
        ([1.0, 1.0, None], "poor"),  # 33 % loss
        ([None, None, None], "down"),
        ([], "unknown"),
    ],
)
def test_classify_defaults(samples, quality):
    assert qual.classify(qual.summarize(samples)) == quality


def test_classify_custom_thresholds():
    limits = args.merge_thresholds({"good": {"rtt_ms": 5}, "fair": {"rtt_ms": 20}})
    assert qual.classify(qual.summarize([10.0, 10.0]), limits) == "fair"
    assert qual.classify(qual.summarize([30.0, 30.0]), limits) == "poor"
    lossy = args.merge_thresholds({"down": {"loss_pct": 50}})
    assert qual.classify(qual.summarize([1.0, None]), lossy) == "down"


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        {"great": {}},
        {"good": {"rtt": 1}},
        {"good": {"rtt_ms": -1}},
        {"good": {"rtt_ms": "x"}},
        {"good": {"rtt_ms": 500}},
        {"good": 3},
    ],
)
def test_merge_thresholds_rejects(bad):
    with pytest.raises(args.ProbeArgumentError):
        args.merge_thresholds(bad)


def test_worst_best():
    assert qual.worst(["good", "poor", "fair"]) == "poor"
    assert qual.worst(["good", "unknown"]) == "good"
    assert qual.worst([]) == "unknown"
    assert qual.best(["down", "fair"]) == "fair"
    # one rank table: unknown (or anything that is not a quality) is never the worst
    assert qual.worst(["unknown", "bogus", None]) == "unknown"
    assert qual.worst(["down", "unknown", "bogus"]) == "down"
    assert qual.best(["unknown", "down"]) == "down"
    assert sorted(qual.RANK, key=qual.RANK.get) == list(qual.QUALITIES)


def test_zmtp_signature():
    assert probe.is_zmtp_greeting(probe.ZMTP_SIGNATURE)
    assert probe.is_zmtp_greeting(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00")
    assert not probe.is_zmtp_greeting(b"HTTP/1.1 2")
    assert not probe.is_zmtp_greeting(b"\xff\x00")


def _res(host, port, quality, rtt=None):
    return {
        "host": host,
        "port": port,
        "target": qual.format_target(host, port),
        "quality": quality,
        "rtt_ms": rtt,
        "jitter_ms": None,
        "loss_pct": 0.0,
    }


def test_aggregate_worst_port_best_host():
    results = [
        _res("a", 4505, "good", 1),
        _res("a", 4506, "down"),  # a: down (return port dead)
        _res("b", 4505, "fair", 150),
        _res("b", 4506, "good", 2),  # b: fair
    ]
    agg = qual.aggregate(results)
    assert agg["quality"] == "fair"
    assert agg["target"] == "b:4505"
    assert qual.aggregate([])["quality"] == "unknown"
    assert qual.format_target("::1", 1) == "[::1]:1"


def test_invalid_tld_fails_locally():
    out = dns.resolve_many(["nonexistent.invalid", "127.0.0.1", "::1"], 1.0)
    assert out["nonexistent.invalid"]["error_class"] == "dns"
    assert out["127.0.0.1"]["addresses"] == ["127.0.0.1"]
    assert out["::1"]["addresses"] == ["::1"]


def test_probe_argument_errors():
    for kwargs in ({"count": -1}, {"timeout": 0}, {"budget": -2}, {"mode": "udp"}):
        with pytest.raises(args.ProbeArgumentError):
            probe.probe(["127.0.0.1:1"], **kwargs)


def test_probe_no_targets_is_unknown():
    ret = probe.probe([], budget=1)
    assert ret["quality"] == "unknown" and ret["targets"] == []


def test_uplink_targets_one_rule_for_grain_and_module():
    """edge:uplink:targets on edge:uplink:ports, else the masters' ports, [] when masterless."""
    conf = {"targets": ["gw.example.net", "10.0.0.1:9000"], "ports": [4506]}
    assert targets.targets({}, conf) == [("gw.example.net", 4506), ("10.0.0.1", 9000)]
    assert targets.targets({}, {"targets": ["gw"]}) == [("gw", 4505), ("gw", 4506)]
    opts = {"master": ["a", "b:5506", "a"], "publish_port": 5505, "master_port": 4506}
    assert targets.targets(opts) == [
        ("a", 5505),
        ("a", 4506),
        ("b", 5505),
        ("b", 5506),
    ]
    assert targets.targets(dict(opts, file_client="local")) == []
    assert targets.targets(dict(opts, master_type="disable")) == []
    with pytest.raises(args.ProbeArgumentError):
        targets.targets({}, {"targets": ["bad host:1"]})
