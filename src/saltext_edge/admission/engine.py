"""
The admission engine (``engines: [edge_admission]``, docs/concepts.rst,
"The admission engine"): admission at the speed of a storm of new nodes.

It reads ``salt/auth`` from the master's event bus in its own process (no
reactor, no SLS rendered per event), lets a burst gather for
:data:`WINDOW` seconds and handles it as one batch (:func:`handle_batch`):
every sign-in goes through the one entry for hostile sign-in data
(:func:`saltext_edge.admission.signin.sign_in`) and the batch is decided by
the one decision run (:func:`saltext_edge.admission.decision.decide_and_act`):
one key-store lock per batch, each key read once under it and judged with
the one rule (every token checked in constant time against the key the
store holds), every decision journalled, stored and evented as on every
other path. Nothing here decides anything itself.

Several engine processes can share the work (``workers``/``worker``: each
takes the ids whose CRC-32 falls to it, they share the key-store lock);
docs/benchmarks.rst says what that buys on two cores.
"""

import collections
import datetime
import logging
import time
import zlib

from saltext_edge import shared_secret as _secrets
from saltext_edge.admission import decision as _decision
from saltext_edge.admission import signin as _signin
from saltext_edge.admission.policy import AdmissionError

log = logging.getLogger(__name__)

#: seconds a burst of sign-ins is left to gather before it is handled
WINDOW = 0.05
#: at most this many ids per decision run: one decision chunk, one lock
MAX_BATCH = _decision.CHUNK
#: at most this many events are taken off the bus for one round of batches
MAX_DRAIN = 20000
#: the engine's name in the master's ``engines`` list
NAME = "edge_admission"


class Accepted:
    """
    The ids this engine accepted and when (epoch seconds), kept
    :data:`ACCEPTED_TTL` seconds and at most :data:`ACCEPTED_MAX` ids: a
    ``salt/auth`` event the master fired *before* that moment (its
    ``_stamp``, which Salt's ``fire_event`` sets itself, also on an event a
    minion forwards) is a retry that piled up while the key was pending, and
    is dropped unread. A later one (the key deleted and pending again) is
    handled as any other. Dropping an event never admits anything.
    """

    def __init__(self):
        self.when = {}

    def note(self, ids, now=None):
        """Remember that ``ids`` were accepted at ``now``."""
        now = time.time() if now is None else now
        for minion_id in ids:
            self.when.pop(minion_id, None)
            self.when[minion_id] = now
        if len(self.when) > ACCEPTED_MAX or (
            self.when and now - next(iter(self.when.values())) > ACCEPTED_TTL
        ):
            self.when = {m: t for m, t in self.when.items() if now - t <= ACCEPTED_TTL}
            while len(self.when) > ACCEPTED_MAX:
                self.when.pop(next(iter(self.when)))

    def stale(self, minion_id, data):
        """True when ``data`` (a ``salt/auth`` event) was fired before this engine accepted ``minion_id``."""
        accepted = self.when.get(minion_id)
        if accepted is None:
            return False
        try:
            fired = datetime.datetime.fromisoformat(data["_stamp"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return False
        return fired < accepted


#: how long (seconds) and how many ids :class:`Accepted` keeps
ACCEPTED_TTL = 300
ACCEPTED_MAX = 50000


def engine_configured(opts):
    """True when the master options ``opts`` start the admission engine (by name or ``engine_module``)."""
    for entry in (opts or {}).get("engines") or ():
        if entry == NAME:
            return True
        if isinstance(entry, dict):
            for name, conf in entry.items():
                module = conf.get("engine_module") if isinstance(conf, dict) else None
                if (module or name) == NAME:
                    return True
    return False


def check_options(worker=0, workers=1, window=WINDOW):
    """
    Return ``(worker, workers, window)`` checked (``0 <= worker < workers
    <= 8``, ``0 < window <= 1``), else raise :class:`AdmissionError` with a
    one-line message.
    """
    for name, value in (("worker", worker), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise AdmissionError(f"edge_admission: {name} must be a whole number")
    if not 1 <= workers <= 8 or not 0 <= worker < workers:
        raise AdmissionError("edge_admission: need 1 <= workers <= 8 and 0 <= worker < workers")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window <= 1:
        raise AdmissionError("edge_admission: window must be more than 0 and at most 1 second")
    return worker, workers, float(window)


def takes(minion_id, worker, workers):
    """True when engine process ``worker`` of ``workers`` handles sign-ins of ``minion_id``."""
    return workers == 1 or zlib.crc32(minion_id.encode("utf-8", "replace")) % workers == worker


def _sign_ins(events, worker=0, workers=1, accepted=None):
    """
    ``{id: [(pub, token, act), ...]}`` from ``salt/auth`` event data: only
    ``pend``/``denied`` with string id, key and token, exact repeats
    dropped, in arrival order. (Values are unchecked: :func:`sign_in` checks
    them.)
    """
    seen = set()
    by_id = collections.defaultdict(list)
    for data in events:
        minion_id, pub, token, act = _signin.token_from_auth_event(data)
        if act not in ("pend", "denied") or not all(
            isinstance(v, str) and v for v in (minion_id, pub, token)
        ):
            continue
        if not takes(minion_id, worker, workers):
            continue
        if accepted is not None and accepted.stale(minion_id, data):
            continue
        key = (minion_id, pub, token, act)
        if key in seen:
            continue
        seen.add(key)
        by_id[minion_id].append((pub, token, act))
    return by_id


def handle_batch(opts, events, worker=0, workers=1, accepted=None):
    """
    Handle a batch of ``salt/auth`` event data (hostile, unchecked): exact
    repeats dropped (a pending minion signs in again every
    ``acceptance_wait_time``; under a storm its repeats pile up behind the
    batch being decided), the ids taken :data:`MAX_BATCH` at a time. An id
    with one sign-in in the batch is signed in with ``defer`` (its key is
    read once, under the lock, by the decision run, which decides only when
    it is the very key presented); an id with several different sign-ins
    in the batch (one of them perhaps forged) is signed in the ordinary way,
    each against the key store, so a forged one cannot hide the real one.
    Then the ids left to decide are decided in one
    :func:`~saltext_edge.admission.decision.decide_and_act` run per
    :data:`MAX_BATCH` ids (one key-store lock each).

    ``accepted``: an :class:`Accepted` (the engine's), to drop sign-ins
    fired before this engine accepted their id and to note the ids it
    accepts now.

    Returns ``{"statuses": {sign_in status: count}, "decided": {id:
    result}}`` (no token); on a bad policy or no usable secret nothing more
    is decided (fail closed) and ``statuses`` says ``bad_policy`` /
    ``no_secret``.
    """
    statuses = collections.Counter()
    decided = {}
    by_id = list(_sign_ins(events, worker, workers, accepted).items())
    for start in range(0, len(by_id), MAX_BATCH):
        part = _handle_ids(opts, by_id[start : start + MAX_BATCH], statuses)
        if part is None:
            return {"statuses": dict(statuses), "decided": {}}
        decided.update(part)
        if accepted is not None:
            accepted.note(m for m, r in part.items() if r.get("action") == "accepted")
    return {"statuses": dict(statuses), "decided": decided}


def _handle_ids(opts, sign_ins_by_id, statuses):
    """Sign in and decide at most :data:`MAX_BATCH` ids (one decision run); None when it failed as a whole."""
    extra, ids = {}, []
    count = sum(len(v) for _, v in sign_ins_by_id)
    try:
        for minion_id, sign_ins in sign_ins_by_id:
            single = len(sign_ins) == 1
            for pub, token, act in sign_ins:
                try:
                    outcome = _signin.sign_in(
                        opts, minion_id, pub, token, act=act, source="engine", defer=single
                    )
                except (AdmissionError, _secrets.SecretError):
                    raise
                except Exception as exc:  # the cache failed; the node signs in again soon
                    statuses["error"] += 1
                    log.error("edge admission: cannot handle a sign-in (%s)", type(exc).__name__)
                    log.debug("edge admission: the sign-in failed here", exc_info=True)
                    continue
                statuses[outcome.status] += 1
                if outcome.status == "decide":
                    if minion_id not in ids:
                        ids.append(minion_id)
                    if single and act == "pend":
                        extra[minion_id] = outcome.rec
        decided = {}
        if ids:
            decided = _decision.decide_and_act(
                opts, ids=ids, extra_records=extra, only_matching=True
            )
    except AdmissionError as exc:
        log.error("edge admission: not admitting %d sign-in(s): %s", count, exc)
        statuses.clear()
        statuses["bad_policy"] = count
        return None
    except _secrets.SecretError as exc:
        log.error("edge admission: not admitting %d sign-in(s): %s", count, exc)
        statuses.clear()
        statuses["no_secret"] = count
        return None
    except Exception as exc:  # the key store failed; the nodes sign in again soon
        log.error(
            "edge admission: deciding %d sign-in(s) failed (%s); they are decided again at "
            "their next sign-in",
            count,
            type(exc).__name__,
        )
        log.debug("edge admission: the decision failed here", exc_info=True)
        statuses["error"] += count
        return {}
    return decided


def run(opts, worker=0, workers=1, window=WINDOW, stop=None):
    """
    The engine's loop: listen to ``salt/auth`` on the master bus, gather a
    burst for ``window`` seconds, then take everything else already queued
    on the bus (at most :data:`MAX_DRAIN` events) and :func:`handle_batch`
    it; until ``stop()`` returns true (checked at least once a second;
    never, for Salt's engine process). Returns None.
    """
    import salt.utils.event

    from saltext_edge import fsperm

    worker, workers, window = check_options(worker, workers, window)
    for problem in fsperm.check_master_secrets(opts):
        log.error("edge admission: %s", problem)
    accepted = Accepted()
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        bus.subscribe("salt/auth")
        batch, due = [], None
        while stop is None or not stop():
            wait = 1.0 if due is None else max(0.001, due - time.monotonic())
            ev = bus.get_event(wait=wait, tag="salt/auth", full=True)
            if ev and ev.get("tag") == "salt/auth" and isinstance(ev.get("data"), dict):
                batch.append(ev["data"])
                if due is None:
                    due = time.monotonic() + window
            if batch and time.monotonic() >= due:
                while len(batch) < MAX_DRAIN:
                    ev = bus.get_event(no_block=True, tag="salt/auth", full=True)
                    if not ev:
                        break
                    if ev.get("tag") == "salt/auth" and isinstance(ev.get("data"), dict):
                        batch.append(ev["data"])
                handle_batch(opts, batch, worker, workers, accepted)
                batch, due = [], None
