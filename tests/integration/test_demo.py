"""The README's demo runs end to end, tells its story, and leaves nothing behind."""

import glob
import os
import subprocess
import sys
import tempfile

import psutil
import pytest
import yaml

pytestmark = pytest.mark.slow

ADMIT = "salt-run edge.accept_pending  (admit by token"
DRY_RUN = "salt-run edge.accept_pending dry_run=True"
CONFIG = "salt edge-sh3-a state.single edge.minion_config"
AGAIN = "... and again: nothing to change"
REPORT = "salt-run edge.report --out=edge"
PAGE = "salt-run edge.report html="


def _demo_dirs():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "saltext-edge-demo-*")))


def _sections(out):
    """
    The demo's ``=== title`` sections as ``{title: [block, ...]}``: each block
    is one top-level YAML mapping Salt printed (a line at column 0 starts the
    next one), parsed.
    """
    sections = {}
    for chunk in out.split("\n=== ")[1:]:
        title, _, body = chunk.partition("\n")
        texts = []
        for line in body.splitlines():
            if line and not line[0].isspace():
                texts.append([])
            if texts:
                texts[-1].append(line)
        sections[title] = texts
    return sections


def _section(sections, prefix):
    found = [texts for title, texts in sections.items() if title.startswith(prefix)]
    assert len(found) == 1, (prefix, list(sections))
    return [yaml.safe_load("\n".join(text)) for text in found[0]]


def _state_chunk(blocks):
    (ret,) = blocks
    (chunk,) = ret["edge-sh3-a"].values()
    return chunk


def check_story(out):
    """What the demo must show; raises AssertionError naming what is missing."""
    sections = _sections(out)
    # the dry run decides, but changes nothing
    dry = {minion: ret for block in _section(sections, DRY_RUN) for minion, ret in block.items()}
    assert dry["edge-sh3-a"]["decision"] == "accepted", dry
    assert dry["edge-sh3-a"]["action"] == "none", dry
    # the good node admitted, the stranger refused for its bad token ...
    admit = _section(sections, ADMIT)
    decisions = {minion: ret for block in admit[:2] for minion, ret in block.items()}
    good, stranger = decisions["edge-sh3-a"], decisions["edge-sh3-stranger"]
    assert (good["decision"], good["action"], good["site"]) == ("accepted", "accepted", "sh-3")
    assert (stranger["decision"], stranger["reason"]) == ("refused", "bad_token"), stranger
    assert stranger["action"] != "accepted", stranger
    # ... and then only the admitted node answers a ping to '*'
    assert admit[2:] == [{"edge-sh3-a": True}], admit[2:]
    # the state writes the drop-in once, then has nothing to change
    first = _state_chunk(_section(sections, CONFIG))
    assert first["result"] is True and first["comment"].startswith("Wrote "), first
    assert "+master_type: str" in first["changes"]["diff"], first
    second = _state_chunk(_section(sections, AGAIN))
    assert second["result"] is True and second["changes"] == {}, second
    assert "already in the desired state" in second["comment"], second
    assert "demo failed" not in out
    # the report and the page say what the metrics say: the node is online
    # (the engine answers; no fallback to a record not written yet)
    for prefix in (REPORT, PAGE):
        (body,) = [b for t, b in _raw_sections(out).items() if t.startswith(prefix)]
        first = body.splitlines()[0]
        assert "(from the engine " in first and " 1 online, " in first, body
        assert "WARNING" not in body, body


def _raw_sections(out):
    return dict(chunk.partition("\n")[::2] for chunk in out.split("\n=== ")[1:])


def test_demo_end_to_end(tmp_path):
    before = _demo_dirs()
    page = tmp_path / "fleet.html"
    proc = subprocess.run(
        [sys.executable, "-m", "saltext_edge.demo", "--page", str(page)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    check_story(out)
    assert '<div class="tot" data-total="online"><b class="on">1</b>' in page.read_text()
    # every file removed, every daemon gone
    assert _demo_dirs() == before
    left = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any("saltext-edge-demo-" in part for part in (p.info["cmdline"] or []))
    ]
    assert not left
