"""
Real-daemon fixtures for admission by pre-shared token (docs/concepts.rst).

* the fleet secret is random per test session and never written by us to
  any log;
* masters do NOT auto-accept (salt-factories accepts every pending key by
  default through an auth-event callback; we replace it with a no-op);
* minions are brand new (no pre-seeded keys) and started without waiting for
  their start event (they cannot start fully until accepted).
"""

import copy
import os
import pathlib
import secrets as pysecrets

import pytest
import salt.config
from saltfactories.daemons.minion import SaltMinion
from saltfactories.utils import random_string
from tests.daemons import reap

import saltext_edge
from saltext_edge import tokens as edge_token

REACTOR_SLS = str(pathlib.Path(saltext_edge.__file__).parent / "reactor" / "edge_auth.sls")
ACCEPTANCE_WAIT = 2


class PendingMinion(SaltMinion):
    """A minion whose start is not confirmed by a start event (it stays pending)."""

    def get_check_events(self):
        return []


def _no_auto_accept(master, payload):
    return None


@pytest.fixture(scope="session")
def fleet_secret():
    return "fleet-" + pysecrets.token_hex(24)


@pytest.fixture(scope="session")
def wrong_secret():
    return "stranger-" + pysecrets.token_hex(24)


def make_master(salt_factories, master_defaults, fleet_secret, edge_extra):
    defaults = copy.deepcopy(master_defaults)
    overrides = {
        "auth_events": True,
        "auth_events_autosign_grains": ["pend", "denied"],
        "reactor": [{"salt/auth": [REACTOR_SLS]}],
        "edge": dict({"shared_secret": fleet_secret}, **edge_extra),
    }
    return salt_factories.salt_master_daemon(
        random_string("edge-adm-master-"),
        defaults=defaults,
        overrides=overrides,
        on_auth_event_callback=_no_auto_accept,
    )


def new_minion(master, prefix, edge=None, extra=None):
    """Configure (not start) a brand-new minion that sends ``edge_token``."""
    overrides = {
        "autosign_grains": ["edge_token"],
        "acceptance_wait_time": ACCEPTANCE_WAIT,
        "acceptance_wait_time_max": ACCEPTANCE_WAIT,
        "random_reauth_delay": 0,
    }
    if edge is not None:
        overrides["edge"] = edge
    overrides.update(extra or {})
    return master.salt_minion_daemon(
        random_string(prefix), overrides=overrides, factory_class=PendingMinion
    )


def terminate_all(factories):
    """Stop daemons in parallel (each stop waits for its process), leaving no process behind."""
    from concurrent.futures import ThreadPoolExecutor

    factories = list(factories)
    if not factories:
        return
    with ThreadPoolExecutor(max_workers=len(factories)) as pool:
        list(pool.map(lambda f: f.terminate(), factories))
    for factory in factories:
        reap(factory)


def minion_pub(minion):
    return pathlib.Path(minion.config["pki_dir"], "minion.pub").read_text()


def token_for(k_site, site, minion_id, pub):
    return edge_token.make_token(k_site, site, minion_id, edge_token.pubkey_digest(pub))


def auth_events(event_listener, master, minion_id, after, act="pend"):
    return [
        ev
        for ev in event_listener.get_events([(master.id, "salt/auth")], after_time=after)
        if ev.data.get("id") == minion_id and ev.data.get("act") == act
    ]


def master_opts(master):
    return salt.config.master_config(master.config["conf_file"])


def key_lists(master):
    ret = master.salt_key_cli().run("-L")
    assert ret.returncode == 0, ret
    return ret.data


def read_tree(path):
    """Yield (file, text) for every readable file under ``path``."""
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                with open(full, "rb") as fh_:
                    yield full, fh_.read().decode("utf-8", "replace")
            except OSError:
                continue
