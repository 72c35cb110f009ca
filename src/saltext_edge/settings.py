"""
The catalogue of minion settings an edge node needs behind NAT: the
recommended value, why it matters and the audit rule, one entry each
(``docs/howto/keep-settings.rst`` explains the settings, ``docs/design.rst``
the contract).

The state ``edge.minion_config`` writes the entries marked ``written="nat"``
(with ``nat_keepalive: True``), those marked ``written="enroll"`` with the
enrollment settings (``site`` given), and sets those marked
``written="params"`` from its own parameters; ``edge.config_audit`` checks every entry, in this
order. Adding a setting is one :class:`Setting` line in :data:`CATALOGUE`.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from saltext_edge import audit_rules as rules
from saltext_edge.uplink import heartbeat as _heartbeat


@dataclasses.dataclass(frozen=True)
class Setting:
    """One minion option: its recommended value, the reason, the audit rule."""

    name: str
    recommended: Any
    why: str
    rule: Callable
    #: "nat": written by edge.minion_config with nat_keepalive; "params": set
    #: from the state's own parameters; "enroll": written with the enrollment
    #: settings (a ``site`` given); None: audited only
    written: Any = None


_WHY_RETRY_DNS_FAILOVER = (
    "With master_type: failover Salt sets retry_dns to 0 itself: a master name that does "
    "not resolve makes the minion move on to the next master instead of waiting."
)

# fmt: off
CATALOGUE = (
    Setting("master", "a list of 2 or more masters", (
        "A list of two or more masters gives a failover minion somewhere to go when its "
        "master or the path to it dies."), rules.master_list),
    Setting("master_type", "failover", (
        "'failover' connects to one master of the list at a time and moves to the next when "
        "it stops answering; 'str' with a list keeps a connection to every master (twice the "
        "NAT state) and a single 'str' master has no fallback."), rules.master_type, "params"),
    Setting("master_alive_interval", 30, (
        "Seconds between the minion's checks that its master is still alive; 0 disables the "
        "check, so a minion whose master vanished behind NAT never notices and never fails "
        "over."), rules.master_alive_interval, "params"),
    Setting("tcp_keepalive", True, (
        "Kernel keep-alive probes refresh NAT and firewall state on the idle publish "
        "connection; without them a middlebox silently drops the flow and the minion stops "
        "receiving jobs while still believing it is connected."), rules.truthy("critical"), "nat"),
    Setting("tcp_keepalive_idle", 20, (
        "First keep-alive probe after this many idle seconds; must be well below common NAT "
        "idle timeouts (AWS NLB 350 s, many NATs 300 s or less). -1 means the OS default "
        "(7200 s on Linux), far too late."),
        rules.bands("warning", [(120, "ok"), (299, "info")], "warning"), "nat"),
    Setting("tcp_keepalive_cnt", 4, (
        "Unanswered keep-alive probes before the connection is declared dead; with "
        "tcp_keepalive_intvl it sets how quickly a dead path is noticed (-1: OS default 9). "
        "With idle 20 s, 4 probes 5 s apart, a master whose path silently drops every packet "
        "is given up after 40 s, so a failover minion moves on within about 85 s."),
        rules.bands("info", [(10, "ok")], "info"), "nat"),
    Setting("tcp_keepalive_intvl", 5, (
        "Seconds between keep-alive probes (-1: OS default 75 s, so a dead path takes "
        "over 11 minutes to notice)."),
        rules.bands("info", [(30, "ok"), (60, "info")], "warning"), "nat"),
    Setting("ping_interval", 5, (
        "Minutes between minion-to-master pings: application traffic on the return channel "
        "that keeps its NAT mapping alive and makes the minion re-connect when pings fail; "
        "0 disables it."), rules.bands("warning", [(10, "ok")], "info"), "nat"),
    Setting("random_reauth_delay", 60, (
        "Upper bound (seconds) of the random wait before re-authenticating, so hundreds of "
        "edge minions do not hit a restarted master at the same instant."),
        rules.bands("info", [(29, "info")], "ok"), "nat"),
    Setting("recon_default", 1000, (
        "First ZeroMQ reconnect interval in milliseconds; too small hammers the master and "
        "the uplink during an outage."),
        rules.bands("warning", [(499, "warning"), (10000, "ok")], "warning"), "nat"),
    Setting("recon_max", 60000, (
        "Cap (milliseconds) of the ZeroMQ reconnect back-off; a larger cap spreads a fleet's "
        "reconnects after a long outage."), rules.recon_max, "nat"),
    Setting("recon_randomize", True, (
        "Randomise the reconnect back-off so a fleet does not reconnect in lock-step."),
        rules.truthy("warning", test="bool"), "nat"),
    Setting("retry_dns", 30, (
        "Seconds between retries when the master name does not resolve; 0 makes a minion "
        "without DNS at start-up give up (or, outside failover, fall back to 127.0.0.1) "
        "instead of waiting for the uplink."),
        functools.partial(rules.retry_dns, failover_why=_WHY_RETRY_DNS_FAILOVER), "nat"),
    Setting("retry_dns_count", None, (
        "A retry limit makes the minion exit when DNS is down for long enough; unset means "
        "retry for ever, which is what an unattended edge node needs."), rules.unset("warning")),
    Setting("autosign_grains", ["edge_token"], (
        "The master admits a new edge node only when it presents the edge_token grain; "
        "without 'edge_token' in autosign_grains the token never reaches the master."),
        rules.contains("edge_token", "warning"), "params"),
    Setting("rejected_retry", True, (
        "A new node whose id is squatted by a stranger's pending key is denied until the "
        "master frees the id (edge:on_invalid: delete); Salt's minion exits on a denial "
        "unless rejected_retry is true, and then waits for its service manager."),
        rules.when_admitted(rules.truthy("info", default=None, test="strict")), "params"),
    Setting("beacons", _heartbeat.beacon_settings()["beacons"], (
        "The edge_heartbeat beacon tells the master every minute that the node is alive and "
        "how its uplink is doing; behind NAT the master cannot see that any other way "
        "without pinging (docs/howto/site-goes-dark.rst)."), rules.heartbeat("warning"), "nat"),
    Setting("acceptance_wait_time", 0.25, (
        "Seconds before a pending minion signs in again. The master admits a node within "
        "a few tenths of a second of its first sign-in, and the node is in on its next one: "
        "0.25 s instead of Salt's 10 s default (measured against 1 s in docs/benchmarks.rst: "
        "one node ready 0.8 s sooner, storms no slower)."),
        rules.when_admitted(rules.acceptance_wait_time), "enroll"),
    Setting("acceptance_wait_time_max", 10, (
        "Back-off cap: the minion doubles its wait while it is below this (0.25, 0.5, 1, 2, "
        "4, 8, 16 s), so a node that stays pending signs in no more often than Salt's "
        "default once it has waited about 16 s; 0 keeps retrying every "
        "acceptance_wait_time, which a storm of pending nodes turns into master load."),
        rules.when_admitted(rules.acceptance_wait_time_max), "enroll"),
)
# fmt: on

BY_NAME = {setting.name: setting for setting in CATALOGUE}

#: NAT keep-alive and reconnect settings (setting -> value) that
#: ``edge.minion_config`` with ``nat_keepalive: True`` writes
RECOMMENDED = {s.name: s.recommended for s in CATALOGUE if s.written == "nat"}

#: settings written with the enrollment settings (``site`` given): how fast
#: a new node signs in again while its key is pending
RECOMMENDED_ENROLL = {s.name: s.recommended for s in CATALOGUE if s.written == "enroll"}

#: settings the state sets from its own parameters, with their recommended values
RECOMMENDED_CORE = {s.name: s.recommended for s in CATALOGUE if s.written == "params"}

#: why each setting matters on an edge node behind NAT
RECOMMENDED_WHY = dict(
    {s.name: s.why for s in CATALOGUE}, retry_dns_failover=_WHY_RETRY_DNS_FAILOVER
)


#: seconds a minion needs to sign in to the next master once it has decided
#: to fail over (the lab measured a few seconds; docs/howto/field-lab.rst)
FAILOVER_SIGN_IN_S = 15


def failover_bound(opts=None):
    """
    Seconds within which a failover minion reaches its next master when the
    path to its master silently drops every packet, at ``opts`` (the options
    written by ``edge.minion_config`` when ``None``): TCP keep-alive declares
    the publish connection dead after ``tcp_keepalive_idle + tcp_keepalive_cnt
    * tcp_keepalive_intvl`` seconds of silence, the next ``status.master``
    check (every ``master_alive_interval`` seconds) sees no connection, and
    the sign-in to the next master takes :data:`FAILOVER_SIGN_IN_S`. Returns a float.
    """
    opts = dict(RECOMMENDED, **RECOMMENDED_CORE, **(opts or {}))
    dead = opts["tcp_keepalive_idle"] + opts["tcp_keepalive_cnt"] * opts["tcp_keepalive_intvl"]
    return float(dead + opts["master_alive_interval"] + FAILOVER_SIGN_IN_S)
