"""im2col and its adjoint col2im: how a convolution becomes one matrix product.

A convolution slides a ``KH x KW`` window over every channel of a padded image. ``im2col`` copies each
window into a column, so that the convolution with ``C_out`` filters becomes a single GEMM::

    x      (N, C, H, W)                      input, zero-padded by (ph, pw) on each side
    cols   (C*KH*KW, N*OH*OW)                cols[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i, ow*sw + j]
    W      (C_out, C*KH*KW)                  the filters, flattened in the same (c, i, j) order
    y      (C_out, N*OH*OW) = W @ cols       then viewed as (N, C_out, OH, OW)

with ``OH = floor((H + 2*ph - KH) / sh) + 1`` (the last rows of the input are simply not visited when
the stride does not tile it, as for a 224-px image under conv1's 11x11/4 filters).

The row order (c, i, j) matches ``weight.reshape(C_out, -1)``, and putting the channel first makes a
grouped convolution a reshape: group g owns rows ``g*C/G*KH*KW ... (g+1)*C/G*KH*KW``.

``col2im`` is the adjoint (transpose) of ``im2col``, not its inverse: where windows overlap, one input
pixel appears in several columns, so its gradient is the *sum* of those columns' entries::

    dx[n, c, h, w] = sum over (i, j, oh, ow) with oh*sh + i - ph == h and ow*sw + j - pw == w
                     of dcols[(c, i, j), (n, oh, ow)]

It is computed with one strided slice-add per kernel offset (i, j): within one offset every output
position maps to a different input pixel, so a slice never repeats an index and ``+=`` is exact (no
unbuffered scatter-add, ``ufunc.at``, is needed).

Both functions work on NumPy and CuPy arrays alike, and on non-contiguous input. Their one-element-at-a-time
versions are :func:`minialex.reference.im2col` and :func:`minialex.reference.col2im`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import validate
from minialex._engine import parallel
from minialex._engine.workspace import scratch
from minialex.backend import xp
from minialex.errors import LayerInputError

Array = Any
IntPair = int | tuple[int, int]


def pair(value: IntPair, what: str = "value", low: int = 0) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5)`` stays; each entry must be an int >= ``low``, else a LayerInputError."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise LayerInputError(f"{what} must be an int or a pair of ints, got {value!r}")
    owner, colon, name = what.rpartition(": ")  # "Conv2d: stride" -> "Conv2d: each entry of stride=(0, 0)"
    for v in (a, b):
        validate.integer(v, f"{owner}{colon}each entry of {name}={(a, b)}", low=low, error=LayerInputError)
    return int(a), int(b)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2*padding - kernel) / stride) + 1``: the number of window positions along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def window_output_size(
    where: str, shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """(OH, OW) of windows ``kernel`` moved by ``stride`` over the padded (H, W) of ``shape`` (N, C, H, W).

    Raises a LayerInputError naming ``where`` when the kernel does not fit in the padded input.
    """
    (h, w), (kh, kw), (sh, sw), (ph, pw) = shape[2:], kernel, stride, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise LayerInputError(
            f"{where}: kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{w + 2 * pw} "
            f"(input shape {tuple(shape)})"
        )
    return conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def pad_spatial(x: Array, ph: int, pw: int, value: float = 0.0, out: Array | None = None) -> Array:
    """``x`` (N, C, H, W) with ``ph`` rows and ``pw`` columns of ``value`` on each side (``x`` itself if none).

    ``out``, if given, is an (N, C, H + 2ph, W + 2pw) array (any memory layout) to fill instead of a new one.
    """
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    if out is None:
        out = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    else:  # a reused buffer: only the border needs resetting
        out[:, :, :ph] = value
        out[:, :, ph + h :] = value
        out[:, :, ph : ph + h, :pw] = value
        out[:, :, ph : ph + h, pw + w :] = value
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def _window_view(xpad: Array, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> Array:
    """A strided view (C, KH, KW, N, OH, OW) of the padded input: no copy, every window in place."""
    s_n, s_c, s_h, s_w = xpad.strides
    n, c = xpad.shape[:2]
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(c, kh, kw, n, oh, ow), strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)
    )


def im2col(
    x: Array, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0, out: Array | None = None
) -> Array:
    """Lower a convolution's input to columns.

    Parameters
    ----------
    x : array (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
    out : optional C-contiguous array (C*KH*KW, N*OH*OW) of ``x``'s dtype to write into (e.g. a reused buffer)

    Returns
    -------
    cols : array (C*KH*KW, N*OH*OW), C-contiguous, same dtype as ``x``; row (c, i, j), column (n, oh, ow).
    """
    kh, kw = pair(kernel_size, "im2col: kernel_size", low=1)
    sh, sw = pair(stride, "im2col: stride", low=1)
    ph, pw = pair(padding, "im2col: padding")
    if x.ndim != 4:
        raise LayerInputError(f"im2col: expected a 4-d input (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    oh, ow = window_output_size("im2col", x.shape, (kh, kw), (sh, sw), (ph, pw))
    shape = (c * kh * kw, n * oh * ow)
    if out is None:
        out = xp.empty(shape, dtype=x.dtype)
    elif tuple(out.shape) != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise LayerInputError(
            f"im2col: out must be a C-contiguous {x.dtype} array of shape {shape}, got {out.dtype} {tuple(out.shape)}"
        )
    xpad = x
    if ph or pw:  # pad into a reused buffer laid out channel-first, as the conv outputs are
        xpad = scratch("im2col.pad", (c, n, h + 2 * ph, w + 2 * pw), x.dtype).transpose(1, 0, 2, 3)
        pad_spatial(x, ph, pw, out=xpad)
    view = _window_view(xpad, kh, kw, sh, sw, oh, ow)
    out6 = out.reshape(c, kh, kw, n, oh, ow)

    def channels(c0: int, c1: int) -> None:
        out6[c0:c1] = view[c0:c1]  # the one copy: gather every window

    parallel.split(channels, c, out.size)  # channel ranges on several threads for a large copy
    return out


def col2im(
    cols: Array,
    x_shape: tuple[int, int, int, int],
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    out: Array | None = None,
) -> Array:
    """Adjoint of :func:`im2col`: scatter-add columns back onto the input grid.

    Parameters
    ----------
    cols : array (C*KH*KW, N*OH*OW)
    x_shape : (N, C, H, W), the shape of the input that :func:`im2col` lowered
    out : optional (C, N, H + 2ph, W + 2pw) array to *add* into instead of a new zero one (a batch slice
        of a larger buffer, say); the result is then a view of it

    Returns
    -------
    dx : array (N, C, H, W), same dtype as ``cols``. Its memory is laid out channel-first (C, N, H, W),
        which is what the surrounding layers read fastest; it is a view, not necessarily contiguous.
    """
    kh, kw = pair(kernel_size, "col2im: kernel_size", low=1)
    sh, sw = pair(stride, "col2im: stride", low=1)
    ph, pw = pair(padding, "col2im: padding")
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    expected = (c * kh * kw, n * oh * ow)
    if tuple(cols.shape) != expected:
        raise LayerInputError(
            f"col2im: expected cols of shape {expected} for x_shape {tuple(x_shape)}, got {tuple(cols.shape)}"
        )
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    if out is None:
        dpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    else:
        dpad = out

    def channels(c0: int, c1: int) -> None:  # channel ranges are independent: several threads may share the work
        for i in range(kh):
            rows = slice(i, i + sh * oh, sh)
            for j in range(kw):
                dpad[c0:c1, :, rows, j : j + sw * ow : sw] += cols6[c0:c1, i, j]

    parallel.split(channels, c, cols.size)
    return dpad[:, :, ph : ph + h, pw : pw + w].transpose(1, 0, 2, 3)
