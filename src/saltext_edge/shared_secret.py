"""
Loading of the fleet secret (master) and of the site key (minion) for
admission by pre-shared token (DESIGN.md §3).

Master, first source found wins (current secret):

1. ``edge: {shared_secret_file: PATH}``
2. ``edge: {shared_secret: VALUE}``
3. the environment variable ``SALT_SHARED_SECRET``

and, optionally, a previous secret accepted during rotation:
``edge: {previous_shared_secret_file: PATH}`` or
``edge: {previous_shared_secret: VALUE}``.

Fail closed: a source that is configured but unreadable, empty or shorter
than 16 characters is an error (:class:`SecretError`); it never silently
falls through to the next source. Error messages name the *source* (option
name, file path, environment variable) and never the value.

Minion, first source found wins: ``edge: {site_key | site_key_file |
shared_secret | shared_secret_file}``, with ``edge: {site: NAME}``.

Keep this module free of Salt imports: it is also shipped to minions through
``_utils/`` and used by the ``edge_token`` grain on Salt 3006/3007/3008.
"""

import os

from saltext_edge import tokens as _token

ENV_VAR = "SALT_SHARED_SECRET"
MIN_SECRET_LEN = _token.MIN_SECRET_LEN
# secrets and keys are short; refuse to slurp a huge file by mistake
MAX_FILE_BYTES = 64 * 1024


class SecretError(ValueError):
    """
    A secret or site key is missing, unreadable or too weak. The message
    names where it was looked for, never the secret itself.
    """


def _edge_conf(opts):
    conf = (opts or {}).get("edge")
    if conf is None:
        return {}
    if not isinstance(conf, dict):
        raise SecretError("the 'edge' configuration option must be a mapping")
    return conf


def _read_secret_file(path, source):
    if not isinstance(path, str) or not path:
        raise SecretError(f"{source} must be a file path")
    try:
        with open(path, "rb") as fh_:
            data = fh_.read(MAX_FILE_BYTES + 1)
    except PermissionError as exc:
        # owner/mode hint for a master running as a non-root user (fsperm)
        try:
            from saltext_edge import fsperm  # pylint: disable=import-outside-toplevel
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


def _current_secret(conf, environ):
    """Return ``(secret, source)`` or raise SecretError."""
    if conf.get("shared_secret_file") is not None:
        source = "edge:shared_secret_file"
        return (
            _check_secret(_read_secret_file(conf["shared_secret_file"], source), source),
            source,
        )
    if "shared_secret" in conf:
        source = "edge:shared_secret"
        return _check_secret(conf["shared_secret"], source), source
    if ENV_VAR in environ:
        source = f"environment variable {ENV_VAR}"
        return _check_secret(environ[ENV_VAR], source), source
    raise SecretError(
        "no shared secret configured: set edge:shared_secret_file, edge:shared_secret "
        f"or the environment variable {ENV_VAR} on the master; admitting nothing"
    )


def _previous_secret(conf):
    if conf.get("previous_shared_secret_file") is not None:
        source = "edge:previous_shared_secret_file"
        return _check_secret(
            _read_secret_file(conf["previous_shared_secret_file"], source), source
        )
    if conf.get("previous_shared_secret") is not None:
        return _check_secret(conf["previous_shared_secret"], "edge:previous_shared_secret")
    return None


def master_secrets(opts, environ=None):
    """
    Return the list of fleet secrets the master verifies against: the current
    secret first, then the previous one if configured (rotation).

    Raises :class:`SecretError` (message without the secret) when no secret is
    configured or a configured one is unreadable, empty or too short.
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
