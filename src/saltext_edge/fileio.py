"""
The one atomic file writer of the package.

A temporary file in the target's directory is created ``0600``, set to the
final mode (and, through ``owner``, its final owner), written and fsync'd,
then renamed over the target (or, with ``exclusive``, linked to it so an
existing file is never replaced); the directory is fsync'd afterwards.
Readers see the old file or the new one, never a partial one, and a secret
is never readable by others in between.

Not ``salt.utils.atomicfile.atomic_open``: it has no mode of its own (it
copies the replaced file's mode and owner, else ``0666 & ~umask``), no
exclusive create (site and enrollment keys are never overwritten), no hook
to hand the file to the master's user before anything is written, ignores a
failed fsync and does not fsync the directory.
"""

import contextlib
import os
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path, data, mode=0o644, exclusive=False, owner=None, durable=True):
    """
    Write ``data`` (bytes) to ``path`` atomically with permission ``mode``.

    With ``exclusive`` the file must not exist yet: raises
    :class:`FileExistsError` when it does (also when it appears meanwhile).
    ``owner``: called with the temporary file's descriptor before anything
    is written, to give the file its owner (for example
    :func:`saltext_edge.fsperm.hand_to_master`). ``durable=False`` skips the
    fsyncs, for files that are rewritten often and whose loss in a power cut
    costs nothing (still never partial). Returns ``path``. Raises
    :class:`OSError` on any failure, leaving no temporary file behind.
    """
    directory = os.path.dirname(path) or "."
    fd_, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd_, 0o600)
        if owner is not None:
            owner(fd_)
        with os.fdopen(fd_, "wb") as fh_:
            fh_.write(data)
            if durable:
                fh_.flush()
                os.fsync(fh_.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            _link_exclusive(tmp, path, data, mode)
        else:
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    if durable:
        _fsync_dir(directory)
    return path


def _link_exclusive(tmp, path, data, mode):
    try:
        os.link(tmp, path)  # FileExistsError if it exists or appeared
    except FileExistsError:
        raise
    except OSError:
        # no hard links on this filesystem: exclusive create instead
        fd_ = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd_, "wb") as fh_:
            fh_.write(data)
            fh_.flush()
            os.fsync(fh_.fileno())


def _fsync_dir(directory):
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
