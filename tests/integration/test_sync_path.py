"""
The ``salt://`` route: a master and a minion whose Python does NOT have
saltext_edge installed get working modules from the repository's ``_*/`` tree
with ``saltutil.sync_*``.
"""

import json
import subprocess

import pytest
from saltfactories.utils import random_string
from tests.support.events import wait_event

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bare_master(salt_factories, master_defaults, python_without_ext):
    factory = salt_factories.salt_master_daemon(
        random_string("bare-master-"), defaults=dict(master_defaults)
    )
    factory.python_executable = python_without_ext
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def bare_minion(bare_master, python_without_ext):
    factory = bare_master.salt_minion_daemon(
        random_string("bare-minion-"),
        defaults={"edge": {"site": "sync-site"}},
    )
    factory.python_executable = python_without_ext
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def bare_salt_cli(bare_master, python_without_ext):
    cli = bare_master.salt_cli()
    cli.python_executable = python_without_ext
    return cli


@pytest.fixture(scope="module")
def bare_run_cli(bare_master, python_without_ext):
    cli = bare_master.salt_run_cli()
    cli.python_executable = python_without_ext
    return cli


def test_minion_has_no_edge_before_sync(bare_salt_cli, bare_minion):
    ret = bare_salt_cli.run("sys.list_functions", "edge", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert ret.data == []


def test_sync_all_ships_modules_grains_states(bare_salt_cli, bare_minion):
    ret = bare_salt_cli.run("saltutil.sync_all", minion_tgt=bare_minion.id, _timeout=180)
    assert ret.returncode == 0, ret
    assert "modules.edge_mod" in ret.data["modules"]
    assert "utils.saltext_edge" in " ".join(ret.data["utils"])
    assert "beacons.edge_heartbeat" in ret.data["beacons"]

    ret = bare_salt_cli.run("sys.list_functions", "edge", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert "edge.version" in ret.data
    assert "edge.diagnose" in ret.data

    ret = bare_salt_cli.run("edge.version", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert ret.data == "0.1.0"

    ret = bare_salt_cli.run("grains.get", "edge_site", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert ret.data == "sync-site"

    ret = bare_salt_cli.run("sys.list_state_functions", "edge", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert "edge.minion_config" in ret.data


def test_master_gets_runner_and_wheel(bare_master, bare_run_cli, python_without_ext):
    for kind in ("utils", "runners", "wheel", "engines", "output"):
        ret = bare_run_cli.run(f"saltutil.sync_{kind}")
        assert ret.returncode == 0, ret
        if kind == "engines":
            assert "engines.edge_fleet" in ret.stdout, ret
    ret = bare_run_cli.run("edge.version")
    assert ret.returncode == 0, ret
    # this interpreter's salt-run prints a bare string return unquoted even
    # with --out=json, so read stdout rather than the parsed data
    assert ret.stdout.strip().strip('"') == "0.1.0", ret
    # the synced outputter prints the report as an operator reads it
    ret = bare_run_cli.run("edge.report", "--out=edge")
    assert ret.returncode == 0, ret
    assert ret.stdout.startswith("Edge fleet at "), ret

    # wheel functions run in the caller's process: call one through Salt's
    # WheelClient with the extension-free interpreter
    code = (
        "import json, salt.config, salt.wheel;"
        f"opts = salt.config.master_config({bare_master.config_file!r});"
        "print(json.dumps(salt.wheel.WheelClient(opts).cmd('edge.version')))"
    )
    out = subprocess.run(
        [python_without_ext, "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == "0.1.0"


def test_synced_beacon_sends_signed_heartbeats(
    bare_master, bare_salt_cli, bare_minion, event_listener
):
    """The beacon synced to a minion without the package runs and signs with the minion's key."""
    import time

    import salt.cache
    import salt.config

    from saltext_edge.fleet import signing

    ret = bare_salt_cli.run("saltutil.sync_all", minion_tgt=bare_minion.id, _timeout=180)
    assert ret.returncode == 0, ret
    start = time.time()
    ret = bare_salt_cli.run(
        "beacons.add",
        "edge_heartbeat",
        "[{'period': 2}, {'first_after': 0}]",
        minion_tgt=bare_minion.id,
    )
    assert ret.returncode == 0 and ret.data.get("result") is True, ret
    beat = wait_event(
        event_listener,
        bare_master,
        "edge/heartbeat",
        start,
        60,
        lambda data: (data.get("data") or {}).get("id") == bare_minion.id,
    ).data["data"]
    ret = bare_salt_cli.run("beacons.delete", "edge_heartbeat", minion_tgt=bare_minion.id)
    assert ret.returncode == 0, ret
    assert beat["site"] == "sync-site"
    opts = salt.config.master_config(bare_master.config_file)
    pub = salt.cache.Cache(opts, driver=opts["keys.cache_driver"]).fetch("keys", bare_minion.id)[
        "pub"
    ]
    assert signing.verify_with_pem(pub, beat)
    assert not signing.verify_with_pem(pub, dict(beat, seq=beat["seq"] + 1))
