"""The one place where options and hyper-parameters are checked: integers, numbers and choices.

Every check returns the value, converted (``int`` or ``float``), or raises an error whose message names
the thing, the expectation and what was given, e.g.::

    >>> integer(0, "Conv2d: stride", low=1)
    Traceback (most recent call last):
    ...
    minialex.errors.ConfigError: Conv2d: stride must be an integer >= 1, got 0

``error=`` picks the exception class: :class:`~minialex.errors.ConfigError` for options (the default),
:class:`~minialex.errors.LayerInputError` for layer arguments, :class:`~minialex.errors.CheckpointError`
for values read from a checkpoint. Booleans are never accepted as numbers (``True`` is not a batch size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from minialex.errors import ConfigError, MinialexError

ErrorType = type[MinialexError]


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def _brief(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so that an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def integer(
    value: Any,
    what: str,
    *,
    low: int | None = None,
    high: int | None = None,
    allow_none: bool = False,
    error: ErrorType = ConfigError,
) -> int | None:
    """``value`` as an ``int`` in ``[low, high]`` (either bound may be None), else ``error`` naming ``what``."""
    if value is None and allow_none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = _interval(low, high, False, False)
        raise error(f"{what} must be an integer{' ' + bounds if bounds else ''}, got {_brief(value)}")
    return int(value)


def number(
    value: Any,
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    error: ErrorType = ConfigError,
) -> float:
    """``value`` as a finite ``float`` within the bounds (closed unless ``low_open``/``high_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        bounds = _interval(low, high, low_open, high_open)
        raise error(f"{what} must be a finite number{' ' + bounds if bounds else ''}, got {_brief(value)}")
    return value


def choice(value: Any, what: str, choices: Iterable[Any], *, error: ErrorType = ConfigError) -> Any:
    """``value`` if it is one of ``choices``, else ``error`` listing them."""
    options = tuple(choices)
    try:
        ok = any(value == option and isinstance(value, bool) == isinstance(option, bool) for option in options)
    except (TypeError, ValueError):  # a value that cannot be compared (an array, say)
        ok = False
    if not ok:
        listed = ", ".join(repr(c) if not isinstance(c, str) else c for c in options)
        raise error(f"{what} must be one of {listed}, got {_brief(value)}")
    return value


def flag(value: Any, what: str, *, error: ErrorType = ConfigError) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0, 1 or a string), else ``error``."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{what} must be True or False, got {_brief(value)}")
    return bool(value)
