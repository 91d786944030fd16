"""Test-only helpers: backend conversion, a relative difference, naive loop references and shared grids.

Every test builds its data on the host with NumPy and moves it to the active backend with :func:`dev`;
results come back with :func:`host`. The suite therefore runs unchanged under ``MINIALEX_BACKEND=cupy``.

The naive references below are written as plainly as possible (explicit loops over every index) so that
they are obviously right; they are only ever run on tiny shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend
from minialex.gradcheck import tie_free as _tie_free

Array = Any

# The bound the issue sets for every float64 finite-difference check.
GRADCHECK_BOUND = 1e-6
# Agreement with PyTorch on identical weights (issue 3, "Independent cross-check").
TORCH_BOUND = {np.float64: 1e-10, np.float32: 1e-4}


RUN_DIRECTORY_FILES = frozenset(
    {
        "config.json",
        "history.json",
        "history.csv",
        "metrics.json",
        "last.safetensors",
        "best.safetensors",
        "curves.png",
        "conv1_filters.png",
        "confusion_matrix.png",
    }
)
"""What a finished ``minialex train`` leaves in its run directory (issue 4)."""


def host(a: Array) -> np.ndarray:
    """Any backend array (or scalar) as a host NumPy array."""
    return np.asarray(backend.to_numpy(a))


def dev(a: Any, dtype: Any = None) -> Array:
    """A host array (or list) as an array of the active backend."""
    return backend.asarray(a, dtype=dtype)


def rel_diff(actual: Array, expected: Array) -> float:
    """``max|a − b| / max|b|``: the worst difference relative to the reference's scale (0 when both are 0)."""
    a = host(actual).astype(np.float64)
    b = host(expected).astype(np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    if scale == 0.0:
        return diff
    return diff / scale


def tie_free(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0, dtype: Any = np.float64) -> Array:
    """:func:`minialex.gradcheck.tie_free` on the backend, scaled, in ``dtype``."""
    return (_tie_free(shape, -scale, scale, gap=1e-3 * scale, seed=seed)).astype(dtype)


def randn(shape: tuple[int, ...], seed: int, dtype: Any = np.float64) -> Array:
    """N(0, 1) draws from a private generator (never the library's), on the backend."""
    return dev(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def randomize_bias(layer: Any, seed: int = 7) -> None:
    """Give a layer's bias non-zero values, so that forward comparisons see it."""
    if "bias" in layer.params:
        b = layer.params["bias"]
        layer.params["bias"] = randn(b.shape, seed, b.dtype) * 0.1


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


# -- naive references ----------------------------------------------------------------------------------------


def naive_im2col(x: np.ndarray, kernel: Any, stride: Any, padding: Any) -> np.ndarray:
    """``cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i, ow*sw + j]``, one element at a time."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    n, c, h, w = x.shape
    xpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph : ph + h, pw : pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for ni in range(n):
                    for a in range(oh):
                        for b in range(ow):
                            cols[(ci * kh + i) * kw + j, (ni * oh + a) * ow + b] = xpad[ni, ci, a * sh + i, b * sw + j]
    return cols


def naive_col2im(cols: np.ndarray, x_shape: tuple[int, ...], kernel: Any, stride: Any, padding: Any) -> np.ndarray:
    """Scatter-add every column entry back to the pixel it came from, one element at a time."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    n, c, h, w = x_shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    dx = np.zeros(x_shape, dtype=cols.dtype)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for ni in range(n):
                    for a in range(oh):
                        for b in range(ow):
                            r, s = a * sh + i - ph, b * sw + j - pw
                            if 0 <= r < h and 0 <= s < w:
                                dx[ni, ci, r, s] += cols[(ci * kh + i) * kw + j, (ni * oh + a) * ow + b]
    return dx


def naive_conv2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Any, padding: Any, groups: int
) -> np.ndarray:
    """Direct cross-correlation: every output is the sum over its window and its group's channels."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n, c_in, h, w = x.shape
    c_out, cg, kh, kw = weight.shape
    xpad = np.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph : ph + h, pw : pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c_out, oh, ow), dtype=x.dtype)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for a in range(oh):
            for b in range(ow):
                window = xpad[:, g * cg : (g + 1) * cg, a * sh : a * sh + kh, b * sw : b * sw + kw]
                y[:, o, a, b] = (window * weight[o]).sum(axis=(1, 2, 3))
        if bias is not None:
            y[:, o] += bias[o]
    return y


def naive_lrn(x: np.ndarray, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """The paper's formula, b_i = a_i / (k + alpha Σ_{j ∈ W(i)} a_j²)^beta, channel by channel.

    W(i) = [max(0, i − ⌊n/2⌋), min(C−1, i + ⌊(n−1)/2⌋)]: symmetric for odd n; for even n the extra
    channel is before i, as in PyTorch.
    """
    c = x.shape[1]
    y = np.empty_like(x)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c - 1, i + (size - 1) // 2)
        s = k + alpha * (x[:, lo : hi + 1] ** 2).sum(axis=1)
        y[:, i] = x[:, i] / s**beta
    return y


def naive_maxpool(x: np.ndarray, kernel: Any, stride: Any, padding: Any) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window (padding = −inf) and the backward routing matrix for ``dy = 1`` per window.

    Returns ``(y, winners)`` where ``winners[n, c, oh, ow] = (row, col)`` of the first maximum in row-major
    window order, in unpadded input coordinates.
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    winners = np.empty((n, c, oh, ow, 2), dtype=np.int64)
    for ni in range(n):
        for ci in range(c):
            for a in range(oh):
                for b in range(ow):
                    best, where = -np.inf, None
                    for i in range(kh):
                        for j in range(kw):
                            r, s = a * sh + i - ph, b * sw + j - pw
                            if 0 <= r < h and 0 <= s < w and (where is None or x[ni, ci, r, s] > best):
                                best, where = x[ni, ci, r, s], (r, s)
                    y[ni, ci, a, b], winners[ni, ci, a, b] = best, where
    return y, winners


def naive_maxpool_backward(dy: np.ndarray, winners: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Each window's gradient added (``+=``) to its winner."""
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n, c, oh, ow = dy.shape
    for ni in range(n):
        for ci in range(c):
            for a in range(oh):
                for b in range(ow):
                    r, s = winners[ni, ci, a, b]
                    dx[ni, ci, r, s] += dy[ni, ci, a, b]
    return dx


# -- shared grids ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvCase:
    """One convolution configuration: input (N, C_in, H, W) and the layer's hyper-parameters."""

    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    bias: bool = True

    @property
    def id(self) -> str:
        return (
            f"n{self.n}-c{self.c_in}to{self.c_out}-{self.h}x{self.w}-k{self.kernel}-s{self.stride}-p{self.padding}"
            f"-g{self.groups}" + ("" if self.bias else "-nobias")
        ).replace(" ", "")

    def build(self, dtype: Any = np.float64) -> Any:
        from minialex.layers import Conv2d

        layer = Conv2d(self.c_in, self.c_out, self.kernel, self.stride, self.padding, self.groups, self.bias, dtype)
        randomize_bias(layer)
        return layer


# Covers kernels 1/3/5/11, strides 1/2/4 (incl. shapes the stride does not tile), padding 0/1/2, groups 1/2/4,
# non-square inputs, kernels and strides, and batches of 1 and more, without the full product.
CONV_GRID = [
    ConvCase(1, 1, 2, 5, 4, kernel=1),
    ConvCase(2, 3, 4, 6, 7, kernel=1, stride=2, padding=1),
    ConvCase(2, 3, 4, 7, 6, kernel=3, padding=1),
    ConvCase(2, 4, 4, 8, 7, kernel=3, stride=2, groups=2),
    ConvCase(3, 4, 2, 5, 6, kernel=3, stride=4, padding=2, groups=2),
    ConvCase(1, 4, 8, 9, 11, kernel=5, stride=2, padding=2, groups=4),
    ConvCase(2, 2, 3, 7, 5, kernel=5, padding=1, bias=False),
    ConvCase(1, 2, 4, 6, 9, kernel=(3, 5), stride=(1, 2), padding=(2, 1), groups=2),
    ConvCase(2, 2, 2, 17, 16, kernel=11, stride=4),  # 17 = 4·1 + 11 + 2: the last 2 rows are never visited
    ConvCase(1, 2, 2, 15, 19, kernel=11, stride=4, padding=2, groups=2),
    ConvCase(1, 4, 4, 6, 5, kernel=(2, 1), stride=(2, 3), padding=(0, 2), groups=4),
]

# Max-pooling: (input shape, kernel, stride, padding). 3/2 and 2/2 on odd and even sizes, with padding.
POOL_GRID = [
    ((2, 2, 7, 7), 3, 2, 0),
    ((1, 3, 8, 6), 3, 2, 0),
    ((2, 2, 8, 8), 2, 2, 0),
    ((1, 2, 7, 9), 2, 2, 0),
    ((2, 2, 7, 8), 3, 2, 1),
    ((1, 2, 6, 6), 2, 2, 1),
    ((1, 2, 6, 7), 3, 1, 1),
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 0)),
]

# LRN: (channels, size, alpha, beta, k). A large alpha makes an off-by-one window change the result at O(1).
LRN_GRID = [
    (7, 3, 1.0, 0.75, 2.0),
    (7, 4, 1.0, 0.75, 2.0),
    (9, 5, 1.0, 0.75, 2.0),
    (9, 7, 1.0, 0.75, 2.0),
    (3, 7, 1.0, 0.75, 2.0),  # a window wider than the channels
    (6, 5, 0.5, 0.5, 1.0),
    (6, 2, 2.0, 1.3, 0.5),
    (8, 5, 1e-4, 0.75, 2.0),  # the paper's constants
]


def lrn_id(case: tuple) -> str:
    c, size, alpha, beta, k = case
    return f"C{c}-n{size}-a{alpha}-b{beta}-k{k}"


def pool_id(case: tuple) -> str:
    shape, k, s, p = case
    return f"{'x'.join(map(str, shape))}-k{k}-s{s}-p{p}".replace(" ", "")
