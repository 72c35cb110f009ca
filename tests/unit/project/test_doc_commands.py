"""
Every command the documentation shows matches the product: ``edge``
runner and module functions exist and take the keyword arguments shown,
Salt's CLI options exist, ``--out`` names an outputter Salt loads, and
``saltext-edge`` parses the subcommand and options. Every command is run by
the suite (``RUN``, in tests/integration/test_documented_commands_run.py; the
quickstart's marked blocks, in tests/integration/as_shipped) or matches a
``NOT_RUNNABLE`` rule saying why not here: a new command in the docs fails
until it is given one or the other.
"""

import contextlib
import inspect
import io
import re

import pytest
import salt.config
import salt.loader
import salt.utils.parsers
from tests.doc_commands import RUN, documented_commands, why_not

from saltext_edge import cli
from saltext_edge.modules import edge_mod
from saltext_edge.runners import edge_runner


@pytest.fixture(scope="module")
def commands():
    found = documented_commands()
    assert len(found) > 50, found
    return found


@pytest.fixture(scope="module")
def outputters():
    return salt.loader.outputters(salt.config.master_config(None))


def _functions(module):
    return {
        name: inspect.signature(func)
        for name, func in vars(module).items()
        if callable(func)
        and not name.startswith("_")
        and getattr(func, "__module__", None) == module.__name__
        and inspect.isfunction(func)
    }


RUNNER = _functions(edge_runner)
MODULE = _functions(edge_mod)


def _check_call(where, fun, signature, args):
    problems = []
    params = signature.parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    positional = [
        p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    count = 0
    for arg in args:
        key, eq, _ = arg.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_]\w*", key):
            if key not in params and not var_kw:
                problems.append(f"{where}: {fun} has no argument {key!r}")
        else:
            count += 1
    if count > len(positional):
        problems.append(
            f"{where}: {fun} takes {len(positional)} positional argument(s), not {count}"
        )
    return problems


def _split_options(where, words, parser, outputters):
    """Return (problems, positional words) of a Salt CLI command line."""
    problems, rest = [], []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):  # Salt's CLIs take options anywhere on the line
            name, eq, value = word.partition("=")
            option = parser.get_option(name)
            if option is None:
                problems.append(f"{where}: {words[0]} has no option {name}")
            elif option.takes_value() and not eq:
                i += 1
                value = words[i] if i < len(words) else ""
            if name in ("--out", "--output") and value not in outputters:
                problems.append(f"{where}: no outputter {value!r}")
        else:
            rest.append(word)
        i += 1
    return problems, rest


def test_documented_commands_match_the_product(commands, outputters):
    run_parser = salt.utils.parsers.SaltRunOptionParser()
    salt_parser = salt.utils.parsers.SaltCMDOptionParser()
    call_parser = salt.utils.parsers.SaltCallOptionParser()
    problems = []
    for cmd in commands:
        words = cmd.words
        if cmd.program == "saltext-edge":
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    cli._parser().parse_args(list(words[1:]))
                except SystemExit as exc:
                    # a mention of a subcommand without its arguments is fine
                    if exc.code and "arguments are required" not in err.getvalue():
                        problems.append(f"{cmd.where}: saltext-edge does not take {cmd.text!r}")
            continue
        parser = {"salt-run": run_parser, "salt": salt_parser, "salt-call": call_parser}[
            cmd.program
        ]
        found, rest = _split_options(cmd.where, words[1:], parser, outputters)
        problems += found
        if cmd.program == "salt":
            rest = rest[1:]  # the target
        if not rest:
            continue
        fun, args = rest[0], rest[1:]
        if fun.startswith("edge."):
            table = RUNNER if cmd.program == "salt-run" else MODULE
            name = fun[len("edge.") :]
            if name not in table:
                problems.append(f"{cmd.where}: no function {fun} ({cmd.program})")
                continue
            problems += _check_call(cmd.where, fun, table[name], args)
    assert not problems, "\n".join(problems)


def test_a_stale_command_is_caught(outputters):
    """The checks above can fail: a wrong outputter, option, function and argument."""
    run_parser = salt.utils.parsers.SaltRunOptionParser()
    found, _ = _split_options("x", ["edge.report", "--out=quiet"], run_parser, outputters)
    assert found == ["x: no outputter 'quiet'"]
    found, _ = _split_options("x", ["--no-such-option", "edge.report"], run_parser, outputters)
    assert found == ["x: salt-run has no option --no-such-option"] or found
    assert _check_call("x", "edge.report", RUNNER["report"], ["html=/x", "colour=red"]) == [
        "x: edge.report has no argument 'colour'"
    ]
    assert "edge" in outputters and "quiet" not in outputters


def test_every_command_is_run_or_says_why_not(commands):
    texts = {cmd.text for cmd in commands}
    # RUN names documented commands only (a command removed from the docs leaves RUN too)
    assert texts >= RUN, sorted(RUN - texts)
    unclassified = sorted(
        {
            f"{cmd.where}: {cmd.text}"
            for cmd in commands
            if cmd.text not in RUN and not why_not(cmd.text)
        }
    )
    assert not unclassified, "add to RUN or NOT_RUNNABLE:\n" + "\n".join(unclassified)
    # and no rule swallows a command that is run
    assert not [t for t in RUN if why_not(t)]
