"""
The ``edge:`` block of the Salt master or minion configuration, read in one
place (its options are listed in ``docs/configuration.rst``).

Callers decide what a malformed block means for them: admission fails closed
on :class:`EdgeConfigError`, a grain logs it and reports nothing. Nothing here
reads secret files; :mod:`saltext_edge.shared_secret` does that.
"""

from saltext_edge.errors import EdgeError

__all__ = ["EdgeConfigError", "edge_conf", "edge_section"]


class EdgeConfigError(EdgeError, ValueError):
    """The ``edge`` option (or a part of it) is not a mapping. No secret in the message."""


def edge_conf(opts, error=EdgeConfigError, lenient=False):
    """
    Return the ``edge:`` mapping from ``opts`` (``{}`` when the option is
    unset or empty). When it is set to anything but a mapping: ``{}`` with
    ``lenient`` (grains and the beacon, which must never fail), else raises
    ``error`` (:class:`EdgeConfigError` by default; admission passes its own
    error class so it fails closed with its own type).
    """
    conf = ({} if opts is None else opts).get("edge")
    if conf is None or conf == "":
        return {}
    if not isinstance(conf, dict):
        if lenient:
            return {}
        raise error("the 'edge' configuration option must be a mapping")
    return conf


def edge_section(opts, key):
    """
    Return the mapping ``edge:<key>`` (e.g. ``uplink``), ``{}`` when unset.
    Raises :class:`EdgeConfigError` when ``edge`` or ``edge:<key>`` is set
    but is not a mapping.
    """
    section = edge_conf(opts).get(key)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise EdgeConfigError(f"edge:{key} must be a mapping")
    return section
