"""
The library's errors and the one rule that shapes them for Salt.

* :class:`EdgeError` is the root of every error class of the library; each
  one that means "bad input" is also a ``ValueError`` (``TokenError``,
  ``SecretError``, ``EdgeConfigError``, ``ProbeArgumentError``, ...), so an
  ``except ValueError`` keeps catching it.
* :func:`edge_errors` is the one decorator for runner, wheel and execution
  module functions, with one rule for ``TypeError``: a call that does not
  fit the signature is the caller's error (with a usage hint); a
  ``TypeError`` raised inside is ours (an internal error, traceback logged).
  :func:`command_errors` is that decorator for runners.
"""

import functools
import inspect
import logging

import salt.exceptions

log = logging.getLogger(__name__)


class EdgeError(Exception):
    """The root of the library's errors. The message never holds a secret."""


#: what a function's caller did wrong: Salt's own errors (``SaltInvocationError``
#: is a ``TypeError`` too, and is the caller's) and every ``ValueError``, the
#: library's bad-input errors included. Any other ``TypeError`` is ours.
USER_ERRORS = (salt.exceptions.SaltException, ValueError)


class EdgeCommandError(
    EdgeError, salt.exceptions.CommandExecutionError, salt.exceptions.NotImplemented
):
    """
    An error of an ``edge`` runner or wheel function (a bad argument, no
    usable secret, file exists, bad policy). A ``CommandExecutionError`` for
    Python callers; also a ``salt.exceptions.NotImplemented`` only because
    that is the one exception class Salt's runner/wheel client renders as its
    message instead of a traceback (``salt/client/mixins.py``,
    ``SyncClientMixin.low``); like every exception but a ``TypeError`` there
    it sets ``retcode`` 1, so ``salt-run`` exits 1 (:func:`command_errors`).
    The message never holds a secret.
    """


def edge_errors(error=None, usage="salt-run -d {name}", log_place="the master's log"):
    """
    Return a decorator that makes every bad input of an ``edge`` function end
    as ``error`` (:class:`EdgeCommandError` by default) with a one-line
    message naming the function (``edge.node: ...``):

    * arguments that do not fit the signature (a missing argument, too
      many), with ``(usage: <usage>)``: Salt's runner client would catch the
      ``TypeError`` of the call and return the usage text as a *successful*
      return (exit 0);
    * :data:`USER_ERRORS`: ``SaltInvocationError`` (a ``TypeError`` too, so
      that same ``except TypeError`` would make it a successful return), any
      other ``SaltException`` and every ``ValueError`` (the library's
      ``TokenError``, ``SecretError``, ``AdmissionError``, ...), which Salt
      would print as a traceback. Their traceback goes to the log at debug
      level.

    Any other ``TypeError`` raised inside is a fault of ours, not of the
    caller's input: it ends as ``edge.<fn>: internal error ...`` naming
    ``log_place`` (never a usage text with exit 0) and its traceback is
    logged at error level. Other exceptions pass through.

    An execution module passes ``error=CommandExecutionError``,
    ``usage="salt-call sys.doc {name}"`` and ``log_place="the minion's log"``;
    a wheel function its own usage hint. ``functools.wraps`` keeps the name,
    the docstring and (through ``__wrapped__``) the signature Salt's loader
    and the docs read.
    """
    error = EdgeCommandError if error is None else error

    def decorate(func):
        name = f"edge.{func.__name__}"
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise error(f"{name}: {exc} (usage: {usage.format(name=name)})") from None
            try:
                return func(*args, **kwargs)
            except USER_ERRORS as exc:
                log.debug("%s failed", name, exc_info=True)
                message = " ".join(str(exc).split())
                if not message.startswith(name):
                    message = f"{name}: {message}"
                raise error(message) from None
            except TypeError as exc:
                log.error("%s failed with an internal error", name, exc_info=True)
                raise error(
                    f"{name}: internal error ({type(exc).__name__}); the traceback is in {log_place}"
                ) from None

        return wrapper

    return decorate


#: :func:`edge_errors` for runner functions: every bad input ends as
#: :class:`EdgeCommandError`, which ``salt-run`` prints as one line and exits 1 for
command_errors = edge_errors()
