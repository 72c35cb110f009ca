"""
saltext-edge: operate edge nodes behind NAT with Salt.

Loader modules live in the ``grains``, ``modules``, ``states``, ``runners`` and
``wheel`` subpackages (found by Salt through the ``salt.loader`` entry point);
shared logic lives in plain modules of this package (``tokens``, ``shared_secret``,
...), imported normally. Keep this file free of imports: it is also shipped to
minions through ``_utils/`` and imported there by synced modules.
"""

# the one place the version is written (setup.cfg reads it: version = attr: ...)
__version__ = "0.1.0"
