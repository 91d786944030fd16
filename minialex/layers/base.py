"""The protocol every layer follows, and the input checks they share.

A layer is a small object with

* ``forward(x) -> y``: computes the output and keeps on ``self`` what the backward pass needs;
* ``backward(dy, need_input_grad=True) -> dx``: given dL/dy, returns dL/dx and (over)writes dL/dθ into
  ``self.grads``. With ``need_input_grad=False`` (the network's first layer, whose input is the data) a
  layer may skip dL/dx and return None;
* ``params`` / ``grads``: dicts of arrays with the same keys (``{}`` for layers without parameters);
  ``grads`` hold the *last* backward pass and may be overwritten in place by the next one (copy them to
  keep them);
* ``buffers``: state that is not learned but belongs to the model (running statistics): saved and
  restored with the parameters, never touched by an optimiser (``{}`` for most layers);
* ``train()`` / ``eval()`` and the ``training`` flag (only dropout behaves differently).

Layers never write into ``x`` or ``dy``, keep the floating dtype they are given (float32 or float64; the
parameters must have the same one, see :meth:`Layer.astype`) and accept non-contiguous arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex.backend import xp
from minialex.errors import LayerInputError

Array = Any  # numpy.ndarray or cupy.ndarray
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Layer:
    """Base class: parameter bookkeeping, train/eval mode and input checks."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.training = True
        self.name = type(self).__name__

    # -- the protocol -----------------------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def train(self, mode: bool = True) -> Layer:
        """Switch to training mode (``mode=False`` is :meth:`eval`); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Switch to evaluation mode; returns the layer."""
        return self.train(False)

    def astype(self, dtype: Any) -> Layer:
        """Cast every parameter to ``dtype`` (float32 or float64), in place; returns the layer."""
        dtype = np.dtype(dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise LayerInputError(f"{self.name}: dtype must be float32 or float64, got {dtype}")
        for key, value in self.params.items():
            self.params[key] = value.astype(dtype, copy=False)
        for key, value in self.buffers.items():
            if value.dtype.kind == "f":
                self.buffers[key] = value.astype(dtype, copy=False)
        self.grads = {}
        return self

    def zero_grads(self) -> None:
        """Set every gradient to zero arrays of the parameters' shapes."""
        self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    # -- input checks shared by the layers -----------------------------------------------------------------
    def _check_float(self, x: Array, what: str = "input") -> None:
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise LayerInputError(f"{self.name}: {what} must be an array, got {type(x).__name__}")
        if x.dtype not in SUPPORTED_DTYPES:
            raise LayerInputError(f"{self.name}: {what} dtype must be float32 or float64, got {x.dtype}")
        if not isinstance(x, xp.ndarray):
            raise LayerInputError(
                f"{self.name}: {what} is a {type(x).__module__}.{type(x).__name__} but the backend is "
                f"{xp.__name__}; convert it with minialex.backend.asarray"
            )

    def _check_ndim(self, x: Array, ndim: int, layout: str) -> None:
        self._check_float(x)
        if x.ndim != ndim:
            raise LayerInputError(f"{self.name}: expected a {ndim}-d input {layout}, got shape {tuple(x.shape)}")

    def _check_param_dtype(self, x: Array) -> None:
        for key, value in self.params.items():
            if value.dtype != x.dtype:
                raise LayerInputError(
                    f"{self.name}: input dtype {x.dtype} does not match parameter '{key}' dtype {value.dtype}; "
                    f"cast the layer with .astype({x.dtype}) or the input with .astype({value.dtype})"
                )

    def _check_grad(self, dy: Array, expected_shape: tuple[int, ...], dtype: Any) -> None:
        self._check_float(dy, "output gradient dy")
        if tuple(dy.shape) != tuple(expected_shape):
            raise LayerInputError(
                f"{self.name}: dy must have the forward output's shape {tuple(expected_shape)}, got {tuple(dy.shape)}"
            )
        if dy.dtype != dtype:
            raise LayerInputError(f"{self.name}: dy dtype {dy.dtype} does not match the forward dtype {dtype}")

    def _require_forward(self, cached: Any) -> None:
        if cached is None:
            raise LayerInputError(f"{self.name}: backward called before forward")
