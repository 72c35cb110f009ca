"""
``saltext-edge master-config`` and the secret-file checks on real files with a
real ``salt`` user: the drop-in it writes, and a clear message naming the file,
the user and the fix for every owner/mode that would break admission or expose
the secret. No daemons.
"""

import os
import pathlib
import secrets
import subprocess
import sys
import tempfile

import pytest
import yaml

from saltext_edge import fsperm

from .conftest import as_user

SECRET = secrets.token_urlsafe(32)  # strong enough for the master (docs/concepts.rst)


@pytest.fixture
def etc(salt_user):
    """A config dir with ``master`` (``user: salt``) and a good secret, in a dir salt can read."""
    root = tempfile.mkdtemp(prefix="edge-mc-", dir="/tmp")
    os.chmod(root, 0o755)
    conf = pathlib.Path(root, "etc")
    conf.mkdir(mode=0o755)
    (conf / "master").write_text(f"user: {salt_user}\n")
    secret = conf / "edge-secret"
    fsperm.write_secret_file(str(secret), SECRET + "\n", {"user": salt_user})
    yield conf
    subprocess.run(["rm", "-rf", root], check=False)


def _cli(*args, user=None):
    cmd = [sys.executable, "-m", "saltext_edge.cli", *args]
    if user:
        return as_user(user, cmd, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")


def test_written_secret_has_the_documented_owner_and_mode(etc, salt_user):
    st = os.stat(etc / "edge-secret")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, fsperm.user_ids(salt_user)[1], 0o640)
    assert fsperm.secret_file_problems(str(etc / "edge-secret"), salt_user) == []
    assert (
        fsperm.check_master_secrets(
            {"user": salt_user, "edge": {"shared_secret_file": str(etc / "edge-secret")}}
        )
        == []
    )


def test_master_config_prints_and_writes_the_dropin(etc, tmp_path):
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", str(tmp_path / "reactor"))
    assert proc.returncode == 0, proc.stderr
    conf = yaml.safe_load(proc.stdout)
    assert conf["auth_events_autosign_grains"] == ["pend", "denied"]
    alert_sls = [str(tmp_path / "reactor" / "edge_alert.sls")]
    assert conf["reactor"] == [
        {"salt/auth": [str(tmp_path / "reactor" / "edge_auth.sls")]},
        {"edge/node/*/offline": alert_sls},
        {"edge/node/*/online": alert_sls},
        {"edge/site/*/degraded": alert_sls},
        {"edge/site/*/recovered": alert_sls},
    ]
    assert conf["edge"]["shared_secret_file"] == str(etc / "edge-secret")
    assert conf["edge"]["auto_admit"] is True
    assert conf["engines"] == [{"edge_admission": {}}]  # the main file has no engines: list
    assert SECRET not in proc.stdout + proc.stderr
    assert not (etc / "master.d").exists()  # printing writes nothing
    proc = _cli(
        "master-config", "-c", str(etc), "--reactor-dir", str(tmp_path / "reactor"), "--write"
    )
    assert proc.returncode == 0, proc.stderr
    written = (etc / "master.d" / "edge.conf").read_text()
    assert yaml.safe_load(written) == conf
    import saltext_edge

    for name in ("edge_auth.sls", "edge_alert.sls"):
        shipped = pathlib.Path(saltext_edge.__file__).parent / "reactor" / name
        assert (tmp_path / "reactor" / name).read_text() == shipped.read_text()
    # a different existing drop-in is not replaced without --force, and kept with it
    (etc / "master.d" / "edge.conf").write_text("# mine\n")
    proc = _cli(
        "master-config",
        "-c",
        str(etc),
        "--reactor-dir",
        str(tmp_path / "reactor"),
        "--no-auto-admit",
        "--write",
    )
    assert proc.returncode == 1 and "exists and differs" in proc.stderr
    assert (etc / "master.d" / "edge.conf").read_text() == "# mine\n"
    proc = _cli(
        "master-config",
        "-c",
        str(etc),
        "--reactor-dir",
        str(tmp_path / "reactor"),
        "--no-auto-admit",
        "--write",
        "--force",
    )
    assert proc.returncode == 0, proc.stderr
    assert (etc / "master.d" / "edge.conf.bak").read_text() == "# mine\n"
    assert (
        yaml.safe_load((etc / "master.d" / "edge.conf").read_text())["edge"]["auto_admit"] is False
    )


def test_write_refuses_to_shadow_a_main_file_reactor_list(etc, tmp_path):
    main = etc / "master"
    main.write_text(main.read_text() + "reactor:\n  - 'my/tag':\n    - /srv/reactor/mine.sls\n")
    proc = _cli(
        "master-config", "-c", str(etc), "--reactor-dir", str(tmp_path / "reactor"), "--write"
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{main} sets reactor:" in proc.stderr and "master.d/reactor.conf" in proc.stderr
    assert not (etc / "master.d" / "edge.conf").exists()
    # moved into a drop-in of its own, as the message says: merged with ours
    (etc / "master.d").mkdir()
    (etc / "master.d" / "reactor.conf").write_text(
        "reactor:\n  - 'my/tag':\n    - /srv/reactor/mine.sls\n"
    )
    main.write_text(main.read_text().split("reactor:")[0])
    reactor = str(tmp_path / "reactor")
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--write")
    assert proc.returncode == 0, proc.stderr
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--check")
    assert proc.returncode == 0, proc.stderr
    assert '{"my/tag": ["/srv/reactor/mine.sls"]}    # master.d/reactor.conf' in proc.stdout
    assert "edge_alert.sls" in proc.stdout and "reactor: (6 effective)" in proc.stdout
    # nothing turned on yet: no engine, no URL
    assert "edge_fleet engine is not in the effective engines" in proc.stderr
    assert "edge:alerts:url is not set" in proc.stderr


def test_check_fails_when_a_main_file_engines_list_is_lost(etc, tmp_path):
    main = etc / "master"
    main.write_text(main.read_text() + "engines:\n  - webhook: {port: 8080}\n")
    (etc / "master.d").mkdir()
    (etc / "master.d" / "edge-fleet.conf").write_text(
        "engines:\n  - edge_fleet: {}\nedge:\n  alerts: {url: 'https://hook.example'}\n"
    )
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", str(tmp_path), "--check")
    assert proc.returncode == 1
    assert '{"edge_fleet": {}}    # master.d/edge-fleet.conf' in proc.stdout
    assert "webhook" not in proc.stdout  # not effective ...
    assert f"{main} sets engines:" in proc.stderr and '"webhook"' in proc.stderr  # ... and said


def test_write_leaves_the_engine_out_while_the_main_file_lists_engines(etc, tmp_path):
    main = etc / "master"
    main.write_text(main.read_text() + "engines:\n  - webhook: {port: 8080}\n")
    reactor = str(tmp_path / "reactor")
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--write")
    assert proc.returncode == 0, proc.stderr
    assert f"note: {main} sets engines:" in proc.stderr
    assert "master.d/engines.conf" in proc.stderr
    assert "engines" not in yaml.safe_load((etc / "master.d" / "edge.conf").read_text())
    # nothing of the main file is lost: the webhook engine stays effective
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--check")
    assert proc.returncode == 0, proc.stderr
    assert '{"webhook": {"port": 8080}}    # master' in proc.stdout
    # moved into a drop-in, as the note says: written again, both engines run
    (etc / "master.d" / "engines.conf").write_text("engines:\n  - webhook: {port: 8080}\n")
    main.write_text(main.read_text().split("engines:")[0])
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--write", "--force")
    assert proc.returncode == 0, proc.stderr
    assert "sets engines:" not in proc.stderr
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", reactor, "--check")
    assert proc.returncode == 0, proc.stderr
    assert '{"webhook": {"port": 8080}}    # master.d/engines.conf' in proc.stdout
    assert '{"edge_admission": {}}    # master.d/edge.conf' in proc.stdout


@pytest.mark.parametrize(
    "owner,mode,expect",
    [
        ("root:root", 0o600, "who cannot read the fleet secret file"),
        ("root:salt", 0o644, "is open to other users (mode 0644)"),
        ("root:salt", 0o660, "is writable by its group"),
    ],
)
def test_master_config_names_file_user_and_fix(etc, salt_user, owner, mode, expect):
    secret = etc / "edge-secret"
    subprocess.run(["chown", owner.replace("salt", salt_user), str(secret)], check=True)
    os.chmod(secret, mode)
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", str(etc / "r"))
    assert proc.returncode == 1
    assert expect in proc.stderr
    assert str(secret) in proc.stderr
    assert f"chown root:{salt_user} {secret} && chmod 0640 {secret}" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def test_short_secret_and_missing_secret(etc):
    secret = etc / "edge-secret"
    secret.write_text("short\n")
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", str(etc / "r"))
    assert proc.returncode == 1 and "shorter than" in proc.stderr
    secret.unlink()
    proc = _cli("master-config", "-c", str(etc), "--reactor-dir", str(etc / "r"))
    assert proc.returncode == 1 and f"{secret} does not exist" in proc.stderr


def test_unreadable_secret_message_for_the_master_user(etc, salt_user, packaged_python):
    """What the reactor and runners say when the master's user cannot read the secret."""
    secret = etc / "edge-secret"
    os.chmod(secret, 0o600)  # root:salt 0600: salt cannot read it
    code = (
        "import sys; from saltext_edge import shared_secret as s\n"
        "try:\n"
        "    s.master_secrets({'edge': {'shared_secret_file': sys.argv[1]}}, environ={})\n"
        "except s.SecretError as exc:\n"
        "    print(exc)\n"
    )
    # the packaged Python: one the salt user can read
    proc = as_user(salt_user, [packaged_python, "-c", code, str(secret)])
    assert f"cannot read edge:shared_secret_file '{secret}' as user {salt_user}" in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert f"chown root:{salt_user} {secret} && chmod 0640 {secret}" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
