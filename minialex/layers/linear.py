"""Fully connected layer: fc6, fc7 and fc8 of AlexNet, where 58.6 M of its 61 M parameters live.

Shapes::

    x (N, in)    weight (out, in)  [PyTorch's layout]    bias (out,)    y (N, out)

Forward::   y = x Wᵀ + b
Backward::  with dY = dL/dy (N, out):
            dL/dW = dYᵀ x        (out, in): sum over the batch of outer products dy_n x_nᵀ
            dL/db = Σ_n dY_n     (out,)
            dL/dx = dY W         (N, in)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer


class Linear(Layer):
    """``y = x Wᵀ + b``. Weights start He-normal, N(0, 2/in); the bias at 0."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = np.float32) -> None:
        super().__init__()
        for what, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LayerInputError(f"Linear: {what} must be a positive int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.params["weight"] = backend.normal(
            (out_features, in_features), std=math.sqrt(2.0 / in_features), dtype=dtype
        )
        if bias:
            self.params["bias"] = xp.zeros(out_features, dtype=dtype)
        self._x: Array | None = None

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if "bias" in self.params else ", bias=False")

    def forward(self, x: Array) -> Array:
        self._check_ndim(x, 2, "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise LayerInputError(
                f"{self.name}: expected {self.in_features} input features, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        self._check_param_dtype(x)
        self._x = x
        # y = x Wᵀ computed as (W xᵀ)ᵀ: the same numbers, but BLAS runs the weight-major orientation ~2×
        # faster when the batch is small next to the features (y is then a transposed, F-ordered view).
        y = (self.params["weight"] @ x.T).T
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._x)
        x = self._x
        self._check_grad(dy, (x.shape[0], self.out_features), x.dtype)
        # dL/dW goes into last step's gradient array when there is one: a fresh 151 MB array for fc6 at
        # every step would cost page faults and, for a moment, twice the memory. (Copy grads to keep them.)
        weight, grad = self.params["weight"], self.grads.get("weight")
        if grad is None or grad.shape != weight.shape or grad.dtype != x.dtype or not grad.flags.c_contiguous:
            grad = xp.empty(weight.shape, dtype=x.dtype)
        self.grads["weight"] = xp.matmul(dy.T, x, out=grad)
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(axis=0)
        if not need_input_grad:
            return None
        return (self.params["weight"].T @ dy.T).T  # dY W, in the faster orientation (see forward)
