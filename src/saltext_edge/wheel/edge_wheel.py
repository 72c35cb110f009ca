"""
Wheel module ``edge``: admission functions callable from the reactor and from
salt-api (``client: wheel``) (DESIGN.md §3).

Wheel modules get no utils directory on ``sys.path`` from Salt's loader, so a
copy synced with ``salt-run saltutil.sync_wheel`` (package not installed) finds
the library in the master's synced ``extmods/utils`` (``salt-run
saltutil.sync_utils``) by adding that one directory itself.
"""

import logging
import os
import sys

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def _import_lib():
    try:
        import saltext_edge  # pylint: disable=import-outside-toplevel

        return saltext_edge
    except ImportError:
        pass
    extmods = os.path.join(__opts__.get("extension_modules", ""), "utils")
    if os.path.isdir(os.path.join(extmods, "saltext_edge")) and extmods not in sys.path:
        sys.path.append(extmods)
    try:
        import saltext_edge  # pylint: disable=import-outside-toplevel

        return saltext_edge
    except ImportError:
        return None


def __virtual__():
    if _import_lib() is None:
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

        salt-run wheel.edge.version  # or, from salt-api: client=wheel fun=edge.version
    """
    return sys.modules["saltext_edge"].__version__
