"""Graders of notebook 1 (the chain rule): the linear layer's and softmax cross-entropy's backward passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import GRAD_TOL, Fail, as_array, as_tuple, close, grade, matches, unchanged
from minialex.gradcheck import numerical_gradient
from minialex.layers import SoftmaxCrossEntropy


def check_linear_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, weight, dy) -> (dx, dweight, dbias)`` for ``y = x @ weight.T + bias``, checked against finite
    differences of ``L = Σ y · dy``."""

    def body() -> str:
        rng = np.random.default_rng(1)
        x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
        dy = rng.standard_normal((5, 3))
        copies = x.copy(), w.copy(), dy.copy()
        result = as_tuple(fn(x, w, dy), 3, "dx, dweight, dbias")
        for before, after, what in zip(copies, (x, w, dy), ("x", "weight", "dy"), strict=True):
            unchanged(before, after, what)
        dx = as_array(result[0], "dx", x.shape)
        dw = as_array(result[1], "dweight", w.shape)
        db = as_array(result[2], "dbias", b.shape)

        def loss() -> float:
            return float(((x @ w.T + b) * dy).sum())

        db_hint = " Expected dy summed over the batch axis."
        if matches(db, dy.mean(axis=0)):
            db_hint = " You averaged dy over the batch: the bias is used once per sample, so its gradient is the sum."
        errors = [
            close(dx, numerical_gradient(loss, x), "dx", GRAD_TOL, " Expected dy @ weight."),
            close(dw, numerical_gradient(loss, w), "dweight", GRAD_TOL, " Expected dy.T @ x (shape out × in)."),
            close(db, numerical_gradient(loss, b), "dbias", GRAD_TOL, db_hint),
        ]
        return f"dx, dweight and dbias match finite differences (worst relative error {max(errors):.1e})"

    grade("linear_backward", body)


def check_softmax_ce_backward(fn: Callable[..., Any]) -> None:
    """``fn(logits, labels) -> dlogits`` for the mean softmax cross-entropy, checked against finite
    differences of minialex's loss, then on logits large enough to overflow a naive ``exp``."""

    def body() -> str:
        rng = np.random.default_rng(2)
        logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
        before = logits.copy()
        grad = as_array(fn(logits, labels), "dlogits", logits.shape)
        unchanged(before, logits, "logits")
        ce = SoftmaxCrossEntropy()

        def loss() -> float:
            return float(ce.forward(logits, labels))

        numeric = numerical_gradient(loss, logits)
        if matches(grad * logits.shape[0], numeric, GRAD_TOL):
            raise Fail("your gradient is N times too small: divide by N once (the loss is a mean over the batch)")
        if matches(grad / logits.shape[0], numeric, GRAD_TOL):
            raise Fail("your gradient is N times too large: the loss is the *mean* over the batch, divide by N")
        if matches(-grad, numeric, GRAD_TOL):
            raise Fail("your gradient has the wrong sign: it is softmax − onehot, not onehot − softmax")
        err = close(grad, numeric, "dlogits", GRAD_TOL, " Expected (softmax(logits) − onehot(labels)) / N.")
        big = logits + 1000.0  # softmax is unchanged by a constant shift, so the gradient must be too
        with np.errstate(all="ignore"):
            grad_big = as_array(fn(big, labels), "dlogits for logits near 1000", big.shape)
        if not np.all(np.isfinite(grad_big)):
            raise Fail("logits near 1000 give inf/NaN: subtract each row's maximum before exp (log-sum-exp)")
        close(grad_big, grad, "dlogits for logits shifted by +1000", 1e-9, " Softmax is shift invariant.")
        return f"matches finite differences (relative error {err:.1e}) and is stable for logits near 1000"

    grade("softmax_ce_backward", body)
