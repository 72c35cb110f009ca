"""
Functional fixtures: a minion configuration from salt-factories that is
never started, and Salt's loaders over it in this process
(``saltfactories.utils.functional.Loaders``):

* ``states``: a state runs through Salt's real ``state.single`` (about half
  a second: it builds a ``salt.state.State`` each time) instead of a
  ``salt-call`` process (2-7 s);
* ``state_funcs``: the same loaded state functions called directly, with
  ``__opts__["test"]`` set as ``state.single`` would (milliseconds), for the
  many cases of one state's logic.
"""

import pytest
import salt.loader
from saltfactories.utils import random_string
from saltfactories.utils.functional import Loaders


@pytest.fixture(scope="module")
def local_minion(salt_factories):
    """A masterless minion's configuration (``file_client: local``); not started."""
    return salt_factories.salt_minion_daemon(
        random_string("edge-func-"),
        defaults={"file_client": "local", "master_type": "str"},
    )


@pytest.fixture(scope="module")
def minion_opts(local_minion):
    return dict(local_minion.config, file_client="local")


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return Loaders(minion_opts)


@pytest.fixture
def states(loaders):
    """``states.edge.minion_config(...)`` runs the state through ``state.single``."""
    try:
        yield loaders.states
    finally:
        loaders.reset_state()


@pytest.fixture(scope="module")
def local_salt_call(local_minion):
    """``salt-call`` against the same configuration, for the few end-to-end runs."""
    return local_minion.salt_call_cli(timeout=120)


class StateFuncs:
    """The loaded state functions, called directly: ``run("edge.minion_config", test, **kw)``."""

    RET_KEYS = {"name", "result", "changes", "comment"}

    def __init__(self, loaders):
        self.loader = salt.loader.states(
            loaders.opts,
            loaders.modules,
            loaders.utils,
            loaders.serializers,
            context={},
        )

    def run(self, fun, test=False, **kwargs):
        opts = self.loader.pack["__opts__"]
        opts["test"] = bool(test)
        try:
            ret = self.loader[fun](**kwargs)
        finally:
            opts["test"] = False
        # what salt.state.State checks of every state return
        assert isinstance(ret, dict) and set(ret) >= self.RET_KEYS, ret
        assert set(ret) <= self.RET_KEYS | {"warnings"}, ret
        return ret


@pytest.fixture(scope="module")
def state_funcs(loaders):
    return StateFuncs(loaders)
