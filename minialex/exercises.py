"""Graders for the exercises in ``tutorials/``: each checks a learner's function and prints a verdict.

Every ``check_*`` function takes the learner's function, runs it on fresh inputs it builds itself, compares
the answer with an independent reference (finite differences, or minialex's own tested layers) and prints
one line:

* ``PASS <exercise>: ...`` with the figure that was checked (e.g. the worst relative error);
* ``FAIL <exercise>: ...`` with what was expected, what came back and, where a classic mistake explains
  the difference, a hint;
* ``<exercise>: not yet implemented ...`` while the function still raises ``NotImplementedError``.

A checker never raises (a crash inside the learner's code is reported as a FAIL) and returns ``None``, so
the notebook's check cells run cleanly whether or not the exercise is solved. Reference solutions are in
``tutorials/solutions/``.

Everything here runs on the host in float64 NumPy (the tutorials use the NumPy backend): finite
differences in float32 are noise (see :mod:`minialex.gradcheck`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from minialex import backend
from minialex.gradcheck import numerical_gradient, rel_error, tie_free
from minialex.layers import LocalResponseNorm, MaxPool2d, SoftmaxCrossEntropy, col2im, conv_output_size, im2col

GRAD_TOL = 1e-6  # the project's bound for float64 gradient checks
EXACT_TOL = 1e-12  # for answers that are sums of a few copies of the same numbers


class _Fail(Exception):
    """A wrong answer: the message says what was expected."""


def _grade(name: str, body: Callable[[], str]) -> None:
    """Run one exercise's checks and print PASS, FAIL or not-yet-implemented."""
    try:
        detail = body()
    except NotImplementedError:
        print(
            f"{name}: not yet implemented. Replace `raise NotImplementedError` in the exercise cell above, "
            "run that cell, then run this one again."
        )
        return
    except _Fail as exc:
        print(f"FAIL {name}: {exc}")
        return
    except Exception as exc:  # the learner's code crashed: report it, do not crash the notebook
        print(f"FAIL {name}: your function raised {type(exc).__name__}: {exc}")
        return
    print(f"PASS {name}: {detail}")


def _host(a: Any) -> np.ndarray:
    return np.asarray(backend.to_numpy(a))


def _array(value: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The learner's answer as a float64 host array of the expected shape (or a FAIL saying why not)."""
    if value is None:
        raise _Fail(f"{what} is None; did you forget a `return`?")
    try:
        arr = _host(value)
    except Exception as exc:
        raise _Fail(f"{what} is a {type(value).__name__}, not an array ({exc})") from exc
    if arr.shape != tuple(shape):
        raise _Fail(f"{what} should have shape {tuple(shape)}, got {arr.shape}")
    if arr.dtype.kind != "f":
        raise _Fail(f"{what} should be a float array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _close(answer: np.ndarray, reference: np.ndarray, what: str, tol: float, hint: str = "") -> float:
    err = rel_error(answer, reference)
    if not err <= tol:  # also catches NaN
        raise _Fail(f"{what} differs from the reference (relative error {err:.2e} > {tol:.0e}).{hint}")
    return err


def _unchanged(before: np.ndarray, after: np.ndarray, what: str) -> None:
    if not np.array_equal(before, _host(after)):
        raise _Fail(f"your function modified its input {what} in place; compute a new array instead")


# --------------------------------------------------------------------------------------------------------
# 01: the chain rule


def check_linear_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, weight, dy) -> (dx, dweight, dbias)`` for ``y = x @ weight.T + bias``, checked against finite
    differences of ``L = Σ y · dy``."""

    def body() -> str:
        rng = np.random.default_rng(1)
        x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
        dy = rng.standard_normal((5, 3))
        copies = x.copy(), w.copy(), dy.copy()
        result = fn(x, w, dy)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise _Fail("return a tuple (dx, dweight, dbias)")
        for before, after, what in zip(copies, (x, w, dy), ("x", "weight", "dy"), strict=True):
            _unchanged(before, after, what)
        dx = _array(result[0], "dx", x.shape)
        dw = _array(result[1], "dweight", w.shape)
        db = _array(result[2], "dbias", b.shape)

        def loss() -> float:
            return float(((x @ w.T + b) * dy).sum())

        errors = [
            _close(dx, numerical_gradient(loss, x), "dx", GRAD_TOL, " Expected dy @ weight."),
            _close(dw, numerical_gradient(loss, w), "dweight", GRAD_TOL, " Expected dy.T @ x (shape out × in)."),
            _close(db, numerical_gradient(loss, b), "dbias", GRAD_TOL, " Expected dy summed over the batch axis."),
        ]
        return f"dx, dweight and dbias match finite differences (worst relative error {max(errors):.1e})"

    _grade("linear_backward", body)


def check_softmax_ce_backward(fn: Callable[..., Any]) -> None:
    """``fn(logits, labels) -> dlogits`` for the mean softmax cross-entropy, checked against finite
    differences of minialex's loss, then on logits large enough to overflow a naive ``exp``."""

    def body() -> str:
        rng = np.random.default_rng(2)
        logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
        before = logits.copy()
        grad = _array(fn(logits, labels), "dlogits", logits.shape)
        _unchanged(before, logits, "logits")
        ce = SoftmaxCrossEntropy()

        def loss() -> float:
            return float(ce.forward(logits, labels))

        numeric = numerical_gradient(loss, logits)
        if rel_error(grad * logits.shape[0], numeric) <= GRAD_TOL:
            raise _Fail("your gradient is N times too small: divide by N once (the loss is a mean over the batch)")
        if rel_error(grad / logits.shape[0], numeric) <= GRAD_TOL:
            raise _Fail("your gradient is N times too large: the loss is the *mean* over the batch, divide by N")
        err = _close(grad, numeric, "dlogits", GRAD_TOL, " Expected (softmax(logits) − onehot(labels)) / N.")
        big = logits + 1000.0  # softmax is unchanged by a constant shift, so the gradient must be too
        with np.errstate(all="ignore"):
            grad_big = _array(fn(big, labels), "dlogits for logits near 1000", big.shape)
        if not np.all(np.isfinite(grad_big)):
            raise _Fail("logits near 1000 give inf/NaN: subtract each row's maximum before exp (log-sum-exp)")
        _close(grad_big, grad, "dlogits for logits shifted by +1000", 1e-9, " Softmax is shift invariant.")
        return f"matches finite differences (relative error {err:.1e}) and is stable for logits near 1000"

    _grade("softmax_ce_backward", body)


# --------------------------------------------------------------------------------------------------------
# 02: convolution as a matrix product

# (x shape, kernel (kh, kw), stride, padding): single and multi-channel, padding, strides that do not tile
_IM2COL_CASES = [
    ((1, 1, 4, 4), (3, 3), 1, 0),
    ((2, 3, 5, 6), (3, 2), 2, 1),
    ((1, 2, 7, 7), (3, 3), 3, 0),
    ((2, 1, 9, 9), (5, 5), 2, 2),
]


def check_im2col(fn: Callable[..., Any]) -> None:
    """``fn(x, kh, kw, stride, padding) -> cols`` of shape (C·KH·KW, N·OH·OW), rows (c, i, j), columns
    (n, oh, ow); compared entry by entry with :func:`minialex.layers.im2col`."""

    def body() -> str:
        rng = np.random.default_rng(3)
        for shape, (kh, kw), s, p in _IM2COL_CASES:
            x = rng.standard_normal(shape)
            before = x.copy()
            expected = _host(im2col(x, (kh, kw), s, p))
            where = f"x {shape}, kernel {kh}x{kw}, stride {s}, padding {p}"
            got = _array(fn(x, kh, kw, s, p), f"cols for {where}", expected.shape)
            _unchanged(before, x, "x")
            if not np.array_equal(got, expected):
                hint = ""
                if np.array_equal(np.sort(got, axis=None), np.sort(expected, axis=None)):
                    hint = " The right numbers are there in the wrong places: check the row order (c, i, j) and column order (n, oh, ow)."
                raise _Fail(f"cols differ for {where}.{hint}")
        return f"identical to minialex's im2col on {len(_IM2COL_CASES)} cases (padding, strides, several channels)"

    _grade("im2col_naive", body)


def check_col2im(fn: Callable[..., Any]) -> None:
    """``fn(cols, x_shape, kh, kw, stride, padding) -> dx``: the adjoint of im2col, checked with the identity
    <col2im(C), X> = <C, im2col(X)> and against :func:`minialex.layers.col2im`."""

    def body() -> str:
        rng = np.random.default_rng(4)
        worst = 0.0
        for shape, (kh, kw), s, p in _IM2COL_CASES:
            x = rng.standard_normal(shape)
            cols_x = _host(im2col(x, (kh, kw), s, p))
            c = rng.standard_normal(cols_x.shape)
            before = c.copy()
            where = f"x {shape}, kernel {kh}x{kw}, stride {s}, padding {p}"
            got = _array(fn(c, shape, kh, kw, s, p), f"dx for {where}", shape)
            _unchanged(before, c, "cols")
            lhs, rhs = float((got * x).sum()), float((c * cols_x).sum())
            gap = abs(lhs - rhs) / max(abs(lhs) + abs(rhs), 1e-12)
            if gap > EXACT_TOL:
                raise _Fail(
                    f"<col2im(C), X> = {lhs:.6f} but <C, im2col(X)> = {rhs:.6f} for {where}: not the adjoint. "
                    "Did you assign (=) where overlapping windows must add (+=)?"
                )
            worst = max(worst, _close(got, _host(col2im(c, shape, (kh, kw), s, p)), f"dx for {where}", EXACT_TOL))
        return f"<col2im(C), X> = <C, im2col(X)> on {len(_IM2COL_CASES)} cases; equal to minialex's col2im"

    _grade("col2im_naive", body)


# --------------------------------------------------------------------------------------------------------
# 03: ReLU, max-pool, dropout


def check_relu_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, dy) -> dx`` for ``y = max(0, x)``: finite differences away from the kink, exact zeros where
    x <= 0, dy not modified, dtype kept."""

    def body() -> str:
        x = _host(tie_free((3, 4, 5)))
        dy = np.random.default_rng(5).standard_normal(x.shape)
        copies = x.copy(), dy.copy()
        dx = _array(fn(x, dy), "dx", x.shape)
        _unchanged(copies[0], x, "x")
        _unchanged(copies[1], dy, "dy")

        def loss() -> float:
            return float((np.maximum(x, 0) * dy).sum())

        err = _close(dx, numerical_gradient(loss, x), "dx", GRAD_TOL, " Expected dy where x > 0 and 0 elsewhere.")
        x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
        out32 = _host(fn(x32, dy32))
        if out32.dtype != np.float32:
            raise _Fail(f"float32 inputs gave a {out32.dtype} gradient: keep the input's dtype (no silent upcast)")
        at_zero = _host(fn(np.zeros(3), np.ones(3)))
        if not np.array_equal(at_zero, np.zeros(3)):
            raise _Fail(
                f"at x = 0 exactly the gradient should be 0 (the convention of minialex and PyTorch), got {at_zero}"
            )
        return f"matches finite differences (relative error {err:.1e}), 0 at the kink, float32 stays float32"

    _grade("relu_backward", body)


def check_maxpool_backward(fn: Callable[..., Any]) -> None:
    """``fn(x, dy, kernel, stride) -> dx`` for max-pooling (no padding): compared exactly with
    :class:`minialex.layers.MaxPool2d` on overlapping windows, with and without ties."""

    def body() -> str:
        rng = np.random.default_rng(6)
        cases = [
            ("distinct values, 3x3 windows at stride 2 (overlapping)", _host(tie_free((2, 2, 7, 7))), 3, 2),
            ("ties (integers 0..3), 3x3 windows at stride 2", rng.integers(0, 4, (2, 2, 7, 7)).astype(float), 3, 2),
            ("a constant image (every window is one big tie)", np.ones((1, 1, 5, 5)), 3, 2),
            ("2x2 windows at stride 2 (no overlap)", _host(tie_free((1, 2, 6, 6), seed=1)), 2, 2),
        ]
        for what, x, k, s in cases:
            pool = MaxPool2d(k, s)
            y = _host(pool.forward(x))
            dy = rng.standard_normal(y.shape)
            expected = _host(pool.backward(dy))
            before = x.copy(), dy.copy()
            got = _array(fn(x, dy, k, s), f"dx ({what})", x.shape)
            _unchanged(before[0], x, "x")
            _unchanged(before[1], dy, "dy")
            if not np.allclose(got, expected, rtol=0, atol=EXACT_TOL):
                hint = ""
                if "overlapping" in what:
                    hint = " A pixel that wins several overlapping windows collects dy from each: use += , not =."
                elif "tie" in what:
                    hint = " On a tie, only the first maximum in row-major window order gets the gradient."
                raise _Fail(f"dx differs from the reference for {what}.{hint}")
        return "identical to MaxPool2d's backward with overlapping windows, ties (first maximum) and 2x2/2"

    _grade("maxpool_backward", body)


# --------------------------------------------------------------------------------------------------------
# 04: local response normalisation

_LRN_CASES = [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.75, 1.0), (4, 0.3, 0.6, 1.5), (5, 0.2, 0.75, 2.0)]


def check_lrn_forward(fn: Callable[..., Any]) -> None:
    """``fn(a, size, alpha, beta, k) -> b`` over channels (axis 1), the paper's convention (alpha not divided
    by size); compared with :class:`minialex.layers.LocalResponseNorm`."""

    def body() -> str:
        rng = np.random.default_rng(7)
        a = rng.standard_normal((2, 7, 3, 3)) * 3
        before = a.copy()
        worst = 0.0
        for size, alpha, beta, k in _LRN_CASES:
            expected = _host(LocalResponseNorm(size, alpha, beta, k).forward(a))
            where = f"size={size}, alpha={alpha}, beta={beta}, k={k}"
            got = _array(fn(a, size, alpha, beta, k), f"b ({where})", a.shape)
            _unchanged(before, a, "a")
            if rel_error(got, expected) > 1e-12:
                hint = ""
                torch_style = _host(LocalResponseNorm(size, alpha / size, beta, k).forward(a))
                if rel_error(got, torch_style) <= 1e-12:
                    hint = (
                        " Your layer divides alpha by size: that is PyTorch's and Caffe's convention, not the paper's."
                    )
                raise _Fail(f"b differs from the reference for {where}.{hint}")
            worst = max(worst, rel_error(got, expected))
        return f"matches LocalResponseNorm for {len(_LRN_CASES)} settings, odd and even windows (error {worst:.1e})"

    _grade("lrn_forward", body)


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
            got = _array(fn(a, dy, size, alpha, beta, k), f"da ({where})", a.shape)
            _unchanged(before[0], a, "a")
            _unchanged(before[1], dy, "dy")

            def loss(layer: LocalResponseNorm = layer, a: np.ndarray = a, dy: np.ndarray = dy) -> float:
                return float((_host(layer.forward(a)) * dy).sum())

            worst = max(worst, _close(got, numerical_gradient(loss, a), f"da ({where})", GRAD_TOL))
        return f"matches finite differences with large alpha, odd and even windows (worst error {worst:.1e})"

    _grade("lrn_backward", body)


# --------------------------------------------------------------------------------------------------------
# 05: assembling AlexNet

# (layer, kernel, stride, padding) of the paper network's layers that change the spatial size
_PAPER_SPATIAL = [(11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0)]


def check_pool5_side(fn: Callable[[int], Any]) -> None:
    """``fn(image_size) -> int``: the side of the paper network's pool5 output, for sizes 67..400."""

    def body() -> str:
        for size in range(67, 401):
            side = size
            for k, s, p in _PAPER_SPATIAL:
                side = conv_output_size(side, k, s, p)
            got = fn(size)
            if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
                raise _Fail(f"pool5_side({size}) returned {got!r}; expected an int")
            if got != side:
                hint = ""
                if size in (224, 227):
                    hint = " Remember that every size floors: (H + 2p − K) // s + 1."
                raise _Fail(f"pool5_side({size}) = {got}, expected {side}.{hint}")
        return "right for every input size from 67 to 400 (227 → 6, 224 → 5)"

    _grade("pool5_side", body)


def check_conv_cost(fn: Callable[..., Any]) -> None:
    """``fn(c_in, c_out, k, groups, out_h, out_w) -> (params, macs)`` for a k×k convolution with a bias."""

    def body() -> str:
        paper = [  # the paper's five convolutions ([P] §3.5 with Caffe's groups), alexnet-facts.md §2
            ((3, 96, 11, 1, 55, 55), (34_944, 105_415_200)),
            ((96, 256, 5, 2, 27, 27), (307_456, 223_948_800)),
            ((256, 384, 3, 1, 13, 13), (885_120, 149_520_384)),
            ((384, 384, 3, 2, 13, 13), (663_936, 112_140_288)),
            ((384, 256, 3, 2, 13, 13), (442_624, 74_760_192)),
        ]
        rng = np.random.default_rng(9)
        cases = list(paper)
        for _ in range(20):
            g = int(rng.integers(1, 5))
            c_in, c_out = g * int(rng.integers(1, 20)), g * int(rng.integers(1, 20))
            k, oh, ow = int(rng.integers(1, 8)), int(rng.integers(1, 30)), int(rng.integers(1, 30))
            per_filter = c_in // g * k * k
            cases.append(((c_in, c_out, k, g, oh, ow), (c_out * per_filter + c_out, oh * ow * c_out * per_filter)))
        for args, (params, macs) in cases:
            got = fn(*args)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise _Fail(f"return a tuple (params, macs); got {got!r}")
            g_params, g_macs = (int(v) for v in got)
            where = "conv_cost(c_in={}, c_out={}, k={}, groups={}, out_h={}, out_w={})".format(*args)
            if g_params != params:
                hint = ""
                if g_params == params - args[1]:
                    hint = " You left out the bias: one per output channel."
                elif g_params == (params - args[1]) * args[3] + args[1]:
                    hint = " With groups each filter sees only c_in / groups channels."
                raise _Fail(f"{where}: params {g_params:,}, expected {params:,}.{hint}")
            if g_macs != macs:
                hint = " With groups each filter sees only c_in / groups channels." if g_macs == macs * args[3] else ""
                raise _Fail(f"{where}: MACs {g_macs:,}, expected {macs:,}.{hint}")
        return "right for the paper's five convolutions and 20 random configurations"

    _grade("conv_cost", body)


# --------------------------------------------------------------------------------------------------------
# 06: training


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
            result = fn(w, v, g, lr, mu, lam)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise _Fail("return a tuple (new w, new v)")
            for old, new, what in zip(before, (w, v, g), ("w", "v", "grad"), strict=True):
                _unchanged(old, new, what)
            w_new = _array(result[0], f"w after step {step + 1}", w.shape)
            v_new = _array(result[1], f"v after step {step + 1}", w.shape)
            v_expected = mu * v_ref - lam * lr * w_ref - lr * g
            w_expected = w_ref + v_expected
            if rel_error(v_new, v_expected) > EXACT_TOL or rel_error(w_new, w_expected) > EXACT_TOL:
                hint = ""
                if rel_error(v_new, mu * v_ref - lam * w_ref - lr * g) <= EXACT_TOL:
                    hint = " The decay term is λ·ε·w: weight decay is scaled by the learning rate too."
                elif rel_error(v_new, mu * v_ref + lam * lr * w_ref - lr * g) <= EXACT_TOL:
                    hint = " Weight decay must pull w towards 0: subtract λ·ε·w."
                elif (
                    rel_error(w_new, w_ref + mu * v_ref - lam * lr * w_ref - lr * g) > EXACT_TOL
                    and rel_error(w_new, w_ref - v_expected) <= EXACT_TOL
                ):
                    hint = " The paper adds the velocity: w ← w + v."
                raise _Fail(f"step {step + 1} (lr {lr}) differs from v ← μv − λεw − εg, w ← w + v.{hint}")
            w_ref, v_ref = w_expected, v_expected
            w, v = w_new, v_new
        return "five steps, including a drop of the learning rate, match the paper's rule"

    _grade("sgd_paper_step", body)


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
            arr = _host(got) if got is not None else None
            if arr is None or arr.shape != (k, k):
                raise _Fail(f"expected a ({k}, {k}) array, got {None if arr is None else arr.shape}")
            if not np.array_equal(arr, expected):
                hint = " Rows are the true class, columns the prediction." if np.array_equal(arr, expected.T) else ""
                raise _Fail(f"wrong counts for {n} images of {k} classes.{hint}")
        return "right counts, rows = true class, columns = predicted class"

    _grade("confusion_matrix", body)


# --------------------------------------------------------------------------------------------------------
# 07: CPU vs GPU


def check_im2col_bytes(fn: Callable[..., Any]) -> None:
    """``fn(n, c, h, w, k, stride, padding, itemsize) -> bytes`` of the im2col matrix, compared with real
    buffers and with the paper's conv1 and conv2 at batch 128."""

    def body() -> str:
        rng = np.random.default_rng(12)
        for _ in range(8):
            n, c, k, s = (
                int(rng.integers(1, 4)),
                int(rng.integers(1, 5)),
                int(rng.integers(1, 6)),
                int(rng.integers(1, 4)),
            )
            p, h, w = int(rng.integers(0, 3)), int(rng.integers(k, 15)), int(rng.integers(k, 15))
            for dtype in (np.float32, np.float64):
                real = im2col(np.zeros((n, c, h, w), dtype=dtype), k, s, p).nbytes
                got = fn(n, c, h, w, k, s, p, np.dtype(dtype).itemsize)
                if got != real:
                    raise _Fail(
                        f"im2col_bytes(n={n}, c={c}, h={h}, w={w}, k={k}, stride={s}, padding={p}, "
                        f"itemsize={np.dtype(dtype).itemsize}) = {got}, but the real buffer has {real} bytes"
                    )
        conv1 = fn(128, 3, 227, 227, 11, 4, 0, 4)
        conv2 = fn(128, 96, 27, 27, 5, 1, 2, 4)
        if conv1 != 363 * 128 * 55 * 55 * 4 or conv2 != 2400 * 128 * 27 * 27 * 4:
            raise _Fail(
                f"the paper's conv1/conv2 at batch 128 should need 562,161,600 and 895,795,200 bytes, got {conv1:,} and {conv2:,}"
            )
        return "matches real im2col buffers; conv1 and conv2 at batch 128 need 562 MB and 896 MB"

    _grade("im2col_bytes", body)


def check_gemm_intensity(fn: Callable[..., Any]) -> None:
    """``fn(m, k, n, itemsize) -> FLOPs per byte`` = 2mkn / (itemsize·(mk + kn + mn))."""

    def body() -> str:
        cases = [(128, 1200, 93312, 4), (1, 9216, 4096, 4), (64, 64, 64, 8), (4096, 4096, 128, 4), (3, 5, 7, 2)]
        for m, k, n, size in cases:
            expected = 2 * m * k * n / (size * (m * k + k * n + m * n))
            got = fn(m, k, n, size)
            if not isinstance(got, (int, float, np.integer, np.floating)) or not math.isclose(
                got, expected, rel_tol=1e-12
            ):
                hint = (
                    " Count 2 FLOPs per multiply-add."
                    if isinstance(got, (int, float)) and math.isclose(got * 2, expected)
                    else ""
                )
                raise _Fail(f"gemm_intensity({m}, {k}, {n}, {size}) = {got!r}, expected {expected:.6g}.{hint}")
        return "right, e.g. conv2's grouped GEMM at batch 128: 58 FLOP/byte; a batch-1 fc6 product: 0.5 FLOP/byte"

    _grade("gemm_intensity", body)


__all__ = [
    "check_col2im",
    "check_confusion_matrix",
    "check_conv_cost",
    "check_gemm_intensity",
    "check_im2col",
    "check_im2col_bytes",
    "check_linear_backward",
    "check_lrn_backward",
    "check_lrn_forward",
    "check_maxpool_backward",
    "check_pool5_side",
    "check_relu_backward",
    "check_sgd_paper_step",
    "check_softmax_ce_backward",
]
