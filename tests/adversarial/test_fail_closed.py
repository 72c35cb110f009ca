"""
Fail closed: no secret, empty secret, short secret, unreadable / oversized /
non-UTF-8 secret file, a non-string secret. Nothing is admitted, the operator
gets one clear message naming where the secret was looked for (never the
value), through ``salt-run`` (real master key store) and through the
reactor (a real master started without a secret).
"""

import os
import pathlib
import time

import pytest
import yaml
from tests.support.waits import wait_until

from saltext_edge import admission
from saltext_edge import shared_secret as edge_secrets

from .conftest import (
    SECRET,
    SITE,
    _leave_pending,
    fake_auth,
    key_states,
    make_token,
    master_config,
    master_opts,
    place_pending,
    reactor_sls,
    salt_run,
)

pytestmark = pytest.mark.slow

SHORT = "short-secret-15"  # 15 characters


def _cases(tmp):
    tmp.mkdir(exist_ok=True)
    nonutf8 = tmp / "nonutf8.secret"
    nonutf8.write_bytes(b"\xff\xfe" * 20)
    big = tmp / "big.secret"
    big.write_bytes(b"s" * (1024 * 1024))
    empty_file = tmp / "empty.secret"
    empty_file.write_text("\n  \n")
    short_file = tmp / "short.secret"
    short_file.write_text(SHORT + "\n")
    return {
        # label: (edge conf, environ, words expected in the message)
        "none": ({}, {}, ["no shared secret"]),
        "empty": ({"shared_secret": ""}, {}, ["edge:shared_secret", "empty"]),
        "blank": ({"shared_secret": "   "}, {}, ["edge:shared_secret", "empty"]),
        "null": ({"shared_secret": None}, {}, ["edge:shared_secret"]),
        "short": ({"shared_secret": SHORT}, {}, ["edge:shared_secret", "16"]),
        "short env": ({}, {"SALT_SHARED_SECRET": SHORT}, ["SALT_SHARED_SECRET", "16"]),
        "empty env": ({}, {"SALT_SHARED_SECRET": ""}, ["SALT_SHARED_SECRET", "empty"]),
        "int": ({"shared_secret": 12345678901234567890}, {}, ["edge:shared_secret", "string"]),
        "missing file": ({"shared_secret_file": str(tmp / "nope.secret")}, {}, ["nope.secret"]),
        "directory": ({"shared_secret_file": str(tmp)}, {}, ["edge:shared_secret_file"]),
        "non-utf8 file": ({"shared_secret_file": str(nonutf8)}, {}, ["UTF-8"]),
        "1MB file": ({"shared_secret_file": str(big)}, {}, ["larger"]),
        "empty file": ({"shared_secret_file": str(empty_file)}, {}, ["empty"]),
        "short file": ({"shared_secret_file": str(short_file)}, {}, ["16"]),
        # a bad file never falls through to a good value elsewhere
        "bad file, good inline": (
            {"shared_secret_file": str(tmp / "nope.secret"), "shared_secret": SECRET},
            {},
            ["nope.secret"],
        ),
        "short previous": (
            {"shared_secret": SECRET, "previous_shared_secret": SHORT},
            {},
            ["previous"],
        ),
    }


CASE_LABELS = [
    "none",
    "empty",
    "blank",
    "null",
    "short",
    "short env",
    "empty env",
    "int",
    "missing file",
    "directory",
    "non-utf8 file",
    "1MB file",
    "empty file",
    "short file",
    "bad file, good inline",
    "short previous",
]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("fail-closed"))


def _config_dir(master, tmp_path, edge):
    """A copy of the master's config with ``edge`` replaced (same pki, cache, sockets)."""
    conf = yaml.safe_load(pathlib.Path(master.config["conf_file"]).read_text())
    conf["edge"] = edge
    conf.pop("reactor", None)
    cdir = tmp_path / "conf"
    cdir.mkdir()
    (cdir / "master").write_text(yaml.safe_dump(conf))
    return cdir


class _CfgMaster:
    """Duck-types the bits of a factory that conftest.salt_run needs."""

    def __init__(self, config_dir):
        self.config_dir = config_dir


@pytest.mark.parametrize("label", CASE_LABELS)
def test_library_fails_closed(label, cases):
    edge, environ, words = cases[label]
    with pytest.raises(edge_secrets.SecretError) as err:
        edge_secrets.master_secrets({"edge": edge}, environ=environ)
    message = str(err.value)
    for word in words:
        assert word.lower() in message.lower(), message
    for value in (SHORT, SECRET):
        assert value not in message


@pytest.mark.parametrize("label", CASE_LABELS)
def test_decide_fails_closed_on_real_key_store(label, cases, adv_opts, key_pool):
    """
    What ``accept_pending`` runs (the runner is a thin wrapper), in-process,
    on the real master's key store: a valid token is recorded and pending, a
    bad secret admits nothing and raises one SecretError.
    """
    edge, environ, words = cases[label]
    mid = "fcl-" + label.replace(" ", "-").replace(",", "")
    pub = key_pool[12][1]
    place_pending(adv_opts, mid, pub)
    assert admission.record(adv_opts, mid, pub, make_token(SECRET, SITE, mid, pub))["recorded"]
    opts = dict(adv_opts, edge=edge)
    old = os.environ.pop("SALT_SHARED_SECRET", None)
    os.environ.update(environ)
    try:
        with pytest.raises(edge_secrets.SecretError) as err:
            admission.decide_and_act(opts, match=mid)
    finally:
        os.environ.pop("SALT_SHARED_SECRET", None)
        if old is not None:
            os.environ["SALT_SHARED_SECRET"] = old
    for word in words:
        assert word.lower() in str(err.value).lower()
    assert key_states(adv_opts)[mid][0] == "pending"


# salt-run is slow to start on a loaded CI box: the CLI path for a representative few
@pytest.mark.parametrize("label", ["none", "short env", "bad file, good inline"])
def test_accept_pending_fails_closed(label, cases, adv_master, adv_opts, key_pool, tmp_path):
    """A valid token is recorded and pending; a master with a bad secret admits nothing."""
    edge, environ, words = cases[label]
    mid = "fc-" + label.replace(" ", "-").replace(",", "")
    pub = key_pool[12][1]
    place_pending(adv_opts, mid, pub)
    assert admission.record(adv_opts, mid, pub, make_token(SECRET, SITE, mid, pub))["recorded"]
    cdir = _config_dir(adv_master, tmp_path, edge)
    rc, data, out, err = salt_run(
        _CfgMaster(cdir), "edge.accept_pending", f"match={mid}", env=environ
    )
    text = out + err
    assert rc != 0, f"accept_pending did not fail: {text[:500]}"
    for word in words:
        assert word.lower() in text.lower(), text[:1000]
    assert "Traceback" not in text, text[:2000]
    for value in (SHORT, SECRET):
        assert value not in text
    assert key_states(adv_opts)[mid][0] == "pending"
    # site_key refuses too, and writes nothing
    target = tmp_path / "k.key"
    rc, data, out, err = salt_run(
        _CfgMaster(cdir), "edge.site_key", SITE, f"path={target}", env=environ
    )
    assert rc != 0 and not target.exists(), out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("label", ["none", "short", "missing file"])
def test_reactor_library_path_fails_closed(label, cases, adv_opts, key_pool, caplog):
    """What the reactor's wheel call runs, with auto_admit on and a bad secret."""
    edge, environ, _ = cases[label]
    mid = "fcr-" + label.replace(" ", "-")
    pub = key_pool[13][1]
    place_pending(adv_opts, mid, pub)
    opts = dict(adv_opts, edge=dict(edge, auto_admit=True))
    old = os.environ.pop("SALT_SHARED_SECRET", None)
    try:
        with caplog.at_level("DEBUG"):
            res = admission.handle_auth(opts, mid, pub, make_token(SECRET, SITE, mid, pub))
    finally:
        if old is not None:
            os.environ["SALT_SHARED_SECRET"] = old
    assert res.get("decision") != "accepted"
    assert key_states(adv_opts)[mid][0] == "pending"
    errors = [
        r
        for r in caplog.records
        if r.levelname in ("ERROR", "CRITICAL") and r.name.startswith("saltext_edge")
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert SECRET not in errors[0].getMessage() and SHORT not in errors[0].getMessage()


@pytest.fixture(scope="module")
def nosecret_master(salt_factories):
    from saltfactories.utils import random_string

    env = {k: v for k, v in os.environ.items() if k != "SALT_SHARED_SECRET"}
    factory = salt_factories.salt_master_daemon(
        random_string("fc-master-"),
        overrides=master_config(
            reactor=[{"salt/auth": [str(reactor_sls())]}],
            edge={"auto_admit": True},
        ),
        on_auth_event_callback=_leave_pending,
    )
    factory.environ = env  # a copy: the manager's dict is shared by every daemon
    with factory.started():
        yield factory


def test_reactor_without_secret_admits_nothing(nosecret_master, key_pool):
    """A real master started with no secret: the reactor admits nothing and says why."""
    opts = master_opts(nosecret_master)
    log_file = pathlib.Path(nosecret_master.config["log_file"])
    pub = key_pool[14][1]
    ids = [f"fcd-{i}" for i in range(3)]
    for mid in ids:
        place_pending(opts, mid, pub)
    for _ in range(2):  # a pending minion retries: the message should not pile up per retry
        for mid in ids:
            fake_auth(opts, mid, pub, make_token(SECRET, SITE, mid, pub))
    # the reactor ran: wait for the wheel job returns (or the log line)
    assert wait_until(
        lambda: "no shared secret" in log_file.read_text(errors="replace"), timeout=30
    ), "no clear message in the master log"
    time.sleep(2)
    assert all(key_states(opts)[mid][0] == "pending" for mid in ids)
    text = log_file.read_text(errors="replace")
    ours = [ln for ln in text.splitlines() if "no shared secret" in ln]
    assert "Traceback" not in "\n".join(ln for ln in text.splitlines() if "saltext_edge" in ln)
    # one clear message per refused attempt at most, all naming the fix
    assert 1 <= len(ours) <= 2 * len(ids), ours
    assert all("SALT_SHARED_SECRET" in ln for ln in ours)
