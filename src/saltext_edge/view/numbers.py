"""
Numbers read from a fleet snapshot or report for the views (metrics and
page): anything that is not a number becomes ``None``, never an error.
"""

_INFINITIES = (float("inf"), float("-inf"))


def as_float(value, finite=True):
    """
    ``value`` as a float, or ``None`` for ``None``, a bool, anything
    ``float()`` refuses, NaN, and (unless ``finite`` is false) infinity.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value != value or (finite and value in _INFINITIES):  # NaN / inf
        return None
    return value
