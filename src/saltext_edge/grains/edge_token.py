"""
Grain ``edge_token``: the minion's admission token (docs/design.rst, "Admission by pre-shared token").

``"v1:" + site + ":" + hex(HMAC-SHA256(K_site, "saltext-edge:v1:token\\n" +
minion_id + "\\n" + sha256_hex(DER SPKI of the minion public key)))``

Configured with ``edge: {site: NAME, site_key | site_key_file |
shared_secret | shared_secret_file}`` in the minion config and sent to the
master with ``autosign_grains: [edge_token]``. Absent when unconfigured.

With ``edge: {enrollment_key | enrollment_key_file}`` (an enrollment key,
docs/enrollment.rst) the token is the v2 one, ``"v2:" + site + ":" +
enrollment_id + ":" + mac``; the site comes from the key (an ``edge:site``
naming another site stops the token, and the log says why). An enrollment
key wins over a site key when both are set.

Grains load before the minion creates its key pair, so on the very first
start of a brand-new minion this grain creates ``pki_dir/minion.pem`` (mode
0400) and ``pki_dir/minion.pub`` itself, in the layout Salt 3006/3007/3008
use (traditional OpenSSL RSA private key PEM, SubjectPublicKeyInfo public key
PEM, ``keysize`` from the config); the minion then simply finds and uses them.

Never raises; never logs the key, the secret or the token.
"""

import logging
import os

log = logging.getLogger(__name__)

__virtualname__ = "edge_token"


def __virtual__():
    return __virtualname__


def _lib():
    # installed package, or the copy synced to _utils/ (on sys.path while
    # Salt loads synced grains)
    from saltext_edge import shared_secret as _secrets
    from saltext_edge import tokens as _token

    return _secrets, _token


def _edge(opts):
    """The minion's ``edge:`` view (:func:`saltext_edge.config.minion_edge`); ``None`` without the library."""
    try:
        from saltext_edge import config as _config
    except ImportError:
        log.warning("edge_token: the saltext_edge library is not available")
        return None
    return _config.minion_edge(opts)


def _chown(path, user):
    if not user or os.name != "posix":
        return
    try:
        import pwd

        uid = pwd.getpwnam(user).pw_uid
        if os.geteuid() == 0 and uid != 0:
            os.chown(path, uid, -1)
    except (KeyError, ImportError, OSError):
        pass


def _ensure_keys(opts):
    """
    Return the minion's public key PEM (bytes), creating the key pair the way
    Salt would when it does not exist yet.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from saltext_edge import fileio as _fileio

    pki_dir = opts["pki_dir"]
    priv_path = os.path.join(pki_dir, "minion.pem")
    pub_path = os.path.join(pki_dir, "minion.pub")
    if not os.path.exists(priv_path):
        if not os.path.isdir(pki_dir):
            os.makedirs(pki_dir, mode=0o700, exist_ok=True)
        keysize = int(opts.get("keysize") or 2048)
        key = rsa.generate_private_key(public_exponent=65537, key_size=keysize)
        priv_pem = key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.TraditionalOpenSSL,
            encryption_algorithm=serialization.NoEncryption(),
        )
        pub_pem = key.public_key().public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        try:
            # private key first, exclusively: if another process won the race
            # we use its pair, never overwrite it
            _fileio.atomic_write(priv_path, priv_pem, 0o400, exclusive=True)
        except FileExistsError:
            pass
        else:
            _fileio.atomic_write(pub_path, pub_pem, 0o644)
            user = opts.get("user")
            _chown(priv_path, user)
            _chown(pub_path, user)
            log.info("edge_token: generated the minion key pair in %s", pki_dir)
    if os.path.exists(pub_path):
        with open(pub_path, "rb") as fh_:
            return fh_.read()
    # a private key without its public half: derive it (what Salt would send
    # is then broken anyway, but the token stays bound to the real key)
    with open(priv_path, "rb") as fh_:
        key = serialization.load_pem_private_key(fh_.read(), password=None)
    return key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def edge_token():
    """
    Return ``{"edge_token": "v1:<site>:<mac>"}`` (``"v2:<site>:<enrollment
    id>:<mac>"`` with an enrollment key), or ``{}`` when the minion is
    not configured for admission or the token cannot be computed (the reason
    is logged without secret material).
    """
    opts = __opts__
    edge = _edge(opts)
    if edge is None or not edge.admission:
        return {}
    enrolling = edge.enrolling
    if opts.get("__role") not in (None, "minion"):
        return {}
    try:
        _secrets, _token = _lib()
    except ImportError:
        log.warning("edge_token: the saltext_edge library is not available")
        return {}
    try:
        if enrolling:
            from saltext_edge import enrollment as _enr

            key_text = _secrets.minion_enrollment_key(opts)
            minion_id = opts.get("id")
            if key_text is None or not isinstance(minion_id, str) or not minion_id:
                return {}
            pub = _ensure_keys(opts)
            return {"edge_token": _enr.make_token(key_text, minion_id, _token.pubkey_digest(pub))}
        found = _secrets.minion_site_key(opts)
        if found is None:
            return {}
        site, k_site = found
        minion_id = opts.get("id")
        if not isinstance(minion_id, str) or not minion_id:
            return {}
        pub = _ensure_keys(opts)
        return {"edge_token": _token.make_token(k_site, site, minion_id, _token.pubkey_digest(pub))}
    except (_secrets.SecretError, _token.TokenError) as exc:
        log.error("edge_token: not computed: %s", exc)
    except Exception as exc:
        # never let a grain break the minion start; no traceback (it could
        # show local variables in some log setups)
        log.error("edge_token: not computed: %s", exc.__class__.__name__)
    return {}
