"""
The uplink of an edge minion: how good its path to the masters is
(``docs/design.rst``, ``docs/howto/diagnose.rst``). One home for the idea,
used by the ``edge_uplink`` grain, the ``edge_heartbeat`` beacon and the
diagnostics:

* :mod:`.args` -- the probe's arguments validated (targets, counts,
  seconds, thresholds) and :class:`~.args.ProbeArgumentError`;
* :mod:`.targets` -- what is probed: the configured masters and their
  ports, or ``edge:uplink:targets``;
* :mod:`.dns` -- name resolution bounded in time;
* :mod:`.probe` -- the measurement (connect + ZeroMQ greeting, all targets
  at once within a budget);
* :mod:`.quality` -- statistics, the qualities and their one rank table,
  the verdict over targets and the uplink field list (:data:`~.quality.UPLINK_KEYS`).

The standard library and :mod:`saltext_edge.errors` only, nothing done at
import time: the package is shipped to minions through ``_utils/`` and
imported on the minion's start-up path.
Keep this file free of imports.
"""
