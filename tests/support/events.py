"""Master events as salt-factories' ``event_listener`` fixture records them."""

from tests.support.waits import wait_until


def events(listener, master, tag, after, pred=None):
    """All events ``tag`` (fnmatch) on ``master`` after ``after`` whose data match ``pred``, oldest first."""
    found = [
        e
        for e in listener.get_events([(master.id, tag)], after_time=after)
        if pred is None or pred(e.data)
    ]
    return sorted(found, key=lambda e: e.stamp)


def wait_event(listener, master, tag, after, timeout, pred=None):
    """
    Wait (:func:`~tests.support.waits.wait_until`) for an event ``tag``
    (fnmatch) on ``master`` after ``after`` whose data match ``pred``.

    Returns the oldest such event; raises ``AssertionError`` when none came.
    """
    found = wait_until(
        lambda: events(listener, master, tag, after, pred),
        timeout,
        interval=0.2,
        what=f"event {tag} on {master.id}",
    )
    return found[0]
