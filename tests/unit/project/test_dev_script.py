"""
``./dev demo`` sets up a venv of its own with the package only and installs
no Debian package the tests need; ``./dev lint`` (the test set-up) does.
``apt-get``, the Python and the venv's pip are stand-ins that record how
they were called: nothing is installed.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""
# the stand-in Python: "-m venv DIR" makes DIR/bin/python a recorder too
PYTHON = """#!/bin/sh
echo "python $*" >> "{log}"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  cp "$0" "$3/bin/python"
fi
"""


def _run(tmp_path, *args):
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    for name in ("basename", "cp", "dirname", "id", "mkdir"):
        (stubs / name).symlink_to(shutil.which(name))
    (stubs / "apt-get").write_text(RECORDER.format(log=log))
    (stubs / "python").write_text(PYTHON.format(log=log))
    for path in stubs.iterdir():
        if not path.is_symlink():
            path.chmod(0o755)
    env = {
        "PATH": str(stubs),  # no prometheus, chromium, redis-server ... on it
        "PYTHON": str(stubs / "python"),
        "EDGE_VENV": str(tmp_path / "venv"),
        "EDGE_DEMO_VENV": str(tmp_path / "venv-demo"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [shutil.which("bash"), str(REPO / "dev"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


@pytest.mark.skipif(os.geteuid() != 0, reason="./dev installs Debian packages only as root")
def test_demo_installs_no_test_packages_and_no_extras(tmp_path):
    proc, calls = _run(tmp_path, "demo")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith("apt-get")], calls
    pips = [c for c in calls if " pip install " in c]
    assert len(pips) == 1 and pips[0].endswith(" -e ."), calls
    assert calls[-1] == "python -m saltext_edge.demo", calls
    assert (tmp_path / "venv-demo" / "bin" / "python").exists()
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="./dev installs Debian packages only as root")
def test_test_setup_installs_what_the_tests_start(tmp_path):
    _, calls = _run(tmp_path, "lint")
    installs = [c for c in calls if c.startswith("apt-get") and " install " in c]
    assert len(installs) == 1, calls
    for package in ("prometheus", "chromium", "redis-server", "shellcheck"):
        assert package in installs[0].split(), installs
    assert [c for c in calls if " pip install " in c and "[tests,docs,lint" in c], calls
