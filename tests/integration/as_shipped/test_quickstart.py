"""
The quickstart and the install page, run: every code block marked
``.. tested: NAME`` in ``docs/quickstart.rst`` and ``docs/install.rst`` is
extracted from the page and run with bash, in the page's order, against a real
master running as ``salt`` from the packaged Python. The system paths of the
page (``/etc/salt``, ``/srv/reactor``, ``/tmp/edge-root``) are mapped to the
test's directories and the master's address to loopback; ``systemctl
restart salt-master`` is where the test starts the master. Nothing else of
the commands is changed, so the pages cannot drift from the product.
"""

import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import tempfile

import pytest
import yaml
from saltfactories.daemons.minion import SaltMinion
from tests.support.waits import wait_until

from .conftest import REPO

pytestmark = pytest.mark.slow

MARKER = re.compile(r"^\.\. tested: (?P<name>[\w-]+)\s*$")


def marked_blocks(page):
    """Return ``{name: commands}`` of the code blocks marked ``.. tested: NAME`` in ``page``."""
    lines = (REPO / "docs" / page).read_text(encoding="utf-8").splitlines()
    blocks = {}
    i = 0
    while i < len(lines):
        match = MARKER.match(lines[i])
        i += 1
        if not match:
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        # bash for commands; other pages mark yaml blocks too (howto/site-goes-dark.rst)
        assert lines[i].startswith(".. code-block::"), (page, match["name"], lines[i])
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
            body.append(lines[i][4:] if lines[i].startswith("    ") else lines[i].strip())
            i += 1
        blocks[match["name"]] = "\n".join(body).strip() + "\n"
    return blocks


class PendingMinion(SaltMinion):
    """A minion whose start is not confirmed by a start event (it stays pending)."""

    def get_check_events(self):
        return []


def _no_auto_accept(master, payload):
    return None


class Page:
    """Runs the page's blocks with bash: system paths mapped, Salt's commands on the test master."""

    def __init__(self, bindir, conf_dir, mapping, workdir):
        self.mapping = sorted(mapping.items(), key=lambda kv: -len(kv[0]))
        self.workdir = workdir
        self.log = os.path.join(workdir, "systemctl.log")
        self.prelude = f"""
set -euo pipefail
export PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin
export PIP_DISABLE_PIP_VERSION_CHECK=1
salt-pip() {{ {bindir}/python -m pip "$@"; }}
salt-run() {{ {bindir}/salt-run -c {conf_dir} "$@"; }}
salt-key() {{ {bindir}/salt-key -c {conf_dir} "$@"; }}
salt() {{ {bindir}/salt -c {conf_dir} --timeout=15 "$@"; }}
systemctl() {{ echo "systemctl $*" >> {self.log}; }}
"""

    def rewrite(self, text):
        """One pass, longest first: a replacement is never rewritten again."""
        table = dict(self.mapping)
        # a mapped prefix takes the rest of its path with it
        # (/tmp/edge-root/etc/salt/... is not /etc/salt)
        pattern = re.compile(
            "(" + "|".join(re.escape(old) for old, _ in self.mapping) + r")([^\s'\"]*)"
        )
        return pattern.sub(lambda m: table[m.group(1)] + m.group(2), text)

    def run(self, commands, cwd=None):
        script = self.prelude + self.rewrite(commands)
        return subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd or self.workdir,
            timeout=300,
        )

    def systemctl_calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log, encoding="utf-8") as fh_:
            return fh_.read().splitlines()


def test_every_marked_block_is_run():
    quick, install = marked_blocks("quickstart.rst"), marked_blocks("install.rst")
    assert list(quick) == [
        "install",
        "secret",
        "master-config",
        "enrollment-key",
        "bootstrap-dry-run",
        "watch",
    ]
    assert list(install) == ["install-wheel", "check-permissions"]


def test_quickstart_on_a_master_running_as_salt(
    salt_factories, master_defaults, packaged_python, salt_user, built_wheel
):
    quick, install = marked_blocks("quickstart.rst"), marked_blocks("install.rst")
    os.chmod(salt_factories.root_dir, 0o755)
    factory = salt_factories.salt_master_daemon(
        "quickstart-master",
        defaults=dict(master_defaults),
        overrides={"user": salt_user},
        on_auth_event_callback=_no_auto_accept,
    )
    factory.python_executable = packaged_python
    work = tempfile.mkdtemp(prefix="edge-quickstart-", dir="/tmp")
    os.chmod(work, 0o755)
    try:
        shutil.copy(built_wheel, work)
        page = Page(
            pathlib.Path(packaged_python).parent,
            factory.config_dir,
            {
                "/etc/salt/pki/master": factory.config["pki_dir"],
                "/etc/salt": factory.config_dir,
                "/srv/reactor": os.path.join(work, "reactor"),
                "/tmp/edge-root": os.path.join(work, "edge-root"),
                "salt.example.net": "127.0.0.1",
            },
            work,
        )
        os.chmod(factory.config_dir, 0o755)

        # step 1 and install.rst: the wheel into Salt's Python
        for block in (quick["install"], install["install-wheel"]):
            proc = page.run(block)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("saltext-edge ")

        # step 2: the secret, root:salt 0640
        proc = page.run(quick["secret"])
        assert proc.returncode == 0, proc.stderr
        secret_file = os.path.join(factory.config_dir, "edge-secret")
        st = os.stat(secret_file)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o640)
        assert st.st_gid == pwd_gid(salt_user)

        # step 3's warning, followed: the main file's engines: list (salt-factories'
        # own engine) moved into a drop-in of its own, so the drop-in of step 3
        # lists the admission engine beside it and nothing is lost
        main = pathlib.Path(factory.config_dir, "master")
        main_conf = yaml.safe_load(main.read_text())
        engines = main_conf.pop("engines")
        main.write_text(yaml.safe_dump(main_conf))
        dropins = pathlib.Path(factory.config_dir, "master.d")
        dropins.mkdir(exist_ok=True)
        (dropins / "engines.conf").write_text(yaml.safe_dump({"engines": engines}))
        # step 3: the drop-in, then "systemctl restart salt-master"
        proc = page.run(quick["master-config"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "sets engines:" not in proc.stderr
        assert yaml.safe_load((dropins / "edge.conf").read_text())["engines"] == [
            {"edge_admission": {}}
        ]
        assert page.systemctl_calls() == ["systemctl restart salt-master"]
        proc = page.run(install["check-permissions"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"root:{salt_user} 640 {secret_file}" in proc.stdout

        with factory.started(start_timeout=180):
            # step 4: the enrollment key, written by the master's user
            proc = page.run(quick["enrollment-key"])
            assert proc.returncode == 0, proc.stdout + proc.stderr
            key_file = pathlib.Path(factory.config["pki_dir"], "edge", "sh-3-batch1.key")
            assert key_file.stat().st_mode & 0o077 == 0
            assert key_file.stat().st_uid == pwd.getpwnam(salt_user).pw_uid
            site_key = key_file.read_text().strip()
            assert site_key.startswith("edge-enroll:v2:sh-3:")
            assert site_key.rsplit(":", 1)[1] not in proc.stdout + proc.stderr

            # step 5: the bootstrap script's dry run with that key
            proc = page.run(quick["bootstrap-dry-run"], cwd=str(REPO / "deploy"))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert site_key not in proc.stdout + proc.stderr
            root = pathlib.Path(work, "edge-root")
            dropin = yaml.safe_load((root / "etc/salt/minion.d/edge.conf").read_text())
            assert proc.stdout.endswith((root / "etc/salt/minion.d/edge.conf").read_text())
            assert (root / "etc/salt/edge/edge.key").read_text() == site_key

            # an edge node configured as the script configures it (master on loopback)
            minion = factory.salt_minion_daemon(
                "edge-sh3-a",
                overrides={
                    "autosign_grains": dropin["autosign_grains"],
                    "edge": {
                        "site": dropin["edge"]["site"],
                        "enrollment_key_file": str(root / "etc/salt/edge/edge.key"),
                    },
                    "acceptance_wait_time": 2,
                    "acceptance_wait_time_max": 2,
                    "random_reauth_delay": 0,
                },
                factory_class=PendingMinion,
            )
            with minion.started(start_timeout=180):
                # step 6: watch it join (retried while the new minion settles)
                def joined():
                    proc = page.run(quick["watch"])
                    return proc.returncode == 0 and proc.stdout.count("edge-sh3-a") >= 3

                wait_until(joined, 120, interval=2, what="the new minion in the watch output")
                # admitted through the engine: the master started it, and with
                # it configured the salt/auth reactor leaves every sign-in to it
                log = pathlib.Path(factory.config["log_file"]).read_text(errors="replace")
                started = [line for line in log.splitlines() if "Starting Engine(" in line]
                assert any("engines.edge_admission" in line for line in started), started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pwd_gid(user):
    return pwd.getpwnam(user).pw_gid
