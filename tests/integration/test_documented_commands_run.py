"""
The documented commands that can run here (``RUN`` in tests/doc_commands.py)
run, word for word, against the session's real master: exit code 0 and no
"Invalid outputter" fallback. The master runs no ``edge_fleet`` engine, so
the report says so in its one ``WARNING`` line.
"""

import subprocess
import sys

import pytest
from tests.doc_commands import RUN, documented_commands

pytestmark = pytest.mark.slow


def _commands():
    words = {cmd.text: cmd.words for cmd in documented_commands()}
    return [words[text] for text in sorted(RUN)]


def test_runnable_documented_commands_run(salt_master, salt_run_cli):
    def run(words):
        if words[0] == "saltext-edge":
            proc = subprocess.run(
                [sys.executable, "-m", "saltext_edge.cli", *words[1:]],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            return words, proc.returncode, proc.stdout + proc.stderr
        ret = salt_run_cli.run(*words[1:], _timeout=120)
        return words, ret.returncode, ret.stdout + ret.stderr

    results = [run(words) for words in _commands()]
    failed = [
        (" ".join(words), rc, out)
        for words, rc, out in results
        if rc != 0 or "Invalid outputter" in out or "Traceback" in out
    ]
    assert not failed, failed
    edge = {" ".join(w): out for w, _, out in results if "--out=edge" in w}
    report = edge["salt-run edge.report --out=edge"]
    assert (
        report.startswith("Edge fleet at ") and "WARNING: no edge_fleet engine answered" in report
    )
