"""
Signed heartbeats (see ``docs/ref/engine.rst``, "Signs of life and trust").

Any accepted minion can put any event with any data on the master's bus
(``_minion_event`` with an ``events`` list is forwarded as is, for every tag
but a short blacklist), so the id inside an event proves nothing. A
heartbeat therefore carries an RSA signature made with the minion's own key
(``pki_dir/minion.pem``); the engine checks it against the public key the
master has ACCEPTED for the id the heartbeat names. Another minion cannot
make a heartbeat for that id, and a heartbeat for a pending, rejected or
deleted key is refused.

The signature covers the canonical JSON of every field but ``sig`` (sorted
keys, no spaces), prefixed with :data:`DOMAIN` so that it cannot be replayed
as anything else. PKCS#1 v1.5 with SHA-256 (``cryptography``, a Salt
dependency). Nothing here logs key material or signatures.
"""

import base64
import binascii
import collections
import hmac
import json
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

DOMAIN = b"saltext-edge heartbeat v1\n"
#: how long a fetched public key is trusted before it is read again (seconds);
#: the engine also forgets a key at once on a ``salt/key`` event for its id
KEY_TTL = 3600.0
#: ids whose accepted key is kept at most: twice the largest fleet the
#: docs promise (20,000 nodes in the report)
MAX_KEYS = 40000
#: ids without an accepted key remembered at most, and for how long (seconds)
MAX_ABSENT = 1024
ABSENT_TTL = 30.0
#: longest public key read (an RSA-4096 PEM is about 800 characters)
MAX_PEM = 16384


#: fields the signature does not cover: the signature itself, and the time
#: stamp Salt's event bus adds to an event's data (a heartbeat sent in a
#: ``_minion_event`` list is its data)
UNSIGNED = ("sig", "_stamp")


def canonical(payload):
    """Return the bytes the signature covers: :data:`DOMAIN` + canonical JSON of ``payload`` minus :data:`UNSIGNED`."""
    body = {k: v for k, v in payload.items() if k not in UNSIGNED}
    return (
        DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    )


def _crypto():

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    return hashes, serialization, padding


class Signer:
    """Signs heartbeats with the minion's private key (loaded once, lazily)."""

    def __init__(self, pem_path):
        self.pem_path = pem_path
        self._key = None
        self._mtime = None

    def _load(self):
        _, serialization, _ = _crypto()
        mtime = os.stat(self.pem_path).st_mtime
        if self._key is None or mtime != self._mtime:
            with open(self.pem_path, "rb") as fh_:
                self._key = serialization.load_pem_private_key(fh_.read(), password=None)
            self._mtime = mtime
        return self._key

    def sign(self, payload):
        """Return ``payload`` with ``sig`` (base64 text) added. Raises ``OSError``/``ValueError`` when the key is unusable."""
        hashes, _, padding = _crypto()
        sig = self._load().sign(canonical(payload), padding.PKCS1v15(), hashes.SHA256())
        return dict(payload, sig=base64.b64encode(sig).decode("ascii"))


def minion_signer(opts):
    """Return a :class:`Signer` for the minion key in ``opts['pki_dir']``."""
    return Signer(os.path.join(opts["pki_dir"], "minion.pem"))


def load_public(pub_pem):
    """Return the public key object of ``pub_pem`` (PEM text or bytes); raises ``ValueError`` when malformed."""
    _, serialization, _ = _crypto()
    return serialization.load_pem_public_key(
        pub_pem.encode() if isinstance(pub_pem, str) else pub_pem
    )


def verify_with_key(key, payload):
    """Return ``True`` when ``payload['sig']`` is a valid signature of ``payload`` by the public key object ``key``."""
    hashes, _, padding = _crypto()
    sig = payload.get("sig")
    if not isinstance(sig, str) or len(sig) > 2048:
        return False
    try:
        raw = base64.b64decode(sig.encode("ascii"), validate=True)
        key.verify(raw, canonical(payload), padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:
        # InvalidSignature, a malformed signature or payload: all the same answer
        return False


def verify_with_pem(pub_pem, payload):
    """Return ``True`` when ``payload['sig']`` is a valid signature of ``payload`` by ``pub_pem`` (PEM text)."""
    try:
        key = load_public(pub_pem)
    except Exception:
        return False
    return verify_with_key(key, payload)


def shown(value, limit=64):
    """
    Return ``value`` quoted for a log line: ``repr`` of at most ``limit``
    characters (control characters escaped, so it cannot forge a log
    record), with ``...`` and the full length when it was cut.
    """
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}...({len(value)} chars)"


class KeyRing:
    """
    The master's accepted public keys, read through Salt's key cache
    (``keys.cache_driver``, bank ``keys``). ``fetch(id)`` returns the PEM
    of the accepted key or ``None``.

    Bounded (see ``docs/ref/engine.rst``, "Memory and log bounds"): at most
    ``max_keys`` ids with a key (:data:`MAX_KEYS`, least recently used
    dropped first), each kept ``ttl`` seconds (:data:`KEY_TTL`) with its
    parsed key; at most ``max_absent`` ids without one
    (:data:`MAX_ABSENT`), each kept ``absent_ttl`` seconds
    (:data:`ABSENT_TTL`). Callers check the id first
    (:func:`saltext_edge.fleet.evidence.valid_id`).
    """

    def __init__(
        self,
        opts,
        fetch=None,
        ttl=KEY_TTL,
        clock=time.monotonic,
        max_keys=None,
        max_absent=None,
        absent_ttl=None,
    ):
        self.opts = opts
        self._fetch = fetch
        self.ttl = ttl
        self.clock = clock
        self.max_keys = max_keys or MAX_KEYS
        self.max_absent = max_absent or MAX_ABSENT
        self.absent_ttl = ABSENT_TTL if absent_ttl is None else absent_ttl
        # id -> (pem, parsed key or None, fetched at); most recently used last
        self._keys = collections.OrderedDict()
        # id -> fetched at, for ids with no accepted key
        self._absent = collections.OrderedDict()
        self._lock = threading.Lock()
        self._cache = None
        self.reads = 0

    def _read(self, minion_id):
        self.reads += 1
        if self._fetch is not None:
            return self._fetch(minion_id)
        driver = self.opts.get("keys.cache_driver") or "localfs_key"
        pki = self.opts.get("pki_dir")
        if driver == "localfs_key" and pki:
            # what the localfs_key driver reads for an accepted key, without
            # its per-call path resolution; an id that is not a plain file
            # name never matches
            if "/" in minion_id or "\0" in minion_id or minion_id.startswith("."):
                return None
            path = os.path.join(pki, "minions", minion_id)
            if os.path.islink(path):
                return None
            try:
                with open(path, encoding="utf-8") as fh_:
                    return fh_.read(MAX_PEM + 1)[:MAX_PEM] or None
            except (FileNotFoundError, NotADirectoryError):
                return None
        if self._cache is None:
            import salt.cache

            self._cache = salt.cache.Cache(
                self.opts, driver=self.opts.get("keys.cache_driver") or "localfs_key"
            )
        entry = self._cache.fetch("keys", minion_id)
        if isinstance(entry, dict) and entry.get("state") == "accepted" and entry.get("pub"):
            return entry["pub"]
        return None

    def _entry(self, minion_id, refresh=False):
        """Return ``(pem, key object or None)`` of ``minion_id`` (``(None, None)`` when it has no accepted key)."""
        now = self.clock()
        with self._lock:
            if not refresh:
                hit = self._keys.get(minion_id)
                if hit is not None and now - hit[2] < self.ttl:
                    self._keys.move_to_end(minion_id)
                    return hit[0], hit[1]
                absent = self._absent.get(minion_id)
                if absent is not None and now - absent < self.absent_ttl:
                    return None, None
        try:
            pem = self._read(minion_id)
        except Exception as exc:
            # the id was checked before this (never a raw id in a log line)
            log.warning(
                "edge_fleet: cannot read the key of %s: %s",
                shown(minion_id),
                exc.__class__.__name__,
            )
            pem = None
        if not isinstance(pem, str) or not pem:
            self._remember_absent(minion_id, now)
            return None, None
        try:
            obj = load_public(pem)
        except Exception:
            obj = None
        with self._lock:
            self._absent.pop(minion_id, None)
            self._keys[minion_id] = (pem, obj, now)
            self._keys.move_to_end(minion_id)
            self._prune(self._keys, now, self.ttl, self.max_keys, lambda v: v[2])
        return pem, obj

    def _remember_absent(self, minion_id, now):
        with self._lock:
            self._keys.pop(minion_id, None)
            self._absent[minion_id] = now
            self._absent.move_to_end(minion_id)
            self._prune(self._absent, now, self.absent_ttl, self.max_absent, lambda v: v)

    @staticmethod
    def _prune(entries, now, ttl, cap, stamp):
        while len(entries) > cap:
            entries.popitem(last=False)
        # the oldest use first: drop what has expired from the front
        while entries:
            first = next(iter(entries.values()))
            if now - stamp(first) < ttl:
                break
            entries.popitem(last=False)

    def get(self, minion_id, refresh=False):
        """Return the accepted public key PEM for ``minion_id`` or ``None``."""
        return self._entry(minion_id, refresh)[0]

    def sizes(self):
        """Return ``(ids with a key, ids without one)`` held now."""
        with self._lock:
            return len(self._keys), len(self._absent)

    def forget(self, minion_id=None):
        """Drop the cached key (or absence) of ``minion_id`` (everything when ``None``)."""
        with self._lock:
            if minion_id is None:
                self._keys.clear()
                self._absent.clear()
            else:
                self._keys.pop(minion_id, None)
                self._absent.pop(minion_id, None)

    def verify(self, payload):
        """
        Return ``True`` when ``payload`` is signed by the accepted key of
        ``payload['id']``. A failure re-reads the key once (it may have been
        re-accepted since it was cached).
        """
        minion_id = payload.get("id")
        if not isinstance(minion_id, str) or not minion_id:
            return False
        pem, obj = self._entry(minion_id)
        if obj is not None and verify_with_key(obj, payload):
            return True
        fresh, fresh_obj = self._entry(minion_id, refresh=True)
        if fresh_obj is not None and not (pem and hmac.compare_digest(str(fresh), str(pem))):
            return verify_with_key(fresh_obj, payload)
        return False


def b64_ok(text):
    """Return ``True`` when ``text`` is valid base64 (used in tests of the wire shape)."""
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
        return True
    except (binascii.Error, ValueError, AttributeError):
        return False
