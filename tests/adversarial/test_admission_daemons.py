"""
Hostile tokens, odd ids and squatters against a real salt-master (keys kept
pending, reactor + ``auto_admit``), ``salt-run edge.accept_pending`` run as
an operator would, and real salt-minions.
"""

import os
import pathlib
import time

import pytest
from tests.daemons import answers_ping
from tests.support.waits import wait_until

from saltext_edge import admission

from .conftest import (
    _MISSING,
    PREVIOUS,
    REVOKED_SITE,
    ROTATED_OUT,
    SECRET,
    SITE,
    BusRecorder,
    fake_auth,
    key_states,
    make_token,
    master_opts,
    pending_minion_factory,
    per_minion,
    place_pending,
    salt_run,
    site_key,
    start_reactor_master,
)

pytestmark = pytest.mark.slow


def test_token_catalogue_through_accept_pending(adv_master, adv_opts, key_pool, policy_file):
    """
    One pending key per attack, tokens recorded exactly as the reactor's wheel
    call records them; one operator run decides them all.
    """
    policy_file(on_invalid="keep")
    (_, pub_a), (_, pub_b), (_, pub_c) = key_pool[2], key_pool[3], key_pool[4]
    good = lambda mid, pub=pub_a, secret=SECRET, site=SITE: make_token(secret, site, mid, pub)  # noqa: E731
    mac = good("cat-x").rsplit(":", 1)[1]
    cases = {
        # id: (pending pub, recorded pub, token, expected decision, reason)
        "cat-good": (pub_a, pub_a, good("cat-good"), "accepted", None),
        "cat-previous": (pub_a, pub_a, good("cat-previous", secret=PREVIOUS), "accepted", None),
        "cat-rotated-out": (
            pub_a,
            pub_a,
            good("cat-rotated-out", secret=ROTATED_OUT),
            "refused",
            "bad_token",
        ),
        "cat-other-id": (pub_a, pub_a, good("cat-somebody-else"), "refused", "bad_token"),
        "cat-other-key": (pub_b, pub_b, good("cat-other-key", pub=pub_a), "refused", "bad_token"),
        "cat-key-changed": (pub_c, pub_a, good("cat-key-changed"), "refused", "key_changed"),
        "cat-revoked": (
            pub_a,
            pub_a,
            good("cat-revoked", site=REVOKED_SITE),
            "refused",
            "revoked_site",
        ),
        "cat-v2": (pub_a, pub_a, "v2" + good("cat-v2")[2:], "refused", "malformed_token"),
        "cat-bad-site": (pub_a, pub_a, f"v1:../../etc:{mac}", "refused", "malformed_token"),
        "cat-unicode": (pub_a, pub_a, f"v1:sité:{mac}", "refused", "malformed_token"),
        "cat-1mb": (
            pub_a,
            pub_a,
            "v1:" + SITE + ":" + "a" * (1024 * 1024),
            "refused",
            "malformed_token",
        ),
        "cat-no-token": (pub_a, None, None, "no_token", "no_token_seen"),
    }
    for mid, (pending, recorded, token, _, _) in cases.items():
        if recorded is not None:
            ret = admission.record(adv_opts, mid, recorded, token, source="wheel")
            assert ret["recorded"], ret
        place_pending(adv_opts, mid, pending)

    start = time.monotonic()
    rc, data, out, err = salt_run(adv_master, "edge.accept_pending", "match=cat-*")
    elapsed = time.monotonic() - start
    assert rc == 0, (out, err)
    table = per_minion(data)
    got = {mid: (table[mid]["decision"], table[mid].get("reason")) for mid in cases}
    want = {mid: (c[3], c[4]) for mid, c in cases.items()}
    assert got == want
    # no token, site key or secret in the operator's output
    for mid, c in cases.items():
        if isinstance(c[2], str) and len(c[2]) > 20:
            assert c[2] not in out + err, mid
    assert SECRET not in out + err and site_key(SECRET, SITE) not in out + err
    states = key_states(adv_opts)
    for mid, c in cases.items():
        assert states[mid][0] == ("accepted" if c[3] == "accepted" else "pending"), (
            mid,
            states[mid][0],
        )
        assert states[mid][1].strip() == c[0].strip(), f"{mid}: key lost or replaced"
    assert elapsed < 60


@pytest.mark.parametrize(
    "value",
    [
        ["v1", "sh-3"],
        {"site": "sh-3"},
        12345,
        None,
        "",
        "v1:" + SITE + ":" + "b" * (1024 * 1024),
        "v1:日本:" + "c" * 64,
        _MISSING,
    ],
    ids=["list", "dict", "number", "null", "empty", "1MB", "unicode", "absent"],
)
def test_hostile_grain_values_in_real_auth_events(value, adv_master, adv_opts, key_pool):
    """
    ``salt/auth`` events carrying non-string / huge / unicode ``edge_token``
    grains reach the real reactor (auto_admit on): nothing is accepted, the
    master keeps working, and a good token sent afterwards for the same key is
    admitted (positive control: the reactor is alive and did not wedge).
    """
    pub = key_pool[5][1]
    mid = f"grain-{abs(hash(repr(value))) % 10**8}"
    place_pending(adv_opts, mid, pub)
    bus = BusRecorder(adv_opts).start()
    fake_auth(adv_opts, mid, pub, value)
    time.sleep(1.5)  # the reactor has had its chance; nothing may be accepted
    assert key_states(adv_opts)[mid][0] == "pending"
    fake_auth(adv_opts, mid, pub, make_token(SECRET, SITE, mid, pub))
    accepted = wait_until(lambda: key_states(adv_opts)[mid][0] == "accepted", timeout=30)
    assert accepted, "a good token after a hostile one was not admitted by the reactor"
    time.sleep(0.5)
    bus.stop()
    decisions = [
        (d.get("decision"), d.get("reason"))
        for _t, d in bus.tagged("edge/admission/")
        if isinstance(d, dict) and d.get("id") == mid
    ]
    # a string token is decided (malformed), anything else is dropped by the
    # reactor; either way exactly one acceptance, for the good token
    assert decisions in (
        [("accepted", None)],
        [("refused", "malformed_token"), ("accepted", None)],
    ), decisions


ODD_IDS = [
    "a" * 200,  # long (Salt's key store writes one file per id: <= 255 bytes)
    "edge.node.example.com",
    "...",
    "a..b",
    "..a",
    ".hidden",
    "-rf",
    "édge-ñode-日本",
    "edge*star",
    "edge?[x]",
    "edge,comma",
    "edge with space",
    "$(id)",
    "~root",
    "\u202eevil",
]


def _snapshot(root):
    return set(pathlib.Path(root).rglob("*"))


def test_odd_ids(adv_master, adv_opts, key_pool, policy_file):
    """
    Ids Salt lets through are recorded, verified and accepted without errors;
    whatever the admission code stores stays inside its cache bank; nothing is
    created anywhere else under the master's root.
    """
    import salt.utils.verify

    policy_file(on_invalid="keep")
    pub = key_pool[6][1]
    root = pathlib.Path(adv_master.config["root_dir"])
    usable = [i for i in ODD_IDS if salt.utils.verify.valid_id(adv_opts, i)]
    assert len(usable) == len(ODD_IDS)
    # admission's own bound: no white space or unprintable characters in an
    # id (they could forge a line of the master's log); refused, not stored
    refused = [i for i in usable if not admission.valid_id(adv_opts, i)]
    assert refused == ["edge with space", "\u202eevil"]
    for mid in refused:
        assert (
            admission.record(adv_opts, mid, pub, make_token(SECRET, SITE, mid, pub))["reason"]
            == "bad_id"
        )
    usable = [i for i in usable if i not in refused]
    before = _snapshot(root)
    for mid in usable:
        ret = admission.record(
            adv_opts, mid, pub, make_token(SECRET, SITE, mid, pub), source="wheel"
        )
        assert ret["recorded"], (mid, ret)
        place_pending(adv_opts, mid, pub)
    rc, data, out, err = salt_run(adv_master, "edge.accept_pending")
    assert rc == 0, (out, err)
    table = per_minion(data)
    # Salt's own key listing (salt-key -L, Key.list_keys, cache list_all)
    # skips ids that start with '.', although its auth lets them pend: they
    # are never listed, so never admitted (fail closed) - and never an error
    listed = [mid for mid in usable if not mid.startswith(".")]
    hidden = [mid for mid in usable if mid.startswith(".")]
    for mid in listed:
        assert table[mid]["decision"] == "accepted", (mid, table[mid])
    states = key_states(adv_opts)
    assert all(states[mid][0] == "accepted" for mid in listed)
    assert all(states[mid][0] == "pending" and mid not in table for mid in hidden)
    bank = (pathlib.Path(adv_opts["cachedir"]) / "edge_admission").resolve()
    pki = pathlib.Path(adv_opts["pki_dir"]).resolve()
    new = _snapshot(root) - before
    for path in new:
        real = path.resolve()
        assert (
            real.is_relative_to(bank)
            or real.is_relative_to(pki)
            or "jobs" in real.parts
            or "log" in real.parts
            or "proc" in real.parts
            or "minions" in real.parts
            or "master.d" in real.parts
        ), f"unexpected file {path}"
    for path in bank.rglob("*"):
        assert path.resolve().is_relative_to(bank)
        # the bank never uses the raw id as a file name
        assert not any(mid in path.name for mid in usable if len(mid) > 4), path
    # the pki store holds exactly one file per id, inside minions/
    for mid in listed:
        assert (pki / "minions" / mid).resolve().parent == pki / "minions"


def test_glob_id_does_not_decide_for_another_pending_key(adv_master, adv_opts, key_pool):
    """
    The reactor decides only for the minion in the event: an attacker naming
    itself ``gl,x`` or ``gl*`` must not make the master act on ``glAx``'s key.
    """
    pub_victim, pub_att = key_pool[7][1], key_pool[8][1]
    # the victim has a valid token recorded but no decision yet (auto_admit
    # would admit it anyway: use a revoked-site token so it is refused and
    # a decision event for it would be visible)
    place_pending(adv_opts, "glAx", pub_victim)
    admission.record(
        adv_opts, "glAx", pub_victim, make_token(SECRET, REVOKED_SITE, "glAx", pub_victim)
    )
    before = admission.list_decisions(adv_opts).get("glAx")
    for attacker in ("gl,x", "gl*"):
        place_pending(adv_opts, attacker, pub_att)
        res = admission.handle_auth(
            dict(adv_opts, edge=dict(adv_opts["edge"], auto_admit=True)),
            attacker,
            pub_att,
            make_token(ROTATED_OUT, SITE, attacker, pub_att),
        )
        assert res["decision"] == "refused"
    after = admission.list_decisions(adv_opts).get("glAx")
    assert after == before, f"deciding for an attacker's id also decided for glAx: {after}"


# --------------------------------------------------------------------------
# squatting: a stranger's key pending first under a real node's id
# --------------------------------------------------------------------------
def _node_overrides(site_key_hex):
    return {
        "autosign_grains": ["edge_token"],
        "edge": {"site": SITE, "site_key": site_key_hex},
        # without it a minion whose key is denied exits (Salt's default)
        "rejected_retry": True,
        "log_level_logfile": "info",
    }


def _reactor_decision(opts, mid, reason):
    return wait_until(
        lambda: admission.list_decisions(opts).get(mid, {}).get("reason") == reason, timeout=60
    )


@pytest.mark.parametrize("on_invalid", ["delete", "keep"])
def test_squatter(on_invalid, adv_master, adv_opts, key_pool, policy_file):
    """
    A stranger's key sits pending under the id of a real node (the stranger
    even replays the node's token from the wire). The real node, denied by
    Salt, shows its own token in the ``denied`` event: it admits the key the
    node presented, so the master replaces the squatter's pending key with
    the node's, whatever ``on_invalid`` says, and (auto mode) admits it; the
    node answers test.ping (docs/concepts.rst, "Threat model").
    """
    mid = f"sq-{on_invalid}-{os.urandom(3).hex()}"
    node_priv, node_pub = key_pool[9 if on_invalid == "delete" else 10]
    stranger_pub = key_pool[11][1]
    node_token = make_token(SECRET, SITE, mid, node_pub)
    place_pending(adv_opts, mid, stranger_pub)
    # the stranger replays the token it sniffed, with its own key
    admission.record(adv_opts, mid, stranger_pub, node_token)
    policy_file(on_invalid=on_invalid)

    node = pending_minion_factory(
        adv_master, mid, node_priv, node_pub, overrides=_node_overrides(site_key(SECRET, SITE))
    )
    with node.started(start_timeout=60):
        accepted = wait_until(
            lambda: key_states(adv_opts).get(mid, (None, ""))[0] == "accepted", timeout=60
        )
        assert accepted, f"real node not admitted: {key_states(adv_opts).get(mid)}"
        assert key_states(adv_opts)[mid][1].strip() == node_pub.strip()
        assert answers_ping(adv_master, mid, within=60), f"{mid} does not answer test.ping"
        assert admission.node_index(adv_opts)[mid]["site"] == SITE


@pytest.fixture(scope="module")
def delete_master(salt_factories):
    """A master whose reactor admits automatically with ``on_invalid: delete``."""
    with start_reactor_master(salt_factories, "adv-del-", on_invalid="delete").started() as factory:
        yield factory


def test_tokenless_squatter_freed_by_the_reactor(delete_master, key_pool):
    """
    A stranger's key with *no* token squats a real node's id (``no_token`` is
    not a refusal, so nothing would ever clear it). The real node signs in,
    is denied, and its ``denied`` event carries its token: the reactor
    replaces the squatter's pending key with the node's and admits it, with
    no operator.
    """
    opts = master_opts(delete_master)
    mid = f"sqn-{os.urandom(3).hex()}"
    node_priv, node_pub = key_pool[12]
    stranger_pub = key_pool[13][1]
    place_pending(opts, mid, stranger_pub)
    bus = BusRecorder(opts).start()
    node = pending_minion_factory(
        delete_master, mid, node_priv, node_pub, overrides=_node_overrides(site_key(SECRET, SITE))
    )
    with node.started(start_timeout=60):
        accepted = wait_until(
            lambda: key_states(opts).get(mid, (None, ""))[0] == "accepted", timeout=90
        )
        assert accepted, f"the real node was not admitted: {key_states(opts).get(mid)}"
        assert key_states(opts)[mid][1].strip() == node_pub.strip()
        assert answers_ping(delete_master, mid, within=60), f"{mid} does not answer test.ping"
    bus.stop()
    decisions = [
        d for t, d in bus.tagged("edge/admission/") if isinstance(d, dict) and d.get("id") == mid
    ]
    # the squatter's key was replaced by the proven one, not decided
    assert [d["decision"] for d in decisions] == ["accepted"], decisions


def test_replayed_token_in_denied_event_frees_nothing(delete_master, key_pool):
    """
    The real node is pending with its own key; an attacker signs in under its
    id with another key and the node's token sniffed from the wire. Salt
    denies the attacker; the token is not valid for the attacker's key, so
    the reactor ignores the event and the real node's key stays pending.
    """
    opts = master_opts(delete_master)
    mid = f"sqr-{os.urandom(3).hex()}"
    node_pub = key_pool[14][1]
    attacker_pub = key_pool[15][1]
    place_pending(opts, mid, node_pub)
    node_token = make_token(SECRET, SITE, mid, node_pub)
    bus = BusRecorder(opts).start()
    fake_auth(opts, mid, attacker_pub, node_token, act="denied")
    # a sentinel handled after it by the same reactor loop
    sentinel = f"sqs-{os.urandom(3).hex()}"
    sentinel_pub = key_pool[16][1]
    place_pending(opts, sentinel, sentinel_pub)
    fake_auth(opts, sentinel, sentinel_pub, make_token(SECRET, SITE, sentinel, sentinel_pub))
    assert wait_until(lambda: key_states(opts)[sentinel][0] == "accepted", timeout=60)
    bus.stop()
    state, stored = key_states(opts)[mid]
    assert state == "pending" and stored.strip() == node_pub.strip()
    assert mid not in admission.list_decisions(opts)
    assert not [
        d for t, d in bus.tagged("edge/admission/") if isinstance(d, dict) and d.get("id") == mid
    ]
