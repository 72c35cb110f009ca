"""
Runner ``edge``: the fleet view on the master (DESIGN.md §3, §7).
"""

import logging

try:
    import saltext_edge

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or run salt-run saltutil.sync_utils",
        )
    return __virtualname__


def version():
    """
    Return the version of saltext-edge on the master (a string).

    CLI Example:

    .. code-block:: bash

        salt-run edge.version
    """
    return saltext_edge.__version__
