"""Graders of notebook 4 (local response normalisation): the forward and backward passes.

The backward grader recognises the three classic mistakes by computing each of them and comparing: the
second term of the derivative left out (s treated as a constant), the window not mirrored for an even size,
and α divided by n (PyTorch's and Caffe's convention instead of the paper's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import GRAD_TOL, Fail, as_array, close, grade, host, matches, unchanged
from minialex.gradcheck import numerical_gradient, rel_error
from minialex.layers import LocalResponseNorm

# (size, alpha, beta, k): the paper's constants, then large alphas (so the window term is as large as the
# direct one), odd and even sizes.
_LRN_CASES = [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.75, 1.0), (4, 0.3, 0.6, 1.5), (5, 0.2, 0.75, 2.0)]


def _window_sum(t: np.ndarray, before: int, after: int) -> np.ndarray:
    """``out[:, i] = Σ t[:, j]`` for j in [i − before, i + after] clipped to the channels (axis 1)."""
    c = t.shape[1]
    return np.stack([t[:, max(0, i - before) : min(c, i + after + 1)].sum(axis=1) for i in range(c)], axis=1)


def lrn_backward_variant(
    a: np.ndarray,
    dy: np.ndarray,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    *,
    second_term: bool = True,
    mirrored: bool = True,
) -> np.ndarray:
    """dL/da of the paper's LRN, or of one classic mistake (``second_term=False``: only g·s^−β;
    ``mirrored=False``: the window W(m) used where {i : m ∈ W(i)} is needed, wrong for even sizes)."""
    before, after = size // 2, (size - 1) // 2
    s = k + alpha * _window_sum(a * a, before, after)
    direct = dy * s**-beta
    if not second_term:
        return direct
    t = dy * a * s ** (-beta - 1)
    u = _window_sum(t, after, before) if mirrored else _window_sum(t, before, after)
    return direct - 2 * alpha * beta * a * u


def _backward_hint(
    got: np.ndarray, a: np.ndarray, dy: np.ndarray, size: int, alpha: float, beta: float, k: float
) -> str:
    """The classic mistake that explains a wrong ``got``, as a hint ('' when none does)."""
    if matches(got, lrn_backward_variant(a, dy, size, alpha, beta, k, second_term=False)):
        return (
            " You kept only g_m·s_m^(−β): a_m also sits in the sums s_i of its neighbours, so add the second "
            "term −2αβ·a_m·Σ_{i: m∈W(i)} g_i·a_i·s_i^(−β−1)."
        )
    if size % 2 == 0 and matches(got, lrn_backward_variant(a, dy, size, alpha, beta, k, mirrored=False)):
        return (
            f" Right for odd sizes, wrong for size {size}: the second term sums over {{i : m ∈ W(i)}}, the window "
            "mirrored around m, i.e. (n−1)//2 channels before m and n//2 after (W(i) itself has n//2 before)."
        )
    if matches(got, lrn_backward_variant(a, dy, size, alpha / size, beta, k)):
        return " You divided α by n (PyTorch's and Caffe's convention); the paper multiplies the plain sum by α."
    return ""


def check_lrn_forward(fn: Callable[..., Any]) -> None:
    """``fn(a, size, alpha, beta, k) -> b`` over channels (axis 1), the paper's convention (alpha not divided
    by size); compared with :class:`minialex.layers.LocalResponseNorm`."""

    def body() -> str:
        rng = np.random.default_rng(7)
        a = rng.standard_normal((2, 7, 3, 3)) * 3
        before = a.copy()
        worst = 0.0
        for size, alpha, beta, k in _LRN_CASES:
            expected = host(LocalResponseNorm(size, alpha, beta, k).forward(a))
            where = f"size={size}, alpha={alpha}, beta={beta}, k={k}"
            got = as_array(fn(a, size, alpha, beta, k), f"b ({where})", a.shape)
            unchanged(before, a, "a")
            if rel_error(got, expected) > 1e-12:
                hint = ""
                if matches(got, host(LocalResponseNorm(size, alpha / size, beta, k).forward(a)), 1e-12):
                    hint = (
                        " Your layer divides alpha by size: that is PyTorch's and Caffe's convention, not the paper's."
                    )
                elif size % 2 == 0:
                    hint = " For even n the window is [i − n//2, i + (n−1)//2]: the extra channel goes before i."
                raise Fail(f"b differs from the reference for {where}.{hint}")
            worst = max(worst, rel_error(got, expected))
        return f"matches LocalResponseNorm for {len(_LRN_CASES)} settings, odd and even windows (error {worst:.1e})"

    grade("lrn_forward", body)


def check_lrn_backward(fn: Callable[..., Any]) -> None:
    """``fn(a, dy, size, alpha, beta, k) -> da``: finite differences of ``Σ LRN(a) · dy`` with large alpha, so
    that the window term of the gradient is as large as the direct one and no mistake hides."""

    def body() -> str:
        rng = np.random.default_rng(8)
        worst = 0.0
        for size, alpha, beta, k in _LRN_CASES[1:]:
            a = rng.standard_normal((2, 6, 2, 2))
            layer = LocalResponseNorm(size, alpha, beta, k)
            dy = rng.standard_normal(a.shape)
            before = a.copy(), dy.copy()
            where = f"size={size}, alpha={alpha}, beta={beta}, k={k}"
            got = as_array(fn(a, dy, size, alpha, beta, k), f"da ({where})", a.shape)
            unchanged(before[0], a, "a")
            unchanged(before[1], dy, "dy")

            def loss(layer: LocalResponseNorm = layer, a: np.ndarray = a, dy: np.ndarray = dy) -> float:
                return float((host(layer.forward(a)) * dy).sum())

            numeric = numerical_gradient(loss, a)
            if rel_error(got, numeric) > GRAD_TOL:
                hint = _backward_hint(got, a, dy, size, alpha, beta, k)
                close(got, numeric, f"da ({where})", GRAD_TOL, hint)
            worst = max(worst, rel_error(got, numeric))
        return f"matches finite differences with large alpha, odd and even windows (worst error {worst:.1e})"

    grade("lrn_backward", body)
