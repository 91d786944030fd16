"""Graders of notebook 10 (fast convolution): Winograd's F(2, 3) by hand, and one F(2×2, 3×3) tile.

:func:`check_winograd_f23` also counts the multiplications: the signal's samples are handed over wrapped in
:class:`Counted`, a number that counts every product (or quotient) it takes part in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import EXACT_TOL, Fail, as_array, close, grade, host


class Counted:
    """A number that counts, in a shared one-element list, every multiplication or division it takes part in.

    Sums and differences of Counted numbers are Counted (and free); a product with anything is counted once.
    """

    def __init__(self, value: float, counter: list[int]) -> None:
        self.value, self.counter = float(value), counter

    def _wrap(self, value: float) -> Counted:
        return Counted(value, self.counter)

    @staticmethod
    def _plain(other: Any) -> float:
        return other.value if isinstance(other, Counted) else float(other)

    def __add__(self, other: Any) -> Counted:
        return self._wrap(self.value + self._plain(other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Counted:
        return self._wrap(self.value - self._plain(other))

    def __rsub__(self, other: Any) -> Counted:
        return self._wrap(self._plain(other) - self.value)

    def __neg__(self) -> Counted:
        return self._wrap(-self.value)

    def __mul__(self, other: Any) -> Counted:
        self.counter[0] += 1
        return self._wrap(self.value * self._plain(other))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Counted:
        self.counter[0] += 1
        return self._wrap(self.value / self._plain(other))

    def __float__(self) -> float:
        return self.value


def _correlate(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """y_i = Σ_k g_k d_{i+k}: the 'valid' correlation that a convolution layer computes."""
    r = len(g)
    return np.array([sum(g[k] * d[i + k] for k in range(r)) for i in range(len(d) - r + 1)])


def check_winograd_f23(fn: Callable[..., Any]) -> None:
    """``fn(d, g) -> (y0, y1)``: the two outputs of a 3-tap filter ``g`` over 4 samples ``d``, with at most 4
    multiplications involving the samples (the filter's own transform, (g0 + g1 + g2)/2 and so on, is free)."""

    def body() -> str:
        rng = np.random.default_rng(10)
        worst = 0.0
        for _ in range(20):
            d, g = rng.standard_normal(4), rng.standard_normal(3)
            answer = as_array(np.array([float(v) for v in fn(d, g)]), "(y0, y1)", (2,))
            worst = max(worst, close(answer, _correlate(d, g), "(y0, y1)", EXACT_TOL, " Check the signs of m2, m3."))
        counter = [0]
        d, g = rng.standard_normal(4), rng.standard_normal(3)
        y = fn([Counted(v, counter) for v in d], g)
        answer = as_array(np.array([float(v) for v in y]), "(y0, y1)", (2,))
        close(answer, _correlate(d, g), "(y0, y1) with counted samples", EXACT_TOL)
        if counter[0] > 4:
            raise Fail(
                f"correct, but {counter[0]} multiplications involve the samples d; Winograd's F(2, 3) needs only 4 "
                "(m1..m4: one product per interpolation point). The direct formula takes 6."
            )
        return f"equals the direct correlation (error {worst:.1e}) with {counter[0]} multiplications instead of 6"

    grade("winograd_f23", body)


def check_winograd_tile(fn: Callable[..., Any]) -> None:
    """``fn(d, g) -> y``: F(2×2, 3×3) on one 4×4 tile ``d`` and a 3×3 filter ``g``, compared with the direct
    2-D correlation."""

    def body() -> str:
        rng = np.random.default_rng(11)
        worst = 0.0
        for _ in range(10):
            d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
            expected = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
            d_before = d.copy()
            y = as_array(fn(d, g), "y", (2, 2))
            if not np.array_equal(host(d), d_before):
                raise Fail("the tile d was modified: compute new arrays instead")
            hint = " Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A: mind which side each transpose goes on."
            worst = max(worst, close(y, expected, "y", EXACT_TOL, hint))
        return f"equals the direct 2-D correlation on 10 random tiles (error {worst:.1e}), 16 products instead of 36"

    grade("winograd_tile", body)
