"""
Outputter ``edge``: the fleet as an operator reads it (docs/howto/fleet-report.rst).

.. code-block:: bash

    salt-run edge.report --out=edge
    salt-run edge.node sh-3-gw-01 --out=edge
    salt-run edge.enrollment_keys --out=edge

``edge.report``: the totals line, one row per site worst first (site first,
fixed columns, ``TOTAL`` last), then the nodes that are not online.
``edge.node``: one node in a dozen lines. ``edge.enrollment_keys``: one row
per enrollment. Anything else is printed by the ``nested`` outputter. The
formatting lives in :mod:`saltext_edge.view.text`.
"""

try:
    from saltext_edge.view import text as _text

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

__virtualname__ = "edge"


def __virtual__():
    if not HAS_LIB:
        return (False, "edge outputter: the saltext_edge library is missing")
    return __virtualname__


def output(data, **kwargs):
    """
    Return ``data`` (what an ``edge`` runner function returned) as the text
    an operator reads; what it does not know is handed to ``nested``.

    CLI Example:

    .. code-block:: bash

        salt-run edge.report --out=edge
    """
    text = _text.render(data)
    if text is None:
        return __salt__["nested"](data, **kwargs)
    return text
