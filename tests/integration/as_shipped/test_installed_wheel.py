"""
The wheel built from this checkout, installed into a clean virtual environment
with Salt (no editable install, no checkout on the path), is an extension Salt
reports and loads: every loader module of every kind is found through the
``salt.loader`` entry point.
"""

import json
import pathlib
import subprocess
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
SRC = REPO / "src" / "saltext_edge"
KINDS = ("modules", "states", "grains", "runners", "wheel", "output")

pytestmark = pytest.mark.slow

# Run by the packaged Python: load each kind of loader module the way Salt
# does and print, per kind, {module file stem: [functions]}. Runs in an empty
# directory so nothing of the checkout can be imported by accident.
LOAD = r"""
import json, os, sys, tempfile
import salt.config, salt.loader
import saltext_edge
tmp = tempfile.mkdtemp()
mopts = salt.config.minion_config(None)
mopts.update(file_client="local", cachedir=tmp, pki_dir=tmp, extension_modules=tmp + "/ext",
             id="wheel-check")
mopts["grains"] = salt.loader.grains(mopts)
utils = salt.loader.utils(mopts)
funcs = salt.loader.minion_mods(mopts, utils=utils)
found = {"modules": funcs, "states": salt.loader.states(mopts, funcs, utils, {})}
maopts = salt.config.master_config(None)
maopts.update(cachedir=tmp, pki_dir=tmp, extension_modules=tmp + "/ext")
found["runners"] = salt.loader.runner(maopts, utils=utils)
found["wheel"] = salt.loader.wheels(maopts)
found["output"] = salt.loader.outputters(maopts)
out = {"package": os.path.dirname(saltext_edge.__file__)}
for kind, loader in found.items():
    per = {}
    for name in list(loader):
        mod = getattr(loader[name], "__module__", "") or ""
        if "edge" in mod:
            per.setdefault(mod.rsplit(".", 1)[-1], []).append(name)
    out[kind] = per
grain_mods = {}
for loaded in salt.loader.grain_funcs(mopts).values():
    mod = getattr(loaded, "__module__", "") or ""
    if "edge" in mod:
        grain_mods.setdefault(mod.rsplit(".", 1)[-1], []).append(loaded.__name__)
out["grains"] = grain_mods
out["grain_names"] = sorted(k for k in mopts["grains"] if k.startswith("edge"))
print(json.dumps(out))
"""


def _shipped(kind):
    return sorted(p.stem for p in (SRC / kind).glob("*.py") if p.stem != "__init__")


def test_wheel_carries_licence_reactor_and_entry_point(built_wheel):
    with zipfile.ZipFile(built_wheel) as whl:
        names = whl.namelist()
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = whl.read(entry).decode()
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/LICENSE") for n in names)
    assert "saltext_edge/reactor/edge_auth.sls" in names
    assert "saltext_edge/reactor/edge_alert.sls" in names
    assert "saltext.edge = saltext_edge" in entry_points
    assert "saltext-edge = saltext_edge.cli:main" in entry_points
    import saltext_edge

    assert f"Version: {saltext_edge.__version__}\n" in meta
    assert "License: Apache-2.0" in meta


def test_versions_report_lists_the_extension(packaged_python):
    bindir = pathlib.Path(packaged_python).parent
    proc = subprocess.run(
        [str(bindir / "salt-call"), "--local", "--versions-report"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("Salt Extensions:", 1)[1]
    import saltext_edge

    assert f"saltext-edge: {saltext_edge.__version__}" in section.split("\n\n")[0] + section


def test_console_script_version(packaged_python):
    bindir = pathlib.Path(packaged_python).parent
    proc = subprocess.run(
        [str(bindir / "saltext-edge"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    import saltext_edge

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"saltext-edge {saltext_edge.__version__}"


def test_loader_finds_every_module(packaged_python):
    proc = subprocess.run(
        [packaged_python, "-c", LOAD],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    # the installed copy, not this checkout
    assert not found["package"].startswith(str(REPO)), found["package"]
    assert "site-packages" in found["package"]
    for kind in KINDS:
        shipped = _shipped(kind)
        assert shipped, kind
        missing = [stem for stem in shipped if not found[kind].get(stem)]
        assert not missing, f"{kind}: the loader did not find {missing} (found {found[kind]})"
    assert "edge.version" in found["modules"]["edge_mod"]
    assert "edge.version" in found["runners"]["edge_runner"]
    assert found["output"]["edge_out"] == ["edge"]
    assert found["grain_names"], "no edge_* grain"
