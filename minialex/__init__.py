"""minialex: AlexNet from scratch on NumPy or CuPy, every layer with a hand-written backward pass.

The array backend is chosen once, when :mod:`minialex.backend` is first imported, from ``MINIALEX_BACKEND``
(``numpy``, ``cupy`` or ``auto``). Importing the package itself imports nothing else: ``minialex.backend``
and ``minialex.seed`` are loaded on first use (PEP 562), so that the command line can import the package
inside its error handling and report a bad ``MINIALEX_BACKEND`` as one line instead of a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

__all__ = ["__version__", "backend", "seed"]


def __getattr__(name: str) -> Any:
    if name == "backend":
        return importlib.import_module("minialex.backend")
    if name == "seed":
        return importlib.import_module("minialex.backend").seed
    raise AttributeError(f"module 'minialex' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
