"""
Manual mode: the reactor records tokens (auto_admit off), an operator runs
``salt-run edge.accept_pending``. Seven brand-new minions; only the first two
may get in.
"""

import pathlib
import time

import pytest
import yaml
from tests.daemons import answers_ping
from tests.support.waits import wait_until

from saltext_edge import admission
from saltext_edge import tokens as edge_token

from .conftest import (
    ACCEPTANCE_WAIT,
    auth_events,
    key_lists,
    make_master,
    minion_pub,
    new_minion,
    read_tree,
    terminate_all,
    token_for,
)

GOOD_SITE = "sh-3"
FLEET_SITE = "sh-4"
REVOKED_SITE = "old-site"


@pytest.fixture(scope="module")
def keys(fleet_secret, wrong_secret):
    return {
        "good": edge_token.site_key(fleet_secret, GOOD_SITE),
        "fleet_derived": edge_token.site_key(fleet_secret, FLEET_SITE),
        "wrong": edge_token.site_key(wrong_secret, GOOD_SITE),
        "revoked": edge_token.site_key(fleet_secret, REVOKED_SITE),
        "replaced": edge_token.site_key(fleet_secret, GOOD_SITE),
    }


@pytest.fixture(scope="module")
def master(salt_factories, master_defaults, fleet_secret):
    factory = make_master(
        salt_factories,
        master_defaults,
        fleet_secret,
        {"revoked_sites": [REVOKED_SITE], "on_invalid": "keep", "auto_admit": False},
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def outputs():
    """Every runner stdout/stderr of this module, for the leak search."""
    return []


@pytest.fixture(scope="module")
def fleet(master, keys, fleet_secret, event_listener):
    """Start the seven minions; wait until each has pended (and tokens are recorded)."""
    opts = master.config
    minions = {
        "good": new_minion(master, "good-", {"site": GOOD_SITE, "site_key": keys["good"]}),
        "fleet": new_minion(master, "fleet-", {"site": FLEET_SITE, "shared_secret": fleet_secret}),
        "wrong": new_minion(master, "wrong-", {"site": GOOD_SITE, "site_key": keys["wrong"]}),
        "none": new_minion(master, "noedge-"),
        "revoked": new_minion(
            master, "revoked-", {"site": REVOKED_SITE, "site_key": keys["revoked"]}
        ),
        "replaced": new_minion(
            master, "replaced-", {"site": GOOD_SITE, "site_key": keys["replaced"]}
        ),
    }
    started = []
    try:
        start = time.time()
        for minion in minions.values():
            minion.start()
            started.append(minion)
        # the copier needs the good minion's token: compute it from its
        # (freshly generated) public key, as an eavesdropper would see it
        good = minions["good"]
        wait_until(
            lambda: pathlib.Path(good.config["pki_dir"], "minion.pub").exists(),
            60,
            what="the good minion's key pair",
        )
        stolen = token_for(keys["good"], GOOD_SITE, good.id, minion_pub(good))
        minions["copied"] = new_minion(master, "copied-", extra={"grains": {"edge_token": stolen}})
        minions["copied"].start()
        started.append(minions["copied"])

        with_token = ("good", "fleet", "wrong", "revoked", "replaced", "copied")
        for name, minion in minions.items():
            wait_until(
                lambda m=minion: auth_events(event_listener, master, m.id, start),
                90,
                what=f"a pending auth event from {name}",
            )
        for name in with_token:
            wait_until(
                lambda m=minions[name]: (
                    admission.list_decisions(opts).get(m.id, {}).get("decision") == "recorded"
                ),
                60,
                what=f"the token of {name} to be recorded by the reactor",
            )

        # "key replaced after the token was seen": the token of 'replaced' is
        # recorded for its first key; now that key is deleted, the node comes
        # back with a new key pair and without its enrollment config
        replaced = minions["replaced"]
        old_pub = minion_pub(replaced)
        replaced.terminate()
        ret = master.salt_key_cli().run("-d", replaced.id, "-y")
        assert ret.returncode == 0, ret
        pki = pathlib.Path(replaced.config["pki_dir"])
        for name in ("minion.pem", "minion.pub"):
            (pki / name).unlink()
        conf_file = pathlib.Path(replaced.config["conf_file"])
        conf = yaml.safe_load(conf_file.read_text())
        conf.pop("edge", None)
        conf_file.write_text(yaml.safe_dump(conf))
        restart = time.time()
        replaced.start()
        wait_until(
            lambda: auth_events(event_listener, master, replaced.id, restart),
            90,
            what="the replaced minion to pend with its new key",
        )
        assert minion_pub(replaced) != old_pub
        yield minions
    finally:
        terminate_all(started)


def _pending(master):
    return set(key_lists(master).get("minions_pre", []))


def test_dry_run_changes_nothing(master, fleet, salt_factories, outputs):
    before = key_lists(master)
    cli = master.salt_run_cli()
    ret = cli.run("edge.accept_pending", "dry_run=True")
    outputs.append(ret.stdout + ret.stderr)
    assert ret.returncode == 0, ret
    assert ret.data[fleet["good"].id]["decision"] == "accepted"
    assert ret.data[fleet["good"].id]["action"] == "none"
    assert key_lists(master) == before


def test_accept_pending(master, fleet, outputs):
    cli = master.salt_run_cli()
    ret = cli.run("edge.accept_pending")
    outputs.append(ret.stdout + ret.stderr)
    assert ret.returncode == 0, ret
    res = ret.data
    expect = {
        "good": ("accepted", None, GOOD_SITE),
        "fleet": ("accepted", None, FLEET_SITE),
        "wrong": ("refused", "bad_token", GOOD_SITE),
        "none": ("no_token", "no_token_seen", None),
        "copied": ("refused", "bad_token", GOOD_SITE),
        "revoked": ("refused", "revoked_site", REVOKED_SITE),
        "replaced": ("refused", "key_changed", None),
    }
    for name, (decision, reason, site) in expect.items():
        got = res[fleet[name].id]
        assert (got["decision"], got["reason"], got["site"]) == (decision, reason, site), name
    keys = key_lists(master)
    accepted = set(keys.get("minions", []))
    assert {fleet["good"].id, fleet["fleet"].id} <= accepted
    # on_invalid: keep -> every refused / token-less key is still pending
    for name in ("wrong", "none", "copied", "revoked", "replaced"):
        assert fleet[name].id in keys.get("minions_pre", []), name
        assert fleet[name].id not in accepted

    # decisions are stored for the report runner
    decisions = admission.list_decisions(master.config)
    assert decisions[fleet["good"].id]["decision"] == "accepted"
    assert decisions[fleet["replaced"].id]["reason"] == "key_changed"


def test_accepted_minions_answer(master, fleet):
    """
    The minions admitted by token answer ``test.ping``; a refused one does
    not. Runs on its own too: it admits what it needs first (a no-op after
    ``test_accept_pending``).
    """
    ids = [fleet[name].id for name in ("good", "fleet")]
    ret = master.salt_run_cli().run("edge.accept_pending", "match=" + ",".join(ids))
    assert ret.returncode == 0, ret
    assert set(ids) <= set(key_lists(master).get("minions", []))
    for mid in ids:
        answered = wait_until(
            lambda mid=mid: answers_ping(master, mid),
            30 * ACCEPTANCE_WAIT,
            interval=1,
            what=f"{mid} to answer test.ping",
        )
        assert answered is True
    assert answers_ping(master, fleet["wrong"].id) is False


def test_refused_stay_pending_on_rerun(master, fleet, outputs):
    ret = master.salt_run_cli().run("edge.accept_pending", "match=wrong-*")
    outputs.append(ret.stdout + ret.stderr)
    assert ret.returncode == 0, ret
    assert set(ret.data) == {fleet["wrong"].id}
    assert ret.data[fleet["wrong"].id]["action"] == "kept"
    assert fleet["wrong"].id in _pending(master)


def test_accept_pending_wait(master, keys, outputs):
    """
    ``wait`` listens to salt/auth: a node that pends while the runner waits
    gets in, and the runner returns then (match names the id), not after
    the hour it was allowed to wait.
    """
    import threading

    late = new_minion(master, "late-", {"site": GOOD_SITE, "site_key": keys["good"]})
    result = {}

    def run():
        result["ret"] = master.salt_run_cli(timeout=180).run(
            "edge.accept_pending", f"match={late.id}", "wait=3600"
        )

    runner = threading.Thread(target=run)
    runner.start()
    try:
        late.start()
        runner.join(240)
        ret = result["ret"]
        outputs.append(ret.stdout + ret.stderr)
        assert ret.returncode == 0, ret
        assert ret.data[late.id]["decision"] == "accepted", ret.data
        assert late.id in key_lists(master).get("minions", [])
    finally:
        late.terminate()


def test_site_key_runner(master, outputs, tmp_path, keys):
    target = tmp_path / "sh-3.key"
    cli = master.salt_run_cli()
    ret = cli.run("edge.site_key", GOOD_SITE, f"path={target}")
    outputs.append(ret.stdout + ret.stderr)
    assert ret.returncode == 0, ret
    assert set(ret.data) == {"site", "path", "fingerprint"}
    assert ret.data["fingerprint"] == edge_token.key_fingerprint(keys["good"])
    assert target.read_text().strip() == keys["good"]
    assert target.stat().st_mode & 0o777 == 0o600
    # never overwrites
    ret = cli.run("edge.site_key", GOOD_SITE, f"path={target}")
    outputs.append(ret.stdout + ret.stderr)
    assert ret.returncode != 0
    assert "already exists" in ret.stdout + ret.stderr
    assert "Traceback" not in ret.stdout + ret.stderr
    ret = cli.run("edge.site_key", "bad site!")
    outputs.append(ret.stdout + ret.stderr)
    # Salt reports invalid arguments with their message and the usage
    assert "site names are 1-64 characters" in ret.stdout + ret.stderr
    assert "Traceback" not in ret.stdout + ret.stderr


def test_cli_site_key(master, keys):
    import subprocess
    import sys

    conf_dir = str(pathlib.Path(master.config["conf_file"]).parent)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from saltext_edge.cli import main; sys.exit(main())",
            "site-key",
            GOOD_SITE,
            "-c",
            conf_dir,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == keys["good"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from saltext_edge.cli import main; sys.exit(main())",
            "site-key",
            "bad site",
            "-c",
            conf_dir,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2


def test_no_secret_leaks(master, fleet, keys, fleet_secret, outputs):
    """Run last in this module: the secret and site keys are nowhere."""
    needles = {"fleet secret": fleet_secret}
    needles.update({f"site key {k}": v for k, v in keys.items()})
    places = [pathlib.Path(master.config["log_file"])]
    places += [pathlib.Path(m.config["log_file"]) for m in fleet.values()]
    texts = []
    for place in places:
        if place.exists():
            texts.append((str(place), place.read_text(errors="replace")))
    jobs_dir = pathlib.Path(master.config["cachedir"], "jobs")
    texts += list(read_tree(jobs_dir))
    texts += [(f"runner output {i}", out) for i, out in enumerate(outputs)]
    assert len(texts) > len(fleet)
    for where, text in texts:
        for what, needle in needles.items():
            assert needle not in text, f"{what} found in {where}"
    # our own log lines never carry a token
    tokens = [
        token_for(keys["good"], GOOD_SITE, fleet["good"].id, minion_pub(fleet["good"])),
    ]
    for where, text in texts:
        for line in text.splitlines():
            if "edge admission" in line or "edge_token:" in line:
                for tok in tokens:
                    assert tok not in line, f"a token in our log line in {where}"
    for i, out in enumerate(outputs):
        for tok in tokens:
            assert tok not in out, f"a token in runner output {i}"
