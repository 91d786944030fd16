"""Graders of notebook 3 (ReLU, max-pooling, dropout): the ReLU and max-pool backward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import EXACT_TOL, GRAD_TOL, Fail, as_array, close, grade, host, unchanged
from minialex.gradcheck import numerical_gradient, tie_free
from minialex.layers import MaxPool2d


def check_relu_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, dy) -> dx`` for ``y = max(0, x)``: finite differences away from the kink, exact zeros where
    x <= 0, dy not modified, dtype kept."""

    def body() -> str:
        x = host(tie_free((3, 4, 5)))
        dy = np.random.default_rng(5).standard_normal(x.shape)
        copies = x.copy(), dy.copy()
        dx = as_array(fn(x, dy), "dx", x.shape)
        unchanged(copies[0], x, "x")
        unchanged(copies[1], dy, "dy")

        def loss() -> float:
            return float((np.maximum(x, 0) * dy).sum())

        err = close(dx, numerical_gradient(loss, x), "dx", GRAD_TOL, " Expected dy where x > 0 and 0 elsewhere.")
        x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
        out32 = host(fn(x32, dy32))
        if out32.dtype != np.float32:
            raise Fail(f"float32 inputs gave a {out32.dtype} gradient: keep the input's dtype (no silent upcast)")
        at_zero = host(fn(np.zeros(3), np.ones(3)))
        if not np.array_equal(at_zero, np.zeros(3)):
            raise Fail(
                f"at x = 0 exactly the gradient should be 0 (the convention of minialex and PyTorch), got {at_zero}"
            )
        return f"matches finite differences (relative error {err:.1e}), 0 at the kink, float32 stays float32"

    grade("relu_backward", body)


def check_maxpool_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, dy, kernel, stride) -> dx`` for max-pooling (no padding): compared exactly with
    :class:`minialex.layers.MaxPool2d` on overlapping windows, with and without ties."""

    def body() -> str:
        rng = np.random.default_rng(6)
        cases = [
            ("distinct values, 3x3 windows at stride 2 (overlapping)", host(tie_free((2, 2, 7, 7))), 3, 2),
            ("ties (integers 0..3), 3x3 windows at stride 2", rng.integers(0, 4, (2, 2, 7, 7)).astype(float), 3, 2),
            ("a constant image (every window is one big tie)", np.ones((1, 1, 5, 5)), 3, 2),
            ("2x2 windows at stride 2 (no overlap)", host(tie_free((1, 2, 6, 6), seed=1)), 2, 2),
        ]
        for what, x, k, s in cases:
            pool = MaxPool2d(k, s)
            y = host(pool.forward(x))
            dy = rng.standard_normal(y.shape)
            expected = host(pool.backward(dy))
            before = x.copy(), dy.copy()
            got = as_array(fn(x, dy, k, s), f"dx ({what})", x.shape)
            unchanged(before[0], x, "x")
            unchanged(before[1], dy, "dy")
            if not np.allclose(got, expected, rtol=0, atol=EXACT_TOL):
                hint = ""
                if "overlapping" in what:
                    hint = " A pixel that wins several overlapping windows collects dy from each: use += , not =."
                elif "tie" in what:
                    hint = " On a tie, only the first maximum in row-major window order gets the gradient."
                raise Fail(f"dx differs from the reference for {what}.{hint}")
        return "identical to MaxPool2d's backward with overlapping windows, ties (first maximum) and 2x2/2"

    grade("maxpool_backward", body)
