"""Flatten every axis but the batch: (N, C, H, W) -> (N, C·H·W), in C order (as ``torch.flatten(x, 1)``).

Backward is the inverse reshape: the gradient of a reshape is the same numbers in the old shape.
"""

from __future__ import annotations

import math

from minialex.layers.base import Array, Layer, Shape


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...); no parameters."""

    def output_shape(self, input_shape: Shape) -> Shape:
        """(N, d1·d2·...) for an input (N, d1, d2, ...)."""
        shape = self._check_shape(input_shape, layout="with a batch axis and at least one more", min_ndim=2)
        return shape[0], math.prod(shape[1:])

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        out_shape = self.output_shape(x.shape)
        self._saved = (tuple(x.shape), x.dtype)
        return x.reshape(out_shape)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        shape, dtype = self._saved_for_backward()
        self._check_grad(dy, self.output_shape(shape), dtype)
        return dy.reshape(shape)
