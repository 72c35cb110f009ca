"""
Enrollment keys on a master: create one (the key string to a new 0600 file,
the record under the key-store lock), list them, revoke one. The runner
``edge.enrollment_key`` / ``enrollment_keys`` / ``revoke_enrollment`` and the
console script's ``enrollment-key`` call these; the token maths, limits and
records are :mod:`saltext_edge.enrollment` (docs/enrollment.rst).
"""

import datetime
import os

from saltext_edge import enrollment as _enr
from saltext_edge import fileio as _fileio
from saltext_edge import pki_paths as _paths
from saltext_edge import tokens as _token
from saltext_edge.errors import EdgeError

#: the ``status`` of an enrollment in a listing (:func:`listing`)
LISTING_STATUSES = ("active", "expired", "exhausted", "enrollment_revoked")


class KeyFileError(EdgeError, ValueError):
    """A key file cannot be created; the message names the path, never the key."""


def creator(environ=None):
    """
    Return who creates an enrollment, ``user@host``: the ``SUDO_USER`` when
    run through sudo, else the login user (``salt-run`` runs runners in the
    operator's own process, so this is the operator, not the master's user).
    """
    import getpass
    import socket

    environ = os.environ if environ is None else environ
    user = environ.get("SUDO_USER") or environ.get("USER") or environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid:{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:120]


def check_new_path(path):
    """Return ``path`` if it is absolute and nothing exists there, else raise :class:`KeyFileError`."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise KeyFileError("path must be an absolute file path")
    if os.path.lexists(path):
        raise KeyFileError(f"{path} already exists; not overwriting a key file (remove it first)")
    return path


def write_new_file(path, text):
    """
    Write ``text`` and a newline to the NEW file ``path`` (mode 0600, through
    the one atomic writer: an existing file is never overwritten, nothing
    half-written is left). Returns ``path``; raises :class:`KeyFileError` (no
    key material in it).
    """
    try:
        return _fileio.atomic_write(path, (text + "\n").encode("ascii"), 0o600, exclusive=True)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; not overwriting a key file (remove it first)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None


def _lock(opts, what):
    # the key-store lock (shared by masters on one key store): every change
    # of an enrollment record is made under it, like every admission
    from saltext_edge.admission import keystore as _ks
    from saltext_edge.admission.policy import policy

    _, keyobj = _ks.objects(opts)
    return _ks.lock(keyobj, policy(opts)["lock_timeout"], what=what)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).timestamp()


def create(
    opts,
    site,
    path,
    uses=_enr.DEFAULT_USES,
    expires=_enr.DEFAULT_EXPIRES,
    ids=None,
    note=None,
    who=None,
    now=None,
):
    """
    Create an enrollment of ``site`` on the master ``opts`` and write its key
    string to the NEW file ``path`` (0600). The record is stored first, under
    the key-store lock; if the file cannot be written the record is removed.

    Returns the public summary plus ``path`` and ``fingerprint`` (never the
    key). Raises :class:`EnrollmentError` (bad limits), :class:`KeyFileError`
    and :class:`saltext_edge.shared_secret.SecretError`.
    """
    from saltext_edge import shared_secret as _secrets

    if isinstance(uses, str) and uses.strip().isdigit():
        uses = int(uses)
    if note is not None:
        note = str(note)
    now = _now() if now is None else now
    record = _enr.new_record(
        site, uses=uses, expires=expires, ids=ids, note=note, creator=who or creator(), now=now
    )
    check_new_path(path)
    key = _enr.enrollment_key(_secrets.master_secrets(opts)[0], site, record["id"])
    estore = _enr.store(opts)
    with _lock(opts, "edge.enrollment_key"):
        estore.put(record)
    try:
        write_new_file(path, _enr.format_key(site, record["id"], key))
    except KeyFileError:
        try:
            os.unlink(estore._path(record["id"]))
        except OSError:
            pass
        raise
    ret = _enr.summary(record, now)
    ret.update(path=path, fingerprint=_token.key_fingerprint(key))
    return ret


def listing(opts, now=None, site=None, status=None):
    """
    Return the public summary of every enrollment (oldest first), see
    :func:`saltext_edge.enrollment.summary`; only those whose site matches
    the glob ``site`` and whose status is ``status`` when given.
    """
    import fnmatch

    if status is not None and status not in LISTING_STATUSES:
        raise _enr.EnrollmentError(
            "bad_status", f"status must be one of {', '.join(LISTING_STATUSES)}"
        )
    now = _now() if now is None else now
    out = [_enr.summary(r, now) for r in _enr.store(opts).all()]
    if site is not None:
        out = [e for e in out if fnmatch.fnmatchcase(e["site"], str(site))]
    if status is not None:
        out = [e for e in out if e["status"] == status]
    return out


def write_site_key(opts, site, path=None):
    """
    Write the site key of ``site`` (from the master's current fleet secret)
    to the NEW file ``path`` (0600; default ``<pki_dir>/edge/sites/<site>.key``)
    for provisioning. Everything is checked before anything is created; the
    key is never returned. Returns ``{"site", "path", "fingerprint"}``;
    raises :class:`saltext_edge.tokens.TokenError` (bad site),
    :class:`KeyFileError` and :class:`saltext_edge.shared_secret.SecretError`.
    """
    from saltext_edge import shared_secret as _secrets

    _token.validate_site(site)
    default = path is None
    if default:
        path = _paths.site_key_file(opts, site)
    check_new_path(path)
    k_site = _secrets.master_site_key(opts, site)
    if default:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_new_file(path, k_site)
    return {"site": site, "path": path, "fingerprint": _token.key_fingerprint(k_site)}


def revoke(opts, enr_id, now=None):
    """
    End enrollment ``enr_id`` now (under the key-store lock). Nodes it
    admitted keep their keys. Returns its summary; raises
    :class:`EnrollmentError` (``enrollment_unknown``) for an unknown id.
    """
    _enr.validate_id(enr_id)
    now = _now() if now is None else now
    with _lock(opts, "edge.revoke_enrollment"):
        record = _enr.store(opts).revoke(enr_id, now)
    if record is None:
        raise _enr.EnrollmentError("enrollment_unknown", f"no enrollment {enr_id}")
    return _enr.summary(record, now)
