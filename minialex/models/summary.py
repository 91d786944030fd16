"""A model's per-layer table, computed from shapes alone (nothing is run).

For one image of shape (C, H, W), each leaf layer reports its output shape and its forward cost in
multiply-adds through the layer protocol (``layer.output_shape(shape)``, ``layer.macs(shape)``, on a batch
of one), and the table adds the parameter count::

    Conv2d   MACs = OH · OW · C_out · (C_in / G) · KH · KW      (each output sums C_in/G · KH · KW products)
    Linear   MACs = in · out
    others   0    (ReLU, LRN, BatchNorm, max-pool, dropout, flatten: memory-bound and cheap; not counted)

FLOPs count a multiply-add as 2 floating-point operations: FLOPs = 2 · MACs. Bias additions are not
counted (they are in the parameter count). These are the conventions of published AlexNet tables and of
torchvision's ``_ops`` (0.714 GMACs for its AlexNet). "params" are the trainable parameters; a BatchNorm
layer's running mean and variance are listed apart as non-trainable "buffers" (Keras's "non-trainable
params").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    """One line of the table: a leaf layer, its output shape for one image, params, MACs and buffers."""

    name: str
    kind: str
    output_shape: Shape
    params: int
    macs: int
    buffers: int = 0
    """Non-trainable values saved with the model (BatchNorm's running statistics)."""

    @property
    def flops(self) -> int:
        """Forward FLOPs, a multiply-add counted as 2."""
        return 2 * self.macs


def layer_table(model: Any, input_shape: Shape) -> list[LayerRow]:
    """One :class:`LayerRow` per leaf layer of ``model`` (a ``Sequential``, or a single layer) for one image of
    ``input_shape`` (the shape without the batch axis).

    A shape a layer cannot take raises :class:`~minialex.errors.LayerInputError` naming that layer.
    """
    shape = (1, *input_shape)  # the layers' shapes include the batch axis
    rows = []
    named = model.named_layers() if hasattr(model, "named_layers") else [(model.name, model)]
    for name, layer in named:
        macs = layer.macs(shape)
        shape = layer.output_shape(shape)
        params = sum(int(v.size) for v in layer.params.values())
        buffers = sum(int(v.size) for v in getattr(layer, "buffers", {}).values())
        rows.append(LayerRow(name, type(layer).__name__, shape[1:], params, macs, buffers))
    return rows


def format_table(rows: list[LayerRow], title: str) -> str:
    """The table as text, with totals and a line saying what is counted.

    A "buffers" column (non-trainable values) appears when some layer has buffers.
    """
    with_buffers = any(r.buffers for r in rows)
    header = ("layer", "type", "output shape", "params", "MACs", "FLOPs") + (("buffers",) if with_buffers else ())
    body = [
        (r.name, r.kind, "×".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}", f"{r.flops:,}")
        + ((f"{r.buffers:,}",) if with_buffers else ())
        for r in rows
    ]
    total = ("total", "", "", f"{sum(r.params for r in rows):,}", f"{sum(r.macs for r in rows):,}")
    total += (f"{sum(r.flops for r in rows):,}",) + ((f"{sum(r.buffers for r in rows):,}",) if with_buffers else ())
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        left = [line[i].ljust(widths[i]) for i in range(3)]
        right = [line[i].rjust(widths[i]) for i in range(3, len(header))]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(header))
    lines = [title, rule, fmt(header), rule, *map(fmt, body), rule, fmt(total), rule]
    lines.append(
        "Per image, forward pass. MACs = multiply-adds of conv and linear layers; FLOPs = 2 × MACs (a multiply-add "
        "is 2 FLOPs). Bias additions, ReLU, LRN, BatchNorm, pooling and dropout are not counted."
    )
    if with_buffers:
        lines.append(
            f"params: {sum(r.params for r in rows):,} trainable; buffers: {sum(r.buffers for r in rows):,} "
            "non-trainable (BatchNorm's running mean and variance, saved with the model, never optimised)."
        )
    return "\n".join(lines)
