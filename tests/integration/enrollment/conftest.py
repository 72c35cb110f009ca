"""
Real-daemon fixtures for enrollment keys (docs/enrollment.rst).

One master with the shipped reactor, ``auto_admit`` and
``require_enrollment``, and a twin master on the same key store (shared
``pki_dir``, as with a ReadWriteMany volume). The helpers of the
adversarial suite (pending keys placed exactly as ``salt/master.py`` does,
``salt/auth`` events as the master fires them, the bus recorder, salt-run
in a subprocess) are reused; the v2 token maths here is written
independently of ``saltext_edge.enrollment``.
"""

import hashlib
import hmac
import pathlib

import pytest
from admission.conftest import PendingMinion
from saltfactories.utils import random_string
from tests.daemons import share_pki

from adversarial.conftest import (
    SECRET,
    edge_conf,
    gen_keypair,
    master_opts,
    reactor_sls,
    salt_run,
    spki_digest,
    start_master,
)

SITE = "en-1"


def enr_edge_conf():
    return edge_conf(auto_admit=True, require_enrollment=True, on_invalid="keep")


def _reactor_master(salt_factories, prefix):
    return start_master(
        salt_factories,
        prefix,
        overrides={"reactor": [{"salt/auth": [str(reactor_sls())]}], "edge": enr_edge_conf()},
    )


@pytest.fixture(scope="package")
def enr_master(salt_factories):
    with _reactor_master(salt_factories, "enr-master-").started() as factory:
        yield factory


@pytest.fixture(scope="package")
def enr_opts(enr_master):
    return master_opts(enr_master)


@pytest.fixture(scope="package")
def enr_twin(salt_factories, enr_master):
    """A second master whose pki_dir is the first one's (its own cache and bus)."""
    factory = _reactor_master(salt_factories, "enr-twin-")
    share_pki(factory, enr_master)
    with factory.started():
        yield factory


@pytest.fixture(scope="package")
def enr_keys():
    """8 RSA-2048 key pairs, generated once."""
    return [gen_keypair() for _ in range(8)]


def create_enrollment(master, directory, **limits):
    """
    ``salt-run edge.enrollment_key`` (a subprocess, like an operator);
    returns ``(return data, key text, key path, stdout+stderr)``.
    """
    path = pathlib.Path(directory) / (random_string("enr-") + ".key")
    args = [f"site={limits.pop('site', SITE)}", f"path={path}"] + [
        f"{k}={v}" for k, v in limits.items()
    ]
    code, data, out, err = salt_run(master, "edge.enrollment_key", *args)
    assert code == 0, (out + err)[-3000:]
    return data, path.read_text().strip(), path, out + err


def v2_token(key_text, minion_id, pub):
    """The v2 token of docs/enrollment.rst, computed here independently."""
    prefix, version, site, enr_id, key = key_text.split(":")
    assert (prefix, version) == ("edge-enroll", "v2")
    msg = f"saltext-edge:v2:token\n{minion_id}\n{spki_digest(pub)}"
    mac = hmac.new(key.encode("ascii"), msg.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"v2:{site}:{enr_id}:{mac}"


def enrollment_key_of(site, enr_id, secret=SECRET):
    """``K_enr`` (docs/enrollment.rst), computed here independently."""
    msg = f"saltext-edge:v2:enroll:{site}:{enr_id}"
    return hmac.new(secret.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def enrolling_minion(master, prefix, key_path):
    """A brand-new real salt-minion configured with ``edge:enrollment_key_file`` (not started)."""
    overrides = {
        "autosign_grains": ["edge_token"],
        "acceptance_wait_time": 1,
        "acceptance_wait_time_max": 1,
        "random_reauth_delay": 0,
        "edge": {"enrollment_key_file": str(key_path)},
    }
    return master.salt_minion_daemon(
        random_string(prefix), overrides=overrides, factory_class=PendingMinion
    )
