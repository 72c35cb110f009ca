"""Exceptions shared by the loader modules, and the one place runner errors are shaped."""

import functools
import inspect
import logging

import salt.exceptions

log = logging.getLogger(__name__)


class EdgeCommandError(salt.exceptions.CommandExecutionError, salt.exceptions.NotImplemented):
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


def command_errors(func):
    """
    Decorate an ``edge`` runner function so that every bad input ends as
    :class:`EdgeCommandError` with a one-line message naming the function
    (``edge.node: ...``), which ``salt-run`` prints and exits 1 for:

    * arguments that do not fit the signature (a missing argument, too
      many): Salt's runner client would catch the ``TypeError`` of the call
      and return the usage text as a *successful* return (exit 0);
    * ``SaltInvocationError``: it is a ``TypeError`` too, so that same
      ``except TypeError`` would turn it into a successful return (exit 0);
    * any other ``SaltException`` and the library's errors, every one a
      ``ValueError`` (``TokenError``, ``SecretError``, ``AdmissionError``,
      ``KeyFileError``, ...), which it would print as a traceback.

    Their traceback goes to the log at debug level. Any other ``TypeError``
    raised inside is a fault of ours, not of the caller's input: it ends as
    ``edge.<fn>: internal error ...`` (still exit 1, never Salt's usage text
    with exit 0) and its traceback is logged at error level.

    ``functools.wraps`` keeps the name, the docstring and (through
    ``__wrapped__``) the signature Salt's loader and the docs read.
    """
    name = f"edge.{func.__name__}"
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise EdgeCommandError(f"{name}: {exc} (usage: salt-run -d {name})") from None
        try:
            return func(*args, **kwargs)
        except (salt.exceptions.SaltException, ValueError) as exc:
            log.debug("%s failed", name, exc_info=True)
            message = " ".join(str(exc).split())
            if not message.startswith(name):
                message = f"{name}: {message}"
            raise EdgeCommandError(message) from None
        except TypeError as exc:
            log.error("%s failed with an internal error", name, exc_info=True)
            raise EdgeCommandError(
                f"{name}: internal error ({type(exc).__name__}); the traceback is in the master's log"
            ) from None

    return wrapper
