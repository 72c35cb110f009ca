"""
How admission writes its files (the key-store lock, the in-flight marker
and the node index, under ``<pki_dir>/edge/``: their paths are
:mod:`saltext_edge.pki_paths`).
Owner and mode are set only here: private (0700 directories, 0600 files)
and, when root creates them for a master that runs as another user (Salt's
packages run it as ``salt``), handed to that user (:mod:`saltext_edge.fsperm`)
so the master and ``salt-run`` keep working whichever ran first.
"""

import json
import os

from saltext_edge import fsperm
from saltext_edge import pki_paths as _paths


def edge_dir(opts):
    """Return ``<pki_dir>/edge`` (:func:`saltext_edge.pki_paths.root`; created if missing, private)."""
    return private_dir(_paths.root(opts), opts)


private_dir = fsperm.private_dir


def open_lock_file(path, opts):
    """Open (create, mode 0600) the lock file ``path``; return the descriptor."""
    private_dir(os.path.dirname(path), opts)
    return fsperm.open_lock_file(path, opts)


def write_private_file(path, data, opts, durable=True):
    """
    Atomically replace ``path`` with the JSON of ``data`` (mode 0600, the
    master's user); ``durable``: see :func:`saltext_edge.fileio.atomic_write`.
    """
    fsperm.write_private_json(path, data, opts, durable=durable)


def read_json_file(path):
    """Return the JSON in ``path``, or None when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh_:
            data = json.load(fh_)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_file(path):
    """Remove ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_marker(path, text, opts):
    """Replace the contents of the small marker file ``path`` (mode 0600) with ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fsperm.hand_to_master(fd, opts)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
