"""
Helpers shared by every kind of test, one home each:

* :mod:`tests.support.waits`: :func:`~tests.support.waits.wait_until`, the
  one poll-until-true helper;
* :mod:`tests.support.events`: :func:`~tests.support.events.wait_event` and
  :func:`~tests.support.events.events`, master events seen by
  salt-factories' ``event_listener``;
* :mod:`tests.support.net`: :func:`~tests.support.net.free_port`;
* :mod:`tests.support.keys`: RSA key pairs as minions make them.

Daemon helpers (masters that accept only their own minions, SIGKILL,
``test.ping`` until answered) are in :mod:`tests.daemons`.
"""
