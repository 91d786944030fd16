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

from typing import Any

import numpy as np

from minialex import validate
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer, Shape, initial_bias, initial_weight


class Linear(Layer):
    """``y = x Wᵀ + b``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64
    weight_std : the standard deviation of the initial weights; None (the default) for He's N(0, 2 / in)
    bias_value : the initial value of every bias (default 0)

    The weight gradient is written into the same array at every backward pass (``grads["weight"]`` keeps
    its identity from step to step), as the layer protocol allows: copy it to keep one step's gradient.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: Any = np.float32,
        weight_std: float | None = None,
        bias_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = validate.integer(in_features, "Linear: in_features", low=1, error=LayerInputError)
        self.out_features = validate.integer(out_features, "Linear: out_features", low=1, error=LayerInputError)
        self.params["weight"] = initial_weight((out_features, in_features), in_features, weight_std, dtype, "Linear")
        b = initial_bias(out_features, bias, bias_value, dtype, "Linear")
        if b is not None:
            self.params["bias"] = b

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if "bias" in self.params else ", bias=False")

    def output_shape(self, input_shape: Shape) -> Shape:
        """(N, out_features) for an input (N, in_features)."""
        shape = self._check_shape(input_shape, 2, "(N, in_features)")
        if shape[1] != self.in_features:
            raise LayerInputError(
                f"{self.name}: expected {self.in_features} input features, got {shape[1]} (input shape {shape})"
            )
        return shape[0], self.out_features

    def macs(self, input_shape: Shape) -> int:
        """N·in·out: each output sums ``in`` products."""
        n, _ = self.output_shape(input_shape)
        return n * self.in_features * self.out_features

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self.output_shape(x.shape)
        self._check_param_dtype(x)
        self._saved = (x,)
        # y = x Wᵀ computed as (W xᵀ)ᵀ: the same numbers, but BLAS runs the weight-major orientation
        # faster when the batch is small next to the features (y is then a transposed, F-ordered view).
        y = (self.params["weight"] @ x.T).T
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        (x,) = self._saved_for_backward()
        self._check_grad(dy, (x.shape[0], self.out_features), x.dtype)
        # dL/dW goes into last step's gradient array when there is one: a fresh array of fc6's size (151 MB in
        # float32) at every step would cost page faults (see docs/layers-and-models.md for the measurement).
        weight, grad = self.params["weight"], self.grads.get("weight")
        if grad is None or grad.shape != weight.shape or grad.dtype != x.dtype or not grad.flags.c_contiguous:
            grad = xp.empty(weight.shape, dtype=x.dtype)
        self.grads["weight"] = xp.matmul(dy.T, x, out=grad)
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(axis=0)
        if not need_input_grad:
            return None
        return (self.params["weight"].T @ dy.T).T  # dY W, in the faster orientation (see forward)
