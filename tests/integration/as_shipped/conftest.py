"""
Fixtures for the tests of the product as it is shipped (docs/install.rst):

* ``built_wheel``: the wheel built from this checkout, the way ``./dev dist``
  builds it (``python -m build --no-isolation``);
* ``packaged_python``: a clean virtual environment with Salt and that wheel
  (not an editable install), under a world-readable directory, the way
  onedir's ``/opt/saltstack/salt`` is: a master that drops to ``user: salt``
  must still read its Python and our package (a venv under root's 0700 home
  is unreadable to it);
* ``salt_user``: the ``salt`` user and group Salt's packages create, created
  here when missing (the test machine runs as root) and removed afterwards.

The environment is built once per session; the time it takes is printed in
the terminal summary (``-rA``) as ``packaged_python: ... s``.
"""

import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
SALT_USER = "salt"


def _run(cmd, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("check", False)
    return subprocess.run(cmd, **kwargs)


def as_user(user, cmd, **kwargs):
    """Run ``cmd`` as ``user`` (from root) with a clean environment; returns the CompletedProcess."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(kwargs.pop("env", {}) or {})
    return _run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *cmd],
        env=env,
        cwd="/",
        **kwargs,
    )


def readable_by(user, path):
    """True when ``user`` can read ``path`` (checked by that user, not by mode bits)."""
    return as_user(user, ["test", "-r", str(path)]).returncode == 0


@pytest.fixture(scope="session")
def salt_user():
    """The ``salt`` user (created with its group when missing; removed at the end if so)."""
    if os.geteuid() != 0:
        pytest.skip("running a master as another user needs root to start it")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip(
            "useradd/setpriv (passwd, util-linux) not installed: cannot create the salt user"
        )
    created = False
    try:
        pwd.getpwnam(SALT_USER)
    except KeyError:
        proc = _run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SALT_USER,
            ]
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot create the salt user: {proc.stderr.strip()}")
        created = True
    yield SALT_USER
    if created:
        _run(["userdel", SALT_USER])


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """Path of the wheel built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    proc = _run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--wheel",
            "--outdir",
            str(out),
            str(REPO),
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("saltext_edge-*.whl")
    return wheel


def _base_python(user):
    """
    An interpreter of this Python version whose installation ``user`` can
    read (this one if so, else the system's), or ``None``.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(sys._base_executable),
        f"/usr/bin/{version}",
        f"/usr/local/bin/{version}",
    ]
    for cand in candidates:
        if not os.path.isfile(cand):
            continue
        # where its standard library is, asked as root, then whether ``user``
        # reaches it (checking by running it as ``user`` is not enough: a
        # Python that cannot see its own path falls back to another prefix)
        proc = _run([cand, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"])
        if proc.returncode != 0:
            continue
        stdlib = proc.stdout.strip()
        probe = os.path.join(stdlib, "multiprocessing", "sharedctypes.py")
        if (
            as_user(user, ["test", "-x", cand]).returncode == 0
            and as_user(user, ["test", "-r", probe]).returncode == 0
            and _run([cand, "-c", "import venv, ensurepip"]).returncode == 0
        ):
            return cand
    return None


@pytest.fixture(scope="session")
def packaged_python(salt_user, built_wheel, record_testsuite_property):
    """
    Path of the ``python`` of a clean venv (no system site-packages) holding
    Salt and the built wheel, readable and executable by ``salt``.
    """
    base = _base_python(salt_user)
    if base is None:
        pytest.skip(
            f"no Python {sys.version_info.major}.{sys.version_info.minor} on this machine that "
            "the salt user can read (install python3-venv: ./dev does)"
        )
    root = tempfile.mkdtemp(prefix="edge-pkg-", dir="/tmp")
    os.chmod(root, 0o755)
    venv = os.path.join(root, "salt")
    start = time.monotonic()
    try:
        proc = _run([base, "-m", "venv", venv])
        assert proc.returncode == 0, proc.stderr
        python = os.path.join(venv, "bin", "python")
        proc = _run(
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                str(REPO / "constraints.txt"),
                str(built_wheel),
            ],
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        elapsed = time.monotonic() - start
        record_testsuite_property("packaged_python_seconds", round(elapsed, 1))
        print(f"\npackaged_python: venv with Salt and the wheel built in {elapsed:.1f} s")
        yield python
    finally:
        shutil.rmtree(root, ignore_errors=True)
