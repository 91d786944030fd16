"""What each mode sends per step, and what that costs on a network: the estimates of ``docs/distributed.md``.

Data parallelism sums every gradient once per step. A ring allreduce of n bytes over P ranks sends
2 (P − 1) / P · n bytes from each rank, in 2 (P − 1) messages (P − 1 of the reduce-scatter, P − 1 of the
all-gather); with a per-message latency α and a link bandwidth β (bytes/s), the α-β model gives::

    T_allreduce = 2 (P − 1) α + 2 (P − 1) / P · n / β              (→ 2 n / β for many ranks)

For ``paper`` in float32, n = 60,965,224 × 4 B = 244 MB, whatever the batch. It hides behind computation when
the backward pass of a rank's b images lasts at least as long (buckets are reduced while backward goes on;
backward is about 2/3 of a step's FLOPs: the dW and dX products)::

    b ≥ T_allreduce · R / (2/3 · F)          F = training FLOPs per image (3 × forward), R = device FLOP/s

Model parallelism (the paper's split) exchanges activations, so its traffic grows with the batch and stands on
the critical path (a layer waits for its input): per image each rank sends the elements of
:meth:`~minialex.distributed.split.SplitPlan.elements_per_image`, one message per exchange and direction::

    T_split = batch · bytes_per_image / β + messages · α      against   batch · (F / 2) / R of computing

Both terms grow with the batch, so their ratio does not depend on it once the batch is large enough for the
latencies not to matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minialex import validate
from minialex.distributed.split import SplitPlan
from minialex.models.summary import layer_table

BACKWARD_SHARE = 2.0 / 3.0
"""Share of a training step's FLOPs in the backward pass (dW and dX products; the forward is the third)."""


def gbit_to_bytes_per_second(gbit_per_s: float) -> float:
    """A link speed in Gb/s as bytes per second (10 Gb/s = 1.25e9 B/s)."""
    return validate.number(gbit_per_s, "link speed (Gb/s)", low=0.0, low_open=True) * 1e9 / 8


def allreduce_bytes(nbytes: int, ranks: int) -> int:
    """Bytes each rank sends in a ring allreduce of ``nbytes`` over ``ranks`` ranks."""
    return math.ceil(2 * (ranks - 1) / ranks * nbytes)


def ring_allreduce_seconds(nbytes: int, ranks: int, gbit_per_s: float, latency_s: float = 10e-6) -> float:
    """The α-β time of a ring allreduce (see the module docstring); 0 for one rank."""
    if ranks < 2:
        return 0.0
    return 2 * (ranks - 1) * latency_s + allreduce_bytes(nbytes, ranks) / gbit_to_bytes_per_second(gbit_per_s)


def train_flops_per_image(model: Any, input_shape: tuple[int, int, int] | None = None) -> int:
    """3 × the forward FLOPs of the convolutions and linear layers (forward, dW and dX products) for one image."""
    rows = layer_table(model, tuple(input_shape or model.input_shape))
    return 3 * sum(row.flops for row in rows)


def hiding_batch(comm_seconds: float, flops_per_image: float, device_flops: float) -> int:
    """The smallest per-rank batch whose backward pass lasts at least ``comm_seconds`` (overlapped allreduce)."""
    return max(1, math.ceil(comm_seconds * device_flops / (BACKWARD_SHARE * flops_per_image)))


@dataclass(frozen=True)
class SplitCost:
    """One step of the model split on a link: bytes and messages per rank, and the times of both sides."""

    bytes_sent: int
    messages: int
    comm_seconds: float
    compute_seconds: float

    @property
    def ratio(self) -> float:
        """Communication time over computing time (below 1: the exchanges cost less than the arithmetic)."""
        return self.comm_seconds / self.compute_seconds


def split_cost(
    plan: SplitPlan,
    batch: int,
    itemsize: int,
    flops_per_image: float,
    device_flops: float,
    gbit_per_s: float,
    latency_s: float = 10e-6,
) -> SplitCost:
    """The model split's step on a link of ``gbit_per_s`` (rank 0's traffic; each rank computes 1/P of the FLOPs)."""
    nbytes = plan.bytes_per_step(batch, itemsize)
    messages = sum(1 + (e.kind in ("allgather", "halo")) for e in plan.exchanges) * (plan.size - 1)
    comm = messages * latency_s + nbytes / gbit_to_bytes_per_second(gbit_per_s)
    compute = batch * flops_per_image / plan.size / device_flops
    return SplitCost(nbytes, messages, comm, compute)
