#!py
"""
saltext-edge reactor for ``salt/auth`` (docs/concepts.rst).

Master config to enable it::

    auth_events: True                       # the default
    auth_events_autosign_grains: [pend, denied]   # Salt 3008+: carry the token
    reactor:
      - 'salt/auth':
        - /srv/reactor/edge_auth.sls        # copied there by
                                            # `saltext-edge master-config --write`
    edge:
      shared_secret_file: /etc/salt/edge-secret
      auto_admit: true                      # false: only record, admit with
                                            # salt-run edge.accept_pending

(``saltext-edge master-config`` prints this configuration and, with
``--write``, copies this file outside Salt's Python so the path survives
upgrades; see docs/quickstart.rst.)

Rendered with the ``py`` renderer so that the minion-controlled id and token
are passed as data, never pasted into YAML. Any accepted minion can make the
master fire a ``salt/auth`` event with any data, so nothing here is trusted:
``saltext_edge.admission.sign_in`` checks every field against the key store. Acts only on ``act: pend`` and
``act: denied`` events that carry an ``edge_token`` grain (``denied``: another
key is stored under the id, e.g. a squatter's; see
``saltext_edge.admitter.submit``): it hands act, id, public key and token to
``saltext_edge.admitter.submit`` in the reactor process, which records the
token and, in auto mode, queues the minion for a batched decision (one
key-store lock per chunk of keys). No wheel job per event: under an auth storm
Salt's wheel client (about 120 ms a job) was what limited admission. If the
library cannot be imported here, the event goes to the wheel function
``edge.auth_event`` instead (same outcome, one job per event). Decisions fire
``salt/key`` and ``edge/admission/...`` events, none of which matches
``salt/auth``, so there is no reactor loop. When the master also runs the
``edge_admission`` engine (what ``saltext-edge master-config --write`` sets
up), this SLS does nothing: the engine handles every sign-in.
"""


def run():
    if tag != "salt/auth" or not isinstance(data, dict):  # noqa: F821
        return {}
    act = data.get("act")
    if act not in ("pend", "denied"):
        return {}
    grains = data.get("autosign_grains")
    token = grains.get("edge_token") if isinstance(grains, dict) else None
    minion_id = data.get("id")
    pub = data.get("pub")
    if not all(isinstance(v, str) and v for v in (token, minion_id, pub)):
        return {}
    try:
        from saltext_edge import admitter
        from saltext_edge.admission.engine import engine_configured
    except ImportError:
        # package not installed here: the synced wheel module decides
        return {
            "saltext_edge_admission": {
                "wheel.edge.auth_event": [
                    {"args": {"minion_id": minion_id, "pub": pub, "token": token, "act": act}}
                ]
            }
        }
    if engine_configured(opts):  # noqa: F821
        return {}  # the edge_admission engine handles sign-ins: not twice
    admitter.submit(opts, minion_id, pub, token, act=act)  # noqa: F821
    return {}
