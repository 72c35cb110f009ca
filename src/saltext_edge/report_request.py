"""
One ``salt-run edge.report`` / ``edge.node`` request: its arguments checked
before any work (the runner passes them as typed on the command line), the
report built with progress events (:mod:`saltext_edge.report`) and, with
``html=PATH``, written as the fleet page (:mod:`saltext_edge.view.page`).

A bad argument or an unwritable page raises :class:`ReportError`, a bad
``edge:fleet`` setting the ``ValueError`` of :mod:`saltext_edge.fleet.conf`:
both one-line messages.
"""

import errno
import logging
import os

from saltext_edge import node_report as _node_report
from saltext_edge import report as _report
from saltext_edge.errors import EdgeError


class ReportError(EdgeError, ValueError):
    """A report cannot be made as asked (bad argument, page not written); one line, what to change."""


def _is_true(value):
    import salt.utils.data

    return salt.utils.data.is_true(value)


def check_html(html):
    """Return ``html`` (an absolute file path in an existing directory) or raise."""
    if html is None:
        return None
    if not isinstance(html, str) or not os.path.isabs(html) or html.endswith(os.sep):
        raise ReportError("html must be an absolute file path, such as /srv/www/edge/fleet.html")
    if not os.path.isdir(os.path.dirname(html)):
        raise ReportError(f"html: the directory {os.path.dirname(html)} does not exist")
    return html


def check_timeout(timeout):
    """Return ``timeout`` as whole seconds 1-3600, ``None`` for the master's default, or raise."""
    if timeout is None:
        return None
    try:
        timeout = int(timeout)
    except (TypeError, ValueError):
        raise ReportError("timeout must be a whole number of seconds") from None
    if not 1 <= timeout <= 3600:
        raise ReportError("timeout must be 1-3600 seconds")
    return timeout


def _who():
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _write_error(html, exc):
    message = f"cannot write the fleet page {html}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        # salt-run started as root switches to the master's user (salt/cli/run.py,
        # check_user(opts["user"])) before the runner runs
        message += (
            f" (salt-run runs as the master's user {_who()!r}: give {_who()!r} write access"
            f" to {os.path.dirname(html)}, or write the page elsewhere)"
        )
    return ReportError(message)


class _SaltCliLeakFilter:
    """Drops Salt 3008's "unclosed Runner/MasterMinion ... destroy()" records (see :func:`_quiet_salt_cli`)."""

    @staticmethod
    def filter(record):
        msg = str(record.msg)
        return not (msg.startswith("unclosed ") and "call ``destroy()``" in msg)


def _quiet_salt_cli():
    """
    Keep a cron run of ``salt-run ... quiet=True`` quiet: Salt 3008.4's
    ``salt-run`` never destroys its ``Runner`` and ``MasterMinion``
    (``salt/cli/run.py``), so their finalizers log "unclosed ... call
    ``destroy()``" at WARNING at every exit (``salt/utils/resource_warnings.py``),
    after the console handler is gone too (Python's last-resort handler
    prints them on stderr). Only those records are dropped, on the two
    loggers that emit them; every other warning and error still shows.
    """
    leak = _SaltCliLeakFilter()
    for name in ("salt.runner", "salt.minion", "salt.utils.resource_warnings"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _SaltCliLeakFilter) for f in logger.filters):
            logger.addFilter(leak)


def run(opts, ping=False, site=None, timeout=None, details=False, html=None, quiet=False):
    """
    ``salt-run edge.report``: check the arguments, build the report (progress
    events on the master bus) and return it; with ``html`` write the page
    (every node listed, atomically: nothing half-written) and return only
    ``html``, ``generated_at``, ``answered_by``, ``totals`` and ``summary``
    (and ``warning``).

    ``quiet`` (for cron): return ``""`` (nothing is printed, exit 0) when the
    report was made from the running engine (and the page written); raise
    :class:`ReportError` (one line, exit 1) when it was not, or when no
    engine answered (then the page is still written, from the stored record).
    """
    quiet = _is_true(quiet)
    if quiet:
        _quiet_salt_cli()
    html = check_html(html)
    timeout = check_timeout(timeout)
    progress = _report.event_progress(opts)
    try:
        ret = _report.build(
            opts,
            ping=_is_true(ping),
            site=None if site in (None, "") else str(site),
            timeout=timeout,
            details=html is not None or _is_true(details),
            progress=progress,
        )
    finally:
        progress.close()
    if html is not None:
        from saltext_edge.view import page as _page

        try:
            path = _page.write(ret, html)
        except OSError as exc:
            raise _write_error(html, exc) from None
        ret = {
            "html": path,
            **{
                k: ret[k]
                for k in ("generated_at", "answered_by", "warning", "totals", "summary")
                if k in ret
            },
        }
    if not quiet:
        return ret
    if ret.get("warning"):
        done = f"page {html} written, but " if html else ""
        raise ReportError(done + ret["warning"])
    return ""


def node(opts, minion_id):
    """``salt-run edge.node``: one node's record and history, or raise when the master knows nothing of it."""
    if not isinstance(minion_id, str) or not minion_id:
        raise ReportError("give one minion id")
    ret = _node_report.node(opts, minion_id)
    if ret is None:
        raise ReportError(f"no key and no record for {minion_id!r}")
    return ret
