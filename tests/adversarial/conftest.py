"""
Shared helpers for the adversarial and fault suite (issue 8).

* token maths written here independently of ``saltext_edge.tokens`` (so a bug
  there cannot hide a bug in a test);
* a pool of RSA key pairs, generated once per session;
* a factory for real salt-masters that keep minion keys *pending*
  (salt-factories accepts them by default), with the package's admission
  settings, plus helpers to place pending keys straight into Salt's key store
  exactly as ``salt/master.py`` does and to run ``salt-run`` as a subprocess
  (so it can be killed);
* a recorder that listens on a master's event bus and keeps every event.
"""

import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest
from saltfactories.utils import random_string

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
BIN = pathlib.Path(sys.executable).parent

# Fleet secrets used by the suite. Distinctive, so a leak is easy to grep for.
SECRET = "ADVcur-" + hashlib.sha256(b"adv-current").hexdigest()[:40]
PREVIOUS = "ADVprev-" + hashlib.sha256(b"adv-previous").hexdigest()[:40]
ROTATED_OUT = "ADVold-" + hashlib.sha256(b"adv-rotated-out").hexdigest()[:40]
SITE = "sh-3"
REVOKED_SITE = "gone-1"


# --------------------------------------------------------------------------
# token maths, independent of saltext_edge.tokens (docs/design.rst, "Admission by pre-shared token")
# --------------------------------------------------------------------------
def site_key(secret, site):
    return hmac.new(
        secret.encode("utf-8"), ("saltext-edge:v1:site:" + site).encode("utf-8"), hashlib.sha256
    ).hexdigest()


def spki_digest(pub_pem):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(
        pub_pem.encode() if isinstance(pub_pem, str) else pub_pem
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def make_token(secret, site, minion_id, pub_pem, k_site=None):
    k_site = k_site or site_key(secret, site)
    msg = "saltext-edge:v1:token\n" + minion_id + "\n" + spki_digest(pub_pem)
    mac = hmac.new(k_site.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"v1:{site}:{mac}"


def gen_keypair(bits=2048):
    """A minion key pair ``(priv_pem, pub_pem)``, made by Salt's own code."""
    import salt.crypt

    return salt.crypt.gen_keys(bits)


@pytest.fixture(scope="session")
def key_pool():
    """24 RSA-2048 key pairs ``[(priv_pem, pub_pem)]``, reused cyclically by big tests."""
    return [gen_keypair() for _ in range(24)]


# --------------------------------------------------------------------------
# masters that keep keys pending
# --------------------------------------------------------------------------
def _leave_pending(master, payload):
    """salt-factories' auth callback accepts every pending key; ours does nothing."""


def edge_conf(**extra):
    conf = {
        "shared_secret": SECRET,
        "previous_shared_secret": PREVIOUS,
        "previous_shared_secret_expires": "2999-01-01T00:00:00Z",
    }
    conf.update(extra)
    return conf


def reactor_sls():
    path = REPO_ROOT / "src" / "saltext_edge" / "reactor" / "edge_auth.sls"
    return path


def master_config(**overrides):
    """Defaults for an admission master: keys stay pending, tokens come in auth events."""
    conf = {
        "interface": "127.0.0.1",
        "loop_interval": 1,
        "auth_events": True,
        "auth_events_autosign_grains": ["pend", "denied"],
        "edge": edge_conf(),
        "log_level_logfile": "debug",
    }
    conf.update(overrides)
    return conf


def start_master(salt_factories, prefix, overrides=None, defaults=None):
    factory = salt_factories.salt_master_daemon(
        random_string(prefix),
        defaults=defaults or {},
        overrides=master_config(**(overrides or {})),
        on_auth_event_callback=_leave_pending,
    )
    return factory


def pending_minion_factory(master, minion_id, priv, pub, overrides=None):
    """
    A real salt-minion whose key pair is ``(priv, pub)`` (written before its
    first start) and which is not expected to be accepted: salt-factories'
    start check (waiting for ``salt/minion/<id>/start``) is dropped.
    """
    conf = {"acceptance_wait_time": 1, "acceptance_wait_time_max": 1, "random_reauth_delay": 0}
    conf.update(overrides or {})
    factory = master.salt_minion_daemon(minion_id, overrides=conf)
    pki = pathlib.Path(factory.config["pki_dir"])
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "minion.pem").write_text(priv)
    os.chmod(pki / "minion.pem", 0o600)
    (pki / "minion.pub").write_text(pub)
    factory._start_checks_callbacks.clear()
    return factory


def master_opts(master):
    import salt.config

    return salt.config.master_config(master.config["conf_file"])


def key_cache(opts):
    import salt.cache

    return salt.cache.Cache(opts, driver=opts["keys.cache_driver"])


def place_pending(opts, minion_id, pub):
    """Put a pending key into Salt's key store exactly as salt/master.py does."""
    key_cache(opts).store("keys", minion_id, {"pub": pub, "state": "pending"})


def key_states(opts):
    """``{minion_id: (state, pub)}`` for every key in the store."""
    cache = key_cache(opts)
    out = {}
    for mid in cache.list("keys"):
        entry = cache.fetch("keys", mid) or {}
        out[mid] = (entry.get("state"), entry.get("pub"))
    return out


def write_policy(master, **edge):
    """
    Drop a ``master.d`` file that ``salt-run`` (which re-reads the master
    config) will see; returns its path. The running master daemon is not
    affected.
    """
    import yaml

    path = pathlib.Path(master.config_dir) / "master.d" / "zz-adversarial-edge.conf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"edge": edge}))
    return path


def clear_policy(master):
    path = pathlib.Path(master.config_dir) / "master.d" / "zz-adversarial-edge.conf"
    if path.exists():
        path.unlink()


def salt_run_argv(master, *args):
    return [str(BIN / "salt-run"), "-c", str(master.config_dir), "--out=json", "--no-color", *args]


def salt_run(master, *args, timeout=240, env=None):
    """Run ``salt-run`` in a subprocess; return ``(returncode, data|None, stdout, stderr)``."""
    environ = dict(os.environ)
    environ.pop("SALT_SHARED_SECRET", None)
    environ.update(env or {})
    proc = subprocess.run(
        salt_run_argv(master, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )
    data = None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pass
    return proc.returncode, data, proc.stdout, proc.stderr


#: the keys of each entry of ``edge.accept_pending``'s return (``edge_runner.accept_pending``)
DECISION_KEYS = frozenset({"decision", "reason", "site", "action"})
DECISIONS = frozenset({"accepted", "refused", "no_token"})


def per_minion(ret):
    """
    Check that ``ret`` has the shape ``salt-run --out=json edge.accept_pending``
    prints: ``{minion_id: {"decision", "reason", "site", "action", ...}}``
    (``{}`` when nothing was pending), each decision one of :data:`DECISIONS`.

    Returns ``ret``; raises ``AssertionError`` on any other shape (an error
    message, a wrapped return, a list), so that a change of the runner's
    return fails every test that reads it.
    """
    assert isinstance(ret, dict), f"accept_pending returned no mapping: {ret!r}"[:2000]
    for mid, entry in ret.items():
        assert isinstance(mid, str) and isinstance(entry, dict), (
            f"accept_pending entry {mid!r} is not {{id: {{...}}}}: {entry!r}"[:2000]
        )
        missing = DECISION_KEYS - entry.keys()
        assert not missing, f"accept_pending entry {mid!r} lacks {sorted(missing)}: {entry!r}"
        assert entry["decision"] in DECISIONS, f"accept_pending entry {mid!r}: {entry!r}"
    return ret


# --------------------------------------------------------------------------
# master event bus recorder
# --------------------------------------------------------------------------
class BusRecorder:
    """Listen on a master's event bus in a thread and keep ``(tag, data)`` of every event."""

    def __init__(self, opts):
        self.opts = opts
        self.events = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import salt.utils.event

        with salt.utils.event.get_master_event(
            self.opts, self.opts["sock_dir"], listen=True
        ) as event:
            event.subscribe("")
            self._ready.set()
            while not self._stop.is_set():
                ev = event.get_event(wait=0.5, full=True, no_block=False)
                if ev:
                    self.events.append((ev.get("tag"), ev.get("data")))

    def start(self):
        self._thread.start()
        self._ready.wait(15)
        time.sleep(0.5)  # let the SUB socket connect
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def tagged(self, prefix):
        return [(t, d) for t, d in self.events if isinstance(t, str) and t.startswith(prefix)]


# --------------------------------------------------------------------------
# the package's shared master: reactor + auto_admit, keys stay pending
# --------------------------------------------------------------------------
def start_reactor_master(salt_factories, prefix, **edge):
    """A master with the shipped reactor and ``auto_admit`` (plus ``edge`` options)."""
    return start_master(
        salt_factories,
        prefix,
        overrides={
            "reactor": [{"salt/auth": [str(reactor_sls())]}],
            "edge": edge_conf(auto_admit=True, **edge),
        },
    )


@pytest.fixture(scope="package")
def adv_master(salt_factories):
    with start_reactor_master(
        salt_factories, "adv-master-", revoked_sites=[REVOKED_SITE]
    ).started() as factory:
        yield factory


@pytest.fixture(scope="package")
def adv_opts(adv_master):
    return master_opts(adv_master)


@pytest.fixture
def policy_file(adv_master):
    """Write a master.d policy for salt-run (keeps the secrets); removed afterwards."""

    def _write(**edge):
        conf = edge_conf(revoked_sites=[REVOKED_SITE])
        conf.update(edge)
        return write_policy(adv_master, **conf)

    yield _write
    clear_policy(adv_master)


def fire_master_event(opts, data, tag, event=None):
    """Fire on the master bus, over ``event`` (an open ``SaltEvent``) or a new connection."""
    import salt.utils.event

    if event is not None:
        assert event.fire_event(data, tag)
        return
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as new_event:
        assert new_event.fire_event(data, tag)


def fake_auth(opts, minion_id, pub, token, act="pend", event=None):
    """A ``salt/auth`` event as the master fires it for a pending key (3008, grains in it)."""
    data = {"result": True, "act": act, "id": minion_id, "pub": pub}
    if token is not _MISSING:
        data["autosign_grains"] = {"edge_token": token}
    fire_master_event(opts, data, "salt/auth", event=event)


_MISSING = object()


# --------------------------------------------------------------------------
# the attacker's tools: an accepted minion's channel, a raw sign-in
# --------------------------------------------------------------------------
def minion_opts_for(master, minion_id, priv, pub):
    """Options of a minion ``minion_id`` of ``master`` holding ``(priv, pub)`` (not started)."""
    import salt.config

    factory = master.salt_minion_daemon(minion_id, overrides={"acceptance_wait_time": 1})
    pki = pathlib.Path(factory.config["pki_dir"])
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "minion.pem").write_text(priv)
    os.chmod(pki / "minion.pem", 0o600)
    (pki / "minion.pub").write_text(pub)
    opts = salt.config.minion_config(factory.config["conf_file"])
    opts["master_ip"] = "127.0.0.1"
    opts["master_uri"] = f"tcp://127.0.0.1:{opts['master_port']}"
    return opts


def accepted_attacker(master, opts, key_pair, prefix="evil-"):
    """An accepted minion under the attacker's control: its options (its key is accepted)."""
    from saltfactories.utils import random_string as _rs

    priv, pub = key_pair
    mid = _rs(prefix)
    key_cache(opts).store("keys", mid, {"pub": pub, "state": "accepted"})
    return minion_opts_for(master, mid, priv, pub)


def forge_events(mopts, events):
    """
    Send ``events`` (``[(tag, data)]``) as the accepted minion ``mopts``:
    Salt re-fires each on the master bus under the tag the minion chose.
    """
    import salt.channel.client

    load = {
        "cmd": "_minion_event",
        "id": mopts["id"],
        "events": [{"tag": t, "data": d} for t, d in events],
    }
    with salt.channel.client.ReqChannel.factory(mopts) as channel:
        return channel.send(load, timeout=30, tries=2)


def raw_sign_in(mopts, pub=None, token=None, minion_id=None):
    """
    One sign-in request as a minion sends it (in the clear), with the
    ``edge_token`` grain; ``pub`` and ``minion_id`` may be forged.
    Returns the master's reply.
    """
    import uuid

    import salt.channel.client

    if pub is None:
        pub = (pathlib.Path(mopts["pki_dir"]) / "minion.pub").read_text()
    payload = {
        "cmd": "_auth",
        "id": minion_id or mopts["id"],
        "nonce": uuid.uuid4().hex,
        "enc_algo": mopts["encryption_algorithm"],
        "sig_algo": mopts["signing_algorithm"],
        "pub": pub,
    }
    if token is not None:
        payload["autosign_grains"] = {"edge_token": token}
    with salt.channel.client.ReqChannel.factory(mopts, crypt="clear") as channel:
        return channel.send(payload, timeout=30, tries=1)


def token_record(opts, minion_id):
    """The token record the master holds for ``minion_id`` (observation only)."""
    import salt.cache

    return salt.cache.Cache(opts).fetch(
        "edge_admission/tokens", hashlib.sha256(minion_id.encode()).hexdigest()
    )
