"""
Fixtures of the unit tests of every area (``tests/unit/<area>/``, by
library package as in the Salt extension template): master options on a
real Salt cache (localfs, in a temporary directory) and a public key.
"""

import pytest
import salt.config
from tests.support.keys import new_pub

SECRET = "unit-fleet-9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c3b6d9e2f"


@pytest.fixture
def opts(tmp_path):
    """Master options in ``tmp_path`` with the fleet secret :data:`SECRET`."""
    opts = salt.config.master_config(None)
    opts.update(
        {
            "root_dir": str(tmp_path),
            "cachedir": str(tmp_path / "cache"),
            "pki_dir": str(tmp_path / "pki"),
            "sock_dir": str(tmp_path / "sock"),
            "edge": {"shared_secret": SECRET},
            "__role": "master",
        }
    )
    return opts


@pytest.fixture(scope="module")
def pub():
    """A fresh RSA-2048 public key (PEM)."""
    return new_pub()
