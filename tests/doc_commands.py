"""
The commands the documentation shows (``docs/**/*.rst``, ``README.md``):
every ``salt-run``, ``salt``, ``salt-call`` and ``saltext-edge`` line of a
code block, and every such inline literal, parsed into its function and
arguments, so the tests can check them against the product
(``tests/unit/project/test_doc_commands.py``) and run a subset against a real master
(``tests/integration/test_documented_commands_run.py``).
"""

import dataclasses
import pathlib
import re
import shlex

REPO = pathlib.Path(__file__).resolve().parent.parent
PROGRAMS = ("salt-run", "salt-call", "saltext-edge", "salt")
_CRON = re.compile(r"^(\S+\s+){5}(?=(sudo\s+)?salt)")
_INLINE = re.compile(r"``((?:salt-run|salt-call|saltext-edge|salt) [^`]+)``")
_BLOCK_START = re.compile(r"(::\s*$)|(^\s*\.\. code-block::\s*(bash|console|shell|sh)\s*$)")


@dataclasses.dataclass(frozen=True)
class Command:
    """One documented command: where it is and its words (comments, redirections, cron fields dropped)."""

    where: str
    text: str
    words: tuple

    @property
    def program(self):
        return self.words[0]


def _words(line):
    line = _CRON.sub("", line.strip())
    if line.startswith("$ "):
        line = line[2:]
    if line.startswith("sudo "):
        line = line[5:]
    try:
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return None
    out = []
    for word in words:
        if word in ("|", "&&", ";", "||"):
            break
        if word.startswith((">", "2>", "<")):
            continue
        out.append(word)
    if not out or out[0] not in PROGRAMS or len(out) < 2:
        return None
    return tuple(out)


def _joined(lines):
    """Code lines with backslash continuations joined."""
    out, cur = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


def _rst_code(text):
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not _BLOCK_START.search(lines[i]):
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        i += 1
        block = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            if line.strip().startswith(":") and not block:  # code-block options
                i += 1
                continue
            block.append((i + 1, line))
            i += 1
        for number, line in zip([n for n, _ in block], _joined([ln for _, ln in block])):
            yield number, line


def _md_code(text):
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            yield number, line


def documented_commands():
    """Return every documented command (a list of :class:`Command`), in file order."""
    files = sorted(p for p in (REPO / "docs").rglob("*.rst") if "_build" not in p.parts)
    files.append(REPO / "README.md")
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        code = _md_code(text) if path.suffix == ".md" else _rst_code(text)
        for number, line in code:
            words = _words(line)
            if words:
                found.append(Command(f"{rel}:{number}", " ".join(words), words))
        for number, line in enumerate(text.splitlines(), 1):
            for match in _INLINE.finditer(line):
                words = _words(match.group(1))
                if words:
                    found.append(Command(f"{rel}:{number}", " ".join(words), words))
    return found


#: run against the session's real master by tests/integration/test_documented_commands_run.py
RUN = {
    "salt-run edge.report",
    "salt-run edge.report --out=edge",
    "salt-run edge.report --out=json",
    "salt-run edge.report details=True",
    "salt-run edge.report site=sh-*",
    "salt-run edge.report site=sh-* --out=edge",
    "salt-run edge.report site=sh-3",
    "salt-run edge.enrollment_keys",
    "salt-run edge.enrollment_keys --out=edge",
    "salt-run edge.enrollment_keys site=sh-3 status=active",
    "salt-run edge.node_index",
    "salt-run edge.node_index --out=yaml",
    "salt-run cache.grains tgt=*",
    "saltext-edge --version",
}

#: (pattern on the command, why it is not run here): first match wins
NOT_RUNNABLE = (
    (
        r"\b(ID|NODE|SITE|PATH)\b|\.\.\.|\[",
        "a template (ID, SITE, PATH, ... are placeholders); its function and arguments are checked",
    ),
    (
        r"^salt ",
        "targets edge nodes by id or grain: needs that fleet; the edge functions run on real "
        "minions in tests/integration/diag and tests/functional",
    ),
    (
        r"^salt-call --local",
        "runs on an edge node; salt-call --local edge.diagnose runs in tests/functional/diag",
    ),
    (
        r"^salt-run edge\.enrollment_key\b",
        "writes a key file under /srv/provision or /etc/salt of the master host; run with "
        "test paths in tests/integration/enrollment",
    ),
    (
        r"^salt-run edge\.(revoke_node|unrevoke_node|revoke_enrollment|site_key|accept_pending)\b",
        "needs a fleet secret and nodes or enrollments to act on; run in "
        "tests/integration/enrollment and tests/adversarial",
    ),
    (
        r"^salt-run edge\.node sh-3-gw-01",
        "names a node of the example fleet; edge.node of real nodes (--out=edge too) runs in "
        "tests/integration/test_report.py",
    ),
    (
        r"html=/srv/",
        "writes to /srv/www of the master host; html=PATH quiet=True with a test path runs in "
        "tests/integration/test_report.py",
    ),
    (
        r"^salt-run edge\.report ping=True",
        "pings every node; ping=True timeout=20 runs against real minions in "
        "tests/integration/test_report.py",
    ),
    (r"^salt-run state\.event ", "follows the event bus until interrupted"),
    (
        r"^salt-call event\.fire_master",
        "a minion forging an event; the engine's refusal of forged events runs in "
        "tests/adversarial",
    ),
    (
        r"^salt-run edge\.(node|revoke_node|revoke_enrollment|site_key)$",
        "the function named in prose, without its required argument",
    ),
    (
        r"^salt-run saltutil\.sync_",
        "syncs the _* tree to a master without the package: tests/integration/test_sync_path.py",
    ),
    (
        r"^saltext-edge (master-config|new-secret|site-key)\b",
        "writes /etc/salt and /srv/reactor or prints a secret: the quickstart's blocks run in "
        "tests/integration/as_shipped, the secrets in tests/unit/admission/test_secrets.py",
    ),
)


def why_not(text):
    """Return why ``text`` (a documented command) is not run here, ``None`` when no rule says."""
    for pattern, reason in NOT_RUNNABLE:
        if re.search(pattern, text):
            return reason
    return None
