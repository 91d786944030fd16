"""Rectified linear unit, the non-linearity that made AlexNet train fast (the paper, §3.1).

Forward::   y = max(0, x)                                   any shape
Backward::  dL/dx = dL/dy · [x > 0]

The derivative at exactly x = 0 is taken as 0 (as in PyTorch). The mask is kept as the boolean
``x > 0`` rather than the input, and ``dy * mask`` is several times faster than ``np.where``. Every output
is allocated with ``empty_like``, so it keeps the memory layout of its input (the channel-major layout of
a convolution's output) on CuPy as on NumPy.
"""

from __future__ import annotations

from minialex.backend import xp
from minialex.layers.base import Array, Layer


class ReLU(Layer):
    """Element-wise ``max(0, x)``; no parameters."""

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        mask = xp.greater(x, x.dtype.type(0), out=xp.empty_like(x, dtype=bool))
        self._saved = (mask, x.dtype)
        return xp.maximum(x, x.dtype.type(0), out=xp.empty_like(x))  # NaN stays NaN, as in PyTorch

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        mask, dtype = self._saved_for_backward()
        self._check_grad(dy, mask.shape, dtype)
        return xp.multiply(dy, mask, out=xp.empty_like(dy))
