"""A model's per-layer table, computed from shapes alone (nothing is run).

For one image of shape (C, H, W), each leaf layer gets its output shape, its parameter count and its
forward cost in multiply-adds (MACs)::

    Conv2d   MACs = OH · OW · C_out · (C_in / G) · KH · KW      (each output sums C_in/G · KH · KW products)
    Linear   MACs = in · out
    others   0    (ReLU, LRN, max-pool, dropout and flatten are memory-bound and cheap; not counted)

FLOPs count a multiply-add as 2 floating-point operations: FLOPs = 2 · MACs. Bias additions are not
counted (they are in the parameter count). These are the conventions of the reference table in
``alexnet-facts.md`` §2 and of torchvision's ``_ops`` (0.714 GMACs for its AlexNet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minialex.errors import LayerInputError
from minialex.layers import Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, ReLU
from minialex.layers.im2col import conv_output_size

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One line of the table: a leaf layer, its output shape for one image, params and MACs."""

    name: str
    kind: str
    output_shape: Shape
    params: int
    macs: int

    @property
    def flops(self) -> int:
        """Forward FLOPs, a multiply-add counted as 2."""
        return 2 * self.macs


def _spatial(name: str, shape: Shape, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]):
    if len(shape) != 3:
        raise LayerInputError(f"{name}: expected a (C, H, W) input, got {shape}")
    _, h, w = shape
    oh = conv_output_size(h, kernel[0], stride[0], padding[0])
    ow = conv_output_size(w, kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise LayerInputError(f"{name}: kernel {kernel} does not fit the padded input of {shape} (padding {padding})")
    return oh, ow


def output_shape_and_macs(name: str, layer: Any, shape: Shape) -> tuple[Shape, int]:
    """The output shape (for one image) of ``layer`` given its input ``shape``, and its MACs."""
    if isinstance(layer, Conv2d):
        if shape[0] != layer.in_channels:
            raise LayerInputError(f"{name}: expected {layer.in_channels} input channels, got input {shape}")
        oh, ow = _spatial(name, shape, layer.kernel_size, layer.stride, layer.padding)
        kh, kw = layer.kernel_size
        macs = oh * ow * layer.out_channels * (layer.in_channels // layer.groups) * kh * kw
        return (layer.out_channels, oh, ow), macs
    if isinstance(layer, MaxPool2d):
        oh, ow = _spatial(name, shape, layer.kernel_size, layer.stride, layer.padding)
        return (shape[0], oh, ow), 0
    if isinstance(layer, Flatten):
        return (math.prod(shape),), 0
    if isinstance(layer, Linear):
        if shape != (layer.in_features,):
            raise LayerInputError(f"{name}: expected ({layer.in_features},) input features, got {shape}")
        return (layer.out_features,), layer.in_features * layer.out_features
    if isinstance(layer, (ReLU, LocalResponseNorm, Dropout)):
        return shape, 0
    raise LayerInputError(f"{name}: no shape rule for a {type(layer).__name__} layer")


def layer_table(model: Any, input_shape: Shape) -> list[LayerRow]:
    """One :class:`LayerRow` per leaf layer of ``model`` (a ``Sequential``) for one image of ``input_shape``."""
    shape = tuple(int(d) for d in input_shape)
    rows = []
    for name, layer in model.named_layers():
        shape, macs = output_shape_and_macs(name, layer, shape)
        params = sum(int(v.size) for v in layer.params.values())
        rows.append(LayerRow(name, type(layer).__name__, shape, params, macs))
    return rows


def format_table(rows: list[LayerRow], title: str) -> str:
    """The table as text, with totals and a line saying what is counted."""
    header = ("layer", "type", "output shape", "params", "MACs", "FLOPs")
    body = [
        (r.name, r.kind, "×".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}", f"{r.flops:,}")
        for r in rows
    ]
    total = ("total", "", "", f"{sum(r.params for r in rows):,}", f"{sum(r.macs for r in rows):,}")
    total += (f"{sum(r.flops for r in rows):,}",)
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        left = [line[i].ljust(widths[i]) for i in range(3)]
        right = [line[i].rjust(widths[i]) for i in range(3, 6)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(header))
    lines = [title, rule, fmt(header), rule, *map(fmt, body), rule, fmt(total), rule]
    lines.append(
        "Per image, forward pass. MACs = multiply-adds of conv and linear layers; FLOPs = 2 × MACs (a multiply-add "
        "is 2 FLOPs). Bias additions, ReLU, LRN, pooling and dropout are not counted."
    )
    return "\n".join(lines)
