"""
Beacon ``edge_heartbeat``: tells the master, every ``period`` seconds, that
this edge node is alive and how its uplink is (see ``docs/ref/beacons.rst``).

.. code-block:: yaml

    beacons:
      edge_heartbeat:
        - period: 60        # seconds between heartbeats (1-86400)
        - jitter: 0.1       # +/- share of the period, spreads a fleet's heartbeats
        - first_after: 5    # seconds after the minion starts (off the start-up path)

Each heartbeat measures the uplink with the extension's probe in a
background thread (within ``edge:uplink:budget``; the minion's loop never
waits for it), stores the measurement for the ``edge_uplink`` grain, and sends
one small event ``edge/heartbeat`` to the master with ``event.fire_master``:
id, site, sequence number, uptime, period and the uplink figures, signed with
the minion's key so that no other minion can speak for this one. The beacon
itself returns no events.
"""

import logging
import random
import threading
import time

try:
    from saltext_edge.fleet import signing as _signing
    from saltext_edge.uplink import heartbeat as _hb
    from saltext_edge.uplink import measure as _measure

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge_heartbeat"

_STATE = {}


def __virtual__():
    if not HAS_LIB:
        return (False, "edge_heartbeat: the saltext_edge library is missing (saltutil.sync_utils)")
    return __virtualname__


def validate(config):
    """
    Check the beacon configuration. Returns ``(True, "valid")`` or
    ``(False, reason)``.

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.add edge_heartbeat "[{'period': 60}]"
    """
    if not isinstance(config, list):
        return False, "edge_heartbeat: the configuration must be a list of one-key mappings"
    for key, value in _hb.settings(config).items():
        if key.startswith("_") or key in _hb.SALT_SETTINGS:
            continue
        if key not in _hb.LIMITS:
            return False, f"edge_heartbeat: unknown setting {key!r} (period, jitter, first_after)"
        reason = _hb.check(key, value)
        if reason:
            return False, f"edge_heartbeat: {reason}"
    return True, "valid"


def _state(opts):
    if not _STATE:
        _STATE.update(
            {
                # <generation>:<boot number>, growing at every start: the
                # master orders heartbeats by it, not by this node's clock
                "boot": _hb.next_boot(opts),
                "seq": 0,
                "due": None,
                "thread": None,
                "result": None,
                "signer": None,
                "errors": 0,
            }
        )
    return _STATE


def _probe(opts, state):
    uplink = _measure.measure(opts)
    _measure.save(opts, uplink)
    state["result"] = uplink


def _send(opts, state, conf, uplink):
    state["seq"] += 1
    payload = _hb.payload(opts, uplink, state["seq"], state["boot"], conf["period"], conf["jitter"])
    if state["signer"] is None:
        state["signer"] = _signing.minion_signer(opts)
    try:
        signed = state["signer"].sign(payload)
    except (OSError, ValueError, ImportError) as exc:
        # no usable key, or no ``cryptography`` on this minion: an unsigned
        # heartbeat would not count, so none is sent
        state["errors"] += 1
        log.warning("edge_heartbeat: cannot sign the heartbeat: %s", exc.__class__.__name__)
        return False
    sent = __salt__["event.fire_master"](signed, _hb.TAG)
    if not sent:
        log.debug("edge_heartbeat: heartbeat %s not handed to the minion", state["seq"])
    return bool(sent)


def beacon(config):
    """
    Called by the minion's beacon loop (about once a second): starts a
    measurement when the next heartbeat is due and sends the heartbeat when
    the measurement is done. Returns ``[]`` (the heartbeat goes to the master
    directly, see the module documentation).

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.list
    """
    opts = __opts__
    conf = dict(_hb.DEFAULTS)
    conf.update({k: float(v) for k, v in _hb.settings(config).items() if k in _hb.DEFAULTS})
    state = _state(opts)
    now = time.time()
    if state["due"] is None:
        state["due"] = now + conf["first_after"] + random.random() * conf["jitter"] * conf["period"]
    thread = state["thread"]
    if thread is not None:
        if thread.is_alive():
            return []
        state["thread"] = None
        uplink = state["result"] or _measure.unknown("no measurement")
        state["result"] = None
        _send(opts, state, conf, uplink)
        state["due"] = _hb.next_due(state["due"], conf["period"], conf["jitter"])
        if state["due"] < now:
            # the minion was busy or asleep: do not send a burst to catch up
            state["due"] = _hb.next_due(now, conf["period"], conf["jitter"])
        return []
    if now >= state["due"]:
        thread = threading.Thread(
            target=_probe, args=(opts, state), name="edge-heartbeat-probe", daemon=True
        )
        state["thread"] = thread
        thread.start()
    return []
