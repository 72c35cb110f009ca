"""
Engine ``edge_admission``: admission by token at the speed of a storm of new
nodes (docs/concepts.rst, "The admission engine"; measured in
docs/benchmarks.rst).

.. code-block:: yaml

    # master config (saltext-edge master-config --write sets this up)
    auth_events: true
    auth_events_autosign_grains: [pend, denied]
    engines:
      - edge_admission: {}
    edge:
      shared_secret_file: /etc/salt/edge-secret
      auto_admit: true

Reads ``salt/auth`` from the master event bus in its own process and admits
pending keys in batches; the shipped ``salt/auth`` reactor SLS does nothing
while this engine is configured. The logic lives in
:mod:`saltext_edge.admission.engine`.
"""

import logging

try:
    from saltext_edge.admission import engine as _engine
    from saltext_edge.admission.policy import AdmissionError

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge_admission"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge_admission: the saltext_edge library is missing (salt-run saltutil.sync_utils)",
        )
    return __virtualname__


def start(workers=1, worker=0, window=None):
    """
    Admit pending keys until the master stops (Salt calls this in the
    engine's own process). ``window``: seconds a burst of sign-ins gathers
    before it is decided (default 0.05); ``workers`` / ``worker``: run
    several engine processes, each handling its share of the ids (see
    docs/concepts.rst for the ``engine_module`` form). Returns only on a bad
    option (logged).

    CLI Example:

    .. code-block:: bash

        # not called from the CLI: enable it in the master config
        # engines: [{edge_admission: {}}]
        salt-run edge.accept_pending dry_run=True
    """
    try:
        options = _engine.check_options(
            worker, workers, _engine.WINDOW if window is None else window
        )
    except AdmissionError as exc:
        log.error("edge admission: engine not started: %s", exc)
        return
    _engine.run(__opts__, *options)
