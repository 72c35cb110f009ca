"""
Owners and modes of the files saltext-edge creates or reads on a master
(see ``docs/install.rst``, section "Running as the salt user").

Salt's official packages run the master as ``user: salt``: ``salt-master``
starts as root and drops to ``salt``, and so does every ``salt-run`` (even
under ``sudo``). The console script ``saltext-edge`` does not drop: it runs as
whoever starts it. So a file of ours may be created by root or by the master's
user, and must stay usable by both:

* files the master keeps using (the key-store lock) are handed to the master's
  user when root creates them, and are opened read-only when they cannot be
  opened for writing (``flock`` works on a read-only descriptor);
* secrets are never readable by others: the fleet secret is ``root:<group of
  the master's user>`` ``0640`` (root writes it, the master reads it), site
  keys and other written secrets ``0600`` of their writer.

Keep this module free of Salt imports (it is used by the console script before
Salt's configuration is read, and by tests).
"""

import grp
import json
import os
import pwd
import stat

from saltext_edge import config as _config
from saltext_edge.fileio import atomic_write

# the documented owner and mode of the fleet secret file
SECRET_MODE = 0o640


def master_user(opts):
    """Return the user the master runs as (``user`` option, default ``root``)."""
    user = ({} if opts is None else opts).get("user") or "root"
    return str(user)


def user_ids(user):
    """
    Return ``(uid, gid)`` of ``user`` (name or numeric id), or ``None`` when
    no such user exists on this host.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        try:
            entry = pwd.getpwuid(int(user))
        except (KeyError, ValueError):
            return None
    return entry.pw_uid, entry.pw_gid


def group_name(gid):
    """Return the name of group ``gid`` (or the number as a string)."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def hand_to_master(fd_or_path, opts):
    """
    When running as root and the master runs as another user, give the
    file (an open descriptor or a path) to that user so the master can use
    it after root created it. Returns ``True`` when the owner was changed,
    ``False`` when nothing had to be done.
    """
    if os.geteuid() != 0:
        return False
    ids = user_ids(master_user(opts))
    if ids is None or ids[0] == 0:
        return False
    if isinstance(fd_or_path, int):
        os.fchown(fd_or_path, *ids)
    else:
        os.chown(fd_or_path, *ids)
    return True


def private_dir(path, opts):
    """Create directory ``path`` and its missing parents (mode 0700, the master's user); return it."""
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            private_dir(parent, opts)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return path
        hand_to_master(path, opts)
    return path


def write_private_json(path, data, opts, durable=True):
    """
    Atomically replace ``path`` with the JSON of ``data``: mode 0600, owned by
    the master's user (see :func:`hand_to_master`). Returns ``path``; raises
    :class:`OSError`. ``durable``: see :func:`saltext_edge.fileio.atomic_write`.
    """
    return atomic_write(
        path,
        json.dumps(data, sort_keys=True).encode("utf-8"),
        0o600,
        owner=lambda fd: hand_to_master(fd, opts),
        durable=durable,
    )


def _lock_denied(path, opts):
    user = master_user(opts)
    directory = os.path.dirname(path)
    return PermissionError(
        f"cannot open the lock file {path} as user {current_user()} (the master runs as "
        f"{user}); fix: chown -R {user}: {directory} (files left from when the master ran "
        "as another user)"
    )


def open_lock_file(path, opts):
    """
    Open (creating it ``0600`` if needed) the lock file ``path`` for
    ``fcntl.flock`` and return the descriptor. Created by root for a master
    that runs as another user, it is handed to that user; one that cannot be
    opened for writing is opened read-only, which ``flock`` accepts. Raises
    ``PermissionError`` with a message naming the file, the user and the fix
    when it cannot be opened at all.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for flags in (os.O_RDWR, os.O_RDONLY):
            try:
                return os.open(path, flags)
            except PermissionError:
                continue
        raise _lock_denied(path, opts) from None
    except PermissionError:
        raise _lock_denied(path, opts) from None
    try:
        hand_to_master(fd, opts)
    except OSError:
        pass  # still a usable lock for this process
    return fd


def secret_file_fix(path, user):
    """Return the shell commands that give ``path`` its documented owner and mode."""
    ids = user_ids(user)
    group = group_name(ids[1]) if ids else user
    if ids is None or ids[0] == 0:
        return f"chown root:root {path} && chmod 0600 {path}"
    return f"chown root:{group} {path} && chmod 0640 {path}"


def secret_file_problems(path, user):
    """
    Check the fleet secret file ``path`` for a master running as ``user``:
    it must exist, be readable by ``user`` and be readable or writable by
    nobody else but root and ``user``'s group (documented: ``root:<group>``
    ``0640``, or ``root:root 0600`` for a master running as root).

    Returns a list of messages (empty when all is well); each names the file,
    the user and the fix, never the content.
    """
    fix = secret_file_fix(path, user)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [
            f"the fleet secret file {path} does not exist (master user {user}); "
            f"create it (docs/quickstart.rst, step 2), then: {fix}"
        ]
    except OSError as exc:
        return [
            f"cannot examine the fleet secret file {path} as {current_user()}: "
            f"{exc.strerror}; fix: {fix}"
        ]
    problems = []
    if not stat.S_ISREG(st.st_mode):
        return [f"the fleet secret {path} is not a regular file"]
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        problems.append(
            f"the fleet secret file {path} is open to other users (mode {mode:04o}); fix: {fix}"
        )
    if mode & 0o020:
        problems.append(
            f"the fleet secret file {path} is writable by its group (mode {mode:04o}); fix: {fix}"
        )
    if not _can_read(st, user):
        problems.append(
            f"the master runs as {user}, who cannot read the fleet secret file {path} "
            f"(owner {_owner(st)}, mode {mode:04o}); fix: {fix}"
        )
    return problems


def current_user():
    """Return the name (or number) of the user this process runs as."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _owner(st):
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    return f"{user}:{group_name(st.st_gid)}"


def _can_read(st, user):
    ids = user_ids(user)
    if ids is None:
        return False
    uid, gid = ids
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IRUSR)
    try:
        groups = os.getgrouplist(user, gid)
    except (OSError, KeyError):
        groups = [gid]
    if st.st_gid in groups:
        return bool(mode & stat.S_IRGRP)
    return bool(mode & stat.S_IROTH)


def write_secret_file(path, data, opts, exclusive=True):
    """
    Write ``data`` (str) to the fleet secret file ``path`` with its documented
    owner and mode: ``root:<group of the master's user>`` ``0640`` when root
    writes it for a master running as another user, else ``0600`` of the
    writer. ``exclusive``: never replace an existing file
    (``FileExistsError``). Returns the mode written.
    """
    mode = 0o600
    ids = user_ids(master_user(opts))
    if os.geteuid() == 0 and ids is not None and ids[0] != 0:
        mode = SECRET_MODE
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        if mode == SECRET_MODE:
            os.fchown(fd, 0, ids[1])
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh_:
            fd = None
            fh_.write(data)
    finally:
        if fd is not None:
            os.close(fd)
    return mode


def check_master_secrets(opts):
    """
    Check the secret files named in the master's ``edge:`` options
    (``shared_secret_file``, ``previous_shared_secret_file``) for a master
    running as its ``user``. Returns a list of messages (empty: all is well);
    see :func:`secret_file_problems`.
    """
    conf = _config.edge_conf(opts, lenient=True)
    user = master_user(opts)
    problems = []
    for option in ("shared_secret_file", "previous_shared_secret_file"):
        path = conf.get(option)
        if isinstance(path, str) and path:
            problems.extend(f"edge:{option}: {p}" for p in secret_file_problems(path, user))
    return problems
