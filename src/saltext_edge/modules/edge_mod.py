"""
Execution module ``edge``: diagnostics on an edge node (DESIGN.md §5).

Thin layer: parses arguments, calls :mod:`saltext_edge` library code, shapes
the return. Library modules are imported at load time (a synced copy finds
them in ``_utils`` only while Salt loads it).
"""

import logging

try:
    import saltext_edge

    HAS_LIB = True
except ImportError:  # pragma: no cover - depends on how the module was installed
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or sync it with saltutil.sync_all",
        )
    return __virtualname__


def version():
    """
    Return the version of saltext-edge this minion runs (a string).

    CLI Example:

    .. code-block:: bash

        salt '*' edge.version
    """
    return saltext_edge.__version__
