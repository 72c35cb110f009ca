"""
Shared fixtures: one session-scoped real salt-master and salt-minion
(pytest-salt-factories), the repository root served as ``file_roots`` so the
top-level ``_*/`` tree is what ``saltutil.sync_*`` ships, and a Python
interpreter on which saltext_edge is NOT installed (for the sync path).
"""

import copy
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest
from saltfactories.utils import random_string

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def salt_factories_config():
    """
    A short per-session root (daemon dirs and the launcher scripts salt-
    factories generates there) and launchers that add nothing to
    ``sys.path``: by default salt-factories reuses scripts left in a shared
    /tmp/scripts by any earlier run and puts this venv's site-packages first
    on the daemons' path (which would defeat ``python_without_ext``).
    """
    root = tempfile.mkdtemp(prefix="sf-", dir="/tmp")
    yield {"root_dir": root, "code_dir": None, "inject_sitecustomize": False}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


SYNC_DIRS = (
    "_grains",
    "_modules",
    "_states",
    "_runners",
    "_wheel",
    "_utils",
    "_beacons",
    "_engines",
    "_output",
)


@pytest.fixture(scope="session")
def state_tree(repo_root, tmp_path_factory):
    """
    A file_roots directory holding the repository's ``_*/`` tree (as links),
    as an operator would serve a checkout of it, without the rest of the repo.
    """
    root = tmp_path_factory.mktemp("state-tree")
    for name in SYNC_DIRS:
        (root / name).symlink_to(repo_root / name)
    return root


class SharedDefaults(dict):
    """
    A dict every test master starts from, that refuses to be changed.
    salt-factories writes the master's own paths (``root_dir``, ``pki_dir``
    ...) into the ``defaults`` it is given: a master handed this very dict
    would leave its paths in it, and every later master would share that
    master's key store. Pass ``dict(...)`` or ``copy.deepcopy(...)`` of it.
    """

    def _refuse(self, *args, **kwargs):
        raise TypeError("master_defaults is shared by every test master: pass a copy of it")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __deepcopy__(self, memo):
        return copy.deepcopy(dict(self), memo)


@pytest.fixture(scope="session")
def master_defaults(state_tree):
    """Config every test master starts from: the _* tree as file_roots, quick timings (read-only)."""
    return SharedDefaults(
        {
            "file_roots": {"base": [str(state_tree)]},
            "fileserver_followsymlinks": True,
            "interface": "127.0.0.1",
            "loop_interval": 1,
        }
    )


@pytest.fixture(scope="session")
def salt_master(salt_factories, master_defaults):
    # The shared master serves tests that are not about admission, so it
    # accepts keys itself instead of relying on salt-factories' auth-event
    # callback (which runs in the session-wide event listener and was seen
    # to fall behind when earlier tests flooded the bus). Admission tests
    # start masters of their own.
    factory = salt_factories.salt_master_daemon(
        random_string("edge-master-"), defaults=dict(master_defaults, auto_accept=True)
    )
    with factory.started():
        yield factory


@pytest.fixture(scope="session")
def salt_minion(salt_master):
    factory = salt_master.salt_minion_daemon(
        random_string("edge-minion-"),
        # grains run before the first auth, so tell the minion the master's
        # publish port (4505 is not where the test master listens)
        defaults={"master_alive_interval": 10, "publish_port": salt_master.config["publish_port"]},
    )
    with factory.started():
        # accepted by salt-factories (it pre-seeds the key); sync so the
        # _* tree is present even where the package is installed
        yield factory


@pytest.fixture(scope="session")
def salt_cli(salt_master):
    return salt_master.salt_cli()


@pytest.fixture(scope="session")
def salt_run_cli(salt_master):
    return salt_master.salt_run_cli()


@pytest.fixture(scope="session")
def salt_call_cli(salt_minion):
    return salt_minion.salt_call_cli()


@pytest.fixture(scope="session")
def python_without_ext(tmp_path_factory):
    """
    Path to a Python interpreter that has Salt and its dependencies but not
    saltext_edge: a venv whose only extra path is a mirror of this venv's
    site-packages without our package, its dist-info and its editable hook.
    """
    root = tmp_path_factory.mktemp("noext")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    mirror = root / "site"
    mirror.mkdir()
    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("saltext_edge", "saltext-edge", "__editable__")):
            continue
        if name.endswith(".pth"):
            continue
        (mirror / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    pathlib.Path(out.stdout.strip(), "edge_test_deps.pth").write_text(str(mirror) + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import salt, zmq; import saltext_edge"],
        capture_output=True,
        text=True,
        cwd=str(root),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert "No module named 'saltext_edge'" in probe.stderr, probe.stderr
    return str(python)


#: packages whose tests share package-scoped daemons or a machine-wide
#: resource (as_shipped: the wheel it builds, the ``salt`` user it creates and
#: removes; field: the lab network of tests/field/lab.py), so one pytest-xdist
#: worker runs all of each
ONE_WORKER_PACKAGES = ("as_shipped", "fleet", "view", "enrollment", "alerting", "field")


def is_unit(path):
    """True for a file under ``tests/unit/`` (any area): pure logic, no daemons."""
    return pathlib.PurePosixPath(path).parts[:2] == ("tests", "unit")


def worker_group(nodeid):
    """
    The unit of work of one pytest-xdist worker: a test file, or a whole
    :data:`ONE_WORKER_PACKAGES` package (never under ``tests/unit/``, whose
    ``fleet/`` and ``view/`` are areas of unit tests, each file on its own).
    """
    path = nodeid.split("::", 1)[0]
    folder = path.rpartition("/")[0]
    shared = folder.rpartition("/")[2] in ONE_WORKER_PACKAGES and not is_unit(path)
    return folder if shared else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """
    ``./dev test`` runs ``pytest -n N --dist loadscope``: each worker takes
    whole :func:`worker_group` units, in collection order, so module- and
    package-scoped daemons start once. (Done here rather than with
    ``xdist_group`` marks, which pytest-xdist 3.8 cannot apply under pytest 9.)
    """
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return worker_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    """Daemon tests first, the quick unit files last (they fill the workers in at the end)."""
    items.sort(key=lambda item: is_unit(item.nodeid))


def pytest_unconfigure(config):  # noqa: ARG001
    """
    Salt's deferred start-up log handler (``salt._logging.impl``) replays
    the records it holds to ``sys.stderr`` at interpreter exit; pytest has
    closed that stream by then, so each record would print a "Logging error"
    traceback after a green run. pytest already captured those records:
    point the handler at /dev/null.
    """
    impl = sys.modules.get("salt._logging.impl")
    handler = impl.get_temp_handler() if impl else None
    if handler is not None:
        # assigned, not setStream(): that would flush the records first
        handler.stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
