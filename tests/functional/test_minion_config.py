"""
State ``edge.minion_config`` through a real minion's loader (``salt-call``
against the session minion's config; the package is installed, so Salt finds
the state through the entry point).

Every call here passes ``restart=False`` (the session minion must keep
running) except under ``test=True``, where nothing is restarted anyway; the
restart itself is covered in tests/integration/test_failover.py.
"""

import json
import os
import stat

import pytest

from saltext_edge import tokens as token

SITE_KEY = token.site_key("functional-test-fleet-secret", "sh-3")
SHARED_SECRET = "a-fleet-secret-of-32-characters!"
MASTERS = ["salt-a.example.net", "salt-b.example.net:4506"]


def _state_ret(ret):
    """The single state return of a state.single / state.high call."""
    assert ret.returncode in (0, 1, 2), ret
    data = ret.data
    assert isinstance(data, dict), ret
    assert len(data) == 1, data
    return next(iter(data.values()))


def _single(salt_call_cli, **kwargs):
    kwargs.setdefault("restart", False)
    ret = salt_call_cli.run("--local", "state.single", "edge.minion_config", **kwargs)
    return ret, _state_ret(ret)


@pytest.fixture
def confdir(tmp_path):
    path = tmp_path / "salt"
    (path / "minion.d").mkdir(parents=True)
    return path


@pytest.fixture
def dropin(confdir):
    return confdir / "minion.d" / "edge.conf"


# --------------------------------------------------------------------------
# validation: every error leaves the file untouched (one salt-call per mode)
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


@pytest.fixture(scope="module", params=[False, True], ids=["apply", "test-mode"])
def validation_run(request, salt_call_cli, tmp_path_factory):
    """
    Apply every bad input in one ``state.high`` call (one chunk per case) over
    an existing drop-in and secret file; return (results by case, before, after).
    """
    confdir = tmp_path_factory.mktemp("validation") / "salt"
    (confdir / "minion.d").mkdir(parents=True)
    dropin = confdir / "minion.d" / "edge.conf"
    dropin.write_text("# an operator's file that must survive bad input\nmaster: keep-me\n")
    os.chmod(dropin, 0o640)
    secret = confdir / "edge" / "edge.key"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(SITE_KEY)
    os.chmod(secret, 0o600)

    def snapshot():
        out = {}
        for path in sorted(confdir.rglob("*")):
            st_ = path.lstat()
            out[str(path)] = (
                stat.S_IMODE(st_.st_mode),
                st_.st_mtime_ns,
                path.read_bytes() if path.is_file() else None,
            )
        return out

    before = snapshot()
    high = {}
    for case in BAD_INPUTS:
        kwargs = _bad_kwargs(case, dropin)
        args = [{key: value} for key, value in kwargs.items() if key != "name"]
        high[case] = {"edge": ["minion_config", {"name": kwargs["name"]}] + args}
        high[case]["__env__"] = "base"
        high[case]["__sls__"] = "validation"
    ret = salt_call_cli.run(
        "--local", "state.high", json.dumps(high), f"test={request.param}"
    )
    assert isinstance(ret.data, dict), ret
    by_case = {chunk["__id__"]: chunk for chunk in ret.data.values()}
    return by_case, before, snapshot()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_validation_error(validation_run, case):
    results, _, _ = validation_run
    chunk = results[case]
    assert chunk["result"] is False, chunk
    assert chunk["changes"] == {}, chunk
    assert "Invalid parameters, nothing was changed" in chunk["comment"]
    assert BAD_INPUTS[case][1] in chunk["comment"], chunk["comment"]
    assert SITE_KEY not in json.dumps(chunk)
    assert SHARED_SECRET not in json.dumps(chunk)


def test_validation_leaves_files_untouched(validation_run):
    results, before, after = validation_run
    assert len(results) == len(BAD_INPUTS)
    assert before == after


# --------------------------------------------------------------------------
# the happy path
# --------------------------------------------------------------------------
def test_test_mode_changes_nothing(salt_call_cli, dropin, confdir):
    ret, chunk = _single(
        salt_call_cli,
        name=str(dropin),
        masters=MASTERS,
        site="sh-3",
        site_key=SITE_KEY,
        restart=True,
        test=True,
    )
    assert chunk["result"] is None, chunk
    assert chunk["comment"].startswith("Would have: create " + str(dropin)), chunk["comment"]
    assert "write the secret file" in chunk["comment"]
    assert "+master_type: failover" in chunk["changes"]["diff"]
    assert chunk["changes"]["secret_file"]["new"] == "<hidden>"
    assert not dropin.exists()
    assert not (confdir / "edge").exists()
    assert SITE_KEY not in ret.stdout + ret.stderr


@pytest.mark.parametrize("test_mode", [False, True], ids=["apply", "test-mode"])
def test_idempotent_and_diff(salt_call_cli, dropin, test_mode):
    kwargs = {
        "name": str(dropin),
        "masters": MASTERS,
        "master_alive_interval": 10,
        "site": "sh-3",
        "extra": {"log_level_logfile": "info", "ping_interval": 2},
    }
    _, first = _single(salt_call_cli, **kwargs)
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
        "+  site: sh-3",
        "+log_level_logfile: info",
    ):
        assert line + "\n" in diff, (line, diff)
    assert "extra overrides the recommended ping_interval" in first["comment"]
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    content = dropin.read_text()
    mtime = dropin.stat().st_mtime_ns

    # second identical run (applied or in test mode): no changes
    _, second = _single(salt_call_cli, test=test_mode, **kwargs)
    assert second["result"] is True, second
    assert second["changes"] == {}
    assert "already in the desired state" in second["comment"]
    assert dropin.read_text() == content
    assert dropin.stat().st_mtime_ns == mtime

    # a changed interval shows as a one-line change in the diff
    kwargs["master_alive_interval"] = 20
    _, third = _single(salt_call_cli, test=test_mode, **kwargs)
    assert third["result"] is (None if test_mode else True), third
    diff = third["changes"]["diff"]
    assert "-master_alive_interval: 10\n+master_alive_interval: 20\n" in diff, diff
    assert diff.count("\n-") == 1 and diff.count("\n+") == 2  # +++ header and the line
    expected = content if test_mode else content.replace("interval: 10", "interval: 20")
    assert dropin.read_text() == expected


def test_single_master_and_no_nat(salt_call_cli, dropin):
    _, chunk = _single(
        salt_call_cli,
        name=str(dropin),
        masters=["10.1.2.3"],
        failover=False,
        nat_keepalive=False,
    )
    assert chunk["result"] is True, chunk
    text = dropin.read_text()
    assert "master: 10.1.2.3\nmaster_type: str\nmaster_alive_interval: 30\n" in text
    assert "tcp_keepalive" not in text
    assert "autosign_grains" not in text


@pytest.mark.parametrize("kind", ["site_key", "shared_secret"])
def test_secret_file_is_0600_and_secret_never_shown(salt_call_cli, dropin, confdir, kind):
    value = SITE_KEY if kind == "site_key" else SHARED_SECRET
    ret, chunk = _single_debug(
        salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-3", **{kind: value}
    )
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
    assert value not in ret.stdout
    # the value is on salt-call's command line here, and Salt itself echoes
    # command-line arguments; our module's own log lines must not hold it
    ours = [line for line in ret.stderr.splitlines() if "edge" in line and value in line]
    assert not [line for line in ours if "saltext_edge" in line or "states.edge" in line]

    # same secret again: nothing to do; a new secret: updated, old and new fingerprints only
    _, again = _single(salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-3", **{kind: value})
    assert again["changes"] == {}, again
    os.chmod(secret, 0o644)
    _, chmod = _single(salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-3", **{kind: value})
    assert chmod["changes"]["secret_file"]["new"].startswith("mode 0600"), chmod
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    other = token.site_key("another-fleet-secret-123", "sh-3") if kind == "site_key" else value[::-1]
    _, rotated = _single(salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-3", **{kind: other})
    change = rotated["changes"]["secret_file"]
    assert "diff" not in rotated["changes"]  # the drop-in only holds the path
    assert token.key_fingerprint(value) in change["old"]
    assert token.key_fingerprint(other) in change["new"]
    assert value not in json.dumps(rotated) and other not in json.dumps(rotated)
    assert secret.read_text() == other
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def _single_debug(salt_call_cli, **kwargs):
    kwargs.setdefault("restart", False)
    ret = salt_call_cli.run("--local", "-l", "debug", "state.single", "edge.minion_config", **kwargs)
    return ret, _state_ret(ret)


def test_secret_from_pillar_never_logged(salt_call_cli, tmp_path, dropin, confdir):
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
    ret = salt_call_cli.run(
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


def test_conflicting_values_reported(salt_call_cli, dropin, confdir):
    (confdir / "minion").write_text(
        "master: old-master.example.net\nmaster_alive_interval: 5\n"
        "edge:\n  site_key: deadbeef-not-to-be-shown\n"
    )
    (confdir / "minion.d" / "zz-local.conf").write_text("tcp_keepalive_idle: 600\n")
    (confdir / "minion.d" / "aa-broken.conf").write_text("this: [is: not yaml\n")
    (confdir / "minion.d" / "bb-same.conf").write_text("tcp_keepalive: true\n")
    _, chunk = _single(salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-3")
    assert chunk["result"] is True, chunk
    comment = chunk["comment"]
    assert "Conflicting settings elsewhere in the minion config:" in comment
    main = str(confdir / "minion")
    assert f'master is "old-master.example.net" in {main}' in comment
    assert f"master_alive_interval is 5 in {main}" in comment
    assert "the drop-in wins" in comment
    later = str(confdir / "minion.d" / "zz-local.conf")
    assert f"tcp_keepalive_idle is 600 in {later} (managed: 60; that file wins" in comment
    assert "aa-broken.conf: cannot be read as YAML" in comment
    assert "bb-same.conf" not in comment  # same value: no conflict
    assert "deadbeef-not-to-be-shown" not in json.dumps(chunk)
    assert f'edge:site_key is "<hidden>" in {main}' in comment
    assert any("zz-local.conf" in warning for warning in chunk["warnings"])


def test_write_failure_is_reported(salt_call_cli, tmp_path):
    if os.geteuid() == 0:
        # root ignores directory permissions: make the parent a file instead
        parent = tmp_path / "minion.d"
        parent.write_text("not a directory")
    else:
        parent = tmp_path / "minion.d"
        parent.mkdir()
        parent.chmod(0o500)
    _, chunk = _single(salt_call_cli, name=str(parent / "edge.conf"), masters=MASTERS)
    assert chunk["result"] is False, chunk
    assert chunk["changes"] == {}
    assert "Failed to write" in chunk["comment"] or "Cannot read" in chunk["comment"]


def test_restart_skipped_for_a_foreign_config_dir(salt_call_cli, dropin):
    """restart=True never restarts a minion whose config the drop-in is not part of."""
    _, chunk = _single(salt_call_cli, name=str(dropin), masters=MASTERS, restart=True)
    assert chunk["result"] is True, chunk
    assert "restart" not in chunk["changes"]
    assert "No restart:" in chunk["comment"]
    assert "is not in the minion.d of this minion's configuration" in chunk["comment"]


def test_enrollment_key_in_place_of_a_site_key(salt_call_cli, dropin, confdir):
    """An enrollment key (docs/enrollment.rst) is stored like a site key; the drop-in only points to it."""
    from saltext_edge import enrollment  # pylint: disable=import-outside-toplevel

    enr_id = "0123456789abcdef"
    key = enrollment.enrollment_key("functional-test-fleet-secret", "sh-3", enr_id)
    value = enrollment.format_key("sh-3", enr_id, key)
    ret, chunk = _single_debug(salt_call_cli, name=str(dropin), masters=MASTERS, enrollment_key=value)
    assert chunk["result"] is True, chunk
    secret = confdir / "edge" / "edge.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.read_text() == value
    text = dropin.read_text()
    import yaml  # pylint: disable=import-outside-toplevel

    data = yaml.safe_load(text)
    assert data["edge"] == {"enrollment_key_file": str(secret)} and data["autosign_grains"] == ["edge_token"]
    assert key not in text and key not in json.dumps(chunk) and key not in ret.stdout
    assert chunk["changes"]["secret_file"]["fingerprint"] == token.key_fingerprint(key)
    _, again = _single(salt_call_cli, name=str(dropin), masters=MASTERS, enrollment_key=value)
    assert again["changes"] == {}, again
    # a key of another site than the one given: refused, nothing changed
    _, bad = _single(salt_call_cli, name=str(dropin), masters=MASTERS, site="sh-4", enrollment_key=value)
    assert bad["result"] is False and "for site" in bad["comment"] and key not in bad["comment"]
    assert secret.read_text() == value
