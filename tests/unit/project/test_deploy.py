"""
The deployment kit: the Kubernetes manifests that ``kubectl apply -k
deploy/kubernetes`` applies validate strictly against the Kubernetes schemas,
pass the "restricted" Pod Security Standard and reference each other; the
Containerfile runs as the user the manifests expect; the edge-node bootstrap
script's dry run writes what the state's library renders.
"""

import copy
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
SCRIPT = DEPLOY / "bootstrap-edge-node.sh"
SITE_KEY = "0123456789abcdef" * 4
# the Kubernetes release whose schemas the manifests are validated against
K8S_VERSION = "1.33.0"

try:
    from saltext_edge import minion_config
    from saltext_edge.minion_request import MinionConfigError
except ImportError:  # pragma: no cover
    minion_config = None


def _load(path):
    with open(path, encoding="utf-8") as fh_:
        return [d for d in yaml.safe_load_all(fh_) if d]


def _applied_files():
    """The files the kustomization applies (nothing else in the directory is applied)."""
    (kust,) = _load(K8S / "kustomization.yaml")
    return [K8S / name for name in kust["resources"]]


def _docs():
    docs = []
    for path in _applied_files():
        docs.extend((path.name, d) for d in _load(path))
    return docs


def _by_kind(kind):
    return {d["metadata"]["name"]: d for _, d in _docs() if d["kind"] == kind}


def _example_secret():
    (secret,) = _load(K8S / "examples" / "secret.example.yaml")
    return secret


def _pod_spec():
    (deploy,) = _by_kind("Deployment").values()
    return deploy["spec"]["template"]["spec"]


def test_applied_set_is_exactly_the_real_resources():
    files = _applied_files()
    assert all(f.is_file() and f.parent == K8S for f in files)
    kinds = sorted(d["kind"] for _, d in _docs())
    assert {"ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"} <= set(
        kinds
    )
    namespaces = {d["metadata"].get("namespace") for _, d in _docs() if d["kind"] != "Namespace"}
    assert namespaces == set(_by_kind("Namespace"))
    # the example Secret is never applied: not listed, not in a listed file
    assert "Secret" not in kinds
    assert _example_secret()["kind"] == "Secret"
    for yml in K8S.glob("*.yaml"):
        if yml.name != "kustomization.yaml" and yml not in files:
            pytest.fail(f"{yml.name} sits beside the applied manifests but is not listed")


def test_manifests_validate_strictly():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [d for _, d in _docs()] + [_example_secret()]
    for doc in docs:
        # strict: unknown fields are errors (a typo is not silently ignored)
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_typo():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (deploy,) = copy.deepcopy(list(_by_kind("Deployment").values()))
    deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)


# -- Pod Security Standards, "restricted" (which includes "baseline") --------
# https://kubernetes.io/docs/concepts/security/pod-security-standards/
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}


def restricted_violations(pod):
    """Return the rules of the restricted profile that the pod spec ``pod`` breaks."""
    bad = []
    psc = pod.get("securityContext") or {}
    containers = [
        *pod.get("containers", []),
        *pod.get("initContainers", []),
        *pod.get("ephemeralContainers", []),
    ]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            bad.append(f"{field}")
    for vol in pod.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {vol['name']}: {sorted(kinds - RESTRICTED_VOLUMES)}")
    for sysctl in psc.get("sysctls", []) or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            bad.append(f"sysctl {sysctl['name']}")

    def seccomp_ok(ctx):
        return (ctx.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")

    for ctx_name, ctx in [("pod", psc)] + [
        (c["name"], c.get("securityContext") or {}) for c in containers
    ]:
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{ctx_name}: hostProcess")
        if ctx.get("runAsUser") == 0:
            bad.append(f"{ctx_name}: runAsUser 0")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{ctx_name}: seccomp Unconfined")
        if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{ctx_name}: AppArmor Unconfined")
        selinux = ctx.get("seLinuxOptions") or {}
        if selinux.get("type") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            bad.append(f"{ctx_name}: seLinuxOptions")
    for cont in containers:
        name, ctx = cont["name"], cont.get("securityContext") or {}
        if ctx.get("privileged"):
            bad.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (
            ctx.get("runAsNonRoot") is True
            or psc.get("runAsNonRoot") is True
            and ctx.get("runAsNonRoot") is not False
        ):
            bad.append(f"{name}: runAsNonRoot must be true")
        if not (seccomp_ok(ctx) or seccomp_ok(psc) and "seccompProfile" not in ctx):
            bad.append(f"{name}: seccompProfile RuntimeDefault or Localhost")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities.add beyond NET_BIND_SERVICE")
        if ctx.get("procMount", "Default") != "Default":
            bad.append(f"{name}: procMount")
        for port in cont.get("ports", []):
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort")
    return bad


def test_pod_passes_the_restricted_profile():
    assert restricted_violations(_pod_spec()) == []


@pytest.mark.parametrize(
    "path,value,rule",
    [
        (("securityContext", "runAsNonRoot"), None, "runAsNonRoot"),
        (("containers", 0, "securityContext", "capabilities"), None, "drop ALL"),
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "Escalation"),
        (("containers", 0, "securityContext", "seccompProfile"), {"type": "Unconfined"}, "seccomp"),
        (("hostNetwork",), True, "hostNetwork"),
        (("volumes", 0), {"name": "h", "hostPath": {"path": "/"}}, "hostPath"),
    ],
)
def test_restricted_check_catches_each_rule(path, value, rule):
    pod = copy.deepcopy(_pod_spec())
    node = pod
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1], None)
        if path[-1] == "runAsNonRoot":
            pod["containers"][0]["securityContext"].pop("runAsNonRoot", None)
    else:
        node[path[-1]] = value
    assert any(rule in v for v in restricted_violations(pod)), restricted_violations(pod)


def _master_conf():
    (cm,) = _by_kind("ConfigMap").values()
    (conf_text,) = cm["data"].values()
    return yaml.safe_load(conf_text)


def test_deployment_references_exist():
    (deploy,) = _by_kind("Deployment").values()
    spec = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmaps, pvcs = _by_kind("ConfigMap"), _by_kind("PersistentVolumeClaim")
    secret = _example_secret()
    for vol in volumes.values():
        if "configMap" in vol:
            assert vol["configMap"]["name"] in configmaps
        if "secret" in vol:
            assert vol["secret"]["secretName"] == secret["metadata"]["name"]
            # root:fsGroup; readable by the master's group only
            assert vol["secret"]["defaultMode"] in (0o440, 0o400)
        if "persistentVolumeClaim" in vol:
            assert vol["persistentVolumeClaim"]["claimName"] in pvcs
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for mount in mounts.values():
        assert mount["name"] in volumes
        if "subPath" in mount and "configMap" in volumes[mount["name"]]:
            cm = configmaps[volumes[mount["name"]]["configMap"]["name"]]
            assert mount["subPath"] in cm["data"]
    # the key store and the master cache are on the PersistentVolumeClaim;
    # every directory the master writes is a volume (read-only root filesystem)
    conf = _master_conf()

    def volume_of(path):
        best = max(
            (m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len
        )
        return volumes[mounts[best]["name"]]

    for option in ("pki_dir", "cachedir"):
        assert "persistentVolumeClaim" in volume_of(conf[option]), option
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for option in ("pidfile", "sock_dir", "log_file"):
        assert "emptyDir" in volume_of(conf[option]), option
    # the secret is a file from a Secret, never a literal env value
    for env in container.get("env", []):
        assert "value" not in env or "SECRET" not in env["name"].upper()
    assert container["resources"]["limits"] and container["resources"]["requests"]
    # probes on Salt 3008's health sentinels under <cachedir>/health
    health = conf["cachedir"].rstrip("/") + "/health/"
    assert container["startupProbe"]["exec"]["command"] == ["test", "-f", health + "startup"]
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-f", health + "ready"]
    assert health + "alive" in " ".join(container["livenessProbe"]["exec"]["command"])
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert sorted(ports.values()) == [4505, 4506]


def test_health_sentinel_names_match_salt():
    healthchecks = pytest.importorskip("salt.cluster.healthchecks")
    assert healthchecks.HEALTH_DIR == "health"
    assert (
        healthchecks.STARTUP_SENTINEL,
        healthchecks.READY_SENTINEL,
        healthchecks.ALIVE_SENTINEL,
    ) == ("startup", "ready", "alive")
    # the liveness window leaves several heartbeats of slack
    (container,) = _pod_spec()["containers"]
    window = int(
        re.search(r"-lt (\d+)", container["livenessProbe"]["exec"]["command"][-1]).group(1)
    )
    assert window >= 4 * healthchecks.DEFAULT_ALIVE_INTERVAL


def test_master_config_and_secret_paths_agree():
    spec = _pod_spec()
    (container,) = spec["containers"]
    conf = _master_conf()
    assert conf["auth_events_autosign_grains"] == ["pend", "denied"]
    assert conf["minion_data_cache"] is True
    assert conf["user"] == "salt"
    reactor = conf["reactor"][0]["salt/auth"][0]
    assert reactor.endswith("edge_auth.sls")
    assert "site-packages" not in reactor
    assert (REPO / "src/saltext_edge/reactor/edge_auth.sls").is_file()
    # the alert reactor is wired for every transition the engine seals, beside it
    from saltext_edge.master_config import ALERT_REACTOR_NAME, ALERT_TAGS

    alert_sls = os.path.join(os.path.dirname(reactor), ALERT_REACTOR_NAME)
    wired = {tag for entry in conf["reactor"] for tag, sls in entry.items() if alert_sls in sls}
    assert wired == set(ALERT_TAGS)
    assert (REPO / "src/saltext_edge/reactor" / ALERT_REACTOR_NAME).is_file()
    secret_file = conf["edge"]["shared_secret_file"]
    secret_vol = next(v["name"] for v in spec["volumes"] if "secret" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_vol)
    assert secret_file.startswith(mount["mountPath"].rstrip("/") + "/")
    assert os.path.basename(secret_file) in _example_secret()["stringData"]
    # the Containerfile puts the packaged reactor where the config expects it
    containerfile = (DEPLOY / "Containerfile").read_text()
    assert os.path.dirname(reactor) in containerfile
    assert "EXPOSE 4505 4506" in containerfile


def test_containerfile_runs_as_the_pods_user():
    containerfile = (DEPLOY / "Containerfile").read_text()
    psc = _pod_spec()["securityContext"]
    users = re.findall(r"^USER\s+(\S+)", containerfile, re.M)
    assert users, "the image has no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == psc["runAsUser"] != 0
    assert gid and int(gid) == psc["runAsGroup"] == psc["fsGroup"]
    assert re.search(r"useradd .*--uid \"\$\{SALT_UID\}\".* salt", containerfile)
    assert f"ARG SALT_UID={uid}" in containerfile
    # the files the Containerfile copies exist
    for line in re.findall(r"^COPY (?!--from)(.+)$", containerfile, re.M):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), src


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


def _script(root, *args, env=None):
    """Run the bootstrap script with ``--dry-run`` (and ``--root root`` unless ``None``)."""
    where = ["--root", str(root)] if root is not None else []
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *where, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=60,
        check=False,
    )


def _bootstrap(tmp_path, *args, env=None, secret=SITE_KEY):
    key = tmp_path / "site.key"
    key.write_text(secret + "\n")
    root = tmp_path / "root"
    return root, _script(root, "--site-key-file", str(key), *args, env=env)


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
    proc = _script(None, "--site", "s", "--master", "m", env={"EDGE_SITE_KEY": SITE_KEY})
    assert proc.returncode == 2 and "--root" in proc.stderr


def test_bootstrap_secret_from_environment(tmp_path):
    root = tmp_path / "r"
    proc = _script(
        root,
        *("--site", "s1", "--master", "m1", "--renderer", "builtin"),
        env={"EDGE_SITE_KEY": SITE_KEY.upper()},
    )
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/salt/edge/edge.key").read_text() == SITE_KEY


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_bootstrap_shellcheck():
    proc = subprocess.run(
        ["shellcheck", "-S", "warning", str(SCRIPT)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("renderer", ["library", "builtin"])
def test_bootstrap_with_fleet_secret(tmp_path, renderer):
    if minion_config is None:
        pytest.skip("saltext_edge.minion_config is not available")
    secret = "a fleet secret with 'quotes' and \"more\""
    (tmp_path / "s").write_text(secret + "\n")
    root = tmp_path / "root"
    proc = _script(
        root,
        *("--site", "bj-1", "--master", "[2001:db8::1]:4506"),
        *("--shared-secret-file", str(tmp_path / "s")),
        *("--renderer", renderer, "--python", sys.executable),
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


@pytest.mark.parametrize(
    "package,shown",
    [
        ("WHEEL", "WHEEL"),
        (
            "git+https://git.example.net/ops/saltext-edge.git@v0.1.0",
            "git+https://git.example.net/ops/saltext-edge.git@v0.1.0",
        ),
        ("saltext-edge==0.1.0", "saltext-edge==0.1.0"),
    ],
)
def test_bootstrap_package_from_a_file_or_a_git_url(tmp_path, package, shown):
    wheel = tmp_path / "saltext_edge-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    package, shown = (str(wheel) if p == "WHEEL" else p for p in (package, shown))
    _, proc = _bootstrap(
        tmp_path, "--site", "s", "--master", "m", "--renderer", "builtin", "--package", package
    )
    assert proc.returncode == 0, proc.stderr
    assert f"salt-pip install {shown}\n" in proc.stderr


@pytest.mark.parametrize(
    "package", ["/nonexistent/saltext_edge-0.1.0-py3-none-any.whl", "saltext-edge; rm -rf /", ""]
)
def test_bootstrap_refuses_a_bad_package(tmp_path, package):
    root, proc = _bootstrap(tmp_path, "--site", "s", "--master", "m", "--package", package)
    assert proc.returncode == 2 and "--package" in proc.stderr
    assert not (root / "etc").exists()


ENROLLMENT_KEY = (
    "edge-enroll:v2:sh-3:0123456789abcdef:"
    + "3041935d9f7621f56c40c2cf60ea0c7b165f12e0480376a691a098de0348e94e"
)


@pytest.mark.parametrize("renderer", ["library", "builtin"])
@pytest.mark.parametrize("site", [None, "sh-3"])
def test_bootstrap_with_enrollment_key(tmp_path, renderer, site):
    if minion_config is None:
        pytest.skip("saltext_edge.minion_config is not available")
    (tmp_path / "k").write_text(ENROLLMENT_KEY + "\n")
    root = tmp_path / "root"
    args = ["--site", site] if site else []
    proc = _script(
        root,
        *args,
        *("--master", "salt-a.example.net", "--enrollment-key-file", str(tmp_path / "k")),
        *("--renderer", renderer, "--python", sys.executable),
    )
    assert proc.returncode == 0, proc.stderr
    assert ENROLLMENT_KEY.rsplit(":", 1)[1] not in proc.stdout + proc.stderr
    plan = minion_config.build_plan(
        "/etc/salt/minion.d/edge.conf",
        ["salt-a.example.net"],
        site=site,
        enrollment_key=ENROLLMENT_KEY,
        secret_file="/etc/salt/edge/edge.key",
    )
    assert (root / "etc/salt/minion.d/edge.conf").read_text() == plan["content"]
    assert plan["data"]["edge"]["enrollment_key_file"] == "/etc/salt/edge/edge.key"
    assert plan["data"]["autosign_grains"] == ["edge_token"]
    secret = root / "etc/salt/edge/edge.key"
    assert secret.read_text() == ENROLLMENT_KEY and stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_bootstrap_enrollment_key_for_another_site_is_refused(tmp_path):
    (tmp_path / "k").write_text(ENROLLMENT_KEY + "\n")
    root = tmp_path / "root"
    proc = _script(
        root, "--site", "sh-4", "--master", "m", "--enrollment-key-file", str(tmp_path / "k")
    )
    assert proc.returncode == 2 and "sh-3" in proc.stderr and not (root / "etc").exists()
    assert ENROLLMENT_KEY.rsplit(":", 1)[1] not in proc.stderr
    if minion_config is not None:
        with pytest.raises(MinionConfigError, match="for site"):
            minion_config.build_plan(
                "/etc/salt/minion.d/edge.conf", ["m"], site="sh-4", enrollment_key=ENROLLMENT_KEY
            )
        with pytest.raises(MinionConfigError, match="not both"):
            minion_config.build_plan(
                "/etc/salt/minion.d/edge.conf",
                ["m"],
                site="sh-3",
                enrollment_key=ENROLLMENT_KEY,
                site_key="a" * 64,
            )
