"""
The deployment kit: Kubernetes manifests parse and reference each other; the
edge-node bootstrap script's dry run writes what the state's library renders.
"""

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
SCRIPT = DEPLOY / "bootstrap-edge-node.sh"
SITE_KEY = "0123456789abcdef" * 4

try:
    from saltext_edge import minion_config
except ImportError:  # pragma: no cover
    minion_config = None


def _docs():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        with open(path, encoding="utf-8") as fh_:
            docs.extend((path.name, d) for d in yaml.safe_load_all(fh_) if d)
    return docs


def _by_kind(kind):
    return {d["metadata"]["name"]: d for _, d in _docs() if d["kind"] == kind}


def test_manifests_parse_and_have_the_expected_objects():
    kinds = sorted({d["kind"] for _, d in _docs()})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
    ]
    namespaces = {d["metadata"].get("namespace") for _, d in _docs() if d["kind"] != "Namespace"}
    assert namespaces == set(_by_kind("Namespace"))


def test_deployment_references_exist():
    (deploy,) = _by_kind("Deployment").values()
    spec = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmaps, secrets, pvcs = _by_kind("ConfigMap"), _by_kind("Secret"), _by_kind(
        "PersistentVolumeClaim"
    )
    for vol in volumes.values():
        if "configMap" in vol:
            assert vol["configMap"]["name"] in configmaps
        if "secret" in vol:
            assert vol["secret"]["secretName"] in secrets
            assert vol["secret"]["defaultMode"] in (0o400, 0o440, 0o600)
        if "persistentVolumeClaim" in vol:
            assert vol["persistentVolumeClaim"]["claimName"] in pvcs
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for mount in mounts.values():
        assert mount["name"] in volumes
        if "subPath" in mount and "configMap" in volumes[mount["name"]]:
            cm = configmaps[volumes[mount["name"]]["configMap"]["name"]]
            assert mount["subPath"] in cm["data"]
    # PKI / key store and the master cache are persistent
    for path in ("/etc/salt/pki/master", "/var/cache/salt/master"):
        assert "persistentVolumeClaim" in volumes[mounts[path]["name"]]
    # the secret is a file from a Secret, never a literal env value
    for env in container.get("env", []):
        assert "value" not in env or "SECRET" not in env["name"].upper()
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["readinessProbe"] and container["livenessProbe"]
    # the selector selects the pod template
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert sorted(ports.values()) == [4505, 4506]


def test_master_config_and_secret_paths_agree():
    (deploy,) = _by_kind("Deployment").values()
    spec = deploy["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (cm,) = _by_kind("ConfigMap").values()
    (conf_text,) = cm["data"].values()
    conf = yaml.safe_load(conf_text)
    assert conf["auth_events_autosign_grains"] == ["pend", "denied"]
    assert conf["minion_data_cache"] is True
    reactor = conf["reactor"][0]["salt/auth"][0]
    assert reactor.endswith("edge_auth.sls")
    assert (REPO / "src/saltext_edge/reactor/edge_auth.sls").is_file()
    secret_file = conf["edge"]["shared_secret_file"]
    secret_vol = next(v["name"] for v in spec["volumes"] if "secret" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_vol)
    assert secret_file.startswith(mount["mountPath"].rstrip("/") + "/")
    (secret,) = _by_kind("Secret").values()
    assert os.path.basename(secret_file) in secret["stringData"]
    # the Containerfile links the packaged reactor where the config expects it
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert os.path.dirname(reactor) in containerfile
    assert "EXPOSE 4505 4506" in containerfile


def test_service_selects_the_pods_on_4505_4506():
    svc = _by_kind("Service")["salt-master"]  # metrics-service.yaml adds a ClusterIP one
    (deploy,) = _by_kind("Deployment").values()
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [4505, 4506]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names | {4505, 4506}


# -- bootstrap script -------------------------------------------------------


def _bootstrap(tmp_path, *args, env=None, secret=SITE_KEY):
    key = tmp_path / "site.key"
    key.write_text(secret + "\n")
    root = tmp_path / "root"
    full_env = dict(os.environ, **(env or {}))
    return root, subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--root", str(root), "--site-key-file", str(key), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("renderer", ["library", "builtin"])
@pytest.mark.parametrize(
    "masters,site,extra",
    [
        (["salt-a.example.net", "salt-b.example.net"], "sh-3", []),
        (["10.1.2.3:4506"], "123", ["--master-alive-interval", "45"]),
        (["salt.example.net"], "on", ["--no-failover", "--id", "edge-7"]),
    ],
)
def test_bootstrap_dry_run_writes_what_the_state_renders(tmp_path, renderer, masters, site, extra):
    if minion_config is None:
        pytest.skip("saltext_edge.minion_config is not available")
    args = ["--site", site, "--renderer", renderer, "--python", sys.executable, *extra]
    for master in masters:
        args += ["--master", master]
    root, proc = _bootstrap(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    # nothing installed or started, only printed
    assert "+ systemctl restart salt-minion" in proc.stdout
    assert SITE_KEY not in proc.stdout + proc.stderr

    plan = minion_config.build_plan(
        "/etc/salt/minion.d/edge.conf",
        masters,
        master_alive_interval=int(extra[extra.index("--master-alive-interval") + 1])
        if "--master-alive-interval" in extra
        else 30,
        failover="--no-failover" not in extra,
        site=site,
        site_key=SITE_KEY,
        secret_file="/etc/salt/edge/edge.key",
    )
    dropin = root / "etc/salt/minion.d/edge.conf"
    assert dropin.read_text() == plan["content"]
    assert yaml.safe_load(dropin.read_text()) == plan["data"]
    secret = root / "etc/salt/edge/edge.key"
    assert secret.read_text() == SITE_KEY
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    if "--id" in extra:
        assert (root / "etc/salt/minion_id").read_text() == "edge-7"


def test_bootstrap_rejects_bad_input_and_writes_nothing(tmp_path):
    root, proc = _bootstrap(tmp_path, "--site", "bad site!", "--master", "m")
    assert proc.returncode == 2 and "--site" in proc.stderr
    assert not (root / "etc").exists()
    root, proc = _bootstrap(tmp_path, "--site", "s", "--master", "m", secret="not-hex")
    assert proc.returncode == 2 and "64 hexadecimal" in proc.stderr
    assert "not-hex" not in proc.stderr
    assert not (root / "etc").exists()
    root, proc = _bootstrap(tmp_path, "--site", "s")
    assert proc.returncode == 2 and "--master" in proc.stderr
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--site", "s", "--master", "m"],
        capture_output=True,
        text=True,
        env=dict(os.environ, EDGE_SITE_KEY=SITE_KEY),
        check=False,
    )
    assert proc.returncode == 2 and "--root" in proc.stderr


def test_bootstrap_secret_from_environment(tmp_path):
    root = tmp_path / "r"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--root", str(root), "--site", "s1", "--master", "m1",
         "--renderer", "builtin"],
        capture_output=True,
        text=True,
        env=dict(os.environ, EDGE_SITE_KEY=SITE_KEY.upper()),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/salt/edge/edge.key").read_text() == SITE_KEY


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_bootstrap_shellcheck():
    proc = subprocess.run(["shellcheck", "-S", "warning", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("renderer", ["library", "builtin"])
def test_bootstrap_with_fleet_secret(tmp_path, renderer):
    if minion_config is None:
        pytest.skip("saltext_edge.minion_config is not available")
    secret = "a fleet secret with 'quotes' and \"more\""
    (tmp_path / "s").write_text(secret + "\n")
    root = tmp_path / "root"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--root", str(root), "--site", "bj-1",
         "--master", "[2001:db8::1]:4506", "--shared-secret-file", str(tmp_path / "s"),
         "--renderer", renderer, "--python", sys.executable],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    plan = minion_config.build_plan(
        "/etc/salt/minion.d/edge.conf",
        ["[2001:db8::1]:4506"],
        site="bj-1",
        shared_secret=secret,
        secret_file="/etc/salt/edge/edge.key",
    )
    assert (root / "etc/salt/minion.d/edge.conf").read_text() == plan["content"]
    assert (root / "etc/salt/edge/edge.key").read_text() == secret
