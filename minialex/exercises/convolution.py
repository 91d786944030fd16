"""Graders of notebook 2 (convolution): the naive loop forward and backward, im2col and col2im.

The loop versions are compared with :class:`minialex.layers.Conv2d`, whose backward pass the test suite checks
against finite differences and PyTorch; im2col and col2im with :func:`minialex.layers.im2col` / ``col2im`` and
with the adjoint identity ``<col2im(C), X> = <C, im2col(X)>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import EXACT_TOL, Fail, as_array, as_tuple, close, grade, host, matches, unchanged
from minialex.layers import Conv2d, col2im, im2col

# (x shape, kernel (kh, kw), stride, padding): single and multi-channel, padding, strides that do not tile
_IM2COL_CASES = [
    ((1, 1, 4, 4), (3, 3), 1, 0),
    ((2, 3, 5, 6), (3, 2), 2, 1),
    ((1, 2, 7, 7), (3, 3), 3, 0),
    ((2, 1, 9, 9), (5, 5), 2, 2),
]

# (what, x shape, weight shape, stride, padding, groups) for the loop exercises, simplest first, so that the
# first failing case names the feature that is wrong.
_CONV_CASES = [
    ("2x2 kernel at stride 2 (windows do not overlap)", (2, 3, 4, 6), (4, 3, 2, 2), 2, 0, 1),
    ("3x3 kernel, stride 1, padding 1 (overlapping windows)", (2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1),
    ("3x2 kernel, stride 2 on 8x7 (a stride that does not tile)", (1, 2, 8, 7), (3, 2, 3, 2), 2, 0, 1),
    ("groups=2, 3x3, padding 1", (2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 2),
    ("groups=3, 3x2, stride 2, padding 1", (1, 6, 6, 5), (3, 2, 3, 2), 2, 1, 3),
]

_GROUPS_HINT = (
    " With groups=G, filter o reads only the C_in/G input channels of its group g = o // (C_out/G), "
    "i.e. x channels g·C_in/G … (g+1)·C_in/G − 1, and weight[o] has C_in/G channels."
)


def _reference_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int, groups: int) -> Conv2d:
    """A float64 :class:`Conv2d` holding the weights ``w`` and bias ``b``."""
    layer = Conv2d(x.shape[1], w.shape[0], w.shape[2:], stride, padding, groups, dtype=np.float64)
    layer.params["weight"][...] = w
    layer.params["bias"][...] = b
    return layer


def _conv_inputs(seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, int, int, int]]:
    rng = np.random.default_rng(seed)
    return [
        (what, rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0]), s, p, g)
        for what, xs, ws, s, p, g in _CONV_CASES
    ]


def check_conv_forward_naive(fn: Callable[..., Any]) -> None:
    """``fn(x, w, b, stride, padding, groups) -> y`` (loops), compared with :class:`minialex.layers.Conv2d`."""

    def body() -> str:
        for what, x, w, b, s, p, g in _conv_inputs(13):
            before = x.copy(), w.copy()
            layer = _reference_conv(x, w, b, s, p, g)
            expected = host(layer.forward(x))
            got = as_array(fn(x, w, b, s, p, g), f"y for {what}", expected.shape)
            unchanged(before[0], x, "x")
            unchanged(before[1], w, "w")
            if matches(got, expected):
                continue
            hint = _GROUPS_HINT if g > 1 else ""
            if matches(got, expected - b[None, :, None, None]):
                hint = " You forgot the bias: add b[o] to every output position of filter o."
            elif matches(got, host(_reference_conv(x, w[:, :, ::-1, ::-1].copy(), b, s, p, g).forward(x))):
                hint = (
                    " You flipped the kernel: a deep-learning 'convolution' is a cross-correlation, "
                    "y = Σ w[o, c, i, j] · xpad[c, h·s + i, w·s + j] with no flip."
                )
            raise Fail(f"y differs from Conv2d's for {what}.{hint}")
        return f"identical to Conv2d on {len(_CONV_CASES)} cases (overlap, padding, non-tiling strides, groups 2 and 3)"

    grade("conv_forward_naive", body)


def check_conv_backward_naive(fn: Callable[..., Any]) -> None:
    """``fn(x, w, dy, stride, padding, groups) -> (dx, dw, db)`` (loops), compared with
    :class:`minialex.layers.Conv2d`'s backward pass on the same weights."""

    def body() -> str:
        rng = np.random.default_rng(14)
        worst = 0.0
        for what, x, w, b, s, p, g in _conv_inputs(14):
            layer = _reference_conv(x, w, b, s, p, g)
            dy = rng.standard_normal(layer.forward(x).shape)
            dx_ref = host(layer.backward(dy))
            dw_ref, db_ref = host(layer.grads["weight"]), host(layer.grads["bias"])
            before = x.copy(), w.copy(), dy.copy()
            result = as_tuple(fn(x, w, dy, s, p, g), 3, "dx, dw, db")
            for old, new, name in zip(before, (x, w, dy), ("x", "w", "dy"), strict=True):
                unchanged(old, new, name)
            padded = (x.shape[0], x.shape[1], x.shape[2] + 2 * p, x.shape[3] + 2 * p)
            if p and host(result[0]).shape == padded:
                raise Fail(
                    f"dx has the padded shape {padded} for {what}: cut the padding off (dxpad[:, :, p:-p, p:-p])"
                )
            dx = as_array(result[0], f"dx for {what}", x.shape)
            dw = as_array(result[1], f"dw for {what}", w.shape)
            db = as_array(result[2], f"db for {what}", b.shape)
            group_hint = _GROUPS_HINT if g > 1 else ""
            db_hint = " db[o] is dy[:, o] summed over the batch and every output position."
            if matches(db, dy.mean(axis=(0, 2, 3))):
                db_hint = " You averaged: the bias is added at every position of every image, so sum dy there."
            dx_hint = group_hint or " dxpad[n, :, window of (h, w)] += dy[n, o, h, w] · w[o], then crop the padding."
            if not matches(dx, dx_ref):
                flipped_layer = _reference_conv(x, w[:, :, ::-1, ::-1].copy(), b, s, p, g)
                flipped_layer.forward(x)
                flipped = host(flipped_layer.backward(dy))
                if matches(dx, flipped):
                    dx_hint = " In the loops there is no flip: each window receives dy · w[o] as it is."
            if "overlapping" in what and not matches(dx, dx_ref):
                dx_hint += " Where windows overlap a pixel collects several contributions: add (+=), never assign."
            worst = max(
                worst,
                close(
                    dw,
                    dw_ref,
                    f"dw for {what}",
                    1e-9,
                    group_hint or " dw[o] = Σ over n, h, w of dy[n, o, h, w] · window.",
                ),
                close(db, db_ref, f"db for {what}", 1e-9, db_hint),
                close(dx, dx_ref, f"dx for {what}", 1e-9, dx_hint),
            )
        return f"dx, dw, db equal Conv2d's backward on {len(_CONV_CASES)} cases, groups included (error {worst:.1e})"

    grade("conv_backward_naive", body)


def check_im2col(fn: Callable[..., Any]) -> None:
    """``fn(x, kh, kw, stride, padding) -> cols`` of shape (C·KH·KW, N·OH·OW), rows (c, i, j), columns
    (n, oh, ow); compared entry by entry with :func:`minialex.layers.im2col`."""

    def body() -> str:
        rng = np.random.default_rng(3)
        for shape, (kh, kw), s, p in _IM2COL_CASES:
            x = rng.standard_normal(shape)
            before = x.copy()
            expected = host(im2col(x, (kh, kw), s, p))
            where = f"x {shape}, kernel {kh}x{kw}, stride {s}, padding {p}"
            got = as_array(fn(x, kh, kw, s, p), f"cols for {where}", expected.shape)
            unchanged(before, x, "x")
            if not np.array_equal(got, expected):
                hint = ""
                if np.array_equal(np.sort(got, axis=None), np.sort(expected, axis=None)):
                    hint = " The right numbers are there in the wrong places: check the row order (c, i, j) and column order (n, oh, ow)."
                raise Fail(f"cols differ for {where}.{hint}")
        return f"identical to minialex's im2col on {len(_IM2COL_CASES)} cases (padding, strides, several channels)"

    grade("im2col_naive", body)


def check_col2im(fn: Callable[..., Any]) -> None:
    """``fn(cols, x_shape, kh, kw, stride, padding) -> dx``: the adjoint of im2col, checked with the identity
    <col2im(C), X> = <C, im2col(X)> and against :func:`minialex.layers.col2im`."""

    def body() -> str:
        rng = np.random.default_rng(4)
        for shape, (kh, kw), s, p in _IM2COL_CASES:
            x = rng.standard_normal(shape)
            cols_x = host(im2col(x, (kh, kw), s, p))
            c = rng.standard_normal(cols_x.shape)
            before = c.copy()
            where = f"x {shape}, kernel {kh}x{kw}, stride {s}, padding {p}"
            got = as_array(fn(c, shape, kh, kw, s, p), f"dx for {where}", shape)
            unchanged(before, c, "cols")
            lhs, rhs = float((got * x).sum()), float((c * cols_x).sum())
            gap = abs(lhs - rhs) / max(abs(lhs) + abs(rhs), 1e-12)
            if gap > EXACT_TOL:
                raise Fail(
                    f"<col2im(C), X> = {lhs:.6f} but <C, im2col(X)> = {rhs:.6f} for {where}: not the adjoint. "
                    "Did you assign (=) where overlapping windows must add (+=)?"
                )
            close(got, host(col2im(c, shape, (kh, kw), s, p)), f"dx for {where}", EXACT_TOL)
        return f"<col2im(C), X> = <C, im2col(X)> on {len(_IM2COL_CASES)} cases; equal to minialex's col2im"

    grade("col2im_naive", body)
