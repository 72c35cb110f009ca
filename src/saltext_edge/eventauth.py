"""
Events only the master's own processes can make (``docs/howto/site-goes-dark.rst``,
"Why a forged event pages nobody").

Any accepted minion can put any tag with any data on the master's event bus
(Salt 3008: ``salt/daemons/masterapi.py``, ``_minion_event``; with a
``pretag`` even the tags on the minion blacklist), so neither a tag
namespace nor an ``id`` inside the data proves who fired an event. The
events the ``edge_fleet`` engine fires (and the runner's ``edge/fleet/proven``)
therefore carry a MAC: HMAC-SHA256 with a 32-byte key that only the master's
processes can read, over a domain string, the tag, the issue time and the
canonical JSON of the data (every field but the MAC itself and Salt's
``_stamp``). :func:`verify` checks it in constant time and refuses anything
older than :data:`MAX_AGE_S` or more than :data:`MAX_AHEAD_S` in the future.

The key lives in ``<pki_dir>/edge/event.key`` (mode 0600, the master's
user; the directory 0700). Whichever master process needs it first creates
it, exclusively (a second creator reads the first one's), so masters sharing
a key store share the key. It is never logged, fired or returned; on a
minion (another ``pki_dir``) there is no key and nothing verifies.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time

from saltext_edge import pki_paths as _paths
from saltext_edge.errors import EdgeError
from saltext_edge.memo import Memo

log = logging.getLogger(__name__)

#: the field a sealed event's data carries: ``{"at": <ms>, "mac": <base64>}``
FIELD = "edge_seal"
DOMAIN = b"saltext-edge event v1\n"
KEY_BYTES = 32
#: a sealed event is refused when it is older than this (seconds): a reactor
#: far behind pages late rather than never; a leaked event replays only this long
MAX_AGE_S = 600.0
#: or issued this far ahead of the verifier's clock (masters sharing the key)
MAX_AHEAD_S = 60.0
_MAX_MAC_CHARS = 64

#: an unreadable key is logged at most once in this many seconds
ERROR_EVERY_S = 300.0

_KEY = Memo()
_last_error = [float("-inf")]


class EventKeyError(EdgeError):
    """The event key cannot be read or created (the message names the file, never the key)."""


def _read(path):
    st = os.stat(path)
    return _KEY.get((path, st.st_ino, st.st_mtime_ns, st.st_size), lambda: _read_file(path))


def _read_file(path):
    with open(path, "rb") as fh_:
        raw = fh_.read(KEY_BYTES + 1)
    if len(raw) != KEY_BYTES:
        raise EventKeyError(f"{path} is not an event key ({KEY_BYTES} bytes)")
    return raw


def load_key(opts, create=False):
    """
    Return the event key (bytes) of the master ``opts``, or ``None`` when
    there is none and ``create`` is false. With ``create`` a missing key is
    made (random, exclusive create, 0600, the master's user). Raises
    :class:`EventKeyError` when the file exists but cannot be read or is
    malformed, or cannot be created.
    """
    from saltext_edge import fileio, fsperm

    path = _paths.event_key(opts)
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise EventKeyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        fsperm.private_dir(os.path.dirname(path), opts)
        fileio.atomic_write(
            path,
            secrets.token_bytes(KEY_BYTES),
            0o600,
            exclusive=True,
            owner=lambda fd: fsperm.hand_to_master(fd, opts),
        )
        log.info("edge: created the event key %s", path)
    except FileExistsError:
        pass  # another master process made it first: use theirs
    except OSError as exc:
        raise EventKeyError(f"cannot create {path}: {exc.strerror}") from None
    try:
        return _read(path)
    except OSError as exc:
        raise EventKeyError(f"cannot read {path}: {exc.strerror}") from None


def _message(tag, at_ms, data):
    body = {k: v for k, v in data.items() if k not in (FIELD, "_stamp")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return b"".join((DOMAIN, tag.encode("utf-8"), b"\n", str(at_ms).encode(), b"\n", text.encode()))


def _mac(key, tag, at_ms, data):
    return hmac.new(key, _message(tag, at_ms, data), hashlib.sha256).digest()


def seal_with(key, tag, data, now=None):
    """Return a copy of ``data`` with :data:`FIELD` set: the MAC of ``tag`` and ``data`` under ``key``."""
    at_ms = int(round((time.time() if now is None else now) * 1000))
    mac = _mac(key, tag, at_ms, data)
    return dict(data, **{FIELD: {"at": at_ms, "mac": base64.b64encode(mac).decode("ascii")}})


def seal(opts, tag, data, now=None):
    """
    Return a copy of ``data`` (a dict of JSON values) sealed for ``tag`` with
    the master's event key (created when missing). Raises
    :class:`EventKeyError` when there is no usable key.
    """
    return seal_with(load_key(opts, create=True), tag, data, now=now)


def verify_with(key, tag, data, now=None, max_age=MAX_AGE_S):
    """
    Return ``True`` when ``data`` carries a valid seal of ``tag`` under
    ``key``, issued at most ``max_age`` seconds ago (and no more than
    :data:`MAX_AHEAD_S` ahead); ``False`` for anything else, malformed
    input included.
    """
    if not key or not isinstance(tag, str) or not isinstance(data, dict):
        return False
    seal_ = data.get(FIELD)
    if not isinstance(seal_, dict):
        return False
    at_ms, mac = seal_.get("at"), seal_.get("mac")
    if type(at_ms) is not int or not isinstance(mac, str) or len(mac) > _MAX_MAC_CHARS:
        return False
    age = (time.time() if now is None else now) - at_ms / 1000.0
    if not -MAX_AHEAD_S <= age <= max_age:
        return False
    try:
        given = base64.b64decode(mac.encode("ascii"), validate=True)
        expected = _mac(key, tag, at_ms, data)
    except (ValueError, TypeError, UnicodeError):
        return False
    return hmac.compare_digest(given, expected)


def verify(opts, tag, data, now=None, max_age=MAX_AGE_S):
    """
    Return ``True`` when ``data`` is an event ``tag`` sealed by a process of
    this master (see :func:`verify_with`). Never creates the key: where there
    is none (a minion, a master that never sealed) nothing verifies. A key
    that cannot be read counts as none (logged without its content).
    """
    if not hasattr(opts, "get") or not opts.get("pki_dir"):
        return False  # (a loader's __opts__ is a mapping proxy, not a dict)
    try:
        key = load_key(opts, create=False)
    except EventKeyError as exc:
        # every event verified would log this: once per ERROR_EVERY_S at most
        stamp = time.monotonic()
        if stamp - _last_error[0] >= ERROR_EVERY_S:
            _last_error[0] = stamp
            log.error("edge: events cannot be verified: %s", exc)
        return False
    return verify_with(key, tag, data, now=now, max_age=max_age)
