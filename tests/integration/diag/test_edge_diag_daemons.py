"""
Edge grains and diagnostics on real salt daemons (pytest-salt-factories):
grains on a running minion, -G targeting, check_master / diagnose against the
real master, and diagnose / the uplink grain on a minion whose masters are
black-holed (salt-call --local: such a minion could never finish starting).
"""

import time

import pytest
from saltfactories.utils import random_string

SITE = "sh-diag-" + random_string("", uppercase=False)[:6]


@pytest.fixture(scope="module")
def edge_minion(salt_master):
    factory = salt_master.salt_minion_daemon(
        random_string("edge-diag-"),
        overrides={
            # the master's publish port is not 4505 here; a minion learns it at
            # auth time, but its grains run before that, so tell it
            "publish_port": salt_master.config["publish_port"],
            # jitter allowance: the test box is a shared, loaded 2-core machine
            "edge": {
                "site": SITE,
                "uplink": {
                    "count": 3,
                    "budget": 2,
                    "thresholds": {"good": {"jitter_ms": 100}, "fair": {"jitter_ms": 200}},
                },
            },
        },
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def blackholed_minion(salt_master, black_holes):
    """A minion config (daemon never started) whose master ports are black holes."""
    pub, ret = black_holes
    return salt_master.salt_minion_daemon(
        random_string("edge-bh-"),
        overrides={
            "master": "127.0.0.1",
            "master_port": ret.port,
            "publish_port": pub.port,
            "edge": {"site": SITE, "uplink": {"budget": 1.5}},
        },
    )


def test_grains_on_running_minion(salt_cli, edge_minion):
    ret = salt_cli.run("grains.item", "edge_site", "edge_uplink", minion_tgt=edge_minion.id)
    assert ret.returncode == 0, ret
    grains = ret.data
    assert grains["edge_site"] == SITE
    up = grains["edge_uplink"]
    assert set(up) == {"quality", "rtt_ms", "jitter_ms", "loss_pct", "target", "checked_at"}
    # the real master answered with its ZeroMQ greeting on both ports
    assert up["quality"] == "good", up
    assert up["loss_pct"] == 0.0
    assert up["target"].startswith("127.0.0.1:")


def test_grain_targeting(salt_cli, edge_minion):
    ret = salt_cli.run("-G", "test.ping", minion_tgt=f"edge_site:{SITE}")
    assert ret.returncode == 0, ret
    assert ret.data == {edge_minion.id: True} or ret.data is True, ret
    ret = salt_cli.run(
        "-C", "test.ping", minion_tgt=f"G@edge_uplink:quality:good and G@edge_site:{SITE}"
    )
    assert ret.returncode == 0, ret
    assert ret.data == {edge_minion.id: True} or ret.data is True, ret


def test_check_master_against_real_master(salt_cli, edge_minion, salt_master):
    ret = salt_cli.run("edge.check_master", minion_tgt=edge_minion.id)
    assert ret.returncode == 0, ret
    data = ret.data
    (master,) = data["masters"]
    assert master["reachable"] is True
    ports = {p["role"]: p for p in master["ports"]}
    assert ports["return"]["port"] == salt_master.config["ret_port"]
    assert ports["publish"]["port"] == salt_master.config["publish_port"]
    assert all(p["quality"] == "good" for p in ports.values())
    assert data["active"]["master"] == "127.0.0.1"
    assert master["active"] is True


def test_diagnose_on_running_minion(salt_cli, edge_minion):
    ret = salt_cli.run("edge.diagnose", "budget=4", minion_tgt=edge_minion.id)
    assert ret.returncode == 0, ret
    data = ret.data
    assert data["verdict"] in ("ok", "degraded"), data["reasons"]
    assert data["uplink"]["quality"] == "good"
    assert not any("master" in r and "unreachable" in r for r in data["reasons"])
    assert data["elapsed_ms"] < 4000
    assert {f["setting"] for f in data["config_audit"]["findings"]} >= {
        "master_type",
        "master_alive_interval",
        "tcp_keepalive",
        "ping_interval",
        "random_reauth_delay",
        "recon_max",
        "retry_dns",
        "autosign_grains",
    }


def test_bad_arguments_are_clean_errors(salt_call_cli):
    for args in (
        ("edge.uplink", "count=-1"),
        ("edge.http_probe", "ftp://x"),
        ("edge.check_master", "masters=[127.0.0.1:70000]"),
        ("edge.diagnose", "budget=0"),
    ):
        ret = salt_call_cli.run("--local", *args)
        assert ret.returncode != 0, ret
        assert "Traceback" not in ret.stdout + ret.stderr, ret
        # one line naming the function (errors.edge_errors, as runners do)
        (line,) = (ret.stdout + ret.stderr).strip().splitlines()
        assert f"{args[0]}: " in line, line
        assert "internal error" not in line, line


def test_diagnose_black_holed_master_is_down_within_budget(blackholed_minion):
    cli = blackholed_minion.salt_call_cli(timeout=60)
    budget = 3.0
    ret = cli.run("--local", "edge.diagnose", f"budget={budget}", "timeout=5")
    assert ret.returncode == 0, ret
    data = ret.data
    assert data["verdict"] == "down", data
    assert data["reasons"][0] == "the master is not reachable on both its ports"
    assert any("timeout" in r for r in data["reasons"]), data["reasons"]
    assert data["elapsed_ms"] < budget * 1000 + 200, data["elapsed_ms"]


def test_uplink_grain_black_holed_within_budget(salt_master, blackholed_minion, black_holes):
    budget = 1.5
    targets = [f"127.0.0.1:{h.port}" for h in black_holes]
    holed = salt_master.salt_minion_daemon(
        random_string("edge-bhg-"),
        overrides={"edge": {"uplink": {"targets": targets, "budget": budget, "timeout": 5}}},
    )
    baseline = salt_master.salt_minion_daemon(
        random_string("edge-base-"), overrides={"edge": {"uplink": {"enabled": False}}}
    )
    # the grain through salt-call (a real process: grains load on its start-up path)
    for factory, quality in ((baseline, "unknown"), (holed, "down")):
        ret = factory.salt_call_cli(timeout=60).run("--local", "grains.item", "edge_uplink")
        assert ret.returncode == 0, ret
        assert ret.data["edge_uplink"]["quality"] == quality, ret.data
    # and timed precisely in-process, with the minion's own config: Salt's
    # grain loader calling our grain function (whole salt-call timings on a
    # shared 2-core box swing by seconds, see bench/bench_grains.py)
    import salt.config
    import salt.loader

    opts = salt.config.minion_config(holed.config_file)
    funcs = salt.loader.grain_funcs(opts)
    grain_func = funcs["edge_grains.edge_uplink"]  # loads the module (not timed)
    started = time.perf_counter()
    grain = grain_func()
    elapsed = time.perf_counter() - started
    assert grain["edge_uplink"]["quality"] == "down"
    assert elapsed < budget + 0.3, elapsed

    # the execution function, with explicit black-holed targets, also keeps its budget
    cli = blackholed_minion.salt_call_cli(timeout=60)
    ret = cli.run("--local", "edge.uplink", f"targets={','.join(targets)}", "budget=1.0")
    assert ret.returncode == 0, ret
    assert ret.data["quality"] == "down"
    assert ret.data["elapsed_ms"] < 1200
