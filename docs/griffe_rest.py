"""A griffe extension for the API reference: docstrings read by :func:`sitelib.to_markdown` as they load.

minialex's docstrings are numpydoc, written to be read as plain text in an editor first; the few
reStructuredText habits in them (roles, ``::`` before a literal block) would show raw in Markdown. The source
files are not changed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sitelib


class RestMarkup(griffe.Extension):
    """Rewrite every docstring with :func:`sitelib.to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = sitelib.to_markdown(obj.docstring.value)
