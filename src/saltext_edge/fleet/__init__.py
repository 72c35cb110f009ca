"""
Fleet health behind NAT, master side (see ``docs/ref/engine.rst`` and
``docs/howto/site-goes-dark.rst``): the record the ``edge_fleet`` engine keeps
of every node's signs of life and uplink, status and transitions.

Modules: :mod:`.conf` (settings), :mod:`.record` (per-node record and
history), :mod:`.status` (online / late / offline, transitions),
:mod:`.evidence` (what counts as a sign of life), :mod:`.signing` (signed
heartbeats; the minion signs with it too), :mod:`.store` (``salt.cache``),
:mod:`.sites` (site lookup), :mod:`.engine` (the engine's state machine),
:mod:`.nodeview` (a node's view). The minion side of the heartbeat is
:mod:`saltext_edge.uplink.heartbeat`.

Keep this file free of imports: the minion imports :mod:`.signing`.
"""
