"""
Batched admission for the ``salt/auth`` reactor (docs/concepts.rst; measured
in ``bench/bench_storm.py``, docs/benchmarks.rst).

The shipped reactor SLS calls :func:`submit` for every ``salt/auth`` event of
a pending key that carries an ``edge_token``. :func:`submit` records the token
at once (one cache read, and one write when it is new) and, when the master
has ``edge: {auto_admit: true}``, queues the minion id for this process's
admitter thread. The thread lets a burst gather for :data:`WINDOW` seconds and
then decides everything queued in one :func:`~saltext_edge.admission.decide_and_act`
call: one key-store lock and one journal entry per chunk of 100 keys, not per
minion.

Why not one wheel job per event (what the reactor did before): Salt's wheel
client costs about 120 ms per job on a 2-core master (a new event
connection, a job-cache write, two job events), and the reactor runs them on
10 threads sharing one GIL. An auth storm of 100 brand-new minions took 12 s
just to *record* their tokens that way, against 1.7 s recorded in the
reactor itself (``bench/bench_storm.py``). Batching also means one
key-store lock per chunk instead of one per minion.

Nothing is lost when the reactor process dies with ids still queued: the
token is already recorded, and a pending minion signs in again every
``acceptance_wait_time``, which queues it again.
"""

import logging
import threading
import time

from saltext_edge import admission, fsperm
from saltext_edge import shared_secret as _secrets

log = logging.getLogger(__name__)

# seconds a burst of sign-ins is left to gather before it is decided
WINDOW = 0.1


class Admitter:
    """
    A queue of pending minion ids and one daemon thread that decides them in
    batches with :func:`saltext_edge.admission.decide_and_act` (auto mode).
    """

    def __init__(self, opts, window=WINDOW):
        self.opts = opts
        self.window = window
        self._cond = threading.Condition()
        self._queued = set()
        self._thread = threading.Thread(target=self._loop, name="edge-admitter", daemon=True)
        self._thread.start()

    def put(self, minion_id):
        """Queue ``minion_id`` for the next batch (a no-op if already queued)."""
        with self._cond:
            self._queued.add(minion_id)
            self._cond.notify()

    def _loop(self):
        while True:
            with self._cond:
                while not self._queued:
                    self._cond.wait()
            # let the rest of the burst arrive; everything queued meanwhile
            # (also while the previous batch was being decided) goes together
            time.sleep(self.window)
            with self._cond:
                ids, self._queued = self._queued, set()
            self._decide(sorted(ids))

    def _decide(self, ids):
        log.info(
            "edge admission: deciding %d pending minion(s) queued by the reactor in one batch",
            len(ids),
        )
        try:
            secrets = _secrets.master_secrets(self.opts)
            admission.decide_and_act(self.opts, ids=ids, secrets=secrets)
        except (_secrets.SecretError, admission.AdmissionError) as exc:
            # fail closed; the minions stay pending and are queued again at
            # their next sign-in
            log.error("edge admission: not admitting %d pending minion(s): %s", len(ids), exc)
        except Exception as exc:
            log.error(
                "edge admission: deciding %d pending minion(s) failed (%s: %s); "
                "they are decided again at their next sign-in",
                len(ids),
                type(exc).__name__,
                exc,
            )


_ADMITTER = None
_ADMITTER_LOCK = threading.Lock()


def admitter(opts):
    """Return this process's :class:`Admitter`, started on first use."""
    global _ADMITTER
    with _ADMITTER_LOCK:
        if _ADMITTER is None:
            # at start: the secret file's owner and mode (fsperm; names file, user, fix)
            for problem in fsperm.check_master_secrets(opts):
                log.error("edge admission: %s", problem)
            _ADMITTER = Admitter(opts)
        return _ADMITTER


def submit(opts, minion_id, pub, token, act="pend"):
    """
    Handle the data of one ``salt/auth`` event without waiting for a
    decision: :func:`saltext_edge.admission.dispatch` (every field is
    hostile; the token is recorded only for the key the key store holds
    pending for the id, or, for ``act: denied``, only when it admits the key
    presented) and, in auto mode, queue the id for this process's admitter
    thread.

    Returns ``"queued"``, ``"recorded"`` (manual admission: wait for
    ``salt-run edge.accept_pending``) or one of the other
    :func:`saltext_edge.admission.sign_in` statuses (``"refused_before"``,
    ``"kept_better"``, ``"not_pending"``, ``"unproven"``, ``"ignored"``,
    ``"bad_id"``, ``"bad_pub"``, ``"no_token_seen"``), ``"bad_policy"``,
    ``"no_secret"`` or ``"error"`` (the cache failed). Never the token.

    CLI Example:

    .. code-block:: bash

        # called by the shipped reactor SLS; by hand, on the master:
        python3 -c 'import salt.config; from saltext_edge import admitter; \\
            print(admitter.submit(salt.config.master_config("/etc/salt/master"), \\
            "edge-1", open("edge-1.pub").read(), "v1:site-a:..."))'
    """

    def _queue(mid):
        admitter(opts).put(mid)
        return "queued"

    try:
        outcome, queued = admission.dispatch(opts, minion_id, pub, token, act, "reactor", _queue)
    except admission.AdmissionError as exc:
        log.error("edge admission: not admitting a sign-in: %s", exc)
        return "bad_policy"
    except _secrets.SecretError as exc:
        log.error("edge admission: not admitting a sign-in: %s", exc)
        return "no_secret"
    except Exception as exc:
        # the reactor would log a traceback; the minion signs in again soon
        log.error("edge admission: cannot handle a sign-in (%s)", type(exc).__name__)
        log.debug("edge admission: the sign-in failed here", exc_info=True)
        return "error"
    if queued:
        return queued
    return "recorded" if outcome.status in ("recorded",) else outcome.status
