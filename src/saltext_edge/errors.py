"""Exceptions shared by the loader modules."""

import salt.exceptions


class EdgeCommandError(salt.exceptions.CommandExecutionError, salt.exceptions.NotImplemented):
    """
    An operational error of an ``edge`` runner or wheel function (no usable
    secret, file exists, bad policy). A ``CommandExecutionError`` for Python
    callers; also a ``salt.exceptions.NotImplemented`` only because that is
    the one exception class Salt's runner/wheel client renders as its message
    (exit code 1) instead of a traceback, and operators must get a clear
    message. The message never holds a secret.
    """
