"""Max-pooling with overlapping windows: AlexNet's 3x3 windows at stride 2 (the paper, §3.4).

Shapes::

    x (N, C, H, W)  ->  y (N, C, OH, OW),   OH = floor((H + 2p − k) / s) + 1

Forward. Every output is the maximum of its k×k window. Instead of building windows, we walk the k²
offsets (i, j) of a window: for one offset, the pixels all windows see form a strided slice of the
input, ``x[:, :, i::s, j::s]`` (OH×OW of them). A running maximum over the k² slices gives y, and a small
integer ``argmax[n, c, oh, ow] ∈ [0, k²)`` records which offset won. A later offset wins only if it is
*strictly* greater, so a tie goes to the first maximum in row-major window order (PyTorch's rule).
Padding counts as −inf: it is never the maximum.

Backward. y = x[window's argmax], so dL/dx gets dL/dy at the winning pixel and 0 elsewhere. With
k > s, windows overlap (a pixel can win in up to ⌈k/s⌉² windows), so the contributions must be
*accumulated*, not assigned (an assignment would pass tests with 2×2/2 pooling and fail silently with
AlexNet's 3×3/2). It is one pass over dy: each output's winner has a flat index in the padded input,

    flat[n, c, oh, ow] = ((n·C + c)·Hp + oh·s_h + i)·Wp + ow·s_w + j,     (i, j) = the argmax's offset

and ``bincount(flat, weights=dy)`` adds every dy into its winner's bin, several into a shared one (it sums
in float64 and rounds once to the data's dtype). The images are split into ranges over the threads (a range's
pixels are its own), and the arrays are walked in the order they sit in memory (channel-major after a
convolution).

Non-finite inputs follow PyTorch: ±inf compare like any other value, and a NaN makes its window's output
NaN and takes the window's gradient (the last NaN in row-major order, if there are several). One corner
differs: in a window of nothing but −inf and padding, the first entry wins, and if that is padding the
window's gradient is dropped (PyTorch gives it to the first real −inf). The NaN rule costs one check of the
whole output per forward (a single reduction, and on a GPU a single synchronisation), and a second pass
over the offsets only when a NaN is there. The window-by-window loop version is
:func:`minialex.reference.maxpool2d_forward` / :func:`~minialex.reference.maxpool2d_backward`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex._engine import parallel
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer, Shape
from minialex.layers.im2col import IntPair, pad_spatial, pair, window_output_size


def _is_channel_major(a: Array) -> bool:
    """Whether the (N, C, H, W) array ``a`` is stored (C, N, H, W), as convolution outputs are."""
    return a.shape[0] > 1 and a.strides[1] > a.strides[0]


def _empty_like_layout(a: Array, shape: tuple[int, int, int, int], dtype: Any) -> Array:
    """An empty (N, C, H, W) array of ``shape`` stored channel-major (C, N, H, W) when ``a`` is, else C-order."""
    if _is_channel_major(a):
        n, c, h, w = shape
        return xp.empty((c, n, h, w), dtype=dtype).transpose(1, 0, 2, 3)
    return xp.empty(shape, dtype=dtype)


class MaxPool2d(Layer):
    """Max over ``kernel_size`` windows moved by ``stride`` (default 3 and 2: overlapping pooling)."""

    def __init__(self, kernel_size: IntPair = 3, stride: IntPair | None = 2, padding: IntPair = 0) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "MaxPool2d: kernel_size", low=1)
        self.stride = pair(stride if stride is not None else kernel_size, "MaxPool2d: stride", low=1)
        self.padding = pair(padding, "MaxPool2d: padding", low=0)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if 2 * ph > kh or 2 * pw > kw:
            raise LayerInputError(
                f"MaxPool2d: padding {self.padding} must be at most half the kernel {self.kernel_size}"
            )
        if kh * kw > 255:
            raise LayerInputError(f"MaxPool2d: kernel {kh}x{kw} has more than 255 offsets; the argmax is kept in uint8")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}" + (
            f", padding={self.padding}" if self.padding != (0, 0) else ""
        )

    def output_shape(self, input_shape: Shape) -> Shape:
        """(N, C, OH, OW) for an input of shape (N, C, H, W)."""
        shape = self._check_shape(input_shape, 4, "(N, C, H, W)")
        return (*shape[:2], *window_output_size(self.name, shape, self.kernel_size, self.stride, self.padding))

    def _offsets(self) -> list[tuple[int, int]]:
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        n, c, oh, ow = self.output_shape(x.shape)
        (sh, sw), (ph, pw) = self.stride, self.padding
        xpad = pad_spatial(x, ph, pw, value=-np.inf)
        y = _empty_like_layout(x, (n, c, oh, ow), x.dtype)
        argmax = _empty_like_layout(x, (n, c, oh, ow), xp.uint8)
        offsets = self._offsets()

        def images(n0: int, n1: int) -> None:  # images n0..n1; pieces keep the temporaries small
            ys, am = y[n0:n1], argmax[n0:n1]
            ys[...] = xpad[n0:n1, :, 0 : sh * oh : sh, 0 : sw * ow : sw]  # offset 0 = (0, 0)
            am[...] = 0
            for o, (i, j) in enumerate(offsets[1:], start=1):
                window_pixels = xpad[n0:n1, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
                wins = window_pixels > ys  # strict: ties keep the earlier offset
                xp.maximum(ys, window_pixels, out=ys)  # NaN propagates, as in PyTorch
                # Offsets grow, so the last offset that won is the largest: a max instead of a where.
                xp.maximum(am, xp.multiply(wins, np.uint8(o), dtype=xp.uint8), out=am)

        parallel.split(images, n, y.size)
        if xp.isnan(y).any():  # rare: only then pay for PyTorch's NaN rule (the last NaN takes the gradient)
            for o, (i, j) in enumerate(offsets):
                xp.copyto(argmax, np.uint8(o), where=xp.isnan(xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]))
        self._saved = (argmax, tuple(x.shape), x.dtype)
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        argmax, x_shape, dtype = self._saved_for_backward()
        self._check_grad(dy, argmax.shape, dtype)
        h, w = x_shape[2:]
        _, _, oh, ow = argmax.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        # Work in the order the arrays sit in memory: (C, N, ...) after a convolution, else (N, C, ...). The
        # gradient is laid out like the forward input, so the layers below read it fast.
        channel_major = _is_channel_major(argmax)
        am = argmax.transpose(1, 0, 2, 3) if channel_major else argmax
        dym = dy.transpose(1, 0, 2, 3) if channel_major else dy
        outer, inner = am.shape[:2]
        dxm = xp.empty((outer, inner, hp, wp), dtype=dy.dtype)
        # Where offset o = (i, j) of a window lands, relative to the window's corner, in a flattened padded image.
        shift = xp.asarray([i * wp + j for i, j in self._offsets()], dtype=xp.int64)
        corner = (xp.arange(oh, dtype=xp.int64) * (sh * wp))[:, None] + xp.arange(ow, dtype=xp.int64) * sw

        def images(a0: int, a1: int) -> None:  # a range of the outer axis: its images do not share a pixel
            planes = (a1 - a0) * inner
            start = (xp.arange(planes, dtype=xp.int64) * (hp * wp))[:, None, None]
            flat = start + corner + shift[am[a0:a1].reshape(planes, oh, ow)]
            # One pass: each dy goes to its window's winner; bincount adds where overlapping windows share one.
            weights = xp.ascontiguousarray(dym[a0:a1]).reshape(-1)
            dxm[a0:a1] = xp.bincount(flat.reshape(-1), weights=weights, minlength=planes * hp * wp).reshape(
                a1 - a0, inner, hp, wp
            )

        parallel.split(images, outer, dxm.size)
        dxpad = dxm.transpose(1, 0, 2, 3) if channel_major else dxm
        return dxpad[:, :, ph : ph + h, pw : pw + w]
