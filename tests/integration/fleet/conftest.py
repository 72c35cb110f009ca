"""
Real-daemon fixtures for fleet health (docs/howto/site-goes-dark.rst): a
master running the ``edge_fleet`` engine and minions running the
``edge_heartbeat`` beacon, with short periods (2 s) so that late and offline
come within seconds. Tests wait on events (salt-factories forwards every
master event to its event listener), never on sleeps.
"""

import copy

import pytest
from saltfactories.utils import random_string
from tests.daemons import allow, own_minions_master
from tests.support.waits import wait_until

PERIOD = 2.0
# grace 0: the tests start nodes right after the master and time their
# transitions (the restart test sets a grace of its own)
FLEET_CONF = {
    "interval": PERIOD,
    "late_after": 2,
    "offline_after": 5,
    "flush_interval": 1,
    "grace": 0,
}


def master_overrides(extra=None):
    """Master config: the engine on, quick thresholds, no metrics server (ports clash between masters)."""
    conf = {
        "engines": [{"edge_fleet": {}}],
        "edge": {"fleet": dict(FLEET_CONF), "metrics": False},
    }
    conf.update(extra or {})
    return conf


def minion_overrides(master, site, extra=None):
    """Minion config: the heartbeat beacon every 2 s and a quick probe of the master's ports."""
    conf = {
        "beacons": {"edge_heartbeat": [{"period": PERIOD}, {"jitter": 0.1}, {"first_after": 0}]},
        "edge": {"site": site, "uplink": {"budget": 0.5, "count": 1, "timeout": 0.4}},
        "publish_port": master.config["publish_port"],
        "random_reauth_delay": 0,
        "master_alive_interval": 5,
    }
    conf.update(extra or {})
    return conf


def new_master(salt_factories, master_defaults, extra=None, prefix="fleet-master-"):
    """A master with the engine that accepts only the minions made by :func:`new_minion`."""
    return own_minions_master(
        salt_factories,
        random_string(prefix),
        copy.deepcopy(master_defaults),
        master_overrides(extra),
    )


def new_minion(master, site, prefix="fleet-node-", extra=None):
    factory = master.salt_minion_daemon(
        random_string(prefix), overrides=minion_overrides(master, site, extra)
    )
    allow(master, factory.id)
    return factory


def wait_record(master, minion_id, pred, timeout):
    """Read the engine's stored record of ``minion_id`` until ``pred(record)``; return it."""
    import salt.config

    from saltext_edge.fleet import store as _store

    opts = salt.config.master_config(master.config_file)
    store = _store.Store(opts)
    last = []

    def matched():
        last[:] = [store.load(minion_id)]
        return last[0] if last[0] is not None and pred(last[0]) else None

    try:
        return wait_until(matched, timeout, interval=0.2, what=f"a matching record of {minion_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last record read: {last}") from None


def heartbeat_of(minion_id):
    """Predicate: a heartbeat event from ``minion_id``."""

    def pred(data):
        payload = data.get("data") if isinstance(data.get("data"), dict) else data
        return payload.get("id") == minion_id

    return pred


# a stand-in alert reactor that turns each transition into an event (the
# how-to's own reactor, edge_alert.sls with its seal check and a web hook, is
# tested as written in tests/integration/alerting)
ALERT_SLS = """
edge-alert:
  runner.event.send:
    - args:
      - tag: edge/alert/{{ tag.split('/')[2] }}
      - data:
          what: {{ tag | json }}
          reason: {{ data.get('reason', '') | json }}
"""


@pytest.fixture(scope="package")
def fleet_master(salt_factories, master_defaults, tmp_path_factory):
    sls = tmp_path_factory.mktemp("reactor") / "edge-alert.sls"
    sls.write_text(ALERT_SLS)
    reactor = {
        "reactor": [{"edge/node/*/offline": [str(sls)]}, {"edge/site/*/degraded": [str(sls)]}]
    }
    factory = new_master(salt_factories, master_defaults, reactor)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="package")
def fleet_run(fleet_master):
    return fleet_master.salt_run_cli(timeout=120)
