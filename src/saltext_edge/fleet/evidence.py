"""
Which events on the master's bus are signs of life, and which of them can
be trusted (see ``docs/ref/engine.rst``, "Signs of life and trust"). Pure
apart from the injected key ring.

What the installed Salt (3008) guarantees, read from its source (the lines
are cited in the docs):

* any accepted minion can make the master fire any event with any data:
  ``_minion_event`` with an ``events`` list re-fires each with the tag the
  minion chose, and with ``pretag`` set (even ``""``) it fires it BEFORE the
  blacklist check, so ``salt/job/<jid>/new``, ``salt/key`` and
  ``salt/run/*`` are forgeable too;
* ``_syndic_return`` takes returns for ANY id from any accepted minion and
  ``_return`` renames a load by its ``resource_id``: ``salt/job/<jid>/ret/<id>``
  fired by the master's own return path proves nothing about ``<id>``.

So only a heartbeat signed with the key the master ACCEPTED for the id it
names (:mod:`saltext_edge.fleet.signing`) is a trusted sign of life. Job
returns, start and ping events and sign-ins are *unverified claims* unless
``trust_unsigned`` is on. Nothing is kept per job.

A refused heartbeat is not dropped silently: :meth:`Classifier.classify`
returns a :class:`Refusal` naming the reason (:data:`REASONS`), which the
engine counts, notes on the node's record and logs (rate-limited).
"""

import math
import re
import unicodedata

from saltext_edge.fleet.proof import PROVEN_TAG
from saltext_edge.uplink.heartbeat import TAG as HEARTBEAT_TAG

_JOB_RET = re.compile(r"\Asalt/job/(\d{1,32})/ret/(.+)\Z", re.S)
_MINION_START = re.compile(r"\Asalt/minion/(.+)/start\Z", re.S)
#: longest id accepted anywhere (Salt keeps a key as a file named by the id:
#: 255 bytes is the longest file name of common file systems)
MAX_ID_BYTES = 255
#: fields a heartbeat payload may have at most (a v1/v2 payload has 12)
MAX_FIELDS = 32
#: why a heartbeat is refused (the ``reason`` label of ``edge_heartbeats_refused_total``)
REASONS = ("oversize", "malformed", "bad_id", "unknown_key", "bad_signature", "replay")


def valid_id(minion_id):
    """
    Return ``True`` when ``minion_id`` can be a node's id: a non-empty
    string of at most :data:`MAX_ID_BYTES` UTF-8 bytes, without ``/``,
    ``\\``, NUL, control or line/paragraph separator characters, and not
    ``.`` or ``..`` (Salt's ``valid_id`` rules plus a length bound and no
    control characters). Cheap: checked before any lookup or log line.
    """
    if not isinstance(minion_id, str) or not minion_id or len(minion_id) > MAX_ID_BYTES:
        return False
    if minion_id in (".", ".."):
        return False
    if minion_id.isascii():
        return minion_id.isprintable() and "/" not in minion_id and "\\" not in minion_id
    try:
        if len(minion_id.encode("utf-8")) > MAX_ID_BYTES:
            return False
    except UnicodeEncodeError:
        return False
    if "/" in minion_id or "\\" in minion_id:
        return False
    return all(unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in minion_id)


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


class Refusal:
    """
    A refused heartbeat: ``reason`` (one of :data:`REASONS`), ``id`` (the
    id it names when that is a valid id, else ``None``), ``known`` (the id
    has an accepted key) and ``payload`` (only for ``replay``, checked by
    the engine against the record).
    """

    __slots__ = ("reason", "id", "known", "payload")

    def __init__(self, reason, minion_id=None, known=False, payload=None):
        self.reason = reason
        self.id = minion_id
        self.known = known
        self.payload = payload

    def __repr__(self):
        return f"Refusal({self.reason!r}, {self.id!r})"


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def well_formed(payload):
    """
    Return ``True`` when a heartbeat payload has the shape the replay rule
    and the record need: ``seq`` a whole number 0..2**63, ``boot`` a
    non-empty string of at most 64 characters, ``sent_at`` a finite number,
    ``sig`` a string, at most :data:`MAX_FIELDS` fields.
    """
    if len(payload) > MAX_FIELDS:
        return False
    seq, boot = payload.get("seq"), payload.get("boot")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        return False
    if not isinstance(boot, str) or not 0 < len(boot) <= 64:
        return False
    return _finite(payload.get("sent_at")) and isinstance(payload.get("sig"), str)


class Classifier:
    """
    Turns ``(tag, data)`` into an :class:`Evidence`, a :class:`Refusal`
    (refused heartbeats) or ``None`` (no sign of life).

    ``keyring`` is a :class:`saltext_edge.fleet.signing.KeyRing` (``get``
    and ``verify``); ``verify_event(tag, data)`` checks the seal of an event
    fired by the master's own processes (:func:`saltext_edge.eventauth.verify`). The replay rule needs the node's record: the engine
    applies it (:func:`saltext_edge.fleet.record.replayed`). Nothing is kept
    per job or per event; ``refused`` counts refusals by reason.
    """

    def __init__(self, keyring, trust_unsigned=False, verify_event=None):
        self.keyring = keyring
        self.trust_unsigned = trust_unsigned
        self.verify_event = verify_event
        self.refused = dict.fromkeys(REASONS, 0)

    @property
    def rejected(self):
        """Refused heartbeats, all reasons together."""
        return sum(self.refused.values())

    def refuse(self, reason, minion_id=None, known=False, payload=None):
        """Count a refusal and return it as a :class:`Refusal`."""
        self.refused[reason] += 1
        return Refusal(reason, minion_id, known, payload)

    def _heartbeat(self, data):
        if "_oversize" in data:
            # bigger than the engine reads (see engine.Inbox): never unpacked
            return self.refuse("oversize")
        # fired with event.fire_master: data is the load {id, tag, data, cmd, ...}
        payload = data.get("data") if isinstance(data.get("data"), dict) else data
        minion_id = payload.get("id")
        # the id first: nothing below (lookup, log line) sees an id that is not one
        if not valid_id(minion_id):
            return self.refuse("bad_id")
        if not well_formed(payload):
            known = self.keyring.get(minion_id) is not None
            return self.refuse("malformed", minion_id, known)
        if self.keyring.get(minion_id) is None:
            return self.refuse("unknown_key", minion_id)
        if not self.keyring.verify(payload):
            return self.refuse("bad_signature", minion_id, True)
        return Evidence("heartbeat", minion_id, True, payload=payload, source="heartbeat")

    def _proven(self, tag, data):
        # edge/fleet/proven: ids the runner proved alive (saltext_edge.fleet.proof),
        # sealed by a master process; a list of evidence, one per id
        ids = data.get("ids")
        if self.verify_event is None or not isinstance(ids, list):
            return None
        if not self.verify_event(tag, data):
            return None
        return [Evidence("proof", m, True, source="ping proof") for m in ids if valid_id(m)]

    def _claim(self, kind, minion_id, source):
        if not valid_id(minion_id):
            return None
        return Evidence(kind, minion_id, self.trust_unsigned, source=source)

    def classify(self, tag, data):
        """
        Return the :class:`Evidence` in event ``(tag, data)`` (a list of
        them for ``edge/fleet/proven``), a :class:`Refusal` for a refused
        heartbeat, or ``None`` when the event is no sign of life.
        """
        if not isinstance(tag, str) or not isinstance(data, dict):
            return None
        if tag == HEARTBEAT_TAG:
            return self._heartbeat(data)
        if tag == PROVEN_TAG:
            return self._proven(tag, data)
        if tag.startswith("salt/job/"):
            # any accepted minion can make the master fire a return for any
            # id (see the module docstring): an unverified claim, and nothing
            # is remembered per job
            match = _JOB_RET.match(tag)
            if match and data.get("id") == match.group(2):
                return self._claim("job_return", match.group(2), f"job {match.group(1)}")
            return None
        if tag == "minion_start" or tag.startswith("salt/minion/"):
            minion_id = data.get("id")
            match = _MINION_START.match(tag)
            if tag != "minion_start" and (match is None or match.group(1) != minion_id):
                return None
            return self._claim("minion_start", minion_id, tag)
        if tag == "minion_ping":
            return self._claim("minion_ping", data.get("id"), tag)
        if tag == "salt/auth" and data.get("act") == "accept" and data.get("result") is True:
            return self._claim("auth", data.get("id"), "sign-in")
        return None
