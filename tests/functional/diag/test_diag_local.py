"""saltext_edge.diag against local listeners and HTTP(S) servers (loopback only)."""

import time

import pytest
import salt.config
from edge_servers import ZmtpListener

from saltext_edge import diag, http_check, masters


def _opts(**over):
    opts = dict(salt.config.DEFAULT_MINION_OPTS)
    opts.update(over)
    return opts


# ---------------------------------------------------------------- http_probe
def test_http_ok(http_server):
    ret = http_check.http_probe(http_server.url(), timeout=2)
    assert ret["ok"] is True and ret["status"] == 200
    assert ret["error_class"] is None and ret["tls"] is None
    assert ret["latency_ms"] is not None and ret["proxy"] is None
    assert ret["dns"]["addresses"] == ["127.0.0.1"]


def test_http_status_error(http_server):
    ret = http_check.http_probe(http_server.url("/error"), timeout=2)
    assert ret["ok"] is False and ret["status"] == 500 and ret["error_class"] == "http"


def test_http_read_timeout_within_budget(http_server):
    started = time.perf_counter()
    ret = http_check.http_probe(http_server.url("/slow"), timeout=0.5, budget=1.0)
    assert time.perf_counter() - started < 1.3
    assert ret["error_class"] == "timeout" and ret["ok"] is False


def test_http_black_hole_within_budget(black_hole):
    started = time.perf_counter()
    ret = http_check.http_probe(f"http://{black_hole.target}/", timeout=5, budget=1.0)
    assert time.perf_counter() - started < 1.3
    assert ret["error_class"] == "timeout"


def test_http_connect_refused(closed):
    ret = http_check.http_probe(f"http://127.0.0.1:{closed}/", timeout=2)
    assert ret["error_class"] == "connect" and ret["status"] is None


def test_http_dns():
    ret = http_check.http_probe("https://nonexistent.invalid/", timeout=2)
    assert ret["error_class"] == "dns"


def test_https_self_signed_fails_verification(https_server):
    ret = http_check.http_probe(https_server.url(), timeout=2)
    assert ret["ok"] is False and ret["error_class"] == "tls"
    assert ret["tls"]["verified"] is False and "certificate" in ret["tls"]["error"].lower()


def test_https_verifies_with_ca(https_server, tls_files):
    ca, _cert, _key = tls_files
    ret = http_check.http_probe(https_server.url(), timeout=2, ca_bundle=ca)
    assert ret["ok"] is True and ret["status"] == 200
    assert ret["tls"] == {"verify": ca, "verified": True, "error": None}


def test_https_verify_off(https_server):
    ret = http_check.http_probe(https_server.url(), timeout=2, verify=False)
    assert ret["ok"] is True and ret["tls"]["verified"] is False


def test_proxy_from_environment_is_reported(monkeypatch, closed, http_server):
    monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{closed}")
    ret = http_check.http_probe("http://nonexistent.invalid/", timeout=2)
    # the proxy resolves the target, not us: we only resolve the proxy
    assert ret["proxy"] == f"http://***@127.0.0.1:{closed}"
    assert ret["proxy_source"] == "environment"
    assert ret["error_class"] == "connect"
    assert "pw" not in str(ret)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    ret = http_check.http_probe(http_server.url(), timeout=2)
    assert ret["proxy"] is None and ret["ok"] is True


# ---------------------------------------------------------------- check_master
def test_check_master_two_masters(zmtp_fast, black_hole):
    # a "master" whose publish and return ports answer, and a black-holed one
    opts = _opts(
        master=[f"127.0.0.1:{zmtp_fast.port}", f"[::1]:{black_hole.port}"],
        publish_port=zmtp_fast.port,
        master_type="failover",
    )
    started = time.perf_counter()
    ret = masters.check_master(opts, count=1, timeout=5, budget=1.5)
    assert time.perf_counter() - started < 1.7
    first, second = ret["masters"]
    assert first["reachable"] is True and first["quality"] == "good"
    assert first["dns"]["addresses"] == ["127.0.0.1"]
    assert {p["role"] for p in first["ports"]} == {"publish", "return"}
    assert second["reachable"] is False and second["quality"] == "down"
    assert ret["reachable"] == 1 and ret["quality"] == "good"
    assert ret["active"]["master"] is None  # opts of a minion that never connected


def test_check_master_active(zmtp_fast):
    opts = _opts(
        master=f"127.0.0.1:{zmtp_fast.port}",
        master_list=["127.0.0.1:1", f"127.0.0.1:{zmtp_fast.port}"],
        publish_port=zmtp_fast.port,
        master_uri=f"tcp://127.0.0.1:{zmtp_fast.port}",
        master_type="failover",
    )
    ret = masters.check_master(opts, budget=1)
    assert [m["active"] for m in ret["masters"]] == [False, True]


def test_check_master_dns_failure():
    ret = masters.check_master(_opts(master="nonexistent.invalid"), budget=1)
    m = ret["masters"][0]
    assert m["dns"]["error_class"] == "dns" and m["reachable"] is False


# ---------------------------------------------------------------- diagnose
def test_diagnose_ok(zmtp_fast, http_server):
    opts = _opts(master=f"127.0.0.1:{zmtp_fast.port}", publish_port=zmtp_fast.port)
    ret = diag.diagnose(
        opts,
        urls=[http_server.url()],
        budget=3,
        thresholds={"good": {"jitter_ms": 100}, "fair": {"jitter_ms": 200}},
    )
    assert ret["verdict"] == "ok", ret["reasons"]
    assert ret["uplink"]["quality"] == "good"
    assert ret["http"][0]["ok"] is True
    assert ret["config_audit"]["findings"]


def test_diagnose_slow_uplink_degraded(zmtp_slow):
    opts = _opts(master=f"127.0.0.1:{zmtp_slow.port}", publish_port=zmtp_slow.port)
    ret = diag.diagnose(opts, budget=3)
    assert ret["verdict"] == "degraded"
    assert any("fair" in r for r in ret["reasons"])


@pytest.mark.parametrize("budget", [1.0, 3.0])
def test_diagnose_black_holed_masters_down_within_budget(black_hole, https_server, budget):
    other = ZmtpListener(0.0)  # only the publish port answers: not enough
    try:
        opts = _opts(
            master=[f"127.0.0.1:{black_hole.port}", "nonexistent.invalid"],
            publish_port=other.port,
            master_type="failover",
        )
        started = time.perf_counter()
        ret = diag.diagnose(
            opts,
            urls=[https_server.url(), f"http://{black_hole.target}/"],
            budget=budget,
            timeout=5,
        )
        elapsed = time.perf_counter() - started
    finally:
        other.close()
    assert elapsed < budget + 0.2, elapsed
    assert ret["verdict"] == "down", ret
    assert "no configured master is reachable" in ret["reasons"][0]
    joined = "\n".join(ret["reasons"])
    assert "DNS failed" in joined and "tls" in joined
