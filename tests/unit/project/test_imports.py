"""
The package's imports: every module of ``saltext_edge`` imports alone, and
nothing imports in a loop (``docs/design.rst``, the module map).

* Alone: each module is imported in its own child of a fresh interpreter
  that has imported nothing of ``saltext_edge`` (one ``fork`` per module, so
  one module's imports cannot hide another's missing one).
* No loop: the ``saltext_edge`` imports of every module, read from its
  source (``ast``), at module level and inside functions alike (a lazy
  import still ties two modules together), form no cycle; neither do they
  when each subpackage counts as one unit (``fleet/``, ``uplink/``, ...),
  the way a reader sees the layers.
"""

import ast
import pathlib
import subprocess
import sys

SRC = pathlib.Path(__file__).resolve().parents[3] / "src"
PACKAGE = "saltext_edge"

#: cycles left in modules this change could not edit, each a sorted tuple of
#: module names; empty: there is none (a new one fails the test)
KNOWN_CYCLES = frozenset()

# run in the child interpreter: import each module named on the command line
# in a forked child of its own; print the ones that fail, with the traceback
_IMPORT_EACH = """
import importlib, os, sys, traceback
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(name)
print("FAILED:" + ",".join(failed))
"""


def _module_name(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _imports(tree, known):
    """The ``saltext_edge`` modules a module's source imports (anywhere in it)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from pkg import name": the submodule pkg.name, else pkg itself
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE):
                found.add(name)
    return found


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = _imports(ast.parse(path.read_text(encoding="utf-8")), modules) - {name}
    return graph


def _unit(name):
    """``saltext_edge.fleet.store`` -> ``saltext_edge.fleet``; top-level modules stay."""
    return ".".join(name.split(".")[:2])


def _by_unit(graph):
    units = {}
    for name, deps in graph.items():
        units.setdefault(_unit(name), set()).update(_unit(dep) for dep in deps)
    return {name: deps - {name} for name, deps in units.items()}


def cycles(graph):
    """The strongly connected parts of ``graph`` with more than one node (Tarjan), sorted tuples."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(tuple(sorted(part)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return set(found)


def test_the_cycle_finder_finds_a_loop_and_only_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == set()


def test_the_graph_sees_lazy_and_package_imports():
    graph = _graph()
    assert len(graph) > 50
    # module level, inside a try (a loader module) and inside a function
    assert "saltext_edge.uplink.probe" in graph["saltext_edge.masters"]
    assert "saltext_edge.uplink.measure" in graph["saltext_edge.grains.edge_grains"]
    assert "saltext_edge.enrollment" in graph["saltext_edge.minion_config"]


def test_no_import_loop_between_modules():
    assert cycles(_graph()) - KNOWN_CYCLES == set()


def test_no_import_loop_between_packages():
    # e.g. fleet/ -> diag -> settings -> fleet/ was one: minion-side code
    # in fleet/ reached the diagnostics, whose catalogue reached fleet/
    assert cycles(_by_unit(_graph())) - KNOWN_CYCLES == set()


def _import_each(names):
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *names],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    failed = [name for name in line.removeprefix("FAILED:").split(",") if name]
    return failed, proc.stderr


def test_the_import_check_reports_a_module_that_fails():
    failed, stderr = _import_each(["saltext_edge.config", "saltext_edge.no_such_module"])
    assert failed == ["saltext_edge.no_such_module"]
    assert "ModuleNotFoundError" in stderr


def test_every_module_imports_alone():
    failed, stderr = _import_each(sorted(_modules()))
    assert failed == [], stderr
