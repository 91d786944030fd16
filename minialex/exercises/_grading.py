"""What every grader shares: the verdict printer and the checks of a learner's answer.

A grader is a function ``body() -> str`` run by :func:`grade`. It raises :class:`Fail` with a message when the
answer is wrong and returns a one-line summary of what was checked when it is right; :func:`grade` turns the
outcome into the single line the notebook shows (``PASS ...``, ``FAIL ...`` or ``... not yet implemented``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex import backend
from minialex.gradcheck import rel_error

GRAD_TOL = 1e-6  # the project's bound for float64 gradient checks
EXACT_TOL = 1e-12  # for answers that are sums of a few copies of the same numbers


class Fail(Exception):
    """A wrong answer: the message says what was expected and, where a classic mistake explains it, a hint."""


def grade(name: str, body: Callable[[], str]) -> None:
    """Run one exercise's checks and print PASS, FAIL or not-yet-implemented (never raises)."""
    try:
        detail = body()
    except NotImplementedError:
        print(
            f"{name}: not yet implemented. Replace `raise NotImplementedError` in the exercise cell above, "
            "run that cell, then run this one again."
        )
        return
    except Fail as exc:
        print(f"FAIL {name}: {exc}")
        return
    except Exception as exc:  # the learner's code crashed: report it, do not crash the notebook
        print(f"FAIL {name}: your function raised {type(exc).__name__}: {exc}")
        return
    print(f"PASS {name}: {detail}")


def host(a: Any) -> np.ndarray:
    """``a`` as a NumPy array on the host."""
    return np.asarray(backend.to_numpy(a))


def as_array(value: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's answer as a float64 host array of the expected shape (or a :class:`Fail` saying why not)."""
    if value is None:
        raise Fail(f"{what} is None; did you forget a `return`?")
    try:
        arr = host(value)
    except Exception as exc:
        raise Fail(f"{what} is a {type(value).__name__}, not an array ({exc})") from exc
    if arr.shape != tuple(shape):
        raise Fail(f"{what} should have shape {tuple(shape)}, got {arr.shape}")
    if arr.dtype.kind != "f":
        raise Fail(f"{what} should be a float array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def as_tuple(value: Any, length: int, names: str) -> tuple[Any, ...]:
    """The learner's answer as a tuple of ``length`` items (or a :class:`Fail` naming them)."""
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise Fail(f"return a tuple ({names})")
    return tuple(value)


def close(answer: np.ndarray, reference: np.ndarray, what: str, tol: float, hint: str = "") -> float:
    """The relative error of ``answer`` (a :class:`Fail` with ``hint`` when it exceeds ``tol``)."""
    err = rel_error(answer, reference)
    if not err <= tol:  # also catches NaN
        raise Fail(f"{what} differs from the reference (relative error {err:.2e} > {tol:.0e}).{hint}")
    return err


def matches(answer: np.ndarray, candidate: np.ndarray, tol: float = 1e-9) -> bool:
    """Whether ``answer`` equals ``candidate`` (a known wrong answer) within ``tol``: used to pick a hint."""
    return answer.shape == candidate.shape and rel_error(answer, candidate) <= tol


def unchanged(before: np.ndarray, after: Any, what: str) -> None:
    """A :class:`Fail` when the learner's function wrote into its input ``what``."""
    if not np.array_equal(before, host(after)):
        raise Fail(f"your function modified its input {what} in place; compute a new array instead")
