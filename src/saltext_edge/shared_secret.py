"""
Loading of the fleet secret (master) and of the site key (minion) for
admission by pre-shared token (docs/configuration.rst, docs/howto/rotate-secret.rst).

Master, first source found wins (current secret):

1. ``edge: {shared_secret_file: PATH}``
2. ``edge: {shared_secret: VALUE}``
3. the environment variable ``SALT_SHARED_SECRET``

and, optionally, a previous secret accepted during rotation:
``edge: {previous_shared_secret_file: PATH}`` or
``edge: {previous_shared_secret: VALUE}``, which needs an end:
``edge: {previous_shared_secret_expires: 2026-12-31T00:00:00Z}`` (ISO 8601,
UTC); after it the previous secret verifies nothing.

Fail closed: a source that is configured but unreadable, empty, shorter
than 16 characters, a known placeholder or not random enough (estimated
under 128 bits, :func:`strength_bits`) is an error (:class:`SecretError`); it never silently
falls through to the next source. Error messages name the *source* (option
name, file path, environment variable) and never the value.

Minion, first source found wins: ``edge: {site_key | site_key_file |
shared_secret | shared_secret_file}``, with ``edge: {site: NAME}``.

Keep this module free of Salt imports: it is also shipped to minions through
``_utils/`` and used by the ``edge_token`` grain on Salt 3006/3007/3008.
"""

import datetime
import logging
import math
import os
import re

from saltext_edge import config as _config
from saltext_edge import tokens as _token
from saltext_edge.errors import EdgeError

log = logging.getLogger(__name__)

ENV_VAR = "SALT_SHARED_SECRET"
MIN_SECRET_LEN = _token.MIN_SECRET_LEN
# secrets and keys are short; refuse to slurp a huge file by mistake
MAX_FILE_BYTES = 64 * 1024
MIN_SECRET_BITS = 128
NEW_SECRET_HINT = "make one with: saltext-edge new-secret (or: openssl rand -hex 32)"
# placeholders and examples (case-insensitive substrings): the example
# Secret of deploy/kubernetes/, the docs' examples, the usual fill-ins
PLACEHOLDERS = re.compile(
    r"replace|change[-_ ]?me|example|placeholder|your[-_ ]?(fleet[-_ ]?)?secret|"
    r"edgefleet|not[-_ ]?for[-_ ]?production|at[-_ ]?least[-_ ]?16",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]{3,}|[A-Z][a-z]{2,}|[A-Z]{3,}")


class SecretError(EdgeError, ValueError):
    """
    A secret or site key is missing, unreadable or too weak. The message
    names where it was looked for, never the secret itself.
    """


def _edge_conf(opts):
    return _config.edge_conf(opts, error=SecretError)


def _read_secret_file(path, source):
    if not isinstance(path, str) or not path:
        raise SecretError(f"{source} must be a file path")
    try:
        with open(path, "rb") as fh_:
            data = fh_.read(MAX_FILE_BYTES + 1)
    except PermissionError as exc:
        # owner/mode hint for a master running as a non-root user (fsperm)
        try:
            from saltext_edge import fsperm
        except ImportError:  # no pwd/grp on this platform
            fsperm = None
        if fsperm is not None:
            user = fsperm.current_user()
            raise SecretError(
                f"cannot read {source} {path!r} as user {user}: {exc.strerror}; "
                f"the documented owner and mode: {fsperm.secret_file_fix(path, user)}"
            ) from None
        raise SecretError(f"cannot read {source} {path!r}: {exc.strerror}") from None
    except OSError as exc:
        raise SecretError(
            f"cannot read {source} {path!r}: {exc.strerror or exc.__class__.__name__}"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise SecretError(f"{source} {path!r} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretError(f"{source} {path!r} is not UTF-8 text") from None


def _check_secret(value, source):
    if value is None:
        raise SecretError(f"{source} is empty")
    if not isinstance(value, str):
        # YAML may turn an all-digit secret into an int: refuse rather than
        # guess how it was written
        raise SecretError(f"{source} must be a string (quote it in YAML)")
    value = value.strip()
    if not value:
        raise SecretError(f"{source} is empty")
    if len(value) < MIN_SECRET_LEN:
        raise SecretError(f"{source} is shorter than {MIN_SECRET_LEN} characters")
    return value


def strength_bits(value):
    """
    Return a conservative estimate, in bits, of how hard ``value`` is to
    guess: per character ``log2`` of the alphabet its character classes span
    (16 for hexadecimal), except that a run of three or more letters counts
    as one word (13 bits, a diceware word) and a character one code point
    from (or equal to) the one before counts 1 bit; the total is capped by
    the string's length times its Shannon entropy per character.
    """
    if not value:
        return 0.0
    if re.fullmatch(r"[0-9a-f]+|[0-9A-F]+", value):
        alphabet = 16
    else:
        alphabet = 0
        for pattern, size in (("[a-z]", 26), ("[A-Z]", 26), ("[0-9]", 10)):
            if re.search(pattern, value):
                alphabet += size
        if re.search(r"[^a-zA-Z0-9]", value):
            alphabet += 33
    per_char = math.log2(alphabet)
    bits = 0.0
    pos = 0
    prev = None
    while pos < len(value):
        word = _WORD.match(value, pos) if alphabet != 16 else None
        if word:
            bits += min(13.0, per_char * len(word.group()))
            pos = word.end()
            prev = value[pos - 1]
            continue
        char = value[pos]
        bits += 1.0 if prev is not None and abs(ord(char) - ord(prev)) <= 1 else per_char
        prev = char
        pos += 1
    counts = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    shannon = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
    return min(bits, shannon * len(value))


def check_strength(value, source):
    """Raise :class:`SecretError` when ``value`` is a placeholder or estimated under 128 bits."""
    if PLACEHOLDERS.search(value):
        raise SecretError(
            f"{source} is a placeholder or an example, not a secret; {NEW_SECRET_HINT}"
        )
    bits = strength_bits(value)
    if bits < MIN_SECRET_BITS:
        raise SecretError(
            f"{source} is not random enough (about {int(bits)} bits estimated, at least "
            f"{MIN_SECRET_BITS} needed); {NEW_SECRET_HINT}"
        )
    return value


def _master_secret(value, source):
    return check_strength(_check_secret(value, source), source)


def _current_secret(conf, environ):
    """Return ``(secret, source)`` or raise SecretError."""
    if conf.get("shared_secret_file") is not None:
        source = "edge:shared_secret_file"
        return (
            _master_secret(_read_secret_file(conf["shared_secret_file"], source), source),
            source,
        )
    if "shared_secret" in conf:
        source = "edge:shared_secret"
        return _master_secret(conf["shared_secret"], source), source
    if ENV_VAR in environ:
        source = f"environment variable {ENV_VAR}"
        return _master_secret(environ[ENV_VAR], source), source
    raise SecretError(
        "no shared secret configured: set edge:shared_secret_file, edge:shared_secret "
        f"or the environment variable {ENV_VAR} on the master; admitting nothing"
    )


def previous_expiry(conf):
    """
    Return the end of the rotation window, ``edge:previous_shared_secret_expires``,
    as an aware UTC datetime. Raises :class:`SecretError` when missing or not a date.
    """
    value = conf.get("previous_shared_secret_expires")
    where = "edge:previous_shared_secret_expires"
    if value is None:
        raise SecretError(
            f"a previous shared secret needs {where} (ISO 8601 date or time, UTC): "
            "the rotation window must end; admitting nothing"
        )
    if isinstance(value, datetime.datetime):
        when = value
    elif isinstance(value, datetime.date):
        when = datetime.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SecretError(f"{where} is not an ISO 8601 date or time") from None
    else:
        raise SecretError(f"{where} must be an ISO 8601 date or time, not a {type(value).__name__}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


_warned_expired = set()


def _previous_secret(conf, now=None):
    if conf.get("previous_shared_secret_file") is not None:
        source = "edge:previous_shared_secret_file"
        value = _master_secret(
            _read_secret_file(conf["previous_shared_secret_file"], source), source
        )
    elif conf.get("previous_shared_secret") is not None:
        value = _master_secret(conf["previous_shared_secret"], "edge:previous_shared_secret")
    else:
        return None
    expires = previous_expiry(conf)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now >= expires:
        if expires not in _warned_expired:
            _warned_expired.add(expires)
            log.warning(
                "edge admission: the previous shared secret expired at %s and verifies nothing; "
                "remove it from the master configuration",
                expires.isoformat(),
            )
        return None
    return value


def master_secrets(opts, environ=None):
    """
    Return the list of fleet secrets the master verifies against: the current
    secret first, then the previous one if configured (rotation).

    Raises :class:`SecretError` (message without the secret) when no secret is
    configured or a configured one is unreadable, empty, too short, a
    placeholder or not random enough, or when a previous secret has no
    expiry. An expired previous secret is left out (and logged once).
    """
    conf = _edge_conf(opts)
    environ = os.environ if environ is None else environ
    current, _ = _current_secret(conf, environ)
    secrets = [current]
    previous = _previous_secret(conf)
    if previous is not None and previous != current:
        secrets.append(previous)
    return secrets


def master_secret_source(opts, environ=None):
    """
    Return the name of the source the current secret comes from (never the
    value), e.g. ``"edge:shared_secret_file"``. Raises :class:`SecretError`.
    """
    conf = _edge_conf(opts)
    environ = os.environ if environ is None else environ
    return _current_secret(conf, environ)[1]


def master_site_key(opts, site, environ=None):
    """
    Return ``K_site`` for ``site`` under the master's current secret.

    Raises :class:`SecretError` or :class:`saltext_edge.tokens.TokenError`
    (bad site name); neither message contains secret material.
    """
    _token.validate_site(site)
    return _token.site_key(master_secrets(opts, environ=environ)[0], site)


def minion_site_key(opts):
    """
    Return ``(site, K_site)`` from the minion configuration, or ``None`` when
    the minion is not configured for admission (no ``edge:site`` or no key
    source).

    Sources, first found wins: ``edge:site_key``, ``edge:site_key_file``,
    ``edge:shared_secret``, ``edge:shared_secret_file`` (the last two derive
    ``K_site`` from the fleet secret). Raises :class:`SecretError` or
    :class:`saltext_edge.tokens.TokenError` when configured but unusable.
    """
    conf = _edge_conf(opts)
    site = conf.get("site")
    sources = ("site_key", "site_key_file", "shared_secret", "shared_secret_file")
    if site is None or not any(conf.get(name) is not None for name in sources):
        return None
    if not isinstance(site, str):
        raise _token.TokenError("bad_site", "edge:site must be a string")
    _token.validate_site(site)
    if conf.get("site_key") is not None:
        value = conf["site_key"]
        if not isinstance(value, str):
            raise SecretError("edge:site_key must be a string (quote it in YAML)")
        try:
            return site, _token.validate_site_key(value)
        except _token.TokenError:
            raise SecretError("edge:site_key is not 64 hexadecimal characters") from None
    if conf.get("site_key_file") is not None:
        value = _read_secret_file(conf["site_key_file"], "edge:site_key_file")
        try:
            return site, _token.validate_site_key(value)
        except _token.TokenError:
            raise SecretError(
                f"edge:site_key_file {conf['site_key_file']!r} does not hold 64 "
                "hexadecimal characters"
            ) from None
    if conf.get("shared_secret") is not None:
        secret = _check_secret(conf["shared_secret"], "edge:shared_secret")
    else:
        source = "edge:shared_secret_file"
        secret = _check_secret(_read_secret_file(conf["shared_secret_file"], source), source)
    return site, _token.site_key(secret, site)


def minion_enrollment_key(opts):
    """
    Return the enrollment key string from the minion configuration
    (``edge:enrollment_key``, else the file ``edge:enrollment_key_file``),
    or ``None`` when neither is set (docs/enrollment.rst).

    Raises :class:`SecretError` when configured but unusable, and also when
    ``edge:site`` is set to another site than the key's (the message names
    both sites, never the key).
    """
    from saltext_edge import enrollment as _enr

    conf = _edge_conf(opts)
    if conf.get("enrollment_key") is not None:
        value, source = conf["enrollment_key"], "edge:enrollment_key"
        if not isinstance(value, str):
            raise SecretError("edge:enrollment_key must be a string (quote it in YAML)")
    elif conf.get("enrollment_key_file") is not None:
        source = "edge:enrollment_key_file"
        value = _read_secret_file(conf["enrollment_key_file"], source)
    else:
        return None
    try:
        site = _enr.parse_key(value)[0]
    except _enr.EnrollmentError:
        raise SecretError(
            f"{source} is not an enrollment key ('edge-enroll:v2:SITE:ID:KEY')"
        ) from None
    configured = conf.get("site")
    if configured is not None and configured != site:
        raise SecretError(
            f"{source} is for site {site!r} but edge:site is {str(configured)[:64]!r}; "
            "not making a token (remove edge:site or use a key of that site)"
        )
    return value.strip()


def node_site(opts):
    """
    Return this node's site, the one answer for the ``edge_site`` grain and
    the heartbeat: ``edge:site`` when set (``None`` when it is not a valid
    site name), else the site of the node's enrollment key
    (docs/enrollment.rst), else ``None``. Never raises; never logs the key.
    """
    configured = _config.minion_edge(opts).site
    if configured is not None:
        return (
            configured if isinstance(configured, str) and _token.SITE_RE.match(configured) else None
        )
    if not _config.minion_edge(opts).enrolling:
        return None
    from saltext_edge import enrollment as _enr

    try:
        key_text = minion_enrollment_key(opts)
        return _enr.parse_key(key_text)[0] if key_text else None
    except Exception:  # the edge_token grain logs why (without the key)
        return None
