"""Sphinx configuration for the saltext-edge operator documentation."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import saltext_edge  # noqa: E402  pylint: disable=wrong-import-position

project = "saltext-edge"
author = "saltext-edge contributors"
copyright = "saltext-edge contributors"
release = saltext_edge.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

# The loader modules are plain Python modules that Salt fills with dunders
# (__opts__, __salt__, ...) only when it loads them; importing them here is
# safe. Salt itself is only needed for a few type references: mock it when
# the docs are built without Salt installed.
try:  # pragma: no cover - depends on the docs environment
    import salt  # noqa: F401  pylint: disable=unused-import
except ImportError:  # pragma: no cover
    autodoc_mock_imports = ["salt", "zmq", "requests", "yaml", "cryptography"]

autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "member-order": "bysource",
    "exclude-members": "__virtual__",
}
autodoc_preserve_defaults = True

master_doc = "index"
root_doc = "index"
exclude_patterns = ["_build"]
templates_path = []
html_static_path = []
html_theme = "alabaster"
html_title = f"saltext-edge {release}"
pygments_style = "sphinx"
nitpicky = False
