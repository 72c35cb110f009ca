"""
Which events on the master's bus are signs of life, and which of them can
be trusted (see ``docs/ref/engine.rst``, "Trust"). Pure apart from the
injected key ring.

What the installed Salt (3008) guarantees, read from its source:

* ``salt/job/<jid>/new`` is fired by the master when it publishes a job and
  is on the minion event blacklist (``MINION_EVENT_BLACKLIST``): a minion
  cannot fake it. Its ``minions`` are the targeted ids.
* ``salt/job/<jid>/ret/<id>`` is fired by the master for a return whose
  sender passed the request-channel check (the load's ``id`` matches the
  signed token). But a minion may also send ``_minion_event`` with an
  ``events`` list, which the master re-fires with any tag not on the
  blacklist and any data: ``salt/job/.../ret/<other id>``, ``minion_start``,
  ``salt/minion/<id>/start``, ``minion_ping`` and ``salt/auth`` can all be
  forged by any accepted minion. So a return counts only for a jid the
  engine saw published to that id; ``salt/auth`` (a sign-in attempt that
  anyone holding the public key can make) and the minion-fired start/ping
  events are recorded as unverified claims unless ``trust_unsigned`` is on.
* ``edge/heartbeat`` carries the minion's RSA signature
  (:mod:`saltext_edge.fleet.signing`) and counts when it verifies against
  the accepted key of the id it names.
"""

import collections
import re

from saltext_edge.fleet.proof import PROVEN_TAG

HEARTBEAT_TAG = "edge/heartbeat"
_JOB_NEW = re.compile(r"\Asalt/job/(\d+)/new\Z")
_JOB_RET = re.compile(r"\Asalt/job/(\d+)/ret/(.+)\Z")
_MINION_START = re.compile(r"\Asalt/minion/(.+)/start\Z")
#: jids remembered at most (a return for an older jid counts as unverified)
MAX_JIDS = 20000


class Evidence:
    """One sign of life: ``kind``, ``id``, ``trusted``, ``payload`` (heartbeats), ``source``."""

    __slots__ = ("kind", "id", "trusted", "payload", "source")

    def __init__(self, kind, minion_id, trusted, payload=None, source=None):
        self.kind = kind
        self.id = minion_id
        self.trusted = trusted
        self.payload = payload
        self.source = source

    def __repr__(self):
        return f"Evidence({self.kind!r}, {self.id!r}, trusted={self.trusted})"


class Classifier:
    """
    Turns ``(tag, data)`` into an :class:`Evidence` or ``None``.

    ``verify(payload)`` checks a heartbeat signature (a
    :class:`saltext_edge.fleet.signing.KeyRing`'s ``verify``);
    ``clock()`` gives the master's time for the skew check.
    ``verify_event(tag, data)`` checks the seal of an event fired by the
    master's own processes (:func:`saltext_edge.eventauth.verify`).
    """

    def __init__(self, verify, clock, max_skew=300.0, trust_unsigned=False, verify_event=None):
        self.verify = verify
        self.verify_event = verify_event
        self.clock = clock
        self.max_skew = max_skew
        self.trust_unsigned = trust_unsigned
        self.jobs = collections.OrderedDict()
        self.rejected = 0

    def _remember_job(self, jid, minions):
        if not isinstance(minions, (list, tuple)):
            return
        self.jobs[jid] = frozenset(m for m in minions if isinstance(m, str))
        while len(self.jobs) > MAX_JIDS:
            self.jobs.popitem(last=False)

    def _heartbeat(self, data):
        # fired with event.fire_master: data is the load {id, tag, data, cmd, ...}
        payload = data.get("data") if isinstance(data.get("data"), dict) else data
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            self.rejected += 1
            return None
        sent = payload.get("sent_at")
        if not isinstance(sent, (int, float)) or abs(self.clock() - sent) > self.max_skew:
            self.rejected += 1
            return None
        if not self.verify(payload):
            self.rejected += 1
            return None
        return Evidence("heartbeat", payload["id"], True, payload=payload, source="heartbeat")

    def _proven(self, tag, data):
        # edge/fleet/proven: ids the runner proved alive (saltext_edge.fleet.proof),
        # sealed by a master process; a list of evidence, one per id
        ids = data.get("ids")
        if self.verify_event is None or not isinstance(ids, list):
            return None
        if not self.verify_event(tag, data):
            return None
        return [Evidence("proof", m, True, source="ping proof") for m in ids if isinstance(m, str)]

    def classify(self, tag, data):
        """
        Return the :class:`Evidence` in event ``(tag, data)`` or ``None`` when
        it is no sign of life (a list of them for ``edge/fleet/proven``).
        """
        if not isinstance(tag, str) or not isinstance(data, dict):
            return None
        if tag == HEARTBEAT_TAG:
            return self._heartbeat(data)
        if tag == PROVEN_TAG:
            return self._proven(tag, data)
        if tag.startswith("salt/job/"):
            match = _JOB_NEW.match(tag)
            if match:
                self._remember_job(match.group(1), data.get("minions"))
                return None
            match = _JOB_RET.match(tag)
            if match:
                jid, minion_id = match.groups()
                if data.get("id") != minion_id:
                    return None
                trusted = minion_id in self.jobs.get(jid, ())
                return Evidence("job_return", minion_id, trusted, source=f"job {jid}")
            return None
        if tag == "minion_start" or _MINION_START.match(tag):
            minion_id = data.get("id")
            match = _MINION_START.match(tag)
            if match and match.group(1) != minion_id:
                return None
            if isinstance(minion_id, str):
                return Evidence("minion_start", minion_id, self.trust_unsigned, source=tag)
            return None
        if tag == "minion_ping":
            minion_id = data.get("id")
            if isinstance(minion_id, str):
                return Evidence("minion_ping", minion_id, self.trust_unsigned, source=tag)
            return None
        if tag == "salt/auth":
            minion_id = data.get("id")
            if (
                data.get("act") == "accept"
                and data.get("result") is True
                and isinstance(minion_id, str)
            ):
                return Evidence("auth", minion_id, self.trust_unsigned, source="sign-in")
        return None
