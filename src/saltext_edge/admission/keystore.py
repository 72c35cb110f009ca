"""
Writes into Salt's key store, under a lock, journalled (docs/concepts.rst,
"Crash safety").

* The lock is a file in the PKI directory, shared by masters on one key
  store. A waiter logs who holds it and gives up after ``edge:lock_timeout``
  seconds with :class:`~saltext_edge.admission.policy.AdmissionError`.
* With Salt's own key files a pending key is accepted by moving the very
  file judged (:func:`accept_pending`): never missing, at worst pending and
  accepted at once after a kill, which recovery finishes.
* Through Salt's key-store API (rejections, other key stores) a key's old
  entry is deleted before the new one is written, so a process killed in
  between loses the key. Each chunk's changes are
  journalled (bank ``edge_admission/intents``, dropped once the chunk is
  announced), and the one key being written is named in an in-flight marker
  that is cleared as soon as the write returns. Recovery restores only that
  key, and only as *pending* (the state it had), so the next decision
  re-checks the policy; it never re-creates a key an operator removed, and
  it only announces journalled changes that are still in place.
"""

import contextlib
import fcntl
import json
import logging
import os
import socket
import stat
import time

from saltext_edge import fsperm as _fsperm
from saltext_edge import pki_paths as _paths
from saltext_edge.admission import files as _files
from saltext_edge.admission import stores as _stores
from saltext_edge.admission.policy import AdmissionError
from saltext_edge.memo import Memo

log = logging.getLogger(__name__)

# a journal entry of another host is left alone while younger than this
FOREIGN_JOURNAL_AGE = 600
# after this long a waiter says whom it waits for
WAIT_NOTICE = 1.0


def key_obj(opts):
    """Return ``salt.key.Key(opts)``."""
    import salt.key

    return salt.key.Key(opts)


def _edge_path(keyobj, name):
    """Return ``name(opts)``, a :mod:`saltext_edge.pki_paths` path, with ``<pki_dir>/edge`` created (:mod:`.files`)."""
    # only the two options the files need: copying Salt's options (an
    # OptsDict) costs milliseconds, and this runs for every key accepted
    opts = {
        "pki_dir": keyobj.pki_dir or keyobj.opts["pki_dir"],
        "user": keyobj.opts.get("user"),
    }
    _files.edge_dir(opts)
    return name(opts)


def _holder_info(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def lock(keyobj, timeout, what="admission"):
    """
    Hold the exclusive key-store lock. Logs who holds it while waiting and
    raises :class:`AdmissionError` after ``timeout`` seconds.
    """
    path = _edge_path(keyobj, _paths.admission_lock)
    fd = _files.open_lock_file(path, keyobj.opts)
    try:
        start = time.monotonic()
        noticed = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    info = _holder_info(fd)
                    raise AdmissionError(
                        f"the key-store lock {path} is held by {_describe(info)}; gave up after "
                        f"{timeout:g} s (edge:lock_timeout); nothing was changed by this run"
                    ) from None
                if not noticed and waited >= WAIT_NOTICE:
                    noticed = True
                    log.warning(
                        "edge admission: %s (pid %d) is waiting for the key-store lock held by %s",
                        what,
                        os.getpid(),
                        _describe(_holder_info(fd)),
                    )
                time.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        except OSError:
            pass  # a lock opened read-only (left by another user) still locks
        yield
    finally:
        os.close(fd)  # releases the lock


def _describe(info):
    if not info:
        return "another process"
    return (
        f"{str(info.get('what'))[:40]} (pid {info.get('pid')} on "
        f"{str(info.get('host'))[:64]}, since {info.get('since')})"
    )


class _Marker:
    """
    The in-flight marker, open for a whole chunk: :meth:`set` names the key
    about to be written, :meth:`clear` empties it once the write returned.
    Each is a truncate then a write at offset 0 of the one descriptor, the
    same steps as opening it with ``O_TRUNC`` and writing, so a crash leaves
    the marker empty or naming the key exactly as before; only the open and
    close per key are saved (two per key, a tenth of a millisecond to a
    millisecond each on a busy disk). Nothing is fsynced, as before: the
    marker only has to survive the process being killed, not the host
    losing power (the page cache keeps it for the next run).
    """

    def __init__(self, path, opts):
        self.path = path
        self.opts = opts
        self.fd = None

    def _write(self, text):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            _fsperm.hand_to_master(self.fd, self.opts)
        os.ftruncate(self.fd, 0)
        if text:
            os.pwrite(self.fd, text.encode("utf-8"), 0)

    def set(self, minion_id, pub):
        self._write(
            json.dumps(
                {"id": minion_id, "pub": pub, "host": socket.gethostname(), "pid": os.getpid()}
            )
        )

    def clear(self):
        self._write("")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def inflight_marker(keyobj):
    """The in-flight marker of ``keyobj``'s key store, open for a chunk of :func:`set_state` calls."""
    marker = _Marker(_edge_path(keyobj, _paths.admission_inflight), keyobj.opts)
    try:
        yield marker
    finally:
        marker.close()


def set_state(keyobj, minion_id, key, new_state, marker=None):
    """
    Store ``key`` (as read from the key store) with ``new_state``
    (``accepted``, ``rejected`` or ``pending``) and, for the first two, fire
    Salt's own ``salt/key`` event exactly as ``salt.key.Key.change_state``
    does (not ``Key.accept(match_dict=...)``: quadratic at thousands of keys).
    ``marker``: the in-flight marker from :func:`inflight_marker` (opened
    here for this one key when not given).
    """
    if marker is None:
        with inflight_marker(keyobj) as own:
            return set_state(keyobj, minion_id, key, new_state, marker=own)
    key = {"pub": key["pub"], "state": new_state}
    marker.set(minion_id, key["pub"])
    keyobj.cache.store("keys", minion_id, key)
    marker.clear()
    act = {"accepted": "accept", "rejected": "reject"}.get(new_state)
    if act:
        _fire_key_event(keyobj, minion_id, key["pub"], act)
    return True


#: Salt's key files by state, in the order Salt's ``localfs_key`` reads them
_STATE_DIRS = (
    ("rejected", "minions_rejected"),
    ("pending", "minions_pre"),
    ("accepted", "minions"),
)


def _key_files(keyobj, minion_id):
    """
    The directory of Salt's key files when the key store is Salt's own
    ``localfs_key`` files and ``minion_id`` is a plain file name, else None
    (then only Salt's key-store API is used).
    """
    if keyobj.opts.get("keys.cache_driver", "localfs_key") != "localfs_key":
        return None
    if (
        not isinstance(minion_id, str)
        or minion_id in ("", ".", "..")
        or any(c in minion_id for c in "/\\\0")
    ):
        return None
    return keyobj.pki_dir or None


def _open_key_file(path):
    """``(fd, stat)`` of the regular file ``path`` (not through a symlink), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _read_fd(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def read_key(keyobj, minion_id):
    """
    Return ``minion_id``'s key as Salt's key store has it (``{"pub",
    "state"}``, ``{}`` when there is none), read the way ``localfs_key``
    reads it (rejected, then pending, then accepted; a symlink is not a
    key) without its per-call path checks, which cost more than the read
    under a storm; through Salt's key-store API for any other store.
    """
    root = _key_files(keyobj, minion_id)
    if root is None:
        return keyobj.cache.fetch("keys", minion_id) or {}
    for state, sub in _STATE_DIRS:
        opened = _open_key_file(os.path.join(root, sub, minion_id))
        if opened is not None:
            try:
                return {"state": state, "pub": _read_fd(opened[0])}
            finally:
                os.close(opened[0])
    return {}


def accept_pending(keyobj, minion_id, pub, marker=None):
    """
    Move ``minion_id``'s pending key to accepted, only if the pending key is
    still exactly ``pub`` (the key it was judged on), and fire Salt's
    ``salt/key`` accept event. Returns True when accepted, False when the
    pending key changed or went (nothing is changed then).

    With Salt's ``localfs_key`` files the very file that was read is moved:
    a hard link of the open file's inode is checked to be that inode, renamed
    into ``minions/`` and the pending name removed last, so the key is never
    missing from the store (a run killed in between leaves it both pending
    and accepted; it is decided again at the node's next sign-in) and a key
    put in its place meanwhile is never the one accepted. Any other key
    store goes through Salt's API with the in-flight ``marker``
    (:func:`set_state`), reading the key again right before the write.
    """
    root = _key_files(keyobj, minion_id)
    if root is None or not os.path.isdir(os.path.join(root, "minions")):
        now_key = read_key(keyobj, minion_id)
        if now_key.get("state") != "pending" or now_key.get("pub") != pub:
            return False
        return set_state(keyobj, minion_id, now_key, "accepted", marker=marker)
    pending = os.path.join(root, "minions_pre", minion_id)
    opened = _open_key_file(pending)
    if opened is None:
        return False
    fd, st = opened
    staged = _staged(keyobj, minion_id)
    try:
        if _read_fd(fd) != pub or os.path.lexists(
            os.path.join(root, "minions_rejected", minion_id)
        ):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)  # left by a killed run
        try:
            os.link(pending, staged, follow_symlinks=False)
        except FileNotFoundError:
            return False
        linked = os.lstat(staged)
        if (linked.st_ino, linked.st_dev) != (st.st_ino, st.st_dev):
            os.unlink(staged)
            return False  # replaced between the read and the link
        os.rename(staged, os.path.join(root, "minions", minion_id))
        now = os.lstat(pending) if os.path.lexists(pending) else None
        if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            os.unlink(pending)
    finally:
        os.close(fd)
    _fire_key_event(keyobj, minion_id, pub, "accept")
    return True


def _staged(keyobj, minion_id):
    """Where :func:`accept_pending` links a key before moving it (:func:`.pki_paths.admission_staged`)."""
    return _edge_path(keyobj, lambda opts: _paths.admission_staged(opts, minion_id))


def _fire_key_event(keyobj, minion_id, pub, act):
    """Fire Salt's own ``salt/key`` event for ``act`` as ``salt.key.Key.change_state`` does."""
    import salt.utils.event

    eload = {"result": True, "act": act, "id": minion_id, "pub": pub}
    keyobj.event.fire_event(eload, salt.utils.event.tagify(prefix="key"))


def delete(keyobj, minion_id):
    """Remove ``minion_id``'s key and fire Salt's ``salt/key`` delete event."""
    import salt.utils.event

    keyobj.cache.flush("keys", minion_id)
    keyobj.event.fire_event(
        {"result": True, "act": "delete", "id": minion_id},
        salt.utils.event.tagify(prefix="key"),
    )
    return True


def journal(store, intents):
    """Journal ``intents`` (``{id: {...}}``) for a chunk; return the entry key (None if nothing)."""
    if not intents:
        return None
    key = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}"
    store.store(_stores.INTENTS_BANK, key, intents)
    return key


def _run_alive(entry_key):
    try:
        stamp, rest = entry_key.split("-", 1)
        host, pid = rest.rsplit("-", 1)
        pid = int(pid)
        stamp = int(stamp) / 1e9
    except ValueError:
        return False
    if host != socket.gethostname():
        return time.time() - stamp < FOREIGN_JOURNAL_AGE
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(store, keyobj):
    """
    Finish what a killed run left: call with the lock held. Returns
    ``(done, restored)``: ``done`` is ``{id: entry}`` for journalled changes
    still in place (to be announced again), ``restored`` the ids of keys
    found lost in the middle of a write and put back as *pending*.
    """
    done, restored = {}, []
    marker = _edge_path(keyobj, _paths.admission_inflight)
    inflight = _files.read_json_file(marker) or {}
    for entry_key in store.list(_stores.INTENTS_BANK):
        if _run_alive(entry_key):
            continue  # a live run's chunk: it announces it itself
        intents = store.fetch(_stores.INTENTS_BANK, entry_key) or {}
        for minion_id, intent in intents.items():
            if intent.get("state") == "accepted" and _finish_move(keyobj, minion_id, intent):
                log.warning(
                    "edge admission: finished accepting %s, interrupted after the key was "
                    "written (it was pending and accepted at once)",
                    minion_id,
                )
            now_key = read_key(keyobj, minion_id)
            if (
                not now_key
                and inflight.get("id") == minion_id
                and inflight.get("pub") == intent.get("pub")
            ):
                keyobj.cache.store("keys", minion_id, {"pub": intent["pub"], "state": "pending"})
                restored.append(minion_id)
                log.warning(
                    "edge admission: the key of %s was lost by an interrupted run; restored it "
                    "as pending, to be decided again",
                    minion_id,
                )
            elif now_key.get("state") == intent.get("state") and now_key.get("pub") == intent.get(
                "pub"
            ):
                done[minion_id] = {
                    k: intent.get(k) for k in ("decision", "reason", "site", "admitted_by")
                }
                done[minion_id]["action"] = intent["state"]
        store.flush(_stores.INTENTS_BANK, entry_key)
    if inflight:
        _files.write_marker(marker, "", keyobj.opts)
    edge_dir = _edge_path(keyobj, _paths.root)
    for name in os.listdir(edge_dir):
        if name.startswith(
            _paths.STAGED_PREFIX
        ):  # linked, not yet moved: the pending key is intact
            _files.remove_file(os.path.join(edge_dir, name))
    return done, restored


def _finish_move(keyobj, minion_id, intent):
    """
    Finish an :func:`accept_pending` killed between its rename and its
    removal of the pending name (both names then hold the one file): remove
    the pending name and fire Salt's accept event the killed run did not.
    True when it did.
    """
    root = _key_files(keyobj, minion_id)
    if root is None:
        return False
    pending = os.path.join(root, "minions_pre", minion_id)
    accepted = os.path.join(root, "minions", minion_id)
    try:
        if not os.path.samefile(pending, accepted) or os.path.islink(pending):
            return False
        with open(accepted, encoding="utf-8") as fh_:
            if fh_.read() != intent.get("pub"):
                return False
        os.unlink(pending)
    except OSError:
        return False
    _fire_key_event(keyobj, minion_id, intent["pub"], "accept")
    return True


def _close_event(objs):
    """Close the key object's event connection, if one was opened, when it
    is replaced or before the interpreter tears its modules down (else Salt
    prints a traceback)."""
    keyobj = objs[1]
    if "event" in keyobj.__dict__:  # a cached_property, only if created
        with contextlib.suppress(Exception):  # best effort on the way out
            keyobj.event.destroy()


_OBJECTS = Memo(per_thread=True, close=_close_event)


def objects(opts):
    """
    Return ``(cache, keyobj)`` for ``opts``, built once per thread and reused
    while ``opts`` is the same (building Salt's cache and key loaders costs
    tens of milliseconds; the reactor calls us once per sign-in).
    """
    return _OBJECTS.get((opts,), lambda: (_stores.cache(opts), key_obj(opts)))
