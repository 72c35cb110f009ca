"""
Wheel module ``edge``: admission functions callable from salt-api (``client:
wheel``), from a reactor, and by the shipped reactor SLS when the library is
not importable in the reactor process (docs/ref/wheel.rst, docs/concepts.rst).

Wheel modules get no utils directory on ``sys.path`` from Salt's loader, so a
copy synced with ``salt-run saltutil.sync_wheel`` (package not installed) finds
the library in the master's synced ``extmods/utils`` (``salt-run
saltutil.sync_utils``) by adding that one directory itself.
"""

import functools
import importlib
import logging
import os
import sys

import salt.utils.data

log = logging.getLogger(__name__)

__virtualname__ = "edge"


def _import_lib():
    try:
        import saltext_edge

        return saltext_edge
    except ImportError:
        pass
    extmods = os.path.join(__opts__.get("extension_modules", ""), "utils")
    if os.path.isdir(os.path.join(extmods, "saltext_edge")) and extmods not in sys.path:
        sys.path.append(extmods)
    try:
        import saltext_edge

        return saltext_edge
    except ImportError:
        return None


# library submodules, imported in __virtual__ (a synced wheel module only
# finds the library once _import_lib has put extmods/utils on sys.path)
admission = None
_errors = None

#: the usage hint of a call that does not fit a function's signature
USAGE = "see {name} in salt-run doc.wheel"


def __virtual__():
    global admission, _errors
    if _import_lib() is None:
        return (
            False,
            "edge: the saltext_edge library is missing; pip install saltext-edge "
            "or run salt-run saltutil.sync_utils",
        )
    try:
        admission = importlib.import_module("saltext_edge.admission")
        _errors = importlib.import_module("saltext_edge.errors")
    except ImportError as exc:
        return False, f"edge: cannot import the saltext_edge library: {exc}"
    return __virtualname__


def _edge_errors(func):
    """
    The runner's and the execution module's one error rule
    (:func:`saltext_edge.errors.edge_errors`), applied at call time: the
    library is imported only in ``__virtual__``. ``functools.wraps`` keeps the
    signature Salt's wheel client reads.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return _errors.edge_errors(usage=USAGE)(func)(*args, **kwargs)

    return wrapper


@_edge_errors
def version():
    """
    Return the version of saltext-edge on the master (a string).

    CLI Example:

    .. code-block:: bash

        curl -sSk https://salt:8000 -H "X-Auth-Token: $TOK" -d client=wheel -d fun=edge.version
    """
    return sys.modules["saltext_edge"].__version__


@_edge_errors
def auth_event(minion_id, pub, token=None, act="pend"):
    """
    Handle one ``salt/auth`` event of a pending key and wait for its
    decision: record the minion's ``edge_token`` for its public key and, when
    the master has ``edge: {auto_admit: true}``, verify it and accept the key
    at once (or apply ``edge:on_invalid`` to a refusal). The shipped reactor
    SLS batches instead (:mod:`saltext_edge.admitter`) and calls this only
    when the library is not importable in the reactor process.

    Returns ``{"id": str, "recorded": bool, "decision": "accepted"|"refused"|
    None, "reason": str|None, "site": str|None, "action": str|None}``; never
    the token.

    CLI Example:

    .. code-block:: bash

        # salt-api
        curl -sSk https://salt:8000 -H "X-Auth-Token: $TOK" -d client=wheel \\
            -d fun=edge.auth_event -d minion_id=edge-1 \\
            --data-urlencode pub@minion.pub -d token="$EDGE_TOKEN"
    """
    return admission.handle_auth(__opts__, minion_id, pub, token, act=act, source="wheel")


@_edge_errors
def record(minion_id, pub, token):
    """
    Record ``token`` presented by pending minion ``minion_id`` with public key
    ``pub`` for a later ``accept_pending``; decides nothing. Like a sign-in,
    the data is not trusted: it is recorded only when the key store holds
    ``pub`` pending for ``minion_id`` and no better token is recorded for it.

    Returns ``{"id": str, "recorded": bool, "changed": bool, "reason":
    str|None}``; never the token.

    CLI Example:

    .. code-block:: bash

        curl -sSk https://salt:8000 -H "X-Auth-Token: $TOK" -d client=wheel \\
            -d fun=edge.record -d minion_id=edge-1 \\
            --data-urlencode pub@minion.pub -d token="$EDGE_TOKEN"
    """
    outcome = admission.sign_in(__opts__, minion_id, pub, token, source="wheel")
    known = outcome.status in ("recorded", "kept_better", "refused_before", "decide")
    return {
        "id": minion_id,
        "recorded": outcome.rec is not None,
        "changed": known,
        "reason": None if known else outcome.status,
    }


@_edge_errors
def accept_pending(match="*", dry_run=False):
    """
    Verify every pending key matching ``match`` (a glob, or comma-separated
    globs) against its recorded token; accept the valid ones through Salt's
    key store; apply ``edge:on_invalid`` to refused ones. ``dry_run=True``
    changes nothing.

    Returns ``{minion_id: {"decision": "accepted"|"refused"|"no_token",
    "reason": str|None, "site": str|None, "action": str}}``.

    CLI Example:

    .. code-block:: bash

        curl -sSk https://salt:8000 -H "X-Auth-Token: $TOK" -d client=wheel \\
            -d fun=edge.accept_pending -d match='sh-3-*' -d dry_run=true
        # on the master, from Python:
        #   salt.wheel.WheelClient(opts).cmd("edge.accept_pending", kwarg={"dry_run": True})
    """
    return admission.decide_and_act(__opts__, match=match, dry_run=salt.utils.data.is_true(dry_run))


@_edge_errors
def decisions():
    """
    Return the latest admission decision per minion:
    ``{minion_id: {"decision": "accepted"|"refused"|"no_token"|"recorded",
    "reason": str|None, "site": str|None, "time": float}}``.

    CLI Example:

    .. code-block:: bash

        curl -sSk https://salt:8000 -H "X-Auth-Token: $TOK" -d client=wheel -d fun=edge.decisions
    """
    return admission.list_decisions(__opts__)
