"""
Issue 12, from the attacker's side, against real salt-masters with the
shipped reactor: an accepted minion forging ``salt/auth`` events through its
own channel, raw sign-in requests, real minions squatting an id, an operator
killing a run, a lock held by someone else. Each test names the item it
covers; docs/security-tests.rst lists what was tried and what holds.
"""

import fcntl
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest
import yaml
from tests.support.waits import wait_until

from .conftest import (
    PREVIOUS,
    SECRET,
    SITE,
    BusRecorder,
    accepted_attacker,
    clear_policy,
    edge_conf,
    forge_events,
    key_cache,
    key_states,
    make_token,
    master_opts,
    minion_opts_for,
    pending_minion_factory,
    per_minion,
    place_pending,
    raw_sign_in,
    reactor_sls,
    salt_run,
    salt_run_argv,
    site_key,
    start_master,
    start_reactor_master,
    token_record,
    write_policy,
)

pytestmark = pytest.mark.slow

OTHER_SITE = "sh-9"
K8S_PLACEHOLDER = yaml.safe_load_all(
    (
        pathlib.Path(__file__).resolve().parents[2]
        / "deploy"
        / "kubernetes"
        / "examples"
        / "secret.example.yaml"
    ).read_text()
)
K8S_PLACEHOLDER = [d for d in K8S_PLACEHOLDER if d][0]["stringData"]["shared_secret"]


@pytest.fixture(scope="module")
def manual_master(salt_factories):
    """Reactor records only (manual admission); ``sh-3`` owns the ids ``sh3-*``."""
    with start_master(
        salt_factories,
        "adv-hostile-",
        overrides={
            "reactor": [{"salt/auth": [str(reactor_sls())]}],
            "edge": edge_conf(on_invalid="delete", site_ids={SITE: ["sh3-*"]}),
        },
    ).started() as factory:
        yield factory


@pytest.fixture(scope="module")
def mopts(manual_master):
    return master_opts(manual_master)


@pytest.fixture(scope="module")
def attacker(manual_master, mopts, key_pool):
    return accepted_attacker(manual_master, mopts, key_pool[17])


@pytest.fixture
def operator_policy(manual_master):
    """Write the operator's master.d policy (secrets kept) for salt-run; removed afterwards."""

    def _write(**edge):
        conf = edge_conf(on_invalid="delete", site_ids={SITE: ["sh3-*"]})
        conf.update(edge)
        return write_policy(manual_master, **conf)

    yield _write
    clear_policy(manual_master)


def _node(manual_master, mid, pair):
    return minion_opts_for(manual_master, mid, *pair)


def _recorded(opts, mid, pub=None):
    """The token record of ``mid`` (for ``pub``) or None; assert on a bool of it, never on it."""
    rec = token_record(opts, mid)
    if not rec:
        return None
    if pub is not None and rec.get("pub", "").strip() != pub.strip():
        return None
    return rec


def _uid():
    return os.urandom(3).hex()


# --------------------------------------------------------------------------
# item 1: forged salt/auth events from an accepted minion
# --------------------------------------------------------------------------
def test_forged_auth_events_cannot_condemn_an_honest_key(manual_master, mopts, attacker, key_pool):
    """
    The honest node signs in (pending, token recorded). An accepted minion
    then makes the master fire ``salt/auth`` events for the node's id: a
    stranger's key with junk, the node's own key with junk, ``denied`` with
    junk, a non-string token. With ``on_invalid: delete`` the operator's run
    must still accept the honest key (on the old code the record was
    overwritten and the key deleted as ``key_changed``). The wheel's
    ``edge.record`` with the same data records nothing.
    """
    import salt.wheel

    mid = f"sh3-honest-{_uid()}"
    node_pair, stranger_pub = key_pool[18], key_pool[19][1]
    node = _node(manual_master, mid, node_pair)
    good = make_token(SECRET, SITE, mid, node_pair[1])
    raw_sign_in(node, token=good)
    assert wait_until(lambda: _recorded(mopts, mid, node_pair[1]), 30), (
        "the honest sign-in was not recorded"
    )
    junk = "v1:" + SITE + ":" + "0" * 64
    forged = [
        (
            "salt/auth",
            {
                "result": True,
                "act": "pend",
                "id": mid,
                "pub": stranger_pub,
                "autosign_grains": {"edge_token": junk},
            },
        ),
        (
            "salt/auth",
            {
                "result": True,
                "act": "pend",
                "id": mid,
                "pub": node_pair[1],
                "autosign_grains": {"edge_token": junk},
            },
        ),
        (
            "salt/auth",
            {
                "result": True,
                "act": "denied",
                "id": mid,
                "pub": stranger_pub,
                "autosign_grains": {"edge_token": junk},
            },
        ),
        (
            "salt/auth",
            {
                "result": True,
                "act": "pend",
                "id": mid,
                "pub": node_pair[1],
                "autosign_grains": {"edge_token": {"x": 1}},
            },
        ),
    ] * 5
    bus = BusRecorder(mopts).start()
    forge_events(attacker, forged)
    # the forged events reached the master bus under salt/auth (what the reactor sees)
    assert wait_until(
        lambda: len([1 for t, d in bus.tagged("salt/auth") if d.get("id") == mid]) >= len(forged),
        30,
    )
    # a sentinel sign-in handled after them by the same reactor
    sentinel = f"sh3-sentinel-{_uid()}"
    sent_pair = key_pool[20]
    raw_sign_in(
        _node(manual_master, sentinel, sent_pair),
        token=make_token(SECRET, SITE, sentinel, sent_pair[1]),
    )
    assert wait_until(lambda: _recorded(mopts, sentinel), 30)
    bus.stop()
    rec = _recorded(mopts, mid) or {}
    kept = rec.get("pub", "").strip() == node_pair[1].strip() and rec.get("token") == good
    assert kept, "the honest node's record was overwritten"  # (never print a token)
    # the wheel takes the same data: not trusted either
    wheel = salt.wheel.WheelClient(mopts)
    ret = wheel.cmd("edge.record", [mid, stranger_pub, junk], print_event=False)
    assert ret["recorded"] is False and ret["reason"] == "not_pending", ret
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    assert rc == 0, (out, err)
    assert per_minion(data)[mid]["decision"] == "accepted", data
    assert key_states(mopts)[mid] == ("accepted", key_states(mopts)[mid][1])
    assert key_states(mopts)[mid][1].strip() == node_pair[1].strip()


# --------------------------------------------------------------------------
# item 2: the crash journal never undoes an operator
# --------------------------------------------------------------------------
def test_recovery_never_undoes_an_operator(manual_master, mopts, key_pool, operator_policy):
    """
    ``accept_pending`` over 600 keys is SIGKILLed midway; the operator then
    deletes, with ``salt-key -d``, keys the killed chunk had accepted. The
    next run must not bring them back (the old journal restored them).
    """
    from saltext_edge import admission

    prefix = f"sh3-crash{_uid()}-"
    ids = [f"{prefix}{i:04d}" for i in range(600)]
    for n, mid in enumerate(ids):
        pub = key_pool[n % 16][1]
        place_pending(mopts, mid, pub)
        admission.record(mopts, mid, pub, make_token(SECRET, SITE, mid, pub))
    operator_policy(on_invalid="keep")
    env = dict(os.environ)
    env.pop("SALT_SHARED_SECRET", None)
    proc = subprocess.Popen(
        salt_run_argv(manual_master, "edge.accept_pending", f"match={prefix}*"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    pki = pathlib.Path(mopts["pki_dir"])
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        done = (
            [m for m in os.listdir(pki / "minions") if m.startswith(prefix)]
            if (pki / "minions").is_dir()
            else []
        )
        if len(done) >= 130:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait(30)
    assert killed, "the run finished before it could be killed"
    import salt.cache

    intents = salt.cache.Cache(mopts)
    in_flight = set()
    for entry in intents.list("edge_admission/intents"):
        in_flight |= set(intents.fetch("edge_admission/intents", entry) or {})
    accepted_now = {m for m in os.listdir(pki / "minions") if m.startswith(prefix)}
    victims = sorted((in_flight & accepted_now) or accepted_now)[:3]
    assert victims
    for mid in victims:
        ret = subprocess.run(
            [
                str(pathlib.Path(salt_run_argv(manual_master)[0]).parent / "salt-key"),
                "-c",
                str(manual_master.config_dir),
                "-d",
                mid,
                "-y",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert ret.returncode == 0, ret.stderr
    assert not any(mid in key_states(mopts) for mid in victims)
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={prefix}*")
    assert rc == 0, (out[-2000:], err[-2000:])
    states = key_states(mopts)
    back = [mid for mid in victims if mid in states]
    assert not back, (
        f"keys the operator deleted after the crash came back: {[(m, states[m][0]) for m in back]}"
    )


# --------------------------------------------------------------------------
# item 3: typed YAML policy
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "yaml_text,site,words",
    [
        ("revoked_sites: [no, 0042, 1.10]", "0042", "edge:revoked_sites"),
        ("revoked_sites: [no, 0042, 1.10]", "no", "edge:revoked_sites"),
        ("site_ids: {on: ['sh3-*']}", "on", "edge:site_ids"),
        ("auto_admit: 'yes'", SITE, "edge:auto_admit"),
    ],
    ids=["octal-site", "no-site", "on-key", "string-bool"],
)
def test_yaml_typed_policy_refuses_admission(
    yaml_text, site, words, manual_master, mopts, key_pool
):
    """
    The operator writes the policy as the docs showed it, unquoted: YAML
    reads the site names as other types. ``salt-run edge.accept_pending``
    must fail, say which option and why, and admit nothing (the old code
    matched nothing and admitted the revoked site's node).
    """
    mid = f"ty-{_uid()}"
    pair = key_pool[21]
    raw_sign_in(_node(manual_master, mid, pair), token=make_token(SECRET, site, mid, pair[1]))
    assert wait_until(lambda: _recorded(mopts, mid), 30)
    path = pathlib.Path(manual_master.config_dir) / "master.d" / "zz-adversarial-edge.conf"
    path.parent.mkdir(exist_ok=True)
    base = yaml.safe_dump({"edge": edge_conf()})
    path.write_text(base + "".join("  " + line + "\n" for line in yaml_text.splitlines()))
    try:
        rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    finally:
        path.unlink()
    # salt-run prints the one-line error as the return and exits 1 (errors.command_errors)
    assert rc == 1, (out, err)
    assert isinstance(data, str) and data.startswith("edge.accept_pending: "), (out, err)
    assert words in data and "Traceback" not in out + err, (out, err)
    assert key_states(mopts)[mid][0] == "pending"


# --------------------------------------------------------------------------
# item 4: a site key admits no ids of other sites; the verified site
# --------------------------------------------------------------------------
def test_stolen_site_key_gets_no_id_of_another_site(manual_master, mopts, key_pool):
    """
    A thief holding ``sh-9``'s site key signs in as ``sh3-...`` (an id of
    ``sh-3``, the only site with ``site_ids``): refused ``id_not_allowed``.
    An id admitted for ``sh-9`` is bound to it: a token of ``sh-8`` for it
    later is refused ``site_mismatch``. ``edge.node_index`` reports the
    verified site.
    """
    from saltext_edge import admission

    thief_id = f"sh3-stolen-{_uid()}"
    pair = key_pool[22]
    stolen_key = site_key(SECRET, OTHER_SITE)
    raw_sign_in(
        _node(manual_master, thief_id, pair),
        token=make_token(SECRET, OTHER_SITE, thief_id, pair[1], k_site=stolen_key),
    )
    free_id = f"free-{_uid()}"
    free_pair = key_pool[23]
    raw_sign_in(
        _node(manual_master, free_id, free_pair),
        token=make_token(SECRET, OTHER_SITE, free_id, free_pair[1]),
    )
    assert wait_until(lambda: _recorded(mopts, thief_id) and _recorded(mopts, free_id), 30)
    rc, data, out, err = salt_run(
        manual_master, "edge.accept_pending", f"match={thief_id},{free_id}"
    )
    assert rc == 0, (out, err)
    table = per_minion(data)
    assert (table[thief_id]["decision"], table[thief_id]["reason"]) == ("refused", "id_not_allowed")
    assert table[free_id]["decision"] == "accepted"
    index = admission.node_index(mopts)
    assert (
        index[free_id]["site"] == OTHER_SITE
        and index[free_id]["admitted_by"] == f"token:{OTHER_SITE}"
    )
    assert thief_id not in index
    rc, data, out, err = salt_run(manual_master, "edge.node_index")
    assert rc == 0 and data[free_id]["site"] == OTHER_SITE, (out, err)
    # the free id is now bound to sh-9: another site's token for it (new key) is refused
    key_cache(mopts).flush("keys", free_id)
    new_pair = key_pool[0]
    raw_sign_in(
        _node(manual_master, free_id, new_pair),
        token=make_token(SECRET, "sh-8", free_id, new_pair[1]),
    )
    assert wait_until(lambda: _recorded(mopts, free_id, new_pair[1]), 30)
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={free_id}")
    assert (per_minion(data)[free_id]["decision"], per_minion(data)[free_id]["reason"]) == (
        "refused",
        "site_mismatch",
    )


# --------------------------------------------------------------------------
# item 5: per-node revocation
# --------------------------------------------------------------------------
def test_revoked_node_stays_out(manual_master, mopts, key_pool):
    """
    A compromised node is admitted, then revoked with ``salt-run
    edge.revoke_node``: its key is gone and its next sign-in with its still
    valid token is refused ``revoked_node`` (``salt-key -d`` alone was undone
    at the next sign-in). The revocation lives beside the key store and shows
    in ``edge.node_index``.
    """
    mid = f"sh3-stolen-node-{_uid()}"
    pair = key_pool[1]
    node = _node(manual_master, mid, pair)
    tok = make_token(SECRET, SITE, mid, pair[1])
    raw_sign_in(node, token=tok)
    assert wait_until(lambda: _recorded(mopts, mid), 30)
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    assert per_minion(data)[mid]["decision"] == "accepted", (out, err)
    rc, data, out, err = salt_run(manual_master, "edge.revoke_node", mid)
    assert rc == 0 and data["revoked"] is True and data["key_removed"] == "accepted", (out, err)
    assert mid not in key_states(mopts)
    raw_sign_in(node, token=tok)
    assert wait_until(
        lambda: key_states(mopts).get(mid, (None,))[0] == "pending" and _recorded(mopts, mid), 30
    )
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    entry = per_minion(data)[mid]
    assert (entry["decision"], entry["reason"]) == ("refused", "revoked_node"), entry
    assert mid not in key_states(mopts) or key_states(mopts)[mid][0] != "accepted"
    revoked_files = list((pathlib.Path(mopts["pki_dir"]) / "edge" / "nodes").glob("*.json"))
    assert any(json.loads(p.read_text()).get("id") == mid for p in revoked_files)
    rc, data, out, err = salt_run(manual_master, "edge.node_index")
    assert data[mid]["revoked"] is True


# --------------------------------------------------------------------------
# item 6: refusals are decided again once the master is fixed
# --------------------------------------------------------------------------
def test_refusal_redecided_after_the_secret_is_fixed(salt_factories, key_pool):
    """
    Auto mode, the master starts with a wrong secret: the node is refused and
    its later sign-ins are not decided again (``refused_before``). The
    operator fixes the secret and restarts the master: the node's next
    sign-in admits it (the old code kept it pending for ever).
    """
    wrong = "Wr0ng-" + os.urandom(24).hex()
    factory = start_reactor_master(salt_factories, "adv-fix-")
    override = pathlib.Path(factory.config_dir) / "master.d" / "zz-wrong-secret.conf"
    override.parent.mkdir(exist_ok=True)
    override.write_text(
        yaml.safe_dump({"edge": dict(edge_conf(auto_admit=True), shared_secret=wrong)})
    )
    opts = master_opts(factory)
    mid = f"fix-{_uid()}"
    pair = key_pool[2]
    tok = make_token(SECRET, SITE, mid, pair[1])

    def signs_in_until(predicate):
        # a pending minion signs in again and again: the reactor may not be
        # listening yet at the first one, right after the master started
        for _ in range(12):
            raw_sign_in(node, token=tok)
            if wait_until(predicate, 5):
                return True
        return False

    with factory.started():
        node = minion_opts_for(factory, mid, *pair)
        bus = BusRecorder(opts).start()
        assert signs_in_until(
            lambda: [d for t, d in bus.tagged("edge/admission/refused") if d.get("id") == mid]
        )
        bus.stop()
        assert key_states(opts)[mid][0] == "pending"
    override.unlink()
    with factory.started():
        assert signs_in_until(lambda: key_states(opts)[mid][0] == "accepted"), (
            "still refused after the fix"
        )


# --------------------------------------------------------------------------
# item 7: weak and example secrets; the previous secret
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "secret,words",
    [
        ("EdgeFleet2024!!!", "saltext-edge new-secret"),
        ("REPLACE-WITH-AT-LEAST-16-RANDOM-CHARACTERS", "placeholder"),
        (K8S_PLACEHOLDER, "placeholder"),
        ("report-test-fleet-secret-0123456789", "not random enough"),
    ],
)
def test_weak_secret_refused(secret, words, manual_master, mopts, key_pool):
    """
    The master is given a guessable or example secret (the first was
    recovered offline from one sniffed token in about a thousand guesses):
    a node holding a token made with it is not admitted, and the operator is
    told why and how to make a good one; the secret is never echoed.
    """
    mid = f"weak-{_uid()}"
    pair = key_pool[3]
    raw_sign_in(_node(manual_master, mid, pair), token=make_token(secret, SITE, mid, pair[1]))
    assert wait_until(lambda: key_states(mopts).get(mid), 30)
    write_policy(manual_master, **dict(edge_conf(), shared_secret=secret))
    try:
        rc, _, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    finally:
        clear_policy(manual_master)
    assert words in out + err, (out, err)
    assert secret not in out + err
    assert key_states(mopts)[mid][0] == "pending"


def test_previous_secret_logged_and_expires(manual_master, mopts, key_pool):
    """
    A node still holding a token of the previous secret is admitted during
    the rotation window and the master logs that; once
    ``previous_shared_secret_expires`` has passed, such a token is refused.
    """
    from saltext_edge import admission

    old_id, late_id = f"sh3-prev-{_uid()}", f"sh3-late-{_uid()}"
    for mid, pair in ((old_id, key_pool[4]), (late_id, key_pool[5])):
        raw_sign_in(_node(manual_master, mid, pair), token=make_token(PREVIOUS, SITE, mid, pair[1]))
    assert wait_until(lambda: _recorded(mopts, old_id) and _recorded(mopts, late_id), 30)
    rc, data, out, err = salt_run(
        manual_master, "edge.accept_pending", f"match={old_id}", "-l", "warning"
    )
    assert per_minion(data)[old_id]["decision"] == "accepted", (out, err)
    assert "only under the previous fleet secret" in out + err
    assert admission.node_index(mopts)[old_id]["admitted_by"] == f"token:{SITE} (previous secret)"
    write_policy(
        manual_master, **dict(edge_conf(), previous_shared_secret_expires="2001-01-01T00:00:00Z")
    )
    try:
        rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={late_id}")
    finally:
        clear_policy(manual_master)
    entry = per_minion(data)[late_id]
    assert (entry["decision"], entry["reason"]) == ("refused", "bad_token"), entry


# --------------------------------------------------------------------------
# item 8: bounds and sanitising
# --------------------------------------------------------------------------
def test_oversized_and_control_character_input(manual_master, mopts, attacker, key_pool):
    """
    A raw sign-in with the node's key padded to 0.5 MB and a valid token, and
    forged events whose id holds a newline and a fake decision line: nothing
    big is stored by admission, and no line of the master's log starts with
    the injected text.
    """
    mid = f"pad-{_uid()}"
    pair = key_pool[6]
    # Salt strips white space around the key, so pad inside: text before the
    # PEM block, which a PEM parser skips
    padded = ("# padding " + "x" * 54 + "\n") * 8000 + pair[1].strip()
    raw_sign_in(
        _node(manual_master, mid, pair), pub=padded, token=make_token(SECRET, SITE, mid, pair[1])
    )
    injected = "INJECTED edge admission: victim-1 accepted (reason: None"
    forge_events(
        attacker,
        [
            (
                "salt/auth",
                {
                    "act": "pend",
                    "id": f"x\n{injected}",
                    "pub": pair[1],
                    "autosign_grains": {"edge_token": "t\r\n" + injected},
                },
            ),
            (
                "salt/auth",
                {
                    "act": "denied",
                    "id": f"y\r{injected}",
                    "pub": pair[1],
                    "autosign_grains": {
                        "edge_token": make_token(SECRET, SITE, f"y\r{injected}", pair[1])
                    },
                },
            ),
        ],
    )
    sentinel = f"sh3-pad-sentinel-{_uid()}"
    sent_pair = key_pool[7]
    raw_sign_in(
        _node(manual_master, sentinel, sent_pair),
        token=make_token(SECRET, SITE, sentinel, sent_pair[1]),
    )
    assert wait_until(lambda: _recorded(mopts, sentinel), 30)
    assert wait_until(lambda: key_states(mopts).get(mid), 30), (
        "the padded sign-in did not reach the key store"
    )
    padded_recorded = (
        _recorded(mopts, mid) is not None
    )  # a bool: never print a record (it holds a token)
    assert not padded_recorded, "the padded key was recorded"
    bank = pathlib.Path(mopts["cachedir"]) / "edge_admission"
    biggest = max((p.stat().st_size for p in bank.rglob("*") if p.is_file()), default=0)
    assert biggest < 64 * 1024, f"admission stored {biggest} bytes in one entry"
    log_file = pathlib.Path(manual_master.config["log_file"])
    if not log_file.is_absolute():
        log_file = pathlib.Path(manual_master.config["root_dir"]) / log_file
    for line in log_file.read_text(errors="replace").splitlines():
        assert not line.startswith("INJECTED"), line


# --------------------------------------------------------------------------
# item 9: a squatter that signs in again and again
# --------------------------------------------------------------------------
def test_persistent_squatter_loses_to_the_proven_node(adv_master, adv_opts, key_pool):
    """
    A real minion with a stranger's key signs in every second under a real
    node's id, with a junk token, before the node comes up. The real node,
    denied by Salt, proves itself in its ``denied`` sign-in: the master gives
    it the id, admits it, and the squatter stays out.
    """
    mid = f"squat-{_uid()}"
    squat_priv, squat_pub = key_pool[8]
    node_priv, node_pub = key_pool[9]
    common = {"autosign_grains": ["edge_token"], "rejected_retry": True}
    squatter = pending_minion_factory(
        adv_master,
        mid,
        squat_priv,
        squat_pub,
        overrides=dict(common, edge={"site": SITE, "site_key": "ab" * 32}),
    )
    with squatter.started(start_timeout=60):
        assert wait_until(
            lambda: key_states(adv_opts).get(mid, (None, ""))[1].strip() == squat_pub.strip(), 30
        )
        node = adv_master.salt_minion_daemon(
            mid + "-real",
            overrides=dict(
                common,
                id=mid,
                edge={"site": SITE, "site_key": site_key(SECRET, SITE)},
                acceptance_wait_time=1,
                acceptance_wait_time_max=1,
                random_reauth_delay=0,
            ),
        )
        pki = pathlib.Path(node.config["pki_dir"])
        pki.mkdir(parents=True, exist_ok=True)
        (pki / "minion.pem").write_text(node_priv)
        os.chmod(pki / "minion.pem", 0o600)
        (pki / "minion.pub").write_text(node_pub)
        node._start_checks_callbacks.clear()
        with node.started(start_timeout=60):

            def node_holds_id():
                state, pub = key_states(adv_opts).get(mid, (None, ""))
                return state == "accepted" and pub.strip() == node_pub.strip()

            won = wait_until(node_holds_id, timeout=90)
            assert won, f"the proven node did not win its id: {key_states(adv_opts).get(mid)}"
            # the squatter keeps signing in; the node keeps its id
            assert wait_until(
                lambda: (pathlib.Path(adv_opts["pki_dir"]) / "minions_denied" / mid).exists(), 30
            )
            state, pub = key_states(adv_opts)[mid]
            assert state == "accepted" and pub.strip() == node_pub.strip()


# --------------------------------------------------------------------------
# item 10: the key-store lock
# --------------------------------------------------------------------------
def test_lock_held_elsewhere_fails_the_run_clearly(manual_master, mopts, key_pool, operator_policy):
    """
    Something else holds the key-store lock: ``accept_pending`` waits
    ``edge:lock_timeout`` seconds, says who holds it, fails and changes
    nothing (the old code waited for ever, silently). Once the lock is free
    the same run admits the node.
    """
    mid = f"sh3-lock-{_uid()}"
    pair = key_pool[10]
    raw_sign_in(_node(manual_master, mid, pair), token=make_token(SECRET, SITE, mid, pair[1]))
    assert wait_until(lambda: _recorded(mopts, mid), 30)
    operator_policy(lock_timeout=2)
    lock_path = pathlib.Path(mopts["pki_dir"]) / "edge" / "admission.lock"
    lock_path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": "test-host",
                    "what": "a stuck backup",
                    "since": "2026-01-01T00:00:00Z",
                }
            ).encode(),
            0,
        )
        start = time.monotonic()
        rc, _, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}", timeout=60)
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
    assert elapsed < 40
    assert "a stuck backup" in out + err and "lock" in out + err, (out, err)
    assert key_states(mopts)[mid][0] == "pending"
    rc, data, out, err = salt_run(manual_master, "edge.accept_pending", f"match={mid}")
    assert per_minion(data)[mid]["decision"] == "accepted", (out, err)


# ==========================================================================
# Issue 26 (fleet health) and 24.3/24.4: a master running the edge_fleet
# engine; the attacker is an accepted minion talking over its own request
# channel (docs/ref/engine.rst, "Signs of life and trust"; docs/security-tests.rst)
# ==========================================================================
FLEET_PERIOD = 1.0


def _fleet_record(opts, mid):
    from saltext_edge.fleet import store as _store

    return _store.Store(opts).load(mid)


def _fleet_meta(opts, key):
    from saltext_edge.fleet import store as _store

    return _store.Store(opts).meta(key)


def _refused(opts, master_id, reason):
    return int(
        (_fleet_meta(opts, f"engine.{master_id}").get("refused_heartbeats") or {}).get(reason) or 0
    )


def _send_load(mopts, load):
    """One request over the accepted minion ``mopts``'s own (AES) channel, as its salt-minion would send it."""
    import salt.channel.client

    with salt.channel.client.ReqChannel.factory(mopts) as channel:
        return channel.send(dict(load, id=mopts["id"]), timeout=60, tries=2)


def _signed_beat(mopts, seq, boot, sent_at=None, period=FLEET_PERIOD):
    """A heartbeat of the node ``mopts`` signed with its key, as the beacon makes it."""
    from saltext_edge.fleet import signing
    from saltext_edge.uplink import heartbeat as _hb

    payload = _hb.payload(
        {"id": mopts["id"], "edge": {"site": SITE}},
        {"quality": "good", "rtt_ms": 1.0, "jitter_ms": 0.1, "loss_pct": 0.0, "checked_at": None},
        seq,
        boot,
        period,
        0.1,
        now=sent_at,
    )
    return signing.Signer(os.path.join(mopts["pki_dir"], "minion.pem")).sign(payload)


def _beat(mopts, payload):
    """Send a heartbeat the way ``event.fire_master`` does (a single-event ``_minion_event``)."""
    return _send_load(mopts, {"cmd": "_minion_event", "tag": "edge/heartbeat", "data": payload})


def _log_text(factory):
    log_file = pathlib.Path(factory.config["log_file"])
    if not log_file.is_absolute():
        log_file = pathlib.Path(factory.config["root_dir"]) / log_file
    return log_file.read_text(errors="replace") if log_file.exists() else ""


@pytest.fixture(scope="module")
def fleet(salt_factories, key_pool):
    """
    ``(master, its opts, an accepted attacker's opts)``: the engine with 1 s
    heartbeats (late after 1 missed, offline after 2), logging at Salt's
    default level.
    """
    conf = {
        "interval": FLEET_PERIOD,
        "late_after": 1,
        "offline_after": 2,
        "grace": 0,
        "flush_interval": 1,
    }
    with start_master(
        salt_factories,
        "adv-fleet-",
        overrides={
            "engines": [{"edge_fleet": {}}],
            "edge": edge_conf(fleet=conf, metrics=False),
            "log_level_logfile": "warning",
        },
    ).started(start_timeout=120) as factory:
        opts = master_opts(factory)
        yield factory, opts, accepted_attacker(factory, opts, key_pool[11])


def _engine_ready(fopts, fleet_master):
    assert wait_until(lambda: _fleet_meta(fopts, f"engine.{fleet_master.id}"), 60), (
        "the edge_fleet engine never wrote its meta"
    )


def _dead_node(fleet_master, fopts, key_pool, index, prefix):
    """An accepted node that heartbeats three times (seq 1..3), then dies; returns (opts, payloads)."""
    victim = accepted_attacker(fleet_master, fopts, key_pool[index], prefix=prefix)
    boot = os.urandom(8).hex() + ":1"
    payloads = [_signed_beat(victim, seq, boot, sent_at=time.time()) for seq in (1, 2, 3)]
    bus = BusRecorder(fopts).start()
    for payload in payloads:
        _beat(victim, payload)
    assert wait_until(lambda: (_fleet_record(fopts, victim["id"]) or {}).get("seq") == 3, 30), (
        "the node's own heartbeats were not taken"
    )
    assert wait_until(lambda: bus.tagged(f"edge/node/{victim['id']}/offline"), 30), (
        "the silent node never went offline"
    )
    bus.stop()
    return victim, payloads


def test_forged_job_and_replay_do_not_revive_a_dead_node(fleet, key_pool):
    """
    Issue 26 item 2/3 and 24.3's replay: a node dies. An accepted minion then
    (a) forges ``salt/job/<jid>/new`` targeting it through ``pretag: ""`` and
    returns in its name, (b) sends returns for it through Salt's own
    ``_syndic_return`` (the master fires genuine-looking
    ``salt/job/<jid>/ret/<id>`` events and writes its job cache), (c)
    re-fires the node's captured signed heartbeat. The bus shows every
    forged event; the node stays offline, no ``online`` fires, the returns
    are only an unverified claim and the replay is refused and counted.
    """
    fleet_master, fopts, fleet_attacker = fleet
    _engine_ready(fopts, fleet_master)
    victim, payloads = _dead_node(fleet_master, fopts, key_pool, 12, "dead-")
    vid = victim["id"]
    before = _fleet_record(fopts, vid)
    replays = _refused(fopts, fleet_master.id, "replay")
    bus = BusRecorder(fopts).start()
    forged_at = time.time()
    # the operator pings the dead node (edge.report ping=True): every minion sees the jid
    import salt.client

    with salt.client.LocalClient(mopts=fopts) as local:
        jid = local.run_job(vid, "test.ping", tgt_type="list")["jid"]
    forged_jid = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "123456"
    ret = {"id": vid, "jid": jid, "fun": "test.ping", "return": True, "success": True, "retcode": 0}
    for _ in range(5):
        # (a) pretag "" fires each tag unchanged, before the blacklist check
        _send_load(
            fleet_attacker,
            {
                "cmd": "_minion_event",
                "pretag": "",
                "events": [
                    {
                        "tag": f"salt/job/{forged_jid}/new",
                        "data": {"jid": forged_jid, "minions": [vid], "fun": "test.ping"},
                    },
                    {"tag": f"salt/job/{forged_jid}/ret/{vid}", "data": dict(ret, jid=forged_jid)},
                ],
            },
        )
        # (b) Salt's syndic return path: any accepted minion, any inner id
        _send_load(
            fleet_attacker,
            {
                "cmd": "_syndic_return",
                "load": [
                    {
                        "jid": jid,
                        "id": fleet_attacker["id"],
                        "fun": "test.ping",
                        "return": {vid: {"return": True, "success": True, "retcode": 0}},
                    }
                ],
            },
        )
        # (c) the node's own heartbeat, captured, re-fired as it was
        _beat(fleet_attacker, payloads[-1])
        _send_load(
            fleet_attacker,
            {"cmd": "_minion_event", "events": [{"tag": "edge/heartbeat", "data": payloads[-1]}]},
        )
        time.sleep(FLEET_PERIOD)
    # the attack is real: Salt fired the forged job and the returns as the master's own,
    # and its job cache holds the syndic-path return for the real jid
    assert wait_until(lambda: bus.tagged(f"salt/job/{forged_jid}/new"), 30)
    for each in (jid, forged_jid):
        assert wait_until(
            lambda j=each: [
                1 for t, d in bus.tagged(f"salt/job/{j}/ret/{vid}") if d.get("id") == vid
            ],
            30,
        ), f"the forged returns for {each} did not reach the bus"
    with salt.client.LocalClient(mopts=fopts) as local:
        assert vid in (local.get_cache_returns(jid) or {}), "the job cache has no forged return"
    assert wait_until(lambda: _refused(fopts, fleet_master.id, "replay") >= replays + 10, 30), (
        "the replayed heartbeats were not counted as replays: "
        f"{_fleet_meta(fopts, f'engine.{fleet_master.id}')} {_fleet_record(fopts, vid)}"
    )
    rec = wait_until(
        lambda: (
            (r := _fleet_record(fopts, vid))
            and (r.get("claim") or {}).get("ts", 0) >= forged_at - 1
            and r
        ),
        30,
    )
    bus.stop()
    assert rec, "the forged returns were not even noted as a claim"
    assert rec["claim"]["kind"] == "job_return"
    assert rec["status"] == "offline", rec["status"]
    assert rec["last_seen"] == before["last_seen"]
    assert (rec.get("refusal") or {}).get("reason") == "replay"
    assert not bus.tagged(f"edge/node/{vid}/online")


def test_heartbeat_flood_forges_no_log_record_and_is_rate_limited(fleet, key_pool):
    """
    Issue 26 item 4/5: an accepted minion floods ``edge/heartbeat`` with ids
    holding a newline and a forged log line, and with 0.9 MB ids. No line
    of the master's log starts with the injected text, the engine's lines
    about them stay within the stated rate (10 a minute plus a summary),
    every one is counted by reason, and a real node's heartbeat sent after
    the flood is still taken.
    """
    fleet_master, fopts, fleet_attacker = fleet
    _engine_ready(fopts, fleet_master)
    honest = accepted_attacker(fleet_master, fopts, key_pool[13], prefix="honest-")
    injected = "INJECTED edge_fleet: node victim-1 online"
    template = _signed_beat(fleet_attacker, 1, "00112233aabbccdd:1")
    before_bad = _refused(fopts, fleet_master.id, "bad_id")
    before_big = _refused(fopts, fleet_master.id, "oversize")
    log_before = len(_log_text(fleet_master))
    started = time.time()
    for batch in range(10):
        events = [
            {
                "tag": "edge/heartbeat",
                "data": dict(template, id=f"ghost-{batch}-{i}\n{injected}\r{injected}"),
            }
            for i in range(100)
        ]
        _send_load(fleet_attacker, {"cmd": "_minion_event", "events": events})
    for i in range(5):
        _beat(fleet_attacker, dict(template, id=f"big-{i}-" + "x" * 900_000))
    boot = os.urandom(8).hex() + ":1"
    _beat(honest, _signed_beat(honest, 1, boot, sent_at=time.time()))
    assert wait_until(lambda: (_fleet_record(fopts, honest["id"]) or {}).get("seq") == 1, 60), (
        "a real node's heartbeat after the flood was not taken"
    )
    assert wait_until(lambda: _refused(fopts, fleet_master.id, "bad_id") >= before_bad + 1000, 30)
    assert wait_until(lambda: _refused(fopts, fleet_master.id, "oversize") >= before_big + 5, 30)
    minutes = (time.time() - started) / 60.0
    text = _log_text(fleet_master)[log_before:]
    for line in text.splitlines():
        assert not line.startswith("INJECTED"), line
    ours = [line for line in text.splitlines() if "edge_fleet" in line and "refused" in line]
    # at most 10 lines a minute and one summary line, over the minutes the flood spanned
    assert len(ours) <= (int(minutes) + 2) * 11, len(ours)
    assert len(text) < 64 * 1024, f"the log grew by {len(text)} bytes"


LIBFAKETIME = pathlib.Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="libfaketime not installed (apt-get install faketime)"
)
def test_node_with_a_clock_two_hours_behind_is_online(fleet, key_pool):
    """
    Issue 24.3: a real salt-minion whose whole process tree runs 2 hours
    behind (libfaketime) sends its beacon's heartbeats: the node is online,
    its clock offset (about +7200 s) is on its record and in ``edge.node``
    with a warning, and the master logs that warning once.
    """
    fleet_master, fopts, _ = fleet
    mid = f"late-clock-{_uid()}"
    priv, pub = key_pool[14]
    key_cache(fopts).store("keys", mid, {"pub": pub, "state": "accepted"})
    node = pending_minion_factory(
        fleet_master,
        mid,
        priv,
        pub,
        overrides={
            "beacons": {
                "edge_heartbeat": [{"period": FLEET_PERIOD}, {"jitter": 0.1}, {"first_after": 0}]
            },
            "edge": {"site": SITE, "uplink": {"budget": 0.5, "count": 1, "timeout": 0.4}},
            "publish_port": fleet_master.config["publish_port"],
        },
    )
    # a copy: the factory's environ is shared with every daemon salt-factories
    # starts later in this worker (a master started after it ran 2 h behind)
    node.environ = dict(
        node.environ,
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME="-2h",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    with node.started(start_timeout=120):
        rec = wait_until(
            lambda: (
                (r := _fleet_record(fopts, mid))
                and r.get("status") == "online"
                and len(r.get("clock") or ()) >= 3
                and r
            ),
            60,
        )
        assert rec, f"the node with a wrong clock is not online: {_fleet_record(fopts, mid)}"
        assert 7200 - 60 < rec["clock_offset_s"] < 7200 + 60, rec["clock_offset_s"]
        assert rec["last_kind"] == "heartbeat" and rec.get("refusal") is None
        rc, data, out, err = salt_run(fleet_master, "edge.node", mid)
        assert rc == 0, (out, err)
        assert data["status"] == "online" and data["clock_warning"] is True, data
        assert 7200 - 60 < data["clock_offset_s"] < 7200 + 60
    warned = [line for line in _log_text(fleet_master).splitlines() if f"clock of {mid!r}" in line]
    assert len(warned) == 1, warned
