"""Rectified linear unit, the non-linearity that made AlexNet train fast ([P] §3.1).

Forward::   y = max(0, x)                                   any shape
Backward::  dL/dx = dL/dy · [x > 0]

The derivative at exactly x = 0 is taken as 0 (as in PyTorch). The mask is kept as the boolean
``y > 0`` rather than the input, and ``dy * mask`` is several times faster than ``np.where``.
"""

from __future__ import annotations

from minialex.backend import xp
from minialex.layers.base import Array, Layer


class ReLU(Layer):
    """Element-wise ``max(0, x)``; no parameters."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: Array | None = None
        self._dtype = None

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self._mask, self._dtype = x > 0, x.dtype
        return xp.maximum(x, x.dtype.type(0))  # NaN stays NaN, as in PyTorch

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._mask)
        self._check_grad(dy, self._mask.shape, self._dtype)
        return dy * self._mask
