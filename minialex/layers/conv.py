"""2-D convolution (cross-correlation, as in every deep-learning library), with groups.

Shapes::

    x       (N, C_in, H, W)
    weight  (C_out, C_in // G, KH, KW)          PyTorch's layout, so weights can be exchanged
    bias    (C_out,)
    y       (N, C_out, OH, OW),   OH = floor((H + 2p - KH) / s) + 1

Forward, lowered to a matrix product by :func:`~minialex.layers.im2col.im2col`::

    cols = im2col(x)                              (C_in*KH*KW, N*OH*OW)
    y    = W @ cols + b                           W = weight.reshape(C_out, -1)

Groups (the paper's two-GPU split, §3.5): channels are cut into G groups; group g's filters see only
group g's input channels. Because im2col puts the channel first, that is one batched matmul::

    y_g = W_g @ cols_g       W_g: (C_out/G, C_in/G*KH*KW),  cols_g: (C_in/G*KH*KW, N*OH*OW),  g = 0..G-1

Backward. With dY = dL/dy as a (C_out, N*OH*OW) matrix and y = W @ cols + b:

* dL/dW = dY @ colsᵀ                (each weight touches every output position of its filter)
* dL/db = dY summed over N*OH*OW    (the bias is added at every position)
* dL/dcols = Wᵀ @ dY, then dL/dx = col2im(dL/dcols), the adjoint of im2col: a pixel that sits in
  several overlapping windows collects the gradient of each.

Each group does the same with its own blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend
from minialex._engine.workspace import scratch
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer
from minialex.layers.im2col import IntPair, col2im, conv_output_size, im2col, pair

CHUNK_BYTES = 128 * 2**20
"""Columns of at most this many bytes are built at once (a batch is cut into chunks of images to fit)."""


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayerInputError(f"Conv2d: {what} must be a positive int, got {value!r}")
    return value


class Conv2d(Layer):
    """Convolution over NCHW images with ``groups`` as in AlexNet's conv2, conv4 and conv5.

    Parameters
    ----------
    in_channels, out_channels : int
        Both must be divisible by ``groups``.
    kernel_size, stride, padding : int or (int, int)
    groups : int
    bias : bool
    dtype : float32 (default) or float64

    The weights start as He-normal, N(0, 2 / fan_in) with fan_in = C_in/G·KH·KW, and the bias as 0;
    the AlexNet builders in :mod:`minialex.models` apply the paper's initialisation instead.

    ``backward(dy, need_input_grad=False)`` (a network's first layer, whose input is the data) computes only
    dL/dW and dL/db and returns None, skipping the dcols GEMM and col2im, as PyTorch does for an input that
    does not require grad.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        groups: int = 1,
        bias: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.groups = _positive(groups, "groups")
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size")
        self.stride = pair(stride, "Conv2d: stride")
        self.padding = pair(padding, "Conv2d: padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise LayerInputError(
                f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}"
            )
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % groups:
                raise LayerInputError(f"Conv2d: {what}={value} is not divisible by groups={groups}")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        shape = (out_channels, in_channels // groups, kh, kw)
        self.params["weight"] = backend.normal(shape, std=math.sqrt(2.0 / fan_in), dtype=dtype)
        if bias:
            self.params["bias"] = xp.zeros(out_channels, dtype=dtype)
        self._x: Array | None = None

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if "bias" not in self.params:
            text += ", bias=False"
        return text

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """(N, C_out, OH, OW) for an input of shape (N, C_in, H, W)."""
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return n, self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)

    def _check_input(self, x: Array) -> None:
        self._check_ndim(x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise LayerInputError(
                f"{self.name}: expected {self.in_channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
            raise LayerInputError(
                f"{self.name}: kernel {kh}x{kw} is larger than the padded input "
                f"{x.shape[2] + 2 * ph}x{x.shape[3] + 2 * pw} (input shape {tuple(x.shape)})"
            )
        self._check_param_dtype(x)

    def batch_chunk(self, x_shape: tuple[int, ...], itemsize: int) -> int:
        """How many images go through im2col and the GEMMs at once: as many as fit in :data:`CHUNK_BYTES`."""
        n, _, oh, ow = self.output_shape(x_shape)
        kh, kw = self.kernel_size
        per_image = self.in_channels * kh * kw * oh * ow * itemsize
        return max(1, min(n, CHUNK_BYTES // per_image))

    def forward(self, x: Array) -> Array:
        self._check_input(x)
        n, c_out, oh, ow = self.output_shape(x.shape)
        g, k = self.groups, self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        w_g = self.params["weight"].reshape(g, c_out // g, k // g)
        out = xp.empty((c_out, n * oh * ow), dtype=x.dtype)
        step = self.batch_chunk(x.shape, x.dtype.itemsize)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            cols = scratch("conv.cols", (k, (n1 - n0) * oh * ow), x.dtype)
            im2col(x[n0:n1], self.kernel_size, self.stride, self.padding, out=cols)
            # y_g = W_g @ cols_g for every group at once, written straight into this chunk's columns.
            xp.matmul(
                w_g, cols.reshape(g, k // g, -1), out=out.reshape(g, c_out // g, -1)[:, :, n0 * oh * ow : n1 * oh * ow]
            )
        if "bias" in self.params:
            out += self.params["bias"][:, None]
        # Keep the input, not its columns: the backward pass rebuilds them chunk by chunk, which costs one
        # more im2col copy but keeps memory at one chunk's columns instead of the whole batch's.
        self._x = x
        # (C_out, N, OH, OW) in memory, seen as (N, C_out, OH, OW): no transpose copy is needed.
        return out.reshape(c_out, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._x)
        x, weight = self._x, self.params["weight"]
        n, c_out, oh, ow = self.output_shape(x.shape)
        self._check_grad(dy, (n, c_out, oh, ow), x.dtype)
        g, k = self.groups, self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        ph, pw = self.padding
        dy_g = dy.transpose(1, 0, 2, 3).reshape(g, c_out // g, -1)  # free when dy is channel-major in memory
        w_t = weight.reshape(g, c_out // g, k // g).transpose(0, 2, 1)
        dw_t = xp.zeros((g, k // g, c_out // g), dtype=x.dtype)  # dWᵀ, accumulated over the chunks
        want_dx = need_input_grad
        if want_dx:
            dxpad = xp.zeros((self.in_channels, n, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), dtype=x.dtype)
        step = self.batch_chunk(x.shape, x.dtype.itemsize)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            p0, p1 = n0 * oh * ow, n1 * oh * ow
            dy_c = dy_g[:, :, p0:p1]
            cols = scratch("conv.cols", (k, p1 - p0), x.dtype)
            im2col(x[n0:n1], self.kernel_size, self.stride, self.padding, out=cols)
            # dWᵀ = cols @ dYᵀ: the same product as dY @ colsᵀ, but BLAS runs this orientation several
            # times faster here (the long N·OH·OW axis is the inner dimension of both operands).
            dw_t += xp.matmul(cols.reshape(g, k // g, -1), dy_c.transpose(0, 2, 1))
            if not want_dx:
                continue
            dcols = scratch("conv.dcols", (g, k // g, p1 - p0), x.dtype)
            xp.matmul(w_t, dy_c, out=dcols)
            col2im(
                dcols.reshape(k, -1),
                (n1 - n0, *x.shape[1:]),
                self.kernel_size,
                self.stride,
                self.padding,
                out=dxpad[:, n0:n1],
            )
        self.grads["weight"] = xp.ascontiguousarray(dw_t.transpose(0, 2, 1)).reshape(weight.shape)
        if "bias" in self.params:
            self.grads["bias"] = dy_g.reshape(c_out, -1).sum(axis=1)
        if not want_dx:
            return None
        return dxpad[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]].transpose(1, 0, 2, 3)
