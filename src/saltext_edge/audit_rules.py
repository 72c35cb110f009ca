"""
The rules the configuration audit applies (see ``docs/howto/diagnose.rst``).

A rule is a function ``rule(opts, setting) -> Check | None`` (``None``: the
setting does not apply to this minion). Most settings use one of the
generic factories below; the catalogue in :mod:`saltext_edge.settings` says
which rule each setting gets.
"""

import collections

from saltext_edge.uplink.targets import configured_masters

#: the outcome of a rule; ``current``/``recommended``/``why`` None mean "the
#: option's value" / "the catalogue's recommendation" / "the catalogue's reason"
Check = collections.namedtuple(
    "Check", "severity current recommended note why", defaults=(None, None, None, None)
)


def int_or_none(value):
    """``int(value)``, or None for booleans and values that are not integers."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def bands(missing, limits, above):
    """
    Rule for a positive integer option: ``missing`` when unset or <= 0, else
    the severity of the first ``(upper_limit, severity)`` of ``limits`` the
    value does not exceed, else ``above``.
    """

    def rule(opts, setting):
        value = int_or_none(opts.get(setting.name))
        if value is None or value <= 0:
            return Check(missing)
        for limit, severity in limits:
            if value <= limit:
                return Check(severity)
        return Check(above)

    return rule


_TRUE_TESTS = {
    "bool": bool,
    "loose": lambda value: value is True or value in (1, "true", "True"),
    "strict": lambda value: value is True,
}


def truthy(otherwise, default=True, test="loose"):
    """
    Rule for a boolean option (``default`` when unset): ok when true, else
    ``otherwise``. ``test``: ``bool`` (any true value), ``loose`` (True, 1 or
    "true") or ``strict`` (True only).
    """
    is_true = _TRUE_TESTS[test]

    def rule(opts, setting):
        value = opts.get(setting.name, default)
        return Check("ok" if is_true(value) else otherwise, value)

    return rule


def unset(otherwise):
    """Rule for an option best left unset: ok when unset, else ``otherwise``."""

    def rule(opts, setting):
        return Check("ok" if opts.get(setting.name) is None else otherwise)

    return rule


def _autosign(opts):
    found = opts.get("autosign_grains") or []
    return [found] if isinstance(found, str) else found


def contains(item, otherwise):
    """Rule for a list option: ok when it holds ``item``, else ``otherwise``."""

    def rule(opts, setting):
        found = opts.get(setting.name) or []
        found = [found] if isinstance(found, str) else found
        return Check("ok" if item in found else otherwise)

    return rule


def heartbeat(otherwise):
    """Rule for ``beacons``: ok when the ``edge_heartbeat`` beacon is on, else ``otherwise``."""

    def rule(opts, setting):
        from saltext_edge.uplink import heartbeat as _heartbeat  # only this rule needs it

        return Check("ok" if _heartbeat.beacon_enabled(opts) else otherwise)

    return rule


def when_admitted(inner):
    """``inner`` only for a minion admitted by token (``edge_token`` in autosign_grains)."""

    def rule(opts, setting):
        return inner(opts, setting) if "edge_token" in _autosign(opts) else None

    return rule


# --------------------------------------------------------------------------
# the settings whose rule depends on other settings
# --------------------------------------------------------------------------
def _failover(opts):
    return opts.get("master_type", "str") == "failover"


def master_list(opts, setting):
    """Two or more masters: somewhere to fail over to."""
    masters = configured_masters(opts)
    if len(masters) >= 2:
        return Check("ok", masters)
    return Check("warning", note="Only one master is configured: no failover target.")


def master_type(opts, setting):
    """``failover`` (info only with a single master), else warning."""
    current = opts.get("master_type", "str")
    if current != "failover":
        return Check("warning", current)
    many = len(configured_masters(opts)) >= 2
    return Check("ok" if many else "info", current)


def master_alive_interval(opts, setting):
    """Set and at most 120 s; unset is critical under failover (no failover happens)."""
    value = int_or_none(opts.get(setting.name))
    if not value or value <= 0:
        return Check("critical" if _failover(opts) else "warning")
    if value > 120:
        return Check("warning", value, note=f"A dead master is noticed only after {value} s.")
    return Check("ok", value)


def recon_max(opts, setting):
    """At least 30 s and not below ``recon_default``."""
    value = int_or_none(opts.get(setting.name))
    first = int_or_none(opts.get("recon_default"))
    if value is None or (first is not None and value < first):
        return Check("warning")
    return Check("ok" if value >= 30000 else "info")


def retry_dns(opts, setting, failover_why=""):
    """
    Salt forces ``retry_dns: 0`` under failover (a DNS error moves on to the
    next master), so 0 is right there; elsewhere it must be positive.
    """
    value = int_or_none(opts.get(setting.name))
    if opts.get("master_type") == "failover":
        return Check("ok" if not value else "info", recommended=0, why=failover_why)
    return Check("ok" if value and value > 0 else "critical")


def _seconds(value):
    """``float(value)``, or None for booleans and values that are not numbers."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def acceptance_wait_time(opts, setting):
    """
    The first sign-in retry of a pending minion: at most 2 s is ok (a new
    node is admitted on its second sign-in, that long after the first),
    Salt's 10 s default is info (each new node waits that long), 0 or unset
    is a warning (a pending minion then retries back to back).
    """
    value = _seconds(opts.get(setting.name))
    if value is None or value <= 0:
        return Check("warning")
    return Check("ok" if value <= 2 else "info")


def acceptance_wait_time_max(opts, setting):
    """
    The back-off cap of the sign-in retry: the minion doubles
    ``acceptance_wait_time`` while it is below this cap (0: no back-off). A
    pending minion that ends up retrying more often than every 8 s is a
    warning: under a storm of pending nodes every sign-in is work for the
    master (``docs/benchmarks.rst``).
    """
    first = _seconds(opts.get("acceptance_wait_time"))
    value = _seconds(opts.get(setting.name))
    cap = value if value else first
    if cap is None or cap < 8:
        return Check(
            "warning",
            note=f"A pending minion signs in again every {cap or 0:g} s for as long as it waits.",
        )
    return Check("ok")
