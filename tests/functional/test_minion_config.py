"""
State ``edge.minion_config`` through Salt's loader in this process
(``states`` fixture: Salt's real ``state.single`` over a minion config from
salt-factories), every case in apply and in test mode; plus a few runs
through a real ``salt-call`` process for what only a process shows (its
console and log output at debug level).

Every call passes ``restart=False`` except where the restart decision is
the subject; nothing here can restart anything (no minion daemon runs). The
restart itself is covered in tests/integration/test_failover.py.
"""

import json
import logging
import os
import stat

import pytest

from saltext_edge import tokens as token

SITE_KEY = token.site_key("functional-test-fleet-secret", "sh-3")
SHARED_SECRET = "a-fleet-secret-of-32-characters!"
MASTERS = ["salt-a.example.net", "salt-b.example.net:4506"]

MODES = pytest.mark.parametrize("test_mode", [False, True], ids=["apply", "test-mode"])


def _run(states, test_mode=False, **kwargs):
    """Through ``state.single`` (the ``states`` fixture)."""
    kwargs.setdefault("restart", False)
    if test_mode:
        kwargs["test"] = True
    ret = states.edge.minion_config(**kwargs)
    return ret.full_return


def _call(state_funcs, test_mode=False, **kwargs):
    """The loaded state function called directly (the ``state_funcs`` fixture)."""
    kwargs.setdefault("restart", False)
    return state_funcs.run("edge.minion_config", test_mode, **kwargs)


@pytest.fixture
def confdir(tmp_path):
    path = tmp_path / "salt"
    (path / "minion.d").mkdir(parents=True)
    return path


@pytest.fixture
def dropin(confdir):
    return confdir / "minion.d" / "edge.conf"


def _snapshot(root):
    out = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        out[str(path)] = (
            stat.S_IMODE(st_.st_mode),
            st_.st_mtime_ns,
            path.read_bytes() if path.is_file() else None,
        )
    return out


# --------------------------------------------------------------------------
# validation: every error leaves the files untouched
# --------------------------------------------------------------------------
BAD_INPUTS = {
    "masters-missing-empty": ({"masters": []}, "non-empty list"),
    "masters-a-string": ({"masters": "salt-a"}, "not a string"),
    "masters-not-list": ({"masters": {"a": 1}}, "non-empty list"),
    "master-bad-host": ({"masters": ["salt a"]}, "not a valid host name"),
    "master-bad-port": ({"masters": ["salt-a:99999"]}, "port must be 1-65535"),
    "master-port-zero": ({"masters": ["salt-a:0"]}, "port must be 1-65535"),
    "master-not-string": ({"masters": [42]}, "not a non-empty string"),
    "master-empty-string": ({"masters": [""]}, "not a non-empty string"),
    "master-bad-ipv6": ({"masters": ["[fe80::zz]:4506"]}, "not an IPv6 address"),
    "masters-duplicate": ({"masters": ["salt-a", "SALT-A"]}, "more than once"),
    "interval-zero": ({"master_alive_interval": 0}, "master_alive_interval"),
    "interval-string": ({"master_alive_interval": "30"}, "master_alive_interval"),
    "interval-bool": ({"master_alive_interval": True}, "master_alive_interval"),
    "interval-huge": ({"master_alive_interval": 10**6}, "master_alive_interval"),
    "failover-not-bool": ({"failover": "yes"}, "failover must be"),
    "single-master-many": ({"failover": False}, "exactly one master"),
    "nat-not-bool": ({"nat_keepalive": "no"}, "nat_keepalive must be"),
    "restart-not-bool": ({"restart": "later"}, "restart must be"),
    "site-bad-chars": ({"site": "sh 3"}, "site names are 1-64"),
    "site-too-long": ({"site": "s" * 65}, "site names are 1-64"),
    "site-key-bad": ({"site": "sh-3", "site_key": "not-hex"}, "64 hexadecimal"),
    "site-key-without-site": ({"site_key": SITE_KEY}, "needs site"),
    "secret-without-site": ({"shared_secret": SHARED_SECRET}, "needs site"),
    "secret-too-short": ({"site": "sh-3", "shared_secret": "short"}, "too short"),
    "secret-and-key": (
        {"site": "sh-3", "site_key": SITE_KEY, "shared_secret": SHARED_SECRET},
        "not both",
    ),
    "extra-not-dict": ({"extra": ["log_level"]}, "extra must be a dictionary"),
    "extra-managed-key": ({"extra": {"master": "evil"}}, "extra sets master"),
    "extra-managed-edge": ({"extra": {"edge": {"site": "x"}}}, "extra sets edge"),
    "name-relative": ({"name": "minion.d/edge.conf"}, "absolute path"),
    "name-not-conf": ({"name": "SUFFIX:.yaml"}, "must end in '.conf'"),
}


def _bad_kwargs(case, dropin):
    kwargs, _ = BAD_INPUTS[case]
    full = {"name": str(dropin), "masters": list(MASTERS), "restart": False}
    full.update(kwargs)
    if str(full["name"]).startswith("SUFFIX:"):
        full["name"] = str(dropin)[: -len(".conf")] + full["name"][len("SUFFIX:") :]
    return full


@MODES
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_validation_error(state_funcs, confdir, dropin, case, test_mode):
    dropin.write_text("# an operator's file that must survive bad input\nmaster: keep-me\n")
    os.chmod(dropin, 0o640)
    secret = confdir / "edge" / "edge.key"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(SITE_KEY)
    os.chmod(secret, 0o600)
    before = _snapshot(confdir)

    chunk = _call(state_funcs, test_mode, **_bad_kwargs(case, dropin))
    assert chunk["result"] is False, chunk
    assert chunk["changes"] == {}, chunk
    assert "Invalid parameters, nothing was changed" in chunk["comment"]
    assert BAD_INPUTS[case][1] in chunk["comment"], chunk["comment"]
    assert SITE_KEY not in json.dumps(chunk)
    assert SHARED_SECRET not in json.dumps(chunk)
    assert _snapshot(confdir) == before


# --------------------------------------------------------------------------
# the happy path
# --------------------------------------------------------------------------
def test_test_mode_changes_nothing(states, dropin, confdir):
    chunk = _run(
        states,
        test_mode=True,
        name=str(dropin),
        masters=MASTERS,
        site="sh-3",
        site_key=SITE_KEY,
        restart=True,
    )
    assert chunk["result"] is None, chunk
    assert chunk["comment"].startswith("Would have: create " + str(dropin)), chunk["comment"]
    assert "write the secret file" in chunk["comment"]
    assert "+master_type: failover" in chunk["changes"]["diff"]
    assert chunk["changes"]["secret_file"]["new"] == "<hidden>"
    assert not dropin.exists()
    assert not (confdir / "edge").exists()
    assert SITE_KEY not in json.dumps(chunk)


@MODES
def test_idempotent_and_diff(states, dropin, test_mode):
    kwargs = {
        "name": str(dropin),
        "masters": MASTERS,
        "master_alive_interval": 10,
        "site": "sh-3",
        "extra": {"log_level_logfile": "info", "ping_interval": 2},
    }
    first = _run(states, **kwargs)
    assert first["result"] is True, first
    diff = first["changes"]["diff"]
    assert diff.startswith("--- /dev/null\n+++ " + str(dropin))
    for line in (
        "+master:",
        "+  - salt-a.example.net",
        "+  - salt-b.example.net:4506",
        "+master_type: failover",
        "+master_alive_interval: 10",
        "+tcp_keepalive: true",
        "+ping_interval: 2",
        "+autosign_grains:",
        "+  - edge_token",
        "+acceptance_wait_time: 0.25",
        "+acceptance_wait_time_max: 10",
        "+  site: sh-3",
        "+log_level_logfile: info",
    ):
        assert line + "\n" in diff, (line, diff)
    assert "extra overrides the recommended ping_interval" in first["comment"]
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    content = dropin.read_text()
    mtime = dropin.stat().st_mtime_ns

    # second identical run (applied or in test mode): no changes
    second = _run(states, test_mode, **kwargs)
    assert second["result"] is True, second
    assert second["changes"] == {}
    assert "already in the desired state" in second["comment"]
    assert dropin.read_text() == content
    assert dropin.stat().st_mtime_ns == mtime

    # a changed interval shows as a one-line change in the diff
    kwargs["master_alive_interval"] = 20
    third = _run(states, test_mode, **kwargs)
    assert third["result"] is (None if test_mode else True), third
    diff = third["changes"]["diff"]
    assert "-master_alive_interval: 10\n+master_alive_interval: 20\n" in diff, diff
    assert diff.count("\n-") == 1 and diff.count("\n+") == 2  # +++ header and the line
    expected = content if test_mode else content.replace("interval: 10", "interval: 20")
    assert dropin.read_text() == expected


@MODES
def test_single_master_and_no_nat(state_funcs, dropin, test_mode):
    chunk = _call(
        state_funcs,
        test_mode,
        name=str(dropin),
        masters=["10.1.2.3"],
        failover=False,
        nat_keepalive=False,
    )
    assert chunk["result"] is (None if test_mode else True), chunk
    diff = chunk["changes"]["diff"]
    assert "+master: 10.1.2.3\n+master_type: str\n+master_alive_interval: 30\n" in diff
    assert "tcp_keepalive" not in diff
    assert "autosign_grains" not in diff
    assert dropin.exists() is not test_mode
    if not test_mode:
        assert diff.endswith(
            "".join("+" + line for line in dropin.read_text().splitlines(True)[2:])
        )


def _edge_records(caplog, value):
    """Log records of this extension (any level) that hold ``value``."""
    return [
        rec
        for rec in caplog.records
        if ("saltext_edge" in rec.name or "edge_state" in rec.name) and value in rec.getMessage()
    ]


@pytest.mark.parametrize("kind", ["site_key", "shared_secret"])
def test_secret_file_is_0600_and_secret_never_shown(state_funcs, dropin, confdir, kind, caplog):
    caplog.set_level(logging.DEBUG)
    value = SITE_KEY if kind == "site_key" else SHARED_SECRET
    base = {"name": str(dropin), "masters": MASTERS, "site": "sh-3"}
    chunk = _call(state_funcs, **base, **{kind: value})
    assert chunk["result"] is True, chunk
    secret = confdir / "edge" / "edge.key"
    st_ = secret.stat()
    assert stat.S_IMODE(st_.st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert secret.read_text() == value
    text = dropin.read_text()
    assert f"  {kind}_file: {secret}\n" in text
    assert value not in text
    assert chunk["changes"]["secret_file"]["fingerprint"] == token.key_fingerprint(value)
    assert value not in json.dumps(chunk)

    # same secret again: nothing to do (in test mode too); wrong mode: fixed
    for test_mode in (True, False):
        again = _call(state_funcs, test_mode, **base, **{kind: value})
        assert again["changes"] == {}, again
    os.chmod(secret, 0o644)
    chmod = _call(state_funcs, test_mode=True, **base, **{kind: value})
    assert chmod["changes"]["secret_file"]["new"].startswith("mode 0600"), chmod
    assert stat.S_IMODE(secret.stat().st_mode) == 0o644
    chmod = _call(state_funcs, **base, **{kind: value})
    assert chmod["changes"]["secret_file"]["new"].startswith("mode 0600"), chmod
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    # a new secret: updated, old and new fingerprints only
    other = (
        token.site_key("another-fleet-secret-123", "sh-3") if kind == "site_key" else value[::-1]
    )
    rotated = _call(state_funcs, **base, **{kind: other})
    change = rotated["changes"]["secret_file"]
    assert "diff" not in rotated["changes"]  # the drop-in only holds the path
    assert token.key_fingerprint(value) in change["old"]
    assert token.key_fingerprint(other) in change["new"]
    assert value not in json.dumps(rotated) and other not in json.dumps(rotated)
    assert secret.read_text() == other
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not _edge_records(caplog, value) and not _edge_records(caplog, other)


@MODES
def test_secret_from_pillar_key(states, loaders, dropin, confdir, test_mode, caplog):
    """``site_key_pillar`` reads the key from pillar when the state runs."""
    caplog.set_level(logging.DEBUG)
    loaders.opts["pillar"] = {"edge_test": {"site_key": SITE_KEY}}
    try:
        chunk = _run(
            states,
            test_mode,
            name=str(dropin),
            masters=MASTERS,
            site="sh-3",
            site_key_pillar="edge_test:site_key",
        )
        missing = _run(
            states,
            test_mode,
            name=str(dropin),
            masters=MASTERS,
            site="sh-3",
            site_key_pillar="edge_test:nothing",
        )
        both = _run(
            states,
            test_mode,
            name=str(dropin),
            masters=MASTERS,
            site="sh-3",
            site_key=SITE_KEY,
            site_key_pillar="edge_test:site_key",
        )
    finally:
        loaders.opts.pop("pillar", None)
    assert chunk["result"] is (None if test_mode else True), chunk
    assert chunk["changes"]["secret_file"]["fingerprint"] == token.key_fingerprint(SITE_KEY)
    assert (confdir / "edge" / "edge.key").exists() is not test_mode
    assert missing["result"] is False and "edge_test:nothing" in missing["comment"], missing
    assert both["result"] is False and "not both" in both["comment"], both
    assert SITE_KEY not in json.dumps([chunk, missing, both])
    assert not _edge_records(caplog, SITE_KEY)


def test_conflicting_values_reported(state_funcs, dropin, confdir):
    (confdir / "minion").write_text(
        "master: old-master.example.net\nmaster_alive_interval: 5\n"
        "edge:\n  site_key: deadbeef-not-to-be-shown\n"
    )
    (confdir / "minion.d" / "zz-local.conf").write_text("tcp_keepalive_idle: 600\n")
    (confdir / "minion.d" / "aa-broken.conf").write_text("this: [is: not yaml\n")
    (confdir / "minion.d" / "bb-same.conf").write_text("tcp_keepalive: true\n")
    chunk = _call(state_funcs, name=str(dropin), masters=MASTERS, site="sh-3")
    assert chunk["result"] is True, chunk
    comment = chunk["comment"]
    assert "Conflicting settings elsewhere in the minion config:" in comment
    main = str(confdir / "minion")
    assert f'master is "old-master.example.net" in {main}' in comment
    assert f"master_alive_interval is 5 in {main}" in comment
    assert "the drop-in wins" in comment
    later = str(confdir / "minion.d" / "zz-local.conf")
    assert f"tcp_keepalive_idle is 600 in {later} (managed: 20; that file wins" in comment
    assert "aa-broken.conf: cannot be read as YAML" in comment
    assert "bb-same.conf" not in comment  # same value: no conflict
    assert "deadbeef-not-to-be-shown" not in json.dumps(chunk)
    assert f'edge:site_key is "<hidden>" in {main}' in comment
    assert any("zz-local.conf" in warning for warning in chunk["warnings"])
    # nothing to change: the conflicts are still reported
    again = _call(state_funcs, test_mode=True, name=str(dropin), masters=MASTERS, site="sh-3")
    assert again["changes"] == {} and "already in the desired state" in again["comment"]
    assert "zz-local.conf" in again["comment"]


@MODES
def test_write_failure_is_reported(state_funcs, tmp_path, test_mode):
    parent = tmp_path / "minion.d"
    if os.geteuid() == 0:
        # root ignores directory permissions: make the parent a file instead
        parent.write_text("not a directory")
    else:
        parent.mkdir()
        parent.chmod(0o500)
    chunk = _call(state_funcs, test_mode, name=str(parent / "edge.conf"), masters=MASTERS)
    if test_mode and os.geteuid() != 0:
        assert chunk["result"] is None, chunk  # test mode writes nothing, so cannot fail
        return
    assert chunk["result"] is False, chunk
    assert chunk["changes"] == {}
    assert "Failed to write" in chunk["comment"] or "Cannot read" in chunk["comment"]


@MODES
def test_restart_skipped_for_a_foreign_config_dir(state_funcs, dropin, test_mode):
    """restart=True never restarts a minion whose config the drop-in is not part of."""
    chunk = _call(state_funcs, test_mode, name=str(dropin), masters=MASTERS, restart=True)
    assert chunk["result"] is (None if test_mode else True), chunk
    assert "restart" not in chunk["changes"]
    assert "No restart:" in chunk["comment"]
    assert "is not in the minion.d of this minion's configuration" in chunk["comment"]


@MODES
def test_restart_skipped_without_a_running_minion(state_funcs, minion_opts, test_mode):
    """The drop-in is this minion's own, but no salt-minion daemon runs: nothing to restart."""
    confdir = os.path.dirname(minion_opts["conf_file"])
    name = os.path.join(confdir, "minion.d", "zz-edge-functional.conf")
    try:
        chunk = _call(state_funcs, test_mode, name=name, masters=MASTERS, restart=True)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    assert chunk["result"] is (None if test_mode else True), chunk
    assert "restart" not in chunk["changes"]
    assert "No restart: no running salt-minion daemon found" in chunk["comment"], chunk


# --------------------------------------------------------------------------
# through a real salt-call process: what it prints and logs
# --------------------------------------------------------------------------
def _state_ret(ret):
    """The single state return of a state.single / state.apply call."""
    assert ret.returncode in (0, 1, 2), ret
    data = ret.data
    assert isinstance(data, dict), ret
    assert len(data) == 1, data
    return next(iter(data.values()))


def test_salt_call_secret_not_in_own_output(local_salt_call, dropin, confdir):
    ret = local_salt_call.run(
        "--local",
        "-l",
        "debug",
        "state.single",
        "edge.minion_config",
        name=str(dropin),
        masters=MASTERS,
        site="sh-3",
        site_key=SITE_KEY,
        restart=False,
    )
    chunk = _state_ret(ret)
    assert chunk["result"] is True, chunk
    assert (confdir / "edge" / "edge.key").read_text() == SITE_KEY
    assert SITE_KEY not in ret.stdout
    # the value is on salt-call's command line here, and Salt itself echoes
    # command-line arguments; our module's own log lines must not hold it
    ours = [line for line in ret.stderr.splitlines() if "edge" in line and SITE_KEY in line]
    assert not [line for line in ours if "saltext_edge" in line or "states.edge" in line]


def test_secret_from_pillar_never_logged(local_salt_call, tmp_path, dropin, confdir):
    """
    The way operators pass it: the site key comes from pillar, so it is on no
    command line; then it must appear in no output or log at debug level.
    """
    roots = tmp_path / "roots"
    (roots / "pillar").mkdir(parents=True)
    (roots / "states").mkdir()
    (roots / "pillar" / "top.sls").write_text("base:\n  '*':\n    - edge\n")
    (roots / "pillar" / "edge.sls").write_text(f"edge_test:\n  site_key: {SITE_KEY}\n")
    (roots / "states" / "edge_minion.sls").write_text(
        "edge-minion:\n"
        "  edge.minion_config:\n"
        f"    - name: {dropin}\n"
        "    - masters: [salt-a.example.net, salt-b.example.net]\n"
        "    - site: sh-3\n"
        "    - site_key: {{ pillar['edge_test']['site_key'] }}\n"
        "    - restart: false\n"
    )
    log_file = tmp_path / "salt-call.log"
    ret = local_salt_call.run(
        "--local",
        "-l",
        "debug",
        f"--file-root={roots / 'states'}",
        f"--pillar-root={roots / 'pillar'}",
        f"--log-file={log_file}",
        "--log-file-level=all",
        "state.apply",
        "edge_minion",
    )
    chunk = _state_ret(ret)
    assert chunk["result"] is True, chunk
    assert (confdir / "edge" / "edge.key").read_text() == SITE_KEY
    assert SITE_KEY not in ret.stdout
    # Salt's own debug output renders the SLS; our lines must be clean and
    # the rendered state data must not leak via our return
    own = [
        line
        for line in (ret.stderr + log_file.read_text(errors="replace")).splitlines()
        if SITE_KEY in line
    ]
    assert not [line for line in own if "edge_state" in line or "saltext_edge" in line], own


@MODES
def test_enrollment_key_in_place_of_a_site_key(state_funcs, dropin, confdir, test_mode):
    """An enrollment key (docs/enrollment.rst) is stored like a site key; the drop-in only points to it."""
    from saltext_edge import enrollment

    enr_id = "0123456789abcdef"
    key = enrollment.enrollment_key("functional-test-fleet-secret", "sh-3", enr_id)
    value = enrollment.format_key("sh-3", enr_id, key)
    chunk = _call(state_funcs, test_mode, name=str(dropin), masters=MASTERS, enrollment_key=value)
    assert key not in json.dumps(chunk)
    secret = confdir / "edge" / "edge.key"
    if test_mode:
        assert chunk["result"] is None, chunk
        assert not secret.exists() and not dropin.exists()
        return
    assert chunk["result"] is True, chunk
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.read_text() == value
    import yaml

    text = dropin.read_text()
    data = yaml.safe_load(text)
    assert data["edge"] == {"enrollment_key_file": str(secret)} and data["autosign_grains"] == [
        "edge_token"
    ]
    assert key not in text
    assert chunk["changes"]["secret_file"]["fingerprint"] == token.key_fingerprint(key)
    again = _call(state_funcs, False, name=str(dropin), masters=MASTERS, enrollment_key=value)
    assert again["changes"] == {}, again
    # a key of another site than the one given: refused, nothing changed
    bad = _call(
        state_funcs, False, name=str(dropin), masters=MASTERS, site="sh-4", enrollment_key=value
    )
    assert bad["result"] is False and "for site" in bad["comment"] and key not in bad["comment"]
    assert secret.read_text() == value
