"""Sphinx configuration for the mhd2 documentation.

Build with ``nox -s docs`` (or ``sphinx-build -W --keep-going -b html docs
docs/_build/html``). Warnings are errors, and the build needs no network.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

# Document the source tree next to this directory when mhd2 is not installed
# (``nox -s docs`` installs it; a plain ``sphinx-build`` from a checkout works too).
sys.path.insert(0, os.path.abspath(".."))
# This documentation's own extension (docs/_ext): the C name tables of libmicrohttpd.rst.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "mhd2"
author = "mhd2 contributors"
copyright = "mhd2 contributors"
release = "0.1.0"
version = "0.1"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "mhd2_cnames",
]

# No intersphinx: the build must work without internet access.

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"
nitpicky = False
default_role = "code"

# -- autodoc ----------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
autoclass_content = "both"

# -- napoleon (Google-style "Args:" / "Returns:" sections) -------------------

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False
# "Attributes:" sections become :ivar: fields instead of separate attribute
# entries, so they never clash with the attributes autodoc documents itself.
napoleon_use_ivar = True
napoleon_use_rtype = False

# -- HTML -------------------------------------------------------------------

html_theme = "furo"
html_title = "mhd2"
html_static_path: list[str] = []
html_show_sourcelink = False


# -- the API reference must cover the whole public API ------------------------


def _check_api_reference_complete(app: Any) -> None:
    """Warn (an error under ``-W``) for public names that api.rst leaves out."""
    import re

    from sphinx.util import logging

    logger = logging.getLogger("mhd2.docs")
    try:
        import mhd2
    except Exception as exc:  # autodoc reports the details itself
        logger.warning("cannot import mhd2 to check the API reference: %r", exc)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "api.rst"), encoding="utf-8") as f:
        text = f.read()
    documented = set(
        re.findall(r"^\.\. auto(?:class|function|exception|data)::\s+mhd2\.(\w+)", text, re.M)
    )
    missing = [
        name
        for name in getattr(mhd2, "__all__", ())
        if name not in documented and not isinstance(getattr(mhd2, name, None), types.ModuleType)
    ]
    for name in missing:
        logger.warning("mhd2.%s is public (in mhd2.__all__) but not in docs/api.rst", name)


def setup(app: Any) -> None:
    app.connect("builder-inited", _check_api_reference_complete)
