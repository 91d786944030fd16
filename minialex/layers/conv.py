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

Each group does the same with its own blocks. The same convolution written as plain loops over every
output, forward and backward, is :func:`minialex.reference.conv2d_forward` and
:func:`~minialex.reference.conv2d_backward`: the ground truth the tests hold this layer to.

Algorithms. im2col + GEMM above is the reference and works for every shape. A 3×3 convolution at stride 1 can
also run Winograd's F(2×2, 3×3) or F(4×4, 3×3) (:mod:`minialex.layers.winograd`), which computes the same
numbers with 2.25× or 4× fewer multiplications and a small loss of float32 accuracy. ``algorithm="auto"`` (the
default) chooses by :func:`auto_algorithm`, a rule on the layer's shape and the BLAS's thread configuration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend, validate
from minialex._engine import workspace
from minialex._engine.workspace import scratch
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers import winograd
from minialex.layers.base import Array, Layer, Shape, check_elements, initial_bias, initial_weight
from minialex.layers.im2col import IntPair, col2im, im2col, pair, window_output_size

CHUNK_BYTES = 128 * 2**20
"""On the CPU, columns of at most this many bytes are built at once (a batch is cut into chunks of images
to fit): large enough for long GEMMs, small enough to stay a modest part of the memory."""

GPU_MEMORY_FRACTION = 0.25
"""On a GPU, one chunk's columns may take this fraction of the memory minialex could still use (free device
memory, free blocks of CuPy's pool and minialex's own scratch buffers): the columns and their gradient,
two such buffers, then fit in half of it."""

GPU_CHUNK_BYTES_MAX = 2**31
"""... and at most this many bytes (it keeps every index of the columns well inside 32 bits)."""


ALGORITHMS = ("auto", "im2col", "winograd2", "winograd4")
"""The values of ``Conv2d(algorithm=...)``: ``winograd2`` and ``winograd4`` are F(2×2, 3×3) and F(4×4, 3×3)
(:mod:`minialex.layers.winograd`), for 3×3 kernels at stride 1 only; ``auto`` chooses by :func:`auto_algorithm`."""

AUTO_MIN_CHANNELS = 128
"""``auto`` uses Winograd only when every group has at least this many input and output channels: below it the
GEMMs in the transformed domain are too short for the saved multiplications to pay for the transforms (the
measurements behind the rule are in ``docs/winograd.md``)."""


def winograd_eligible(kernel_size: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Winograd F(m×m, 3×3) applies to 3×3 kernels at stride 1 (any padding, any groups)."""
    return kernel_size == (3, 3) and stride == (1, 1)


def auto_algorithm(
    in_channels: int,
    out_channels: int,
    groups: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    on_cpu: bool | None = None,
) -> str:
    """The rule of ``algorithm="auto"``: ``winograd4`` for a 3×3, stride-1 convolution whose groups have at least
    :data:`AUTO_MIN_CHANNELS` input and output channels each, *when the arrays live on the CPU*; ``im2col`` for
    everything else.

    On a GPU Winograd has not been measured against cuBLAS on im2col columns, so it is not chosen there.
    ``on_cpu`` defaults to the backend's. The rule reads the shape and the device only, never a timing, so a
    run makes the same choice every time.
    """
    if on_cpu is None:
        on_cpu = not backend.on_gpu
    if not on_cpu or not winograd_eligible(kernel_size, stride):
        return "im2col"
    if min(in_channels, out_channels) // groups < AUTO_MIN_CHANNELS:
        return "im2col"
    return "winograd4"


def column_budget() -> int:
    """How many bytes of columns one chunk may take: :data:`CHUNK_BYTES` on the CPU; on a GPU a share of the
    memory that is available (see :data:`GPU_MEMORY_FRACTION`), at most :data:`GPU_CHUNK_BYTES_MAX`."""
    if not backend.on_gpu:
        return CHUNK_BYTES
    return int(min(GPU_CHUNK_BYTES_MAX, GPU_MEMORY_FRACTION * workspace.available_device_bytes()))


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
    weight_std : the standard deviation of the initial weights, N(0, weight_std²); None (the default) for
        He's N(0, 2 / fan_in) with fan_in = C_in/G·KH·KW
    bias_value : the initial value of every bias (default 0)
    algorithm : "auto" (default), "im2col", "winograd2" or "winograd4" (see :data:`ALGORITHMS`). im2col is the
        reference and works for every shape; the Winograd algorithms need a 3×3 kernel at stride 1 and trade a
        little float32 accuracy for fewer multiplications. ``auto`` picks by :func:`auto_algorithm` (Winograd for
        wide 3×3 layers on a single-threaded CPU BLAS, im2col otherwise).

    Each weight is drawn once, here; the AlexNet builders in :mod:`minialex.models` pass the scale their
    initialisation scheme gives each layer.

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
        weight_std: float | None = None,
        bias_value: float = 0.0,
        algorithm: str = "auto",
    ) -> None:
        super().__init__()
        self.in_channels = validate.integer(in_channels, "Conv2d: in_channels", low=1, error=LayerInputError)
        self.out_channels = validate.integer(out_channels, "Conv2d: out_channels", low=1, error=LayerInputError)
        self.groups = validate.integer(groups, "Conv2d: groups", low=1, error=LayerInputError)
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size", low=1)
        self.stride = pair(stride, "Conv2d: stride", low=1)
        self.padding = pair(padding, "Conv2d: padding", low=0)
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % groups:
                raise LayerInputError(f"Conv2d: {what}={value} is not divisible by groups={groups}")
        if algorithm not in ALGORITHMS:
            raise LayerInputError(f"Conv2d: algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        if algorithm.startswith("winograd") and not winograd_eligible(self.kernel_size, self.stride):
            raise LayerInputError(
                f"Conv2d: algorithm={algorithm!r} needs a 3x3 kernel at stride 1, "
                f"got kernel_size={self.kernel_size}, stride={self.stride}"
            )
        self.algorithm = algorithm
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        shape = (out_channels, in_channels // groups, kh, kw)
        self.params["weight"] = initial_weight(shape, fan_in, weight_std, dtype, "Conv2d")
        b = initial_bias(out_channels, bias, bias_value, dtype, "Conv2d")
        if b is not None:
            self.params["bias"] = b

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if "bias" not in self.params:
            text += ", bias=False"
        if self.algorithm != "auto":
            text += f", algorithm={self.algorithm!r}"
        return text

    @property
    def chosen_algorithm(self) -> str:
        """The algorithm that runs: ``algorithm``, or for ``auto`` the choice of :func:`auto_algorithm`."""
        if self.algorithm != "auto":
            return self.algorithm
        return auto_algorithm(self.in_channels, self.out_channels, self.groups, self.kernel_size, self.stride)

    def _winograd_chunk(self, x_shape: Shape, itemsize: int, m: int) -> int:
        """How many images go through the Winograd transforms at once: as many as fit in :func:`column_budget`
        (the same budget as im2col's columns, so either algorithm holds at most one chunk of scratch)."""
        per_image = winograd.bytes_per_image(
            self.in_channels, self.out_channels, x_shape[2], x_shape[3], self.padding, m, itemsize
        )
        return max(1, min(x_shape[0], column_budget() // max(per_image, 1)))

    def output_shape(self, input_shape: Shape) -> Shape:
        """(N, C_out, OH, OW) for an input of shape (N, C_in, H, W)."""
        shape = self._check_shape(input_shape, 4, "(N, C, H, W)")
        if shape[1] != self.in_channels:
            raise LayerInputError(
                f"{self.name}: expected {self.in_channels} input channels, got {shape[1]} (input shape {shape})"
            )
        oh, ow = window_output_size(self.name, shape, self.kernel_size, self.stride, self.padding)
        return shape[0], self.out_channels, oh, ow

    def macs(self, input_shape: Shape) -> int:
        """N·OH·OW·C_out·(C_in/G)·KH·KW: each output sums C_in/G·KH·KW products."""
        n, c_out, oh, ow = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        return n * oh * ow * c_out * (self.in_channels // self.groups) * kh * kw

    def batch_chunk(self, x_shape: Shape, itemsize: int) -> int:
        """How many images go through im2col and the GEMMs at once: as many as fit in :func:`column_budget`."""
        n, _, oh, ow = self.output_shape(x_shape)
        kh, kw = self.kernel_size
        per_image = self.in_channels * kh * kw * oh * ow * itemsize
        return max(1, min(n, column_budget() // max(per_image, 1)))

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        n, c_out, oh, ow = self.output_shape(x.shape)
        self._check_param_dtype(x)
        (ph, pw), (_, _, h, w) = self.padding, x.shape
        check_elements(f"{self.name}: the padded input", (n, self.in_channels, h + 2 * ph, w + 2 * pw))
        check_elements(f"{self.name}: the output", (n, c_out, oh, ow))
        if self.chosen_algorithm != "im2col":
            return self._winograd_forward(x, int(self.chosen_algorithm[-1]), (n, c_out, oh, ow))
        g, k = self.groups, self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        check_elements(f"{self.name}: one image's columns", (k, oh * ow))
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
        self._saved = (x,)
        # (C_out, N, OH, OW) in memory, seen as (N, C_out, OH, OW): no transpose copy is needed. The layers
        # after it keep this channel-major layout, so the backward pass receives dy laid out the same way.
        return out.reshape(c_out, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        x, *kept = self._saved_for_backward()  # kept: Winograd's V when the forward kept it
        weight = self.params["weight"]
        n, c_out, oh, ow = self.output_shape(x.shape)
        self._check_grad(dy, (n, c_out, oh, ow), x.dtype)
        if self.chosen_algorithm != "im2col":
            return self._winograd_backward(x, dy, int(self.chosen_algorithm[-1]), need_input_grad, *kept)
        g, k = self.groups, self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        ph, pw = self.padding
        dy_g = dy.transpose(1, 0, 2, 3).reshape(g, c_out // g, -1)  # free when dy is channel-major in memory
        w_t = weight.reshape(g, c_out // g, k // g).transpose(0, 2, 1)
        dw_t = xp.zeros((g, k // g, c_out // g), dtype=x.dtype)  # dWᵀ, accumulated over the chunks
        if need_input_grad:
            dxpad = xp.zeros((self.in_channels, n, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), dtype=x.dtype)
        step = self.batch_chunk(x.shape, x.dtype.itemsize)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            p0, p1 = n0 * oh * ow, n1 * oh * ow
            dy_c = dy_g[:, :, p0:p1]
            cols = scratch("conv.cols", (k, p1 - p0), x.dtype)
            im2col(x[n0:n1], self.kernel_size, self.stride, self.padding, out=cols)
            # dWᵀ = cols @ dYᵀ: the same product as dY @ colsᵀ, but OpenBLAS runs this orientation several
            # times faster here (the long N·OH·OW axis is the inner dimension of both operands).
            dw_t += xp.matmul(cols.reshape(g, k // g, -1), dy_c.transpose(0, 2, 1))
            if not need_input_grad:
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
        if not need_input_grad:
            return None
        return dxpad[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]].transpose(1, 0, 2, 3)

    def _winograd_forward(self, x: Array, m: int, out_shape: Shape) -> Array:
        """The forward pass by F(m×m, 3×3) into ``out_shape`` (forward has checked it): U from the weights once,
        then the batch in chunks. A batch that is one chunk keeps its V for the weight gradient (training only)."""
        n, c_out, oh, ow = out_shape
        u = winograd.transform_kernel(self.params["weight"], self.groups, m)
        out = xp.empty((c_out, n, oh, ow), dtype=x.dtype)
        step = self._winograd_chunk(x.shape, x.dtype.itemsize, m)
        keep = self.training and step >= n
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            v = winograd.conv_chunk(x[n0:n1], u, self.padding, m, out[:, n0:n1], keep=keep)
        if "bias" in self.params:
            out += self.params["bias"][:, None, None, None]
        self._saved = (x, v) if keep else (x,)
        return out.transpose(1, 0, 2, 3)

    def _winograd_backward(
        self, x: Array, dy: Array, m: int, need_input_grad: bool, v: Array | None = None
    ) -> Array | None:
        """dW by the transposed transforms, dX as the Winograd convolution of dy with the flipped kernel."""
        weight, g = self.params["weight"], self.groups
        c_out, cg = weight.shape[:2]
        (ph, pw), alpha = self.padding, m + 2
        dy_cm = dy.transpose(1, 0, 2, 3)  # (C_out, N, OH, OW): free when dy is channel-major in memory
        du = xp.zeros((alpha * alpha, g, c_out // g, cg), dtype=x.dtype)
        if need_input_grad:
            u_flipped = winograd.transform_kernel(winograd.flipped_kernel(weight, g), g, m)
            dx = xp.empty((self.in_channels, *x.shape[:1], *x.shape[2:]), dtype=x.dtype)
        n = x.shape[0]
        step = self._winograd_chunk(x.shape, x.dtype.itemsize, m)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            kept = v if n0 == 0 and n1 == n else None  # V of the whole batch, if the forward kept it
            winograd.weight_grad_chunk(x[n0:n1], dy_cm[:, n0:n1], self.padding, m, g, du, kept)
            if need_input_grad:
                dy_chunk = dy_cm[:, n0:n1].transpose(1, 0, 2, 3)
                winograd.conv_chunk(dy_chunk, u_flipped, (2 - ph, 2 - pw), m, dx[:, n0:n1])
        self.grads["weight"] = winograd.weight_grad(du, m)
        if "bias" in self.params:
            self.grads["bias"] = dy_cm.sum(axis=(1, 2, 3))
        return dx.transpose(1, 0, 2, 3) if need_input_grad else None
