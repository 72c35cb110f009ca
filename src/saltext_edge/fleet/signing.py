"""
Signed heartbeats (see ``docs/ref/engine.rst``, "Trust").

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


def canonical(payload):
    """Return the bytes the signature covers: :data:`DOMAIN` + canonical JSON of ``payload`` minus ``sig``."""
    body = {k: v for k, v in payload.items() if k != "sig"}
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


class KeyRing:
    """
    The master's accepted public keys, read through Salt's key cache
    (``keys.cache_driver``, bank ``keys``) and kept :data:`KEY_TTL` seconds.
    ``fetch(id)`` returns the PEM of the accepted key or ``None``.
    """

    def __init__(self, opts, fetch=None, ttl=KEY_TTL, clock=time.monotonic):
        self.opts = opts
        self._fetch = fetch
        self.ttl = ttl
        self.clock = clock
        self._keys = {}
        # parsed key objects, by PEM (parsing costs more than verifying)
        self._objs = {}
        self._lock = threading.Lock()
        self._cache = None

    def _read(self, minion_id):
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
                    return fh_.read() or None
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

    def get(self, minion_id, refresh=False):
        """Return the accepted public key PEM for ``minion_id`` or ``None``."""
        now = self.clock()
        with self._lock:
            hit = self._keys.get(minion_id)
            if hit is not None and not refresh and now - hit[1] < self.ttl:
                return hit[0]
        try:
            pem = self._read(minion_id)
        except Exception as exc:
            log.warning(
                "edge_fleet: cannot read the key of %s: %s", minion_id, exc.__class__.__name__
            )
            pem = None
        with self._lock:
            self._keys[minion_id] = (pem, now)
        return pem

    def forget(self, minion_id=None):
        """Drop the cached key of ``minion_id`` (all keys when ``None``)."""
        with self._lock:
            if minion_id is None:
                self._keys.clear()
            else:
                self._keys.pop(minion_id, None)

    def verify(self, payload):
        """
        Return ``True`` when ``payload`` is signed by the accepted key of
        ``payload['id']``. A failure re-reads the key once (it may have been
        re-accepted since it was cached).
        """
        minion_id = payload.get("id")
        if not isinstance(minion_id, str) or not minion_id:
            return False
        pem = self.get(minion_id)
        if pem and self._verify(pem, payload):
            return True
        fresh = self.get(minion_id, refresh=True)
        if fresh and not (pem and hmac.compare_digest(str(fresh), str(pem))):
            return self._verify(fresh, payload)
        return False

    def _verify(self, pem, payload):
        key = self._objs.get(pem)
        if key is None:
            try:
                key = load_public(pem)
            except Exception:
                return False
            if len(self._objs) > 100000:
                self._objs.clear()
            self._objs[pem] = key
        return verify_with_key(key, payload)


def b64_ok(text):
    """Return ``True`` when ``text`` is valid base64 (used in tests of the wire shape)."""
    try:
        base64.b64decode(text.encode("ascii"), validate=True)
        return True
    except (binascii.Error, ValueError, AttributeError):
        return False
