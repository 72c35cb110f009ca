"""
Secrets stay secret with every daemon logging at its most verbose level.

A dedicated master (secret in ``SALT_SHARED_SECRET`` as in the seed's
Kubernetes Deployment, previous secret in a file, reactor with
``auto_admit``) and a brand-new minion (site key in a file, as
``edge.minion_config`` provisions it), both at ``log_level[_logfile]: all``.
We drive everything an operator and an attacker would: admission of the
real node, the runner (site_key, accept_pending incl. ``wait`` and
``dry_run``, errors), the wheel functions, a hostile auth event, the
execution module's audit, and ``edge.minion_config`` fed a site key from
pillar. Then we search every log file, every event seen on the master bus,
the master job cache, and every runner / wheel / CLI output for

* the fleet secret, the previous secret and every site key used (never, anywhere);
* the node's admission token (never in OUR log records, events or returns).
"""

import hashlib
import os
import pathlib
import re
import time

import pytest

from .conftest import (
    BIN,
    SITE,
    BusRecorder,
    _leave_pending,
    fake_auth,
    make_token,
    master_config,
    master_opts,
    place_pending,
    reactor_sls,
    salt_run,
    site_key,
)

pytestmark = pytest.mark.slow

LEAK_SECRET = "LEAKcur-" + hashlib.sha256(b"leak-current").hexdigest()[:40]
LEAK_PREVIOUS = "LEAKprev-" + hashlib.sha256(b"leak-previous").hexdigest()[:40]
STATE_SITE = "leak-state"
NODE = "leak-node-" + os.urandom(3).hex()
ENR_NODE = "leak-enr-" + os.urandom(3).hex()
OUR_LOGGERS = re.compile(r"\[(saltext_edge[\w.]*|salt\.loaded\.ext\.[\w.]*edge[\w.]*)\s*:")


@pytest.fixture(scope="module")
def leak(salt_factories, tmp_path_factory):
    from saltfactories.utils import random_string

    root = tmp_path_factory.mktemp("leak")
    prev_file = root / "previous.secret"
    prev_file.write_text(LEAK_PREVIOUS + "\n")
    os.chmod(prev_file, 0o600)
    state_root = root / "states"
    pillar_root = root / "pillar"
    state_root.mkdir()
    pillar_root.mkdir()
    env = dict(os.environ, SALT_SHARED_SECRET=LEAK_SECRET)
    overrides = master_config(
        reactor=[{"salt/auth": [str(reactor_sls())]}],
        edge={
            "previous_shared_secret_file": str(prev_file),
            "auto_admit": True,
            "previous_shared_secret_expires": "2999-01-01T00:00:00Z",
        },
        log_level="all",
        log_level_logfile="all",
        file_roots={"base": [str(state_root)]},
        pillar_roots={"base": [str(pillar_root)]},
    )
    master = salt_factories.salt_master_daemon(
        random_string("leak-master-"),
        overrides=overrides,
        on_auth_event_callback=_leave_pending,
    )
    master.environ = env  # a copy: the manager's dict is shared by every daemon
    k_site = site_key(LEAK_SECRET, SITE)
    k_state = site_key(LEAK_SECRET, STATE_SITE)
    site_key_file = root / "site.key"
    site_key_file.write_text(k_site + "\n")
    os.chmod(site_key_file, 0o600)
    dropin = root / "node-conf" / "minion.d" / "edge.conf"
    (pillar_root / "top.sls").write_text("base:\n  '*':\n    - edge\n")
    # as the docs recommend: a #!yaml pillar file (Salt logs Jinja-rendered
    # text at debug) read by the state at run time via site_key_pillar
    (pillar_root / "edge.sls").write_text(f"#!yaml\nedge_pillar:\n  site_key: '{k_state}'\n")
    (state_root / "edge_leak.sls").write_text(
        "edge-minion:\n"
        "  edge.minion_config:\n"
        f"    - name: {dropin}\n"
        "    - masters: [salt-a.example.net, salt-b.example.net]\n"
        f"    - site: {STATE_SITE}\n"
        "    - site_key_pillar: edge_pillar:site_key\n"
        "    - restart: False\n"
    )
    outputs = []
    with master.started():
        opts = master_opts(master)
        bus = BusRecorder(opts).start()
        minion = master.salt_minion_daemon(
            NODE,
            overrides={
                "autosign_grains": ["edge_token"],
                "edge": {"site": SITE, "site_key_file": str(site_key_file)},
                "acceptance_wait_time": 1,
                "acceptance_wait_time_max": 1,
                "log_level": "all",
                "log_level_logfile": "all",
            },
        )
        # enrollment keys (docs/enrollment.rst): made by the runner, used by a
        # second brand-new minion through edge:enrollment_key_file
        run_env = {"SALT_SHARED_SECRET": LEAK_SECRET}
        enr_file = root / "enroll.key"
        rc, enr_ret, out, err = salt_run(
            master,
            "edge.enrollment_key",
            f"site={SITE}",
            f"path={enr_file}",
            "uses=2",
            "expires=1h",
            "note=leak test",
            env=run_env,
        )
        outputs.append(("salt-run edge.enrollment_key", out + err))
        assert rc == 0 and enr_file.exists(), (out + err)[-2000:]
        enr_text = enr_file.read_text().strip()
        enr_minion = master.salt_minion_daemon(
            ENR_NODE,
            overrides={
                "autosign_grains": ["edge_token"],
                "edge": {"enrollment_key_file": str(enr_file)},
                "acceptance_wait_time": 1,
                "acceptance_wait_time_max": 1,
                "log_level": "all",
                "log_level_logfile": "all",
            },
        )
        with minion.started(start_timeout=120), enr_minion.started(start_timeout=120):
            # admitted by the reactor with no human step (the start check
            # above waits for salt/minion/<id>/start, i.e. accepted)
            pub = (pathlib.Path(minion.config["pki_dir"]) / "minion.pub").read_text()
            token = make_token(LEAK_SECRET, SITE, NODE, pub)
            cli = master.salt_cli(timeout=60)
            ping = cli.run("test.ping", minion_tgt=NODE)
            outputs.append(("salt test.ping", ping.stdout + ping.stderr))
            audit = cli.run("edge.config_audit", minion_tgt=NODE)
            outputs.append(("salt edge.config_audit", audit.stdout + audit.stderr))
            state = cli.run("state.apply", "edge_leak", "test=True", minion_tgt=NODE)
            outputs.append(("salt state.apply edge_leak test=True", state.stdout + state.stderr))
            state = cli.run("state.apply", "edge_leak", minion_tgt=NODE)
            outputs.append(("salt state.apply edge_leak", state.stdout + state.stderr))
            enr_ping = cli.run("test.ping", minion_tgt=ENR_NODE)
            outputs.append(("salt test.ping (enrolled node)", enr_ping.stdout + enr_ping.stderr))
            calls = [
                ("edge.enrollment_key", f"site={SITE}", f"path={enr_file}"),  # exists: error
                ("edge.enrollment_key", "site=bad site!", f"path={root / 'never.key'}"),
                ("edge.enrollment_keys",),
                ("edge.node_index",),
                ("edge.revoke_enrollment", enr_ret["id"]),
                ("edge.site_key", SITE, f"path={root / 'provision-sh3.key'}"),
                ("edge.site_key", SITE, f"path={root / 'provision-sh3.key'}"),  # exists: error
                ("edge.site_key", "bad site!"),
                ("edge.accept_pending", "wait=2"),
                ("edge.report",),
            ]
            # an attacker: hostile token for a pending key, through the reactor
            (_, stranger_pub) = _stranger_key()
            place_pending(opts, "leak-stranger", stranger_pub)
            fake_auth(
                opts,
                "leak-stranger",
                stranger_pub,
                make_token("x" * 32, SITE, "leak-stranger", stranger_pub),
            )
            fake_auth(opts, "leak-stranger", stranger_pub, token)  # replayed node token
            for call in calls:
                rc, _data, out, err = salt_run(master, *call, env=run_env)
                outputs.append(("salt-run " + " ".join(call), out + err))
            # the wheel functions, as salt-api's client=wheel runs them
            import salt.wheel

            wheel = salt.wheel.WheelClient(opts)
            for fun, kwarg in (
                ("edge.accept_pending", {"dry_run": True}),
                ("edge.decisions", {}),
                (
                    "edge.record",
                    {"minion_id": "leak-stranger", "pub": stranger_pub, "token": token},
                ),
                (
                    "edge.auth_event",
                    {"minion_id": "leak-stranger", "pub": stranger_pub, "token": token},
                ),
                (
                    "edge.auth_event",
                    {"minion_id": "leak-stranger", "pub": "not a key", "token": "v1:x:y"},
                ),
            ):
                try:
                    ret = wheel.cmd(fun, kwarg=kwarg, print_event=False, full_return=True)
                    # the job data echoes the call's arguments (Salt's doing);
                    # the function's own return is what must be clean of tokens
                    outputs.append((f"wheel {fun} (full job data)", repr(ret)))
                    outputs.append(
                        (f"wheel {fun}", repr(ret.get("return") if isinstance(ret, dict) else ret))
                    )
                except Exception as exc:
                    outputs.append((f"wheel {fun} raised", f"{exc.__class__.__name__}: {exc}"))
            # the console script an operator would run on the master
            import subprocess

            proc = subprocess.run(
                [str(BIN / "saltext-edge"), "site-key", "bad site!", "-c", str(master.config_dir)],
                capture_output=True,
                text=True,
                env=dict(os.environ, SALT_SHARED_SECRET=LEAK_SECRET),
                check=False,
            )
            outputs.append(("saltext-edge site-key 'bad site!' (error)", proc.stdout + proc.stderr))
            for args in (
                ["--site", SITE, "--path", str(root / "cli-enroll.key"), "--uses", "3"],
                ["--site", SITE, "--path", str(enr_file)],
            ):  # the second: exists
                proc = subprocess.run(
                    [
                        str(BIN / "saltext-edge"),
                        "enrollment-key",
                        *args,
                        "-c",
                        str(master.config_dir),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    env=dict(os.environ, SALT_SHARED_SECRET=LEAK_SECRET),
                )
                outputs.append(
                    ("saltext-edge enrollment-key " + " ".join(args), proc.stdout + proc.stderr)
                )
            cli_key = (root / "cli-enroll.key").read_text().strip()
            time.sleep(1.5)
        bus.stop()
        yield {
            "master": master,
            "minion": minion,
            "enr_minion": enr_minion,
            "enrollment": enr_ret,
            "opts": opts,
            "bus": bus,
            "outputs": outputs,
            "token": token,
            "secrets": {
                "fleet secret": LEAK_SECRET,
                "previous secret": LEAK_PREVIOUS,
                f"site key {SITE}": k_site,
                f"site key {STATE_SITE}": k_state,
                f"previous site key {SITE}": site_key(LEAK_PREVIOUS, SITE),
                "enrollment key": enr_text.rsplit(":", 1)[1],
                "enrollment key (CLI)": cli_key.rsplit(":", 1)[1],
            },
            "site_key_file": site_key_file,
            "dropin": dropin,
        }


_STRANGER = []


def _stranger_key():
    if not _STRANGER:
        from .conftest import gen_keypair

        _STRANGER.append(gen_keypair())
    return _STRANGER[0]


def _log_files(leak):
    files = []
    for factory in (leak["master"], leak["minion"], leak["enr_minion"]):
        files.append(pathlib.Path(factory.config["log_file"]))
    # salt-run and the wheel client log into the master's log file too;
    # add anything else under the daemons' log dirs
    for path in list(files):
        files.extend(p for p in path.parent.glob("*") if p.is_file() and p not in files)
    return [f for f in files if f.exists()]


def _find(haystack, needles):
    return [name for name, value in needles.items() if value in haystack]


def test_levels_really_were_all(leak):
    """Sanity: the logs do hold trace/garbage-level records, so silence means something."""
    master_log = pathlib.Path(leak["master"].config["log_file"]).read_text(errors="replace")
    minion_log = pathlib.Path(leak["minion"].config["log_file"]).read_text(errors="replace")
    assert "[TRACE   ]" in master_log or "[GARBAGE ]" in master_log
    assert "[TRACE   ]" in minion_log or "[GARBAGE ]" in minion_log
    # and the admission did happen through the reactor
    assert any(
        t == "edge/admission/accepted" and d.get("id") == NODE for t, d in leak["bus"].events
    )


def _log_hits(leak, secrets):
    hits = {}
    for path in _log_files(leak):
        text = path.read_text(errors="replace")
        for name in _find(text, secrets):
            lines = []
            last_header = ""
            for line in text.splitlines():
                if line.startswith("[20"):
                    last_header = line[:160]
                if secrets[name] in line:
                    lines.append(last_header if not line.startswith("[20") else line[:200])
            hits[f"{path.parent.parent.name}/{path.name}: {name}"] = lines[:3]
    return hits


def test_no_secret_in_log_files(leak):
    """Fleet secret, previous secret, site keys: admission, grain, runner, wheel, reactor."""
    secrets = {k: v for k, v in leak["secrets"].items() if STATE_SITE not in k}
    assert not _log_hits(leak, secrets)


def test_state_site_key_from_pillar_not_logged(leak):
    """
    The site key from pillar, the way the docs recommend (``site_key_pillar``
    and a ``#!yaml`` pillar file), ends up in no log either. (The product brief's
    ``site_key: {{ pillar[...] }}`` would: Salt itself logs every
    Jinja-rendered SLS at debug.)
    """
    secrets = {k: v for k, v in leak["secrets"].items() if STATE_SITE in k}
    hits = _log_hits(leak, secrets)
    assert not hits, hits


def test_no_secret_on_the_event_bus(leak):
    hits = {}
    for tag, data in leak["bus"].events:
        for name in _find(repr(data), leak["secrets"]):
            hits.setdefault(name, []).append(tag)
    assert leak["bus"].events, "the recorder saw no event"
    assert not hits, hits


def test_no_secret_in_job_cache(leak):
    jobs = pathlib.Path(leak["opts"]["cachedir"]) / "jobs"
    assert jobs.is_dir() and any(jobs.rglob("*.p"))
    hits = {}
    for path in jobs.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for name, value in leak["secrets"].items():
                if value.encode() in blob:
                    hits.setdefault(name, []).append(str(path.relative_to(jobs)))
    assert not hits, hits


def test_no_secret_in_any_return_or_error(leak):
    hits = {}
    for label, text in leak["outputs"]:
        for name in _find(text, leak["secrets"]):
            hits.setdefault(label, []).append(name)
    assert not hits, hits
    # the error paths did produce a message (so the check covered them)
    errors = [text for label, text in leak["outputs"] if "bad site!" in label]
    assert errors and all("site" in text.lower() for text in errors), errors


def test_token_not_in_our_logs_events_or_returns(leak):
    token = leak["token"]
    mac = token.rsplit(":", 1)[1]
    hits = []
    for path in _log_files(leak):
        for line in path.read_text(errors="replace").splitlines():
            if mac in line and OUR_LOGGERS.search(line):
                hits.append(f"{path.name}: {line[:200]}")
    for tag, data in leak["bus"].events:
        if not isinstance(tag, str):
            continue
        if not isinstance(data, dict):
            continue
        if tag.startswith("edge/") and mac in repr(data):
            hits.append(f"event {tag}")
        # run/wheel job events echo the call's arguments (Salt's doing: the
        # reactor passes the token it got in salt/auth); what OUR function
        # returns must not hold it
        if (
            tag.startswith(("salt/run/", "salt/wheel/"))
            and "edge." in str(data.get("fun", ""))
            and mac in repr(data.get("return", ""))
        ):
            hits.append(f"return in event {tag} ({data.get('fun')})")
    for label, text in leak["outputs"]:
        if "edge" in label and "(full job data)" not in label and mac in text:
            hits.append(f"output of {label}")
    assert not hits, hits


def test_minion_config_secret_file_and_dropin(leak):
    """The state put the pillar site key in a 0600 file and never in the drop-in."""
    from saltext_edge.minion_request import default_secret_file

    dropin = leak["dropin"]
    assert dropin.exists(), "edge.minion_config did not write the drop-in"
    text = dropin.read_text()
    assert leak["secrets"][f"site key {STATE_SITE}"] not in text
    secret_path = pathlib.Path(default_secret_file(str(dropin)))
    assert secret_path.read_text().strip() == leak["secrets"][f"site key {STATE_SITE}"]
    assert secret_path.stat().st_mode & 0o777 == 0o600


def test_enrolled_node_admitted_by_its_enrollment(leak):
    """The enrolled node was admitted by its enrollment (so the checks above covered that path)."""
    admitted = [
        d
        for t, d in leak["bus"].events
        if t == "edge/admission/accepted" and d.get("id") == ENR_NODE
    ]
    assert admitted and admitted[0]["admitted_by"] == f"enrollment:{leak['enrollment']['id']}"
    outs = dict(leak["outputs"])
    assert ENR_NODE in outs["salt-run edge.enrollment_keys"]
    assert (
        "already exists"
        in outs[f"saltext-edge enrollment-key --site {SITE} --path {leak['enrollment']['path']}"]
    )
