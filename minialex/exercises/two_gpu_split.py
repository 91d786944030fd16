"""Grader of notebook 11 (the two-GPU split): the bytes one rank sends per image through an all-gather.

``allgather_bytes(channels, height, width, ranks, itemsize) -> (forward, backward)``: a layer that needs the
whole activation (C, H, W) of which each of the P ranks holds a block of C/P channels (conv3, or fc6 with
H = W = 1). Forward, each rank sends its block to the P − 1 others; backward, a reduce-scatter of the
(partial) gradient of the whole activation sends (P − 1)/P of it, the same number of bytes. The reference is
:class:`minialex.distributed.split.Exchange`, which :meth:`~minialex.distributed.split.SplitPlan.bytes_per_step`
sums.

The grader names the classic mistakes: the whole activation counted instead of one block, the (P − 1)
factor left out, elements instead of bytes, and a backward pass that sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from minialex.distributed.split import Exchange
from minialex.exercises._grading import Fail, as_tuple, grade

# (C, H, W, P, itemsize): the paper's conv3 and fc6 inputs on 2 ranks, then more ranks and float64
CASES = [(256, 13, 13, 2, 4), (9216, 1, 1, 2, 4), (96, 27, 27, 4, 4), (64, 6, 6, 8, 8)]


def _reference(c: int, h: int, w: int, p: int, itemsize: int) -> tuple[int, int]:
    exchange = Exchange("layer", "allgather", (c // p, h, w))
    return (
        exchange.elements(p, 0, backward=False) * itemsize,
        exchange.elements(p, 0, backward=True) * itemsize,
    )


def _hint(got: tuple[int, int], c: int, h: int, w: int, p: int, itemsize: int) -> str:
    full, block = c * h * w * itemsize, c // p * h * w * itemsize
    forward, backward = got
    if forward == (p - 1) * full:
        return " You sent the whole activation; each rank holds, and sends, only its block of C/P channels."
    if forward == block and p > 2:
        return f" Each rank sends its block to each of the P − 1 = {p - 1} other ranks."
    if forward == (p - 1) * block // itemsize:
        return " That is a count of elements; multiply by itemsize for bytes."
    if forward == (p - 1) * block and backward == 0:
        return (
            " The backward pass is not free: every rank holds a partial gradient of the whole activation, and a "
            "reduce-scatter sends (P − 1)/P of it, as many bytes as the forward all-gather."
        )
    return ""


def check_allgather_bytes(fn: Callable[..., Any]) -> None:
    """``fn(channels, height, width, ranks, itemsize) -> (forward_bytes, backward_bytes)`` per image and rank."""

    def body() -> str:
        for c, h, w, p, itemsize in CASES:
            where = f"C={c}, H={h}, W={w}, P={p}, itemsize={itemsize}"
            result = as_tuple(fn(c, h, w, p, itemsize), 2, "forward bytes, backward bytes")
            try:
                got = (int(result[0]), int(result[1]))
            except (TypeError, ValueError) as exc:
                raise Fail(f"{where}: return two numbers of bytes, got {result!r}") from exc
            expected = _reference(c, h, w, p, itemsize)
            if got != expected or result[0] != got[0] or result[1] != got[1]:
                raise Fail(f"{where}: expected {expected}, got {tuple(result)}.{_hint(got, c, h, w, p, itemsize)}")
        conv3 = _reference(*CASES[0])
        return f"{len(CASES)} layouts right; the paper's conv3 input costs {conv3[0]:,} + {conv3[1]:,} bytes per image"

    grade("allgather_bytes", body)
