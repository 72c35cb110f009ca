"""Salt output loader modules of saltext-edge (found through the ``salt.loader`` entry point)."""
