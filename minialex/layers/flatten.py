"""Flatten every axis but the batch: (N, C, H, W) -> (N, C·H·W), in C order (as ``torch.flatten(x, 1)``).

Backward is the inverse reshape: the gradient of a reshape is the same numbers in the old shape.
"""

from __future__ import annotations

import math

from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...); no parameters."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None
        self._dtype = None

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        if x.ndim < 2:
            raise LayerInputError(
                f"{self.name}: expected an input with a batch axis and at least one more, got shape {tuple(x.shape)}"
            )
        self._shape, self._dtype = tuple(x.shape), x.dtype
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._shape)
        n = self._shape[0]
        self._check_grad(dy, (n, math.prod(self._shape[1:])), self._dtype)
        return dy.reshape(self._shape)
