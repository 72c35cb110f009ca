"""Loopback ports for servers a test starts."""

from pytestshellutils.utils import ports


def free_port():
    """
    Return a TCP port on 127.0.0.1 that nothing listened on a moment ago and
    that no earlier call of this session returned (salt-factories picks the
    masters' ports with the same function).
    """
    return ports.get_unused_localhost_port(use_cache=True)
