"""Grader of notebook 8 (batch normalisation): the training-mode backward pass.

The learner writes ``batchnorm_backward(x, gamma, dy, eps) -> (dx, dgamma, dbeta)`` for x of shape
(N, C, H, W), statistics per channel over the M = N·H·W values. The reference is finite differences of
``Σ BatchNorm2d(x)·dy`` for dx and minialex's tested :class:`~minialex.layers.BatchNorm2d` for dγ and dβ.

The grader recognises the classic mistakes by computing each of them and comparing (see
:func:`batchnorm_backward_variant`): the gradient through μ left out, the gradient through σ² left out,
μ and σ² treated as constants (the evaluation-mode formula), the unbiased variance (M − 1), dγ and dβ
averaged instead of summed, dγ from x instead of x̂, and statistics over the batch axis only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import GRAD_TOL, as_array, as_tuple, close, grade, host, matches, unchanged
from minialex.gradcheck import numerical_gradient, rel_error
from minialex.layers import BatchNorm2d

MISTAKES = {
    "no-mean-term": " You left out the gradient through μ: subtract Σg/M (dβ/M) inside the bracket.",
    "no-variance-term": " You left out the gradient through σ²: subtract x̂·Σ(g·x̂)/M (x̂·dγ/M) inside the bracket.",
    "constants": (
        " You treated μ and σ² as constants (dx = γ·s·g, the evaluation-mode formula); in training mode every x_j "
        "moves μ and σ² too, which adds − Σg/M − x̂·Σ(g·x̂)/M."
    ),
    "n-minus-1": " You used the unbiased variance (divided by M − 1); BatchNorm normalises with the biased one (÷ M).",
    "averaged": " dγ and dβ are sums over the M values of the channel, not means.",
    "dgamma-from-x": " dγ = Σ g·x̂ (the normalised input), not Σ g·x.",
    "batch-axis-only": (
        " The statistics are per channel over N·H·W values (axes 0, 2, 3), not per (c, h, w) position over N."
    ),
}


def batchnorm_backward_variant(
    x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, eps: float, mistake: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dγ, dβ) of BatchNorm2d in training mode, or of one classic mistake (a key of :data:`MISTAKES`).

    The correct formula: with M = N·H·W, s = 1/√(σ² + ε) and x̂ = (x − μ)·s per channel,
    dβ = Σg, dγ = Σg·x̂, dx = (γ·s/M)·(M·g − dβ − x̂·dγ).
    """
    axes = (0,) if mistake == "batch-axis-only" else (0, 2, 3)
    count = int(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).sum(axis=axes, keepdims=True) / (count - 1 if mistake == "n-minus-1" else count)
    s = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * s
    g4 = gamma.reshape(1, -1, 1, 1)
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * (x if mistake == "dgamma-from-x" else xhat)).sum(axis=axes, keepdims=True)
    mean_term = 0.0 if mistake in ("no-mean-term", "constants") else dbeta / count
    var_term = 0.0 if mistake in ("no-variance-term", "constants") else xhat * dgamma / count
    if mistake == "dgamma-from-x":
        var_term = xhat * (dy * xhat).sum(axis=axes, keepdims=True) / count
    dx = g4 * s * (dy - mean_term - var_term)
    dgamma, dbeta = dgamma.sum(axis=(0, 2, 3)), dbeta.sum(axis=(0, 2, 3))
    if mistake == "averaged":
        dgamma, dbeta = dgamma / count, dbeta / count
    return dx, dgamma, dbeta


def _hint(got: tuple[np.ndarray, ...], x: np.ndarray, gamma: np.ndarray, dy: np.ndarray, eps: float, part: int) -> str:
    """The classic mistake whose ``part`` (0 dx, 1 dγ, 2 dβ) equals the learner's, as a hint ('' if none)."""
    for mistake, hint in MISTAKES.items():
        candidate = batchnorm_backward_variant(x, gamma, dy, eps, mistake)[part]
        if matches(got[part], candidate):
            return hint
    return ""


def check_batchnorm_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, gamma, dy, eps) -> (dx, dgamma, dbeta)``: BatchNorm2d's training-mode backward pass, x (N, C, H, W),
    against finite differences (dx) and :class:`~minialex.layers.BatchNorm2d` (dγ, dβ), in float64."""

    def body() -> str:
        rng = np.random.default_rng(12)
        worst = 0.0
        # few values per channel (M = 8 and 6), so that the 1/M terms and M versus M − 1 are large
        for shape, eps in [((2, 3, 2, 2), 1e-5), ((3, 2, 2, 1), 1e-3), ((4, 3, 3, 3), 1e-5)]:
            x = rng.standard_normal(shape) * 2 + 1
            gamma = rng.uniform(0.5, 2.0, shape[1])
            dy = rng.standard_normal(shape)
            before = x.copy(), gamma.copy(), dy.copy()
            where = f"x of shape {shape}, eps={eps}"
            result = as_tuple(fn(x, gamma, dy, eps), 3, "dx, dgamma, dbeta")
            for old, new, what in zip(before, (x, gamma, dy), ("x", "gamma", "dy"), strict=True):
                unchanged(old, new, what)
            got = (
                as_array(result[0], f"dx ({where})", shape),
                as_array(result[1], f"dgamma ({where})", (shape[1],)),
                as_array(result[2], f"dbeta ({where})", (shape[1],)),
            )
            layer = BatchNorm2d(shape[1], eps=eps, dtype=np.float64)
            layer.params["weight"][...] = gamma
            layer.forward(x)
            layer.backward(dy)
            reference_dgamma, reference_dbeta = host(layer.grads["weight"]), host(layer.grads["bias"])

            def loss(layer: BatchNorm2d = layer, x: np.ndarray = x, dy: np.ndarray = dy) -> float:
                return float((host(layer.forward(x)) * dy).sum())

            numeric_dx = numerical_gradient(loss, x)
            for part, (name, reference, tol) in enumerate(
                [("dx", numeric_dx, GRAD_TOL), ("dgamma", reference_dgamma, 1e-10), ("dbeta", reference_dbeta, 1e-10)]
            ):
                if rel_error(got[part], reference) > tol:
                    close(got[part], reference, f"{name} ({where})", tol, _hint(got, x, gamma, dy, eps, part))
            worst = max(worst, rel_error(got[0], numeric_dx))
        return f"dx matches finite differences (worst error {worst:.1e}), dgamma and dbeta match BatchNorm2d"

    grade("batchnorm_backward", body)
