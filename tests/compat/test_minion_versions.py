"""
Minion-side modules (execution module, grains, state) load and answer on the
older Salt minions we support (3006 LTS, 3007), installed into their own
virtualenvs, through the same ``_*/`` tree ``saltutil.sync_all`` ships.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
# Where the compat virtualenvs live; reused between runs (CI starts clean).
CACHE = pathlib.Path(os.environ.get("EDGE_COMPAT_DIR", REPO / ".venv-compat"))
VERSIONS = {"3006": "salt==3006.29", "3007": "salt==3007.16"}


@pytest.fixture(scope="session")
def compat_pythons():
    """Create (once) one virtualenv per supported older Salt, in parallel."""
    procs = {}
    for name, req in VERSIONS.items():
        venv = CACHE / f"salt{name}"
        python = venv / "bin" / "python"
        if python.exists() and (venv / ".complete").exists():
            continue
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        procs[name] = (
            subprocess.Popen(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", req],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            venv,
        )
    for name, (proc, venv) in procs.items():
        out, _ = proc.communicate(timeout=1200)
        assert proc.returncode == 0, f"installing {VERSIONS[name]} failed:\n{out[-3000:]}"
        (venv / ".complete").write_text(VERSIONS[name])
    return {name: str(CACHE / f"salt{name}" / "bin" / "python") for name in VERSIONS}


def _salt_call(python, conf_dir, *args):
    proc = subprocess.run(
        [
            python,
            "-c",
            "import salt.scripts; salt.scripts.salt_call()",
            "--local",
            f"--config-dir={conf_dir}",
            "--out=json",
            "-l",
            "quiet",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["local"]


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_minion_side_loads(version, compat_pythons, tmp_path):
    python = compat_pythons[version]
    got = subprocess.run(
        [
            python,
            "-c",
            "import salt.version, importlib.util as u;"
            "print(salt.version.__version__, u.find_spec('saltext_edge') is None)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert got[0].startswith(version) and got[1] == "True", got

    conf = {
        "root_dir": str(tmp_path),
        "user": os.environ.get("USER") or __import__("getpass").getuser(),
        "file_client": "local",
        "master": "127.0.0.1",
        "master_port": 1,  # nothing listens: probes see a closed port at once
        "module_dirs": [str(REPO / "_modules")],
        "grains_dirs": [str(REPO / "_grains")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
        "edge": {"site": "compat-site", "uplink": {"budget": 1}},
    }
    (tmp_path / "minion").write_text(yaml.safe_dump(conf))

    funcs = _salt_call(python, tmp_path, "sys.list_functions", "edge")
    for fun in (
        "edge.version",
        "edge.uplink",
        "edge.check_master",
        "edge.config_audit",
        "edge.diagnose",
        "edge.http_probe",
    ):
        assert fun in funcs, funcs
    assert _salt_call(python, tmp_path, "grains.get", "edge_site") == "compat-site"
    assert "quality" in _salt_call(python, tmp_path, "grains.get", "edge_uplink")
    audit = _salt_call(python, tmp_path, "edge.config_audit")
    assert audit

    dropin = tmp_path / "minion.d" / "edge.conf"
    ret = _salt_call(
        python,
        tmp_path,
        "state.single",
        "edge.minion_config",
        f"name={dropin}",
        "masters=[salt-a.example.invalid]",
        "test=True",
    )
    (state,) = ret.values()
    assert state["result"] is None, state
    assert not dropin.exists()
