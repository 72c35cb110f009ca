"""
Every file admission creates itself, in one place: the key-store lock, the
in-flight marker and the node index live in the master's PKI directory, so
that masters sharing one key store (a shared ``pki_dir`` volume) share them.
Owner and mode are set only here.
"""

import json
import os
import tempfile


def private_dir(path):
    """Create directory ``path`` (mode 0700) if missing; return it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def open_lock_file(path):
    """Open (create, mode 0600) the lock file ``path``; return the descriptor."""
    private_dir(os.path.dirname(path))
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def write_private_file(path, data):
    """Atomically replace ``path`` with the JSON of ``data`` (mode 0600)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
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


def write_marker(path, text):
    """Replace the contents of the small marker file ``path`` (mode 0600) with ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
