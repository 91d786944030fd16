"""How a network is cut into columns for model parallelism, computed from its layers and shapes alone.

The paper's rule (§3.2, Figure 2) generalised to any flat ``Sequential`` of minialex's layers on P ranks.
Every activation is either *full* (every rank holds all of it: the input images) or *split* (rank r holds
block r of its channels or features, the blocks in rank order making up the whole). Layer by layer:

============================  ====================  ==============================  ==================
layer                         needs                 rank r holds                    output
============================  ====================  ==============================  ==================
Conv2d, groups 1              full input            filters block r (all channels)  split
Conv2d, groups G (P | G)      split input           groups block r (G/P groups)     split
Linear                        full input            output neurons block r          split
LRN (split input)             a halo (``exact``)    the same layer on its channels  split
ReLU, MaxPool2d, Dropout      either                nothing (acts per channel)      as its input
Flatten                       either                nothing: (c, H, W) → c·H·W      as its input
============================  ====================  ==============================  ==================

Where a layer needs what it does not have, an *exchange* is inserted before it:

* ``allgather`` (split → full, before a Conv2d of groups 1 or a Linear): each rank sends its block to the
  others. In backward, rank r's filters or neurons give a *partial* gradient for every input channel; a
  ``reduce-scatter`` sums them and leaves rank r the sum for its own block.
* ``slice`` (full → split, before a grouped Conv2d): no traffic forward; the input gradient is all-gathered.
* ``halo`` (LRN on a split input): the window of the channels at the edge of a block reaches into the
  neighbouring block (``size // 2`` channels before, ``(size − 1) // 2`` after); those are exchanged, and
  their gradients sent back in backward. ``lrn="per-column"`` drops the halo: each rank normalises over its
  own channels, as the paper's GPUs did.
* ``output`` (after the last layer): the logits are all-gathered, so that every rank computes the same
  loss; its gradient, the same on every rank, is then sliced without traffic.

On AlexNet ``paper`` (P = 2) the exchanges fall exactly where the paper's GPUs communicate, into conv3, fc6,
fc7 and fc8, plus the two LRN halos (see :mod:`minialex.distributed.model_parallel`). Every variant
qualifies: ``mini`` (grouped conv2; exchanges into conv3, fc4, fc5), and the single-column ``d2l`` and
``torchvision``, whose ungrouped conv2, conv4 and conv5 each need an all-gather too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minialex import validate
from minialex.errors import ConfigError
from minialex.layers import Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, ReLU, Sequential

FULL, SPLIT = "full", "split"
LRN_MODES = ("exact", "per-column")
SUPPORTED = (Conv2d, Linear, LocalResponseNorm, ReLU, MaxPool2d, Dropout, Flatten)
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Exchange:
    """Traffic between ranks before layer ``before`` (``"output"``: after the last layer).

    ``block`` is the per-image shape of what one rank holds on the split side (its channels or features);
    ``halo`` = (channels before, channels after) for an LRN halo.
    """

    before: str
    kind: str  # "allgather", "slice", "halo", "output"
    block: Shape
    halo: tuple[int, int] = (0, 0)

    def elements(self, size: int, rank: int, backward: bool, input_grad: bool = False) -> int:
        """Elements per image that ``rank`` sends in the forward (or backward) pass through this exchange."""
        block = math.prod(self.block)
        if self.kind == "allgather":
            return (size - 1) * block
        if self.kind == "output":
            return 0 if backward else (size - 1) * block
        if self.kind == "slice":
            return (size - 1) * block if backward and input_grad else 0
        # halo: forward sends `before` channels to the next rank and `after` channels to the previous one;
        # backward sends the gradients of the borrowed channels back (`before` to the previous, `after` to the next).
        before, after = self.halo
        plane = block // self.block[0]
        to_next, to_prev = rank < size - 1, rank > 0
        if backward:
            return plane * (before * to_prev + after * to_next)
        return plane * (before * to_next + after * to_prev)


@dataclass(frozen=True)
class SplitLayer:
    """One layer of the plan: how rank r's copy differs from the full layer, and the exchange before it."""

    name: str
    kind: str
    how: str  # "filters", "groups", "neurons", "halo", "per channel", "replicated"
    input_layout: str
    output_layout: str
    full_output: Shape
    exchange: Exchange | None


@dataclass
class SplitPlan:
    """The split of a model over ``size`` ranks (see the module docstring); built by :func:`plan_split`."""

    size: int
    input_shape: Shape
    layers: list[SplitLayer]
    output: Exchange | None
    lrn: str

    @property
    def exchanges(self) -> list[Exchange]:
        """Every exchange in forward order (the output gather last)."""
        found = [layer.exchange for layer in self.layers if layer.exchange is not None]
        return found + ([self.output] if self.output is not None else [])

    @property
    def input_grad_partial(self) -> bool:
        """Whether the image gradient comes out partial on each rank (first split layer fed the full input)."""
        first = next((layer for layer in self.layers if layer.how in ("filters", "neurons", "groups")), None)
        return first is not None and first.input_layout == FULL and first.exchange is None

    def elements_per_image(self, rank: int = 0, input_grad: bool = False) -> dict[str, int]:
        """Elements ``rank`` sends per image: ``{"forward": ..., "backward": ...}`` for one training step."""
        forward = sum(e.elements(self.size, rank, False) for e in self.exchanges)
        backward = sum(e.elements(self.size, rank, True, input_grad) for e in self.exchanges)
        if input_grad and self.input_grad_partial:  # the partial image gradients are summed by an allreduce
            backward += math.ceil(2 * (self.size - 1) / self.size * math.prod(self.input_shape))
        return {"forward": forward, "backward": backward}

    def bytes_per_step(self, batch: int, itemsize: int, rank: int = 0, input_grad: bool = False) -> int:
        """Bytes ``rank`` sends in one training step (forward and backward) of ``batch`` images."""
        per_image = self.elements_per_image(rank, input_grad)
        return batch * itemsize * (per_image["forward"] + per_image["backward"])

    def table(self) -> str:
        """The plan as text: one line per layer that is split or exchanges, with the per-image blocks."""
        lines = [f"{'layer':<9} {'type':<18} {'rank r holds':<26} exchange before it (per image, rank 0 sends)"]
        for layer in self.layers:
            what = {
                "filters": "1/P of the filters",
                "groups": "1/P of the groups",
                "neurons": "1/P of the neurons",
                "halo": "its channels (+ halo)",
                "per channel": "its channels",
                "replicated": "everything (replicated)",
            }[layer.how]
            lines.append(f"{layer.name:<9} {layer.kind:<18} {what:<26} {_describe(layer.exchange, self.size)}")
        if self.output is not None:
            lines.append(f"{'(output)':<9} {'':<18} {'':<26} {_describe(self.output, self.size)}")
        return "\n".join(lines)


def _describe(exchange: Exchange | None, size: int) -> str:
    if exchange is None:
        return ""
    fwd, bwd = exchange.elements(size, 0, False), exchange.elements(size, 0, True)
    block = "×".join(map(str, exchange.block))
    text = {
        "allgather": f"allgather of {block} blocks; backward reduce-scatter",
        "output": f"allgather of the {block} logits; backward a slice (no traffic)",
        "slice": "each rank takes its block; backward allgather of the input gradient",
        "halo": f"halo of {exchange.halo[0]}+{exchange.halo[1]} channels of {'×'.join(map(str, exchange.block[1:]))}",
    }[exchange.kind]
    return f"{text}: {fwd:,} + {bwd:,} elements"


def _even(value: int, size: int, what: str) -> None:
    if value % size:
        raise ConfigError(f"model parallelism: {what} = {value} cannot be shared evenly by {size} ranks")


def plan_split(model: Sequential, size: int, input_shape: Shape | None = None, lrn: str = "exact") -> SplitPlan:
    """The :class:`SplitPlan` of ``model`` (a flat Sequential) over ``size`` ranks; ConfigError when it cannot split.

    ``input_shape`` (C, H, W) defaults to ``model.input_shape`` (an AlexNet has one). ``lrn``: ``"exact"``
    (a halo exchange; the same network as ``model``) or ``"per-column"`` (no exchange; the paper's GPUs).
    """
    size = validate.integer(size, "model parallelism: the number of ranks", low=2)
    validate.choice(lrn, "lrn", LRN_MODES)
    shape = tuple(input_shape if input_shape is not None else getattr(model, "input_shape", ()))
    if not shape:
        raise ConfigError(f"model parallelism: give the input shape, e.g. (C, H, W), of {type(model).__name__}")
    if not isinstance(model, Sequential):
        raise ConfigError(f"model parallelism splits a Sequential, got a {type(model).__name__}")
    first_shape, layout, layers = tuple(int(s) for s in shape), FULL, []
    for name, layer in model.children.items():
        if not isinstance(layer, SUPPORTED):
            raise ConfigError(
                f"model parallelism: no split rule for layer {name!r} ({type(layer).__name__}); supported: "
                f"{', '.join(t.__name__ for t in SUPPORTED)}"
            )
        out_shape = tuple(layer.output_shape((1, *shape))[1:])  # per image: the layers' shapes carry a batch axis
        layers.append(_plan_layer(name, layer, layout, shape, out_shape, size, lrn))
        layout, shape = layers[-1].output_layout, out_shape
    if not any(layer.how in ("filters", "groups", "neurons") for layer in layers):
        raise ConfigError("model parallelism: the model has no convolution or linear layer to split")
    output = Exchange("output", "output", _block(shape, size)) if layout == SPLIT else None
    return SplitPlan(size, first_shape, layers, output, lrn)


def _block(full_shape: Shape, size: int) -> Shape:
    return (full_shape[0] // size, *full_shape[1:])


def _plan_layer(name: str, layer: Any, layout: str, shape: Shape, out_shape: Shape, size: int, lrn: str) -> SplitLayer:
    kind = type(layer).__name__

    def row(how: str, out_layout: str, exchange: Exchange | None = None) -> SplitLayer:
        return SplitLayer(name, kind, how, layout, out_layout, out_shape, exchange)

    if (isinstance(layer, Conv2d) and layer.groups == 1) or isinstance(layer, Linear):
        width = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
        _even(width, size, f"{name}'s {'filters' if isinstance(layer, Conv2d) else 'output features'}")
        gather = Exchange(name, "allgather", _block(shape, size)) if layout == SPLIT else None
        if gather is not None:
            _even(shape[0], size, f"the input channels of {name}")
        return row("neurons" if isinstance(layer, Linear) else "filters", SPLIT, gather)
    if isinstance(layer, Conv2d):
        if layer.groups % size:
            raise ConfigError(
                f"model parallelism: {name} has groups={layer.groups}, which {size} ranks cannot share "
                f"(a grouped convolution needs a multiple of {size} groups)"
            )
        sliced = Exchange(name, "slice", _block(shape, size)) if layout == FULL else None
        return row("groups", SPLIT, sliced)
    if isinstance(layer, LocalResponseNorm) and layout == SPLIT:
        halo = (layer.size // 2, (layer.size - 1) // 2)
        if lrn == "per-column" or halo == (0, 0):
            return row("per channel", SPLIT)
        block = _block(shape, size)
        if block[0] < max(halo):
            raise ConfigError(
                f"model parallelism: {name}'s window of {layer.size} channels reaches past a neighbour's "
                f"{block[0]} channels; use fewer ranks or wider layers"
            )
        return row("halo", SPLIT, Exchange(name, "halo", block, halo))
    return row("per channel" if layout == SPLIT else "replicated", layout)  # ReLU, MaxPool2d, Dropout, Flatten
