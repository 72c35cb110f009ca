#!py
"""
saltext-edge reactor for ``salt/auth`` (DESIGN.md §3).

Master config to enable it::

    auth_events: True                       # the default
    auth_events_autosign_grains: [pend]     # Salt 3008+: carry the token
    reactor:
      - 'salt/auth':
        - /path/to/site-packages/saltext_edge/reactor/edge_auth.sls
    edge:
      shared_secret_file: /etc/salt/edge-secret
      auto_admit: true                      # false: only record, admit with
                                            # salt-run edge.accept_pending

(``python3 -c 'import saltext_edge, os;
print(os.path.dirname(saltext_edge.__file__))'`` prints the directory.)

Rendered with the ``py`` renderer so that the minion-controlled id and token
are passed as data, never pasted into YAML. Acts only on ``act: pend`` events
that carry an ``edge_token`` grain. The wheel function fires ``salt/wheel/...``,
``salt/key`` and ``edge/admission/...`` events, none of which matches
``salt/auth``, so there is no reactor loop.
"""


def run():
    if tag != "salt/auth" or not isinstance(data, dict):  # noqa: F821
        return {}
    if data.get("act") != "pend":
        return {}
    grains = data.get("autosign_grains")
    token = grains.get("edge_token") if isinstance(grains, dict) else None
    minion_id = data.get("id")
    pub = data.get("pub")
    if not all(isinstance(v, str) and v for v in (token, minion_id, pub)):
        return {}
    try:
        from saltext_edge import admission  # pylint: disable=import-outside-toplevel

        # a pending minion retries every acceptance_wait_time: no wheel job
        # for a token already recorded (and already refused, in auto mode)
        if admission.seen_before(opts, minion_id, pub, token):  # noqa: F821
            return {}
    except Exception:  # pylint: disable=broad-except
        pass  # when in doubt, let the wheel function decide
    return {
        "saltext_edge_admission": {
            "wheel.edge.auth_event": [
                {"args": {"minion_id": minion_id, "pub": pub, "token": token, "act": "pend"}}
            ]
        }
    }
