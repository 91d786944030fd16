"""Convolution as the definition states it: a window slid over the zero-padded input, one output at a time.

Shapes (as in :class:`minialex.layers.Conv2d`)::

    x       (N, C_in, H, W)
    weight  (C_out, C_in / G, KH, KW)
    bias    (C_out,)
    y       (N, C_out, OH, OW),    OH = floor((H + 2·ph − KH) / sh) + 1,  OW likewise

Forward, with xpad the input padded by ph rows and pw columns of zeros on each side, and g = o // (C_out/G)
the group of output channel o::

    y[n, o, a, b] = bias[o] + Σ_{c, i, j} xpad[n, g·C_in/G + c, a·sh + i, b·sw + j] · weight[o, c, i, j]

Backward: every product above appears once in y[n, o, a, b], so its partial derivatives collect, term by
term, the upstream gradient dy[n, o, a, b]::

    dweight[o, c, i, j]                      += dy[n, o, a, b] · xpad[n, g·C_in/G + c, a·sh + i, b·sw + j]
    dxpad[n, g·C_in/G + c, a·sh + i, b·sw + j] += dy[n, o, a, b] · weight[o, c, i, j]
    dbias[o]                                 += dy[n, o, a, b]

and dx is dxpad without its border (the padding is a constant, it has no gradient).

:func:`im2col` copies every window into a column; :func:`col2im` is its adjoint, adding every column entry
back onto the pixel it came from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import LayerInputError

IntPair = int | tuple[int, int]


def pair(value: IntPair) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair stays a pair."""
    return (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))


def output_size(size: int, kernel: int, stride: int, padding: int, where: str) -> int:
    """The number of window positions along one axis; an error naming ``where`` if the kernel does not fit."""
    if size + 2 * padding < kernel:
        raise LayerInputError(f"{where}: kernel {kernel} is larger than the padded size {size + 2 * padding}")
    return (size + 2 * padding - kernel) // stride + 1


def padded(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """``x`` (N, C, H, W) inside a zero border of ``ph`` rows and ``pw`` columns."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def entries(c: int, kh: int, kw: int, n: int, oh: int, ow: int) -> Iterator[tuple[int, ...]]:
    """Every entry of the columns: (row, column, c, i, j, n, a, b) with row = (c, i, j), column = (n, a, b)."""
    for ci, i, j, ni, a, b in itertools.product(range(c), range(kh), range(kw), range(n), range(oh), range(ow)):
        yield (ci * kh + i) * kw + j, (ni * oh + a) * ow + b, ci, i, j, ni, a, b


def im2col(x: Any, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0) -> np.ndarray:
    """``cols[(c, i, j), (n, a, b)] = xpad[n, c, a·sh + i, b·sw + j]``, one element at a time.

    Returns an array (C·KH·KW, N·OH·OW): row (c, i, j) in that order, column (n, a, b) in that order.
    """
    x = backend.to_numpy(x)
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, ph, "reference.im2col"), output_size(w, kw, sw, pw, "reference.im2col")
    xpad = padded(x, ph, pw)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    for row, col, ci, i, j, ni, a, b in entries(c, kh, kw, n, oh, ow):
        cols[row, col] = xpad[ni, ci, a * sh + i, b * sw + j]
    return cols


def col2im(
    cols: Any, x_shape: tuple[int, int, int, int], kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0
) -> np.ndarray:
    """The adjoint of :func:`im2col`: every column entry added to the input pixel it was copied from.

    Entries that came from the padding are dropped. Returns an array of ``x_shape`` (N, C, H, W).
    """
    cols = backend.to_numpy(cols)
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, sh, ph, "reference.col2im"), output_size(w, kw, sw, pw, "reference.col2im")
    expected = (c * kh * kw, n * oh * ow)
    if cols.shape != expected:
        raise LayerInputError(f"reference.col2im: expected cols of shape {expected}, got {cols.shape}")
    dx = np.zeros(x_shape, dtype=cols.dtype)
    for row, col, ci, i, j, ni, a, b in entries(c, kh, kw, n, oh, ow):
        r, s = a * sh + i - ph, b * sw + j - pw  # the pixel of x this entry was copied from
        if 0 <= r < h and 0 <= s < w:  # (not the padding)
            dx[ni, ci, r, s] += cols[row, col]
    return dx


def windows(
    x_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: IntPair, padding: IntPair, groups: int, where: str
) -> tuple[tuple[int, int, int, int], Iterator[tuple[tuple[int, int, int, int], tuple]]]:
    """The output shape (N, C_out, OH, OW), and for every output (n, o, a, b) the index of what it reads in xpad:
    ``(n, channels of o's group, rows a·sh ... a·sh + KH − 1, columns b·sw ... b·sw + KW − 1)``."""
    (n, c_in, h, w), (c_out, per_group, kh, kw) = x_shape, weight_shape
    if c_in % groups or c_out % groups or per_group != c_in // groups:
        raise LayerInputError(
            f"{where}: input channels {c_in}, weight {tuple(weight_shape)} and groups={groups} do not fit "
            f"(need weight (C_out, C_in / groups, KH, KW) with C_in and C_out divisible by groups)"
        )
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    oh, ow = output_size(h, kh, sh, ph, where), output_size(w, kw, sw, pw, where)

    def each() -> Iterator[tuple[tuple[int, int, int, int], tuple]]:
        for ni, o, a, b in itertools.product(range(n), range(c_out), range(oh), range(ow)):
            c0 = (o // (c_out // groups)) * per_group  # the first input channel of o's group
            yield (ni, o, a, b), (ni, slice(c0, c0 + per_group), slice(a * sh, a * sh + kh), slice(b * sw, b * sw + kw))

    return (n, c_out, oh, ow), each()


def conv2d_forward(
    x: Any, weight: Any, bias: Any = None, stride: IntPair = 1, padding: IntPair = 0, groups: int = 1
) -> np.ndarray:
    """Direct cross-correlation: each output is its window times its filter, summed, plus the bias.

    Parameters
    ----------
    x : (N, C_in, H, W)
    weight : (C_out, C_in / groups, KH, KW)
    bias : (C_out,) or None

    Returns
    -------
    y : (N, C_out, OH, OW)
    """
    x, weight = backend.to_numpy(x), backend.to_numpy(weight)
    shape, outputs = windows(x.shape, weight.shape, stride, padding, groups, "reference.conv2d_forward")
    xpad = padded(x, *pair(padding))
    bias = np.zeros(weight.shape[0], x.dtype) if bias is None else backend.to_numpy(bias)
    y = np.zeros(shape, dtype=x.dtype)
    for (ni, o, a, b), window in outputs:
        y[ni, o, a, b] = (xpad[window] * weight[o]).sum() + bias[o]
    return y


def conv2d_backward(
    dy: Any, x: Any, weight: Any, stride: IntPair = 1, padding: IntPair = 0, groups: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dL/dx, dL/dweight and dL/dbias of :func:`conv2d_forward`, one output position at a time.

    Parameters
    ----------
    dy : (N, C_out, OH, OW), the gradient of the loss with respect to y
    x, weight : the forward's input (N, C_in, H, W) and filters (C_out, C_in / groups, KH, KW)

    Returns
    -------
    dx : (N, C_in, H, W);  dweight : (C_out, C_in / groups, KH, KW);  dbias : (C_out,)
    """
    dy, x, weight = backend.to_numpy(dy), backend.to_numpy(x), backend.to_numpy(weight)
    shape, outputs = windows(x.shape, weight.shape, stride, padding, groups, "reference.conv2d_backward")
    if dy.shape != shape:
        raise LayerInputError(f"reference.conv2d_backward: expected dy of shape {shape}, got {dy.shape}")
    (ph, pw), (h, w) = pair(padding), x.shape[2:]
    xpad = padded(x, ph, pw)
    dxpad, dweight, dbias = np.zeros_like(xpad), np.zeros_like(weight), np.zeros(shape[1], dtype=dy.dtype)
    for (ni, o, a, b), window in outputs:
        g = dy[ni, o, a, b]
        dweight[o] += g * xpad[window]
        dxpad[window] += g * weight[o]
        dbias[o] += g
    return dxpad[:, :, ph : ph + h, pw : pw + w].copy(), dweight, dbias
