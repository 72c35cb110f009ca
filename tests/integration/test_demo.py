"""The README's demo runs end to end, tells its story, and leaves nothing behind."""

import glob
import os
import subprocess
import sys
import tempfile

import psutil
import pytest

pytestmark = pytest.mark.slow


def _demo_dirs():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "saltext-edge-demo-*")))


def test_demo_end_to_end():
    before = _demo_dirs()
    proc = subprocess.run(
        [sys.executable, "-m", "saltext_edge.demo"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # a good node admitted, a stranger refused with its reason
    assert "edge-sh3-a" in out and "accepted" in out
    assert "edge-sh3-stranger" in out and "bad_token" in out
    assert "edge.minion_config" in out
    assert "demo failed" not in out
    # every file removed, every daemon gone
    assert _demo_dirs() == before
    left = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any("saltext-edge-demo-" in part for part in (p.info["cmdline"] or []))
    ]
    assert not left
