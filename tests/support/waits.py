"""The one poll-until-true helper of the test suite."""

import time

#: how many times ``timeout`` :func:`wait_until` waits at most: the timeouts
#: are sized for a machine to ourselves, and ``./dev test`` runs four workers
#: on two cores (each wait returns as soon as its predicate holds, so only a
#: failing test waits longer)
PATIENCE = 3


def wait_until(predicate, timeout, *, interval=0.25, what=None, retry_on=()):
    """
    Call ``predicate`` every ``interval`` seconds until it returns something
    truthy, for at most ``timeout`` times :data:`PATIENCE` seconds.

    An exception of a class in ``retry_on`` (a server not listening yet)
    counts as "not yet"; any other exception propagates.

    Returns the first truthy value. On timeout: raises ``AssertionError``
    naming ``what`` and the last value when ``what`` is given, else returns
    the last (falsy) value, for ``assert wait_until(...), message``.
    """
    deadline = time.monotonic() + timeout * PATIENCE
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            value = None
            last = exc
        else:
            last = value
            if value:
                return value
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(
                    f"timed out after {timeout * PATIENCE:g} s waiting for {what} (last: {last!r})"
                )
            return value
        time.sleep(interval)
