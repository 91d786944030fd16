"""The protocol every layer follows, and the input checks they share.

A layer is a small object with

* ``forward(x) -> y``: computes the output and keeps in ``self._saved`` (one tuple) what the backward
  pass needs;
* ``backward(dy, need_input_grad=True) -> dx``: given dL/dy, returns dL/dx and (over)writes dL/dθ into
  ``self.grads``. With ``need_input_grad=False`` (the network's first layer, whose input is the data) a
  layer may skip dL/dx and return None;
* ``params`` / ``grads``: dicts of arrays with the same keys (``{}`` for layers without parameters);
  ``grads`` hold the *last* backward pass and may be overwritten in place by the next one (copy them to
  keep them);
* ``buffers``: state that is not learned but belongs to the model (running statistics): saved and
  restored with the parameters, never touched by an optimiser (``{}`` for most layers);
* ``output_shape(input_shape)`` and ``macs(input_shape)``: the output's shape and the forward pass's
  multiply-adds for an input of that shape (batch axis included), computed from the shape alone; a shape
  the layer cannot take raises :class:`~minialex.errors.LayerInputError` naming the layer, exactly as
  ``forward`` would. Element-wise layers keep the shape and count 0 MACs (the convention of published
  AlexNet tables: only the weighted layers, convolution and linear, are counted);
* ``train()`` / ``eval()`` and the ``training`` flag (only dropout behaves differently).

Layers never write into ``x`` or ``dy``, keep the floating dtype they are given (float32 or float64; the
parameters must have the same one, see :meth:`Layer.astype`) and accept non-contiguous arrays.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex.backend import xp
from minialex.errors import LayerInputError

Array = Any  # numpy.ndarray or cupy.ndarray
Shape = tuple[int, ...]
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype: Any, what: str) -> np.dtype:
    """``dtype`` as a NumPy dtype if it is float32 or float64, else a LayerInputError naming ``what``."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in SUPPORTED_DTYPES:
        shown = repr(dtype) if resolved is None else resolved
        raise LayerInputError(f"{what}: dtype must be float32 or float64, got {shown}")
    return resolved


MAX_PARAMETER_ELEMENTS = 2**31
"""The most elements one parameter array may have (8 GiB of float32; AlexNet's largest, fc6, has 37.7 M)."""
_shapes_only = [False]


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Build layers whose parameters have their shapes but hold no memory (for a summary of any size).

    Inside the block every weight and bias is a read-only zero-strided view of one zero
    (``xp.broadcast_to``): ``shape``, ``size`` and ``dtype`` are right, nothing is allocated and no random
    number is drawn. Such a layer is for :meth:`Layer.output_shape`, :meth:`Layer.macs` and counting
    parameters, not for running.
    """
    previous, _shapes_only[0] = _shapes_only[0], True
    try:
        yield
    finally:
        _shapes_only[0] = previous


def _placeholder(shape: Shape, dtype: np.dtype) -> Array:
    return xp.broadcast_to(xp.zeros((), dtype=dtype), tuple(shape))


def _check_size(shape: Shape, what: str) -> None:
    elements = math.prod(shape)
    if elements > MAX_PARAMETER_ELEMENTS:
        raise LayerInputError(
            f"{what}: a parameter of shape {tuple(shape)} would have {elements:,} elements, more than the "
            f"{MAX_PARAMETER_ELEMENTS:,} allowed; use smaller layers"
        )


MAX_ACTIVATION_ELEMENTS = 2**32
"""The most elements an array a layer computes may have (16 GiB of float32): larger is a mistake in its sizes."""


def check_elements(what: str, shape: Shape, limit: int = MAX_ACTIVATION_ELEMENTS) -> None:
    """LayerInputError naming ``what`` if an array of ``shape`` would have more than ``limit`` elements.

    Called before allocating, so that a padding of 10⁶ or a huge image fails at once with a message instead of
    a ``MemoryError`` (or a machine swapping for minutes).
    """
    elements = math.prod(shape)
    if elements > limit:
        raise LayerInputError(
            f"{what} of shape {tuple(shape)} would have {elements:,} elements, more than the {limit:,} allowed; "
            "check the padding, kernel, stride and input sizes"
        )


def initial_weight(shape: Shape, fan_in: int, weight_std: float | None, dtype: Any, what: str) -> Array:
    """A weight drawn once from N(0, std²): He's std = √(2 / fan_in) when ``weight_std`` is None.

    He's scale keeps the variance of a signal through a ReLU layer (He et al., 2015); the model builders
    pass the paper's 0.01 or an output layer's small scale instead (see :mod:`minialex.models`). A weight of
    more than :data:`MAX_PARAMETER_ELEMENTS` elements is refused before anything is allocated (but see
    :func:`shapes_only`).
    """
    if weight_std is None:
        std = math.sqrt(2.0 / fan_in)
    else:
        std = validate.number(weight_std, f"{what}: weight_std", low=0.0, error=LayerInputError)
    dtype = float_dtype(dtype, what)
    if _shapes_only[0]:
        return _placeholder(shape, dtype)
    _check_size(shape, what)
    return backend.normal(shape, std=std, dtype=dtype.type)


def initial_bias(size: int, bias: bool, bias_value: float, dtype: Any, what: str) -> Array | None:
    """A bias of ``size`` entries, all ``bias_value`` (None when ``bias`` is False)."""
    bias = validate.flag(bias, f"{what}: bias", error=LayerInputError)
    value = validate.number(bias_value, f"{what}: bias_value", error=LayerInputError)
    if not bias:
        if value != 0.0:
            raise LayerInputError(f"{what}: bias_value={value} was given but bias=False")
        return None
    if _shapes_only[0]:
        return _placeholder((size,), float_dtype(dtype, what))
    _check_size((size,), what)
    return xp.full(size, value, dtype=float_dtype(dtype, what))


class InputChecks:
    """The checks shared by layers and losses; every message starts with ``self.name``."""

    name: str
    _saved: tuple | None

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

    def _check_shape(self, shape: Any, ndim: int | None = None, layout: str = "", min_ndim: int = 0) -> Shape:
        """``shape`` as a tuple of ints, with exactly ``ndim`` (or at least ``min_ndim``) axes."""
        ok = isinstance(shape, (tuple, list)) and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape
        )
        if not ok:
            raise LayerInputError(f"{self.name}: a shape must be a tuple of non-negative ints, got {shape!r}")
        shape = tuple(int(d) for d in shape)
        if ndim is not None and len(shape) != ndim:
            raise LayerInputError(f"{self.name}: expected a {ndim}-d input {layout}, got shape {shape}")
        if len(shape) < min_ndim:
            raise LayerInputError(f"{self.name}: expected an input {layout}, got shape {shape}")
        return shape

    def _check_ndim(self, x: Array, ndim: int, layout: str) -> None:
        self._check_float(x)
        self._check_shape(tuple(x.shape), ndim, layout)

    def _check_grad(self, dy: Array, expected_shape: Shape, dtype: Any) -> None:
        self._check_float(dy, "output gradient dy")
        if tuple(dy.shape) != tuple(expected_shape):
            raise LayerInputError(
                f"{self.name}: dy must have the forward output's shape {tuple(expected_shape)}, got {tuple(dy.shape)}"
            )
        if dy.dtype != dtype:
            raise LayerInputError(f"{self.name}: dy dtype {dy.dtype} does not match the forward dtype {dtype}")

    def _saved_for_backward(self) -> tuple:
        """What the last ``forward`` kept for the backward pass (``self._saved``), or an error if none ran."""
        self._require_forward(self._saved)
        return self._saved

    def _require_forward(self, cached: Any) -> None:
        """The "backward called before forward" error when ``cached`` is None (prefer :meth:`_saved_for_backward`)."""
        if cached is None:
            raise LayerInputError(f"{self.name}: backward called before forward")


class Layer(InputChecks):
    """Base class: parameter bookkeeping, train/eval mode, shapes and input checks."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self.grads: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self.training = True
        self.name = type(self).__name__
        self._saved: tuple | None = None

    # -- the protocol -----------------------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output's shape for an input of ``input_shape`` (batch axis included); here: the same shape."""
        return self._check_shape(input_shape)

    def macs(self, input_shape: Shape) -> int:
        """Multiply-adds of one forward pass over an input of ``input_shape``; here: 0 (not a weighted layer)."""
        self.output_shape(input_shape)
        return 0

    def train(self, mode: bool = True) -> Layer:
        """Switch to training mode (``mode=False`` is :meth:`eval`); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Switch to evaluation mode; returns the layer."""
        return self.train(False)

    def astype(self, dtype: Any) -> Layer:
        """Cast every parameter to ``dtype`` (float32 or float64), in place; returns the layer."""
        dtype = float_dtype(dtype, self.name)
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

    def _check_param_dtype(self, x: Array) -> None:
        for key, value in self.params.items():
            if value.dtype != x.dtype:
                raise LayerInputError(
                    f"{self.name}: input dtype {x.dtype} does not match parameter '{key}' dtype {value.dtype}; "
                    f"cast the layer with .astype({x.dtype}) or the input with .astype({value.dtype})"
                )
