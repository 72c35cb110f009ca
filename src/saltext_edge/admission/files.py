"""
Every file admission creates itself, in one place: the key-store lock, the
in-flight marker and the node index live under ``<pki_dir>/edge/``, so that
masters sharing one key store (a shared ``pki_dir`` volume) share them.
Owner and mode are set only here: private (0700 directories, 0600 files)
and, when root creates them for a master that runs as another user (Salt's
packages run it as ``salt``), handed to that user (:mod:`saltext_edge.fsperm`)
so the master and ``salt-run`` keep working whichever ran first.
"""

import json
import os
import tempfile

from saltext_edge import fsperm


def edge_dir(opts):
    """Return ``<pki_dir>/edge`` (created if missing), the home of admission's files."""
    return private_dir(os.path.join(opts["pki_dir"], "edge"), opts)


def private_dir(path, opts):
    """Create directory ``path`` (mode 0700, the master's user) if missing; return it."""
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            private_dir(parent, opts)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return path
        fsperm.hand_to_master(path, opts)
    return path


def open_lock_file(path, opts):
    """Open (create, mode 0600) the lock file ``path``; return the descriptor."""
    private_dir(os.path.dirname(path), opts)
    return fsperm.open_lock_file(path, opts)


def write_private_file(path, data, opts):
    """Atomically replace ``path`` with the JSON of ``data`` (mode 0600)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        fsperm.hand_to_master(fd, opts)
        with os.fdopen(fd, "w", encoding="utf-8") as fh_:
            json.dump(data, fh_, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
