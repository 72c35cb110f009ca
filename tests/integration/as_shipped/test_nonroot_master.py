"""
A master run the way Salt's packages run it (docs/install.rst, "Running as the
salt user"): ``user: salt``, started by root, Salt and saltext-edge in a
Python ``salt`` can read. Operator commands run as root (``salt-run`` drops to
``salt`` like the master; ``saltext-edge`` does not) and as ``salt``, before
and after a brand-new minion is admitted by token. Every file the product
creates ends up usable by the master's user and unreadable to others.
"""

import os
import pathlib
import pwd
import secrets as pysecrets
import stat
import subprocess
import tempfile

import pytest
from saltfactories.daemons.minion import SaltMinion
from saltfactories.utils import random_string
from tests.daemons import answers_ping

from saltext_edge import tokens as edge_token

from .conftest import as_user

pytestmark = pytest.mark.slow

SITE = "salt-user-1"
ACCEPTANCE_WAIT = 2


class PendingMinion(SaltMinion):
    """A minion whose start is not confirmed by a start event (it stays pending)."""

    def get_check_events(self):
        return []


def _no_auto_accept(master, payload):
    return None


def _bin(python, name):
    return str(pathlib.Path(python).parent / name)


@pytest.fixture(scope="module")
def layout(salt_user):
    """A world-traversable directory for the secret and the reactor, as /etc/salt and /srv are."""
    root = tempfile.mkdtemp(prefix="edge-etc-", dir="/tmp")
    os.chmod(root, 0o755)
    secret = "fleet-" + pysecrets.token_hex(24)
    secret_file = os.path.join(root, "edge-secret")
    # docs/quickstart.rst, step 2: root:salt 0640
    proc = subprocess.run(
        ["install", "-o", "root", "-g", salt_user, "-m", "0640", "/dev/null", secret_file],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    with open(secret_file, "w", encoding="utf-8") as fh_:
        fh_.write(secret + "\n")
    yield {
        "root": root,
        "secret": secret,
        "secret_file": secret_file,
        "reactor_dir": os.path.join(root, "reactor"),
    }
    subprocess.run(["rm", "-rf", root], check=False)


@pytest.fixture(scope="module")
def master(salt_factories, master_defaults, packaged_python, salt_user, layout):
    # the session's daemon root is 0700 (mkdtemp): salt must read its way to its
    # dirs (LocalClient checks every parent of cachedir for R_OK)
    os.chmod(salt_factories.root_dir, 0o755)
    factory = salt_factories.salt_master_daemon(
        random_string("edge-salt-user-master-"),
        defaults=dict(master_defaults),
        overrides={"user": salt_user},
        on_auth_event_callback=_no_auto_accept,
    )
    factory.python_executable = packaged_python
    # the master-side setup command writes master.d/edge.conf and the reactor
    proc = subprocess.run(
        [
            _bin(packaged_python, "saltext-edge"),
            "master-config",
            "-c",
            factory.config_dir,
            "--secret-file",
            layout["secret_file"],
            "--reactor-dir",
            layout["reactor_dir"],
            "--write",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"readable by the master's user {salt_user}" in proc.stderr
    with factory.started(start_timeout=180):
        yield factory


def _run_cli(master, python, user=None):
    """salt-run of the packaged Python, as root (drops to salt itself) or as ``user``."""

    def run(*args):
        cmd = [_bin(python, "salt-run"), "-c", master.config_dir, "--out=json", *args]
        if user is None:
            return subprocess.run(
                cmd, capture_output=True, text=True, check=False, cwd="/", timeout=120
            )
        return as_user(user, cmd, timeout=120)

    return run


def _owner_mode(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


def test_master_processes_run_as_salt(master, salt_user):
    uid = pwd.getpwnam(salt_user).pw_uid
    pid = master.pid
    with open(f"/proc/{pid}/status", encoding="ascii") as fh_:
        uids = next(line for line in fh_ if line.startswith("Uid:")).split()[1:]
    assert {int(u) for u in uids} == {uid}


def test_admission_with_operator_commands_as_root_and_salt(
    master, packaged_python, salt_user, layout
):
    k_site = edge_token.site_key(layout["secret"], SITE)
    as_root, as_salt = (
        _run_cli(master, packaged_python),
        _run_cli(master, packaged_python, salt_user),
    )
    # before: the site key, as root (salt-run drops to salt) and through the
    # console script as root and as salt (it reads the secret as itself)
    proc = as_root("edge.site_key", SITE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key_path = pathlib.Path(master.config["pki_dir"], "edge", "sites", f"{SITE}.key")
    assert key_path.read_text().strip() == k_site
    assert _owner_mode(key_path) == (salt_user, 0o600)
    for user in (None, salt_user):
        cmd = [_bin(packaged_python, "saltext-edge"), "site-key", SITE, "-c", master.config_dir]
        proc = (
            as_user(user, cmd)
            if user
            else subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        )
        assert proc.returncode == 0, (user, proc.stderr)
        assert proc.stdout.strip() == k_site
    proc = as_salt("edge.accept_pending")
    assert proc.returncode == 0, proc.stderr

    # a brand-new minion with the site key is admitted by the reactor
    minion = master.salt_minion_daemon(
        random_string("salt-user-node-"),
        overrides={
            "autosign_grains": ["edge_token"],
            "acceptance_wait_time": ACCEPTANCE_WAIT,
            "acceptance_wait_time_max": ACCEPTANCE_WAIT,
            "random_reauth_delay": 0,
            "edge": {"site": SITE, "site_key": k_site},
        },
        factory_class=PendingMinion,
    )
    with minion.started(start_timeout=180):
        # started() returning proves the key was accepted; then it must answer
        # the salt CLI run as root
        assert answers_ping(master, minion.id, within=90, each=15), "no answer to test.ping"
        # after: operator commands as root and as salt, in either order
        for run in (as_root, as_salt, as_root):
            proc = run("edge.report")
            assert proc.returncode == 0, proc.stderr
            assert minion.id in proc.stdout
            proc = run("edge.accept_pending")
            assert proc.returncode == 0, proc.stderr
        ret = master.salt_key_cli().run("-L")
        assert ret.returncode == 0, ret
        assert minion.id in ret.data["minions"]


def test_unwritable_page_names_the_masters_user(master, packaged_python, salt_user):
    """As root, salt-run drops to salt: a page in /root (0700) is refused, naming that user."""
    proc = _run_cli(master, packaged_python)("edge.report", "html=/root/edge-fleet-page.html")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stdout and f"master's user '{salt_user}'" in proc.stdout, (
        proc.stdout
    )
    assert not os.path.exists("/root/edge-fleet-page.html")


def test_files_are_the_masters_and_secrets_unreadable_to_others(master, salt_user, layout):
    # run after the admission test (same module, in order)
    made = []
    lock = pathlib.Path(master.config["pki_dir"], "edge", "admission.lock")
    assert lock.exists(), "no admission ran under the key-store lock"
    made.append(lock)
    made.extend(pathlib.Path(master.config["pki_dir"], "edge").rglob("*"))
    bank = pathlib.Path(master.config["cachedir"], "edge_admission")
    assert bank.is_dir()
    made.append(bank)
    made.extend(bank.rglob("*"))
    for path in made:
        owner, mode = _owner_mode(path)
        assert owner == salt_user, (str(path), owner)
        # files (tokens, decisions, journal, site keys, the lock): the master's
        # user only; directories (Salt's cache layout): nobody else writes
        if path.is_file():
            assert mode & 0o077 == 0, (str(path), oct(mode))
        else:
            assert mode & 0o022 == 0, (str(path), oct(mode))
    # the fleet secret kept its documented owner and mode; others cannot read it
    st = os.stat(layout["secret_file"])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o640)
    assert as_user("nobody", ["cat", layout["secret_file"]]).returncode != 0
    # nothing the master wrote holds the secret
    for root, _, files in os.walk(master.config["root_dir"]):
        for name in files:
            full = os.path.join(root, name)
            try:
                with open(full, "rb") as fh_:
                    assert layout["secret"].encode() not in fh_.read(), full
            except OSError:
                continue


def test_lock_file_root_first_then_salt(salt_user, packaged_python):
    """A lock root creates is handed to the master's user; a root-only one is explained."""
    work = tempfile.mkdtemp(prefix="edge-lock-", dir="/tmp")
    os.chmod(work, 0o777 | stat.S_ISVTX)
    try:
        code = (
            "import fcntl, sys; from saltext_edge import fsperm; "
            "fd = fsperm.open_lock_file(sys.argv[1], {'user': sys.argv[2]}); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked')"
        )
        fresh = os.path.join(work, "fresh.lock")
        proc = subprocess.run(
            [packaged_python, "-c", code, fresh, salt_user],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        assert proc.stdout.strip() == "locked", proc.stderr
        assert _owner_mode(fresh) == (salt_user, 0o600)
        proc = as_user(salt_user, [packaged_python, "-c", code, fresh, salt_user])
        assert proc.stdout.strip() == "locked", proc.stderr
        # a root-only lock (root:root 0600): a clear message, not a traceback
        old = os.path.join(work, "old.lock")
        os.close(os.open(old, os.O_CREAT | os.O_WRONLY, 0o600))
        proc = as_user(salt_user, [packaged_python, "-c", code, old, salt_user])
        assert proc.returncode != 0 and "locked" not in proc.stdout
        assert f"cannot open the lock file {old} as user {salt_user}" in proc.stderr
        assert f"fix: chown -R {salt_user}: {work}" in proc.stderr
        # readable but not writable by salt (root:root 0644): locks read-only
        os.chmod(old, 0o644)
        proc = as_user(salt_user, [packaged_python, "-c", code, old, salt_user])
        assert proc.returncode == 0 and proc.stdout.strip() == "locked", proc.stderr
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
