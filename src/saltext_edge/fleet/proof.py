"""
Master-challenged liveness proofs: what ``salt-run edge.report ping=True``
counts (``docs/howto/fleet-report.rst``, "Asking the nodes").

A job return proves nothing about the id it names: any accepted minion can
make the master fire ``salt/job/<jid>/ret/<any id>`` (Salt 3008:
``salt/master.py``, ``_syndic_return``; ``_minion_event`` with an ``events``
list), and every minion sees every publication, jids and arguments
included. So the runner asks for a proof instead of a ``test.ping``:

1. it makes a *challenge*: a random nonce and its issue time, MAC'd with the
   master's event key (:mod:`saltext_edge.eventauth`), so that only this
   master's processes can make one and its age is known;
2. it publishes ``edge.prove challenge=...`` to the targets; each node
   returns ``{proof, id, challenge, uptime_s, answered_at, sig}`` signed with
   its own minion key (:mod:`saltext_edge.fleet.signing`);
3. it counts an answer only when the challenge is the one it made and still
   fresh, the answer names the id it came back for, and the signature
   verifies against the key the master has ACCEPTED for that id. Another
   minion knows the challenge (it saw the publication) but cannot sign for
   that id; an old answer carries another nonce.
4. it fires one sealed ``edge/fleet/proven`` event with the proven ids, which
   the ``edge_fleet`` engine takes as a trusted sign of life (kind
   ``proof``) for each of them.

A proof is signed over the same canonical form as a heartbeat but carries no
``sent_at``, so it can never pass as one (and a heartbeat has no challenge).
"""

import hmac
import logging
import re
import secrets
import time

from saltext_edge import eventauth as _eventauth
from saltext_edge.errors import EdgeError

log = logging.getLogger(__name__)

PROOF = "saltext-edge proof v1"
CHALLENGE_TAG = "edge/fleet/challenge"
PROVEN_TAG = "edge/fleet/proven"
#: a challenge is accepted this long after it was made (seconds); the ping
#: timeout is added to it
CHALLENGE_SLACK_S = 60.0
#: ids per ``edge/fleet/proven`` event at most (a larger fleet gets several)
PROVEN_CHUNK = 5000
_CHALLENGE = re.compile(r"\Av1\.([A-Za-z0-9_-]{16,64})\.(\d{1,16})\.([A-Za-z0-9+/=]{1,64})\Z")
MAX_CHALLENGE_CHARS = 200


class ProofError(EdgeError, ValueError):
    """A challenge handed to :func:`answer` is malformed."""


def new_challenge(opts, now=None):
    """Return a new challenge string (``v1.<nonce>.<issued ms>.<MAC>``) sealed with the event key."""
    nonce = secrets.token_urlsafe(18)
    sealed = _eventauth.seal(opts, CHALLENGE_TAG, {"nonce": nonce}, now=now)
    seal = sealed[_eventauth.FIELD]
    return f"v1.{nonce}.{seal['at']}.{seal['mac']}"


def check_challenge(key, text, now=None, max_age=CHALLENGE_SLACK_S):
    """Return ``True`` when ``text`` is a challenge made with ``key`` at most ``max_age`` seconds ago."""
    if not isinstance(text, str) or len(text) > MAX_CHALLENGE_CHARS:
        return False
    match = _CHALLENGE.match(text)
    if not match:
        return False
    nonce, at_ms, mac = match.groups()
    data = {"nonce": nonce, _eventauth.FIELD: {"at": int(at_ms), "mac": mac}}
    return _eventauth.verify_with(key, CHALLENGE_TAG, data, now=now, max_age=max_age)


def answer(opts, challenge, now=None, signer=None):
    """
    Return this minion's signed answer to ``challenge`` (on the node, with
    its ``pki_dir/minion.pem``): ``proof``, ``id``, ``challenge``,
    ``uptime_s``, ``answered_at`` and ``sig``. Raises :class:`ProofError`
    for a malformed challenge, ``OSError``/``ValueError`` when the key is
    unusable.
    """
    from saltext_edge.fleet import signing as _signing
    from saltext_edge.uplink import heartbeat as _hb

    if not isinstance(challenge, str) or not _CHALLENGE.match(challenge):
        raise ProofError("not a challenge made by 'salt-run edge.report ping=True'")
    payload = {
        "proof": PROOF,
        "id": opts["id"],
        "challenge": challenge,
        "uptime_s": _hb.host_uptime(),
        "answered_at": round(time.time() if now is None else now, 3),
    }
    return (signer or _signing.minion_signer(opts)).sign(payload)


def check_answer(verify, minion_id, challenge, ret):
    """
    Return ``True`` when ``ret`` (what came back for ``minion_id``) is a
    proof for ``challenge`` signed by the accepted key of ``minion_id``
    (``verify``: :meth:`saltext_edge.fleet.signing.KeyRing.verify`).
    """
    if not isinstance(ret, dict) or ret.get("proof") != PROOF or "sent_at" in ret:
        return False
    if ret.get("id") != minion_id or not isinstance(ret.get("challenge"), str):
        return False
    if not hmac.compare_digest(ret["challenge"].encode(), challenge.encode()):
        return False
    return bool(verify(ret))


def _fire_proven(opts, ids):
    import salt.utils.event

    master = str(opts.get("id") or "master")
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
        for start in range(0, len(ids), PROVEN_CHUNK):
            data = {"ids": ids[start : start + PROVEN_CHUNK], "master": master}
            bus.fire_event(_eventauth.seal(opts, PROVEN_TAG, data), PROVEN_TAG)


def prove(opts, minions, timeout, cmd=None, keyring=None, fire=None):
    """
    Ask ``minions`` (ids) for a proof within ``timeout`` seconds and fire
    ``edge/fleet/proven`` for those that gave one. ``cmd``: Salt's
    ``LocalClient.cmd`` with ``full_return=True`` (default: a client of the
    master ``opts``), called as ``cmd(ids, challenge, timeout)``.

    Returns ``{id: "proven" | "unproven" | "silent"}``: ``unproven`` means
    something came back for the id but it was no valid proof (an old
    minion without ``edge.prove``, or a forged return).
    """
    from saltext_edge.fleet import signing as _signing

    if not minions:
        return {}
    challenge = new_challenge(opts)
    if cmd is None:
        import salt.client

        with salt.client.get_local_client(mopts=opts) as client:
            rets = client.cmd(
                sorted(minions),
                "edge.prove",
                kwarg={"challenge": challenge},
                tgt_type="list",
                timeout=timeout,
                full_return=True,
            )
    else:
        rets = cmd(sorted(minions), challenge, timeout)
    # the challenge must still be fresh when the answers are checked
    key = _eventauth.load_key(opts)
    fresh = check_challenge(key, challenge, max_age=timeout + CHALLENGE_SLACK_S)
    verify = (keyring or _signing.KeyRing(opts)).verify
    out = {}
    for minion_id in minions:
        got = rets.get(minion_id)
        # what LocalClient reports for a minion that did not return
        if not isinstance(got, dict) or got.get("failed") or got.get("out") == "no_return":
            out[minion_id] = "silent"
        elif fresh and check_answer(verify, minion_id, challenge, got.get("ret")):
            out[minion_id] = "proven"
        else:
            out[minion_id] = "unproven"
    proven = sorted(m for m, v in out.items() if v == "proven")
    if proven:
        try:
            (fire or _fire_proven)(opts, proven)
        except Exception as exc:  # the report still says who answered
            log.error("edge.report: edge/fleet/proven not fired: %s", exc.__class__.__name__)
    return out
