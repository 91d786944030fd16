"""Sequential: layers applied one after another, and backpropagated in reverse order.

Forward::   y = f_L(... f_2(f_1(x)))
Backward::  the chain rule, one layer at a time from the last:
            dL/dx = f_1.backward(f_2.backward(... f_L.backward(dL/dy)))
Each child's backward fills its own ``grads``; the container's ``params``/``grads`` are views of its
children's dicts, named ``"{child}.{name}"`` (``"conv1.weight"``, or ``"0.weight"`` for unnamed
children), nesting as deep as the containers do.

Shapes fold the same way: ``output_shape`` passes the shape through every child in turn, and ``macs`` adds
up the children's multiply-adds, each at the shape its input has; nothing is run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import CheckpointError, LayerInputError, mismatch_report, shape_mismatches
from minialex.layers.base import Array, Layer, Shape


class Sequential(Layer):
    """``Sequential(layer, layer, ...)`` or ``Sequential(("conv1", layer), ("relu1", layer), ...)``."""

    def __init__(self, *layers: Layer | tuple[str, Layer]) -> None:
        self.training = True
        self.name = "Sequential"
        self._saved = None
        self.children: dict[str, Layer] = {}
        for index, item in enumerate(layers):
            key, layer = item if isinstance(item, tuple) else (str(index), item)
            if not isinstance(layer, Layer):
                raise LayerInputError(f"Sequential: child {key!r} is a {type(layer).__name__}, not a Layer")
            if not isinstance(key, str) or not key or "." in key:
                raise LayerInputError(f"Sequential: child names must be non-empty strings without '.', got {key!r}")
            if key in self.children:
                raise LayerInputError(f"Sequential: two children are named {key!r}")
            self.children[key] = layer
        self._set_names("")

    def _set_names(self, prefix: str) -> None:
        for key, layer in self.children.items():
            path = f"{prefix}{key}"
            if isinstance(layer, Sequential):
                layer.name = f"Sequential '{path}'"
                layer._set_names(path + ".")
            else:
                layer.name = f"{type(layer).__name__} '{path}'"

    # -- parameters: assembled from the children on every access, so they are always current ----------
    @property
    def params(self) -> dict[str, Array]:  # type: ignore[override]
        return {f"{key}.{name}": value for key, layer in self.children.items() for name, value in layer.params.items()}

    @property
    def grads(self) -> dict[str, Array]:  # type: ignore[override]
        return {f"{key}.{name}": value for key, layer in self.children.items() for name, value in layer.grads.items()}

    @property
    def buffers(self) -> dict[str, Array]:  # type: ignore[override]
        return {f"{key}.{name}": value for key, layer in self.children.items() for name, value in layer.buffers.items()}

    def __getitem__(self, key: int | str) -> Layer:
        if isinstance(key, int):
            return list(self.children.values())[key]
        return self.children[key]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.children.values())

    def __len__(self) -> int:
        return len(self.children)

    def named_layers(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """Every leaf layer with its dotted path, in forward order."""
        for key, layer in self.children.items():
            if isinstance(layer, Sequential):
                yield from layer.named_layers(f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", layer

    # -- the protocol -----------------------------------------------------------------------------------
    def output_shape(self, input_shape: Shape) -> Shape:
        """The shape after every child, computed from the shapes alone (batch axis included)."""
        shape = self._check_shape(input_shape)
        for layer in self.children.values():
            shape = layer.output_shape(shape)
        return shape

    def macs(self, input_shape: Shape) -> int:
        """The children's multiply-adds, each for the shape of its own input."""
        total, shape = 0, self._check_shape(input_shape)
        for layer in self.children.values():
            total += layer.macs(shape)
            shape = layer.output_shape(shape)
        return total

    def forward(self, x: Array) -> Array:
        for layer in self.children.values():
            x = layer.forward(x)
        return x

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        """Backpropagate through every child, last first; ``need_input_grad=False`` is passed to the first child."""
        layers = list(self.children.values())
        for index in range(len(layers) - 1, -1, -1):
            dy = layers[index].backward(dy, need_input_grad=need_input_grad or index > 0)
        return dy

    def train(self, mode: bool = True) -> Sequential:
        self.training = bool(mode)
        for layer in self.children.values():
            layer.train(mode)
        return self

    def astype(self, dtype: Any) -> Sequential:
        for layer in self.children.values():
            layer.astype(dtype)
        return self

    def zero_grads(self) -> None:
        for layer in self.children.values():
            layer.zero_grads()

    def num_params(self) -> int:
        """The number of scalar parameters."""
        return sum(int(v.size) for v in self.params.values())

    def __repr__(self) -> str:
        lines = [f"  ({key}): " + repr(layer).replace("\n", "\n  ") for key, layer in self.children.items()]
        return "Sequential(\n" + "\n".join(lines) + "\n)"

    # -- weights in and out, as host NumPy arrays -----------------------------------------------------------
    def state(self) -> dict[str, Array]:
        """Every parameter and buffer (on the device, not copied), keyed by its dotted name."""
        return {**self.params, **self.buffers}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a host NumPy array (a copy), keyed by its dotted name."""
        return {name: np.array(backend.to_numpy(value)) for name, value in self.state().items()}

    def load_state_dict(self, state: dict[str, Any], source: str = "state dict") -> None:
        """Copy ``state`` into the parameters and buffers in place (the optimiser keeps its references).

        Raises :class:`~minialex.errors.CheckpointError` listing every missing, unexpected and mis-shaped
        tensor, or naming the first one that is not float32/float64 (an integer, boolean or float16 tensor
        would be cast silently) or holds NaN or infinity, before anything is copied.
        """
        targets = self.state()
        arrays = {k: np.asarray(backend.to_numpy(v)) for k, v in state.items()}
        report = mismatch_report(*shape_mismatches(targets, arrays))
        if report:
            raise CheckpointError(f"{source} does not fit this model: {report}")
        for name in targets:
            if arrays[name].dtype not in (np.float32, np.float64):
                raise CheckpointError(
                    f"{source}: tensor {name} has dtype {arrays[name].dtype}; expected float32 or float64 weights"
                )
            if not np.isfinite(arrays[name]).all():
                raise CheckpointError(f"{source}: tensor {name} holds NaN or infinite values (a diverged run?)")
        for name, value in targets.items():
            value[...] = backend.asarray(state[name], dtype=value.dtype)
