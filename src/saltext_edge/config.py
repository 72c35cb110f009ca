"""
The ``edge:`` block of the Salt master or minion configuration, read in one
place (its options are listed in ``docs/configuration.rst``).

Callers decide what a malformed block means for them: admission fails closed
on :class:`EdgeConfigError`, a grain logs it and reports nothing. Nothing here
reads secret files; :mod:`saltext_edge.shared_secret` does that.
"""

import dataclasses

from saltext_edge.errors import EdgeError

__all__ = [
    "ENROLLMENT_KEY_OPTIONS",
    "EdgeConfigError",
    "MinionEdge",
    "edge_conf",
    "edge_section",
    "minion_edge",
]

#: the minion options that name an enrollment key (``docs/enrollment.rst``)
ENROLLMENT_KEY_OPTIONS = ("enrollment_key", "enrollment_key_file")


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


@dataclasses.dataclass(frozen=True)
class MinionEdge:
    """
    The minion's ``edge:`` block as the grains, the beacon and the state read
    it (built by :func:`minion_edge`, which never raises). Secret options
    are left to :mod:`saltext_edge.shared_secret`.
    """

    #: the whole mapping (``{}`` when unset or not a mapping)
    conf: dict

    @property
    def site(self):
        """``edge:site`` as configured (``None`` when unset; not validated)."""
        return self.conf.get("site")

    @property
    def enrolling(self):
        """``True`` when an enrollment key is configured (:data:`ENROLLMENT_KEY_OPTIONS`)."""
        return any(self.conf.get(name) is not None for name in ENROLLMENT_KEY_OPTIONS)

    @property
    def admission(self):
        """``True`` when the node asks to be admitted: a site, or an enrollment key."""
        return bool(self.site) or self.enrolling


def minion_edge(opts):
    """
    Return the :class:`MinionEdge` view of ``opts`` (lenient: a malformed
    ``edge`` option reads as unset, so a grain never fails on it).
    """
    return MinionEdge(edge_conf(opts, lenient=True))
