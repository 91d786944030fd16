"""Graders of notebook 5 (assembling AlexNet): the shape chain and the cost of a convolution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import Fail, as_tuple, grade
from minialex.layers import conv_output_size

# (kernel, stride, padding) of the paper network's layers that change the spatial size, conv1 to pool5
PAPER_SPATIAL = [(11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0)]

# The paper's five convolutions (the paper, §3.5, with Caffe's groups): (c_in, c_out, k, groups, out_h, out_w)
# and their (parameters, multiply-adds per image).
PAPER_CONVS = [
    ((3, 96, 11, 1, 55, 55), (34_944, 105_415_200)),
    ((96, 256, 5, 2, 27, 27), (307_456, 223_948_800)),
    ((256, 384, 3, 1, 13, 13), (885_120, 149_520_384)),
    ((384, 384, 3, 2, 13, 13), (663_936, 112_140_288)),
    ((384, 256, 3, 2, 13, 13), (442_624, 74_760_192)),
]


def pool5_side_reference(size: int) -> int:
    """The side of the paper network's pool5 output for a square input of ``size`` pixels."""
    for k, s, p in PAPER_SPATIAL:
        size = conv_output_size(size, k, s, p)
    return size


def check_pool5_side(fn: Callable[[int], Any]) -> None:
    """``fn(image_size) -> int``: the side of the paper network's pool5 output, for sizes 67..400."""

    def body() -> str:
        for size in range(67, 401):
            side = pool5_side_reference(size)
            got = fn(size)
            if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
                raise Fail(f"pool5_side({size}) returned {got!r}; expected an int")
            if got != side:
                hint = ""
                if size in (224, 227):
                    hint = " Remember that every size floors: (H + 2p − K) // s + 1."
                raise Fail(f"pool5_side({size}) = {got}, expected {side}.{hint}")
        return "right for every input size from 67 to 400 (227 → 6, 224 → 5)"

    grade("pool5_side", body)


def check_conv_cost(fn: Callable[..., Any]) -> None:
    """``fn(c_in, c_out, k, groups, out_h, out_w) -> (params, macs)`` for a k×k convolution with a bias."""

    def body() -> str:
        rng = np.random.default_rng(9)
        cases = list(PAPER_CONVS)
        for _ in range(20):
            g = int(rng.integers(1, 5))
            c_in, c_out = g * int(rng.integers(1, 20)), g * int(rng.integers(1, 20))
            k, oh, ow = int(rng.integers(1, 8)), int(rng.integers(1, 30)), int(rng.integers(1, 30))
            per_filter = c_in // g * k * k
            cases.append(((c_in, c_out, k, g, oh, ow), (c_out * per_filter + c_out, oh * ow * c_out * per_filter)))
        for args, (params, macs) in cases:
            g_params, g_macs = (int(v) for v in as_tuple(fn(*args), 2, "params, macs"))
            where = "conv_cost(c_in={}, c_out={}, k={}, groups={}, out_h={}, out_w={})".format(*args)
            if g_params != params:
                hint = ""
                if g_params == params - args[1]:
                    hint = " You left out the bias: one per output channel."
                elif g_params == (params - args[1]) * args[3] + args[1]:
                    hint = " With groups each filter sees only c_in / groups channels."
                raise Fail(f"{where}: params {g_params:,}, expected {params:,}.{hint}")
            if g_macs != macs:
                hint = " With groups each filter sees only c_in / groups channels." if g_macs == macs * args[3] else ""
                raise Fail(f"{where}: MACs {g_macs:,}, expected {macs:,}.{hint}")
        return "right for the paper's five convolutions and 20 random configurations"

    grade("conv_cost", body)
