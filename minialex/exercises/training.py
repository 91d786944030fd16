"""Graders of notebook 6 (training): the paper's SGD update and a confusion matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import EXACT_TOL, Fail, as_array, as_tuple, grade, host, unchanged
from minialex.gradcheck import rel_error


def _sgd_hint(
    w_new: np.ndarray, v_new: np.ndarray, w: np.ndarray, v: np.ndarray, g: np.ndarray, lr: float, mu: float, lam: float
) -> str:
    """The classic mistake that explains a wrong step, as a hint ('' when none does)."""

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return rel_error(a, b) <= EXACT_TOL

    v_expected = mu * v - lam * lr * w - lr * g
    if same(v_new, mu * v + g + lam * w) or same(v_new, mu * (-v / lr) + g + lam * w):
        return (
            " Your v is PyTorch's buffer of gradients (b ← μb + g + λw, w ← w − εb). The paper's v stores steps: "
            "v ← μv − λεw − εg, w ← w + v. The two agree only while ε is constant (section 6.2)."
        )
    if same(v_new, mu * v - lam * w - lr * g):
        return " The decay term is λ·ε·w: weight decay is scaled by the learning rate too."
    if same(v_new, mu * v + lam * lr * w - lr * g):
        return " Weight decay must pull w towards 0: subtract λ·ε·w."
    if same(v_new, v_expected) and same(w_new, w - v_expected):
        return " The paper adds the velocity: w ← w + v."
    if same(v_new, v_expected) and same(w_new, w + mu * v):
        return " w moves by the *new* velocity: compute v first, then w ← w + v."
    return ""


def check_sgd_paper_step(fn: Callable[..., Any]) -> None:
    """``fn(w, v, grad, lr, momentum, weight_decay) -> (w, v)``: the paper's rule
    v ← μ·v − λ·ε·w − ε·g, w ← w + v, over several steps with a change of learning rate."""

    def body() -> str:
        rng = np.random.default_rng(10)
        w_ref, v_ref = rng.standard_normal((4, 3)), np.zeros((4, 3))
        w, v = w_ref.copy(), v_ref.copy()
        mu, lam = 0.9, 5e-4
        for step, lr in enumerate([0.1, 0.1, 0.1, 0.01, 0.01]):
            g = rng.standard_normal(w.shape)
            before = w.copy(), v.copy(), g.copy()
            result = as_tuple(fn(w, v, g, lr, mu, lam), 2, "new w, new v")
            for old, new, what in zip(before, (w, v, g), ("w", "v", "grad"), strict=True):
                unchanged(old, new, what)
            w_new = as_array(result[0], f"w after step {step + 1}", w.shape)
            v_new = as_array(result[1], f"v after step {step + 1}", w.shape)
            v_expected = mu * v_ref - lam * lr * w_ref - lr * g
            w_expected = w_ref + v_expected
            if rel_error(v_new, v_expected) > EXACT_TOL or rel_error(w_new, w_expected) > EXACT_TOL:
                hint = _sgd_hint(w_new, v_new, w_ref, v_ref, g, lr, mu, lam)
                raise Fail(f"step {step + 1} (lr {lr}) differs from v ← μv − λεw − εg, w ← w + v.{hint}")
            w_ref, v_ref = w_expected, v_expected
            w, v = w_new, v_new
        return "five steps, including a drop of the learning rate, match the paper's rule"

    grade("sgd_paper_step", body)


def check_confusion_matrix(fn: Callable[..., Any]) -> None:
    """``fn(labels, predictions, num_classes) -> C`` with ``C[i, j]`` = images of true class i predicted as j."""

    def body() -> str:
        rng = np.random.default_rng(11)
        for k, n in [(3, 12), (10, 500), (4, 1)]:
            labels, predictions = rng.integers(0, k, n), rng.integers(0, k, n)
            expected = np.zeros((k, k), dtype=np.int64)
            for t, p in zip(labels, predictions, strict=True):
                expected[t, p] += 1
            got = fn(labels.copy(), predictions.copy(), k)
            arr = host(got) if got is not None else None
            if arr is None or arr.shape != (k, k):
                raise Fail(f"expected a ({k}, {k}) array, got {None if arr is None else arr.shape}")
            if not np.array_equal(arr, expected):
                hint = " Rows are the true class, columns the prediction." if np.array_equal(arr, expected.T) else ""
                raise Fail(f"wrong counts for {n} images of {k} classes.{hint}")
        return "right counts, rows = true class, columns = predicted class"

    grade("confusion_matrix", body)
