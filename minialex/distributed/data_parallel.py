"""Data parallelism: every rank holds the whole model and learns from its shard of each batch.

One training step on P ranks with a global batch of B images (rank r gets b_r of them, b_r = B/P when B
divides; an epoch's last, smaller batch may leave some ranks fewer, or none)::

    every rank:   the batch's indices, in the same order (a function of (seed, epoch) only)
    rank r:       shard r = indices[⌊rB/P⌋ : ⌊(r+1)B/P⌋]          (the shards, in rank order, are the batch)
                  logits_r = model(images[shard r]);  L_r = mean over the shard of the loss
                  dy_r = dL_r/dlogits · b_r / B                 so that Σ_r (b_r / B) L_r = the mean over B
                  backward, last layer first; as soon as the gradients of a bucket are complete:
                    fc8.weight, fc8.bias, fc7.bias   → bucket 0 ══ allreduce (Σ over ranks) started ══╗
                    fc7.weight                      → bucket 1 ══ ... ═══════════════════════════════╣ while
                    fc6.weight, ...                 → ...                                           ║ backward
                    ... conv1.weight, conv1.bias    → last bucket ══ ... ════════════════════════════╝ goes on
                  wait for every bucket → every rank holds Σ_r dy_r-gradients = the gradient of the mean over B
    every rank:   optimizer.step(): the same sums, the same update, so the replicas stay identical

Before the first step, :meth:`DataParallel.broadcast_parameters` copies rank 0's weights (and buffers) to every
rank. Each step sends 2 (P − 1) / P of the gradient bytes per rank (a ring allreduce; 244 MB of them for
``paper`` in float32), whatever the batch: see ``docs/distributed.md`` for the cost.

Buckets. Gradients are summed in buckets of about ``bucket_bytes`` (default 25 MiB, as PyTorch's DDP): small
tensors (biases, convolutions) are packed into one flat buffer so that a few large messages replace many small
ones; a tensor larger than a bucket (fc6's 151 MB weight) is reduced in place, without a copy.

Overlap. With ``overlap=True`` each bucket's allreduce is started (non-blocking) as soon as backward has
produced it, and backward goes on with the layers below. On NCCL the reduction runs on its own CUDA stream,
concurrently with the backward kernels: that is where overlap pays, and it is the default there
(``overlap=None``). On MPI over host memory the CPUs that compute are the ones that copy and add, and Open MPI
advances a non-blocking collective only inside MPI calls (the backward pass polls it between layers), so the
work is moved rather than hidden; measured on 2 cores it gave no consistent gain (``docs/distributed.md``), and
the default there is to reduce every bucket after backward (``overlap=True`` to choose otherwise).

Randomness. The weights come from rank 0; the data order is shared. Dropout and augmentation draw from each
rank's own generator: :func:`rank_seed` gives rank r a seed of its own (rank 0 keeps the run's seed), so that
the shards do not all get the same masks. With dropout and augmentation off, P ranks compute the same steps
as one process on the whole batch, to round-off. BatchNorm (a layer with ``buffers``) computes its batch
statistics over each rank's shard, as most frameworks do by default (not synchronised): with small shards its
statistics are noisier than those of one process on the whole batch; its running averages are those of rank 0
when a checkpoint is written from rank 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minialex import validate
from minialex.backend import xp
from minialex.distributed.comm import Communicator, DistributedError, Pending, fingerprint
from minialex.layers import Sequential

Array = Any
DEFAULT_BUCKET_BYTES = 25 * 2**20


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s share of ``n`` items: contiguous, in rank order, sizes differing by ≤ 1."""
    return n * rank // size, n * (rank + 1) // size


def rank_seed(seed: int, rank: int) -> int:
    """A seed of rank ``rank``'s own for dropout and augmentation: ``seed`` itself on rank 0."""
    seed = validate.integer(seed, "seed", low=0)
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass
class Bucket:
    """Gradients summed by one allreduce: ``names`` in the order backward produces them."""

    names: list[str]
    nbytes: int
    flat: Array | None = None  # the packing buffer (None: a single tensor reduced in place)
    pending: Pending | None = None
    ready: set[str] = field(default_factory=set)


class DataParallel:
    """Gradient allreduce (bucketed, overlapped with backward) for a model replicated on every rank.

    Parameters
    ----------
    model : the model (a :class:`~minialex.layers.Sequential`, or anything with params/grads/backward)
    comm : the communicator
    bucket_bytes : target size of one allreduce
    overlap : start each bucket's allreduce during backward (True) or all of them after it (False); None (the
        default): True on NCCL, False on MPI (see the module docstring)

    Typical step (see the module docstring)::

        idx = dp.shard(batch_indices)
        logits = model.forward(x[idx]); loss = loss_fn(logits, y[idx])
        dp.backward(loss_fn.backward(), len(idx), len(batch_indices))
        optimizer.step()
    """

    def __init__(
        self,
        model: Any,
        comm: Communicator,
        *,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        overlap: bool | None = None,
    ) -> None:
        self.model, self.comm = model, comm
        self.bucket_bytes = validate.integer(bucket_bytes, "bucket_bytes", low=1)
        self.overlap = comm.engine == "nccl" if overlap is None else validate.flag(overlap, "overlap")
        self._slots = self._parameter_slots(model)
        layout = [[name, list(model.params[name].shape), model.params[name].dtype.name] for name in self._slots]
        comm.check_same(layout, "the model's parameters (names, shapes, dtypes)")  # else the buckets would not match
        self.buckets = self._make_buckets()

    # -- set-up ------------------------------------------------------------------------------------------------
    @staticmethod
    def _parameter_slots(model: Any) -> dict[str, tuple[Any, str, str | None]]:
        """name → (leaf layer, its key, top-level child that produces it) for every parameter, in forward order."""
        if isinstance(model, Sequential):
            slots = {}
            for path, layer in model.named_layers():
                for key in layer.params:
                    slots[f"{path}.{key}"] = (layer, key, path.split(".")[0])
            return slots
        return {name: (model, name, None) for name in model.params}

    def _make_buckets(self) -> list[Bucket]:
        buckets: list[Bucket] = []
        current: list[str] = []
        size = 0
        for name in reversed(list(self._slots)):  # backward produces the last layer's gradients first
            nbytes = int(self.model.params[name].nbytes)
            if current and size + nbytes > self.bucket_bytes:
                buckets.append(Bucket(current, size))
                current, size = [], 0
            current.append(name)
            size += nbytes
        if current:
            buckets.append(Bucket(current, size))
        return buckets

    @property
    def bytes_per_step(self) -> int:
        """Bytes each rank sends per step: 2 (P − 1) / P of the gradients (a ring allreduce of every bucket)."""
        return sum(math.ceil(2 * (self.comm.size - 1) / self.comm.size * b.nbytes) for b in self.buckets)

    def broadcast_parameters(self, root: int = 0) -> None:
        """Copy rank ``root``'s parameters and buffers to every rank, in place (before the first step)."""
        state = self.model.state() if hasattr(self.model, "state") else self.model.params
        for name in sorted(state):
            value = state[name]
            if not value.flags.c_contiguous:
                raise DistributedError(f"broadcast_parameters: {name} is not contiguous")
            self.comm.broadcast(value, root, f"broadcast {name}")

    def shard(self, indices: Any) -> Any:
        """This rank's contiguous share of a batch's ``indices`` (any sequence or array)."""
        start, stop = shard_bounds(len(indices), self.comm.rank, self.comm.size)
        return indices[start:stop]

    # -- the step ------------------------------------------------------------------------------------------------
    def backward(self, dy: Array | None, local_count: int, global_count: int, need_input_grad: bool = False) -> Array:
        """Backpropagate this rank's shard and leave in ``model.grads`` the gradient of the loss over the whole batch.

        ``dy`` is dL/dlogits of the shard's *mean* loss (``SoftmaxCrossEntropy.backward()``), or None when the
        shard is empty (``local_count == 0``: the rank contributes zeros). Every rank must call this with the
        same ``global_count``. Returns the image gradient of the shard when ``need_input_grad`` (else None).
        """
        validate.integer(global_count, "global_count", low=1)
        validate.integer(local_count, "local_count", low=0, high=global_count)
        for bucket in self.buckets:
            bucket.ready.clear()
            bucket.pending = None
        dx = None
        if local_count == 0:
            for name in self._slots:
                self._zero_grad(name)
            self._launch_ready(set(self._slots))
        else:
            dy = dy * dy.dtype.type(local_count / global_count)  # Σ_r (b_r / B) · mean_r = the mean over B
            if self.overlap and isinstance(self.model, Sequential):
                dx = self._backward_overlapped(dy, need_input_grad)
            else:
                dx = self.model.backward(dy, need_input_grad=need_input_grad)
                self._launch_ready(set(self._slots))
        self._finish()
        return dx

    def allreduce_gradients(self) -> None:
        """Sum ``model.grads`` over the ranks, in place (after a plain ``model.backward`` of a pre-scaled loss)."""
        for bucket in self.buckets:
            bucket.ready.clear()
            bucket.pending = None
        self._launch_ready(set(self._slots))
        self._finish()

    def _backward_overlapped(self, dy: Array, need_input_grad: bool) -> Array:
        children = list(self.model.children.items())
        produced: dict[str, set[str]] = {}
        for name, (_, _, owner) in self._slots.items():
            produced.setdefault(owner, set()).add(name)
        for index in range(len(children) - 1, -1, -1):
            key, layer = children[index]
            dy = layer.backward(dy, need_input_grad=need_input_grad or index > 0)  # as Sequential.backward does
            if key in produced:
                self._launch_ready(produced[key])
            self.comm.progress()
        return dy

    def _launch_ready(self, names: set[str]) -> None:
        """Mark ``names`` ready; start, in bucket order, every bucket that is complete."""
        for bucket in self.buckets:
            bucket.ready |= names & set(bucket.names)
        for index, bucket in enumerate(self.buckets):
            if bucket.pending is not None:
                continue
            if len(bucket.ready) < len(bucket.names):
                break  # buckets start in order on every rank (collectives must match)
            bucket.pending = self.comm.iallreduce(self._pack(bucket), f"gradient bucket {index} of {len(self.buckets)}")

    def _grad(self, name: str) -> Array:
        layer, key, _ = self._slots[name]
        grad = layer.grads.get(key)
        if grad is None:
            raise DistributedError(f"DataParallel: no gradient for {name!r} after backward")
        return grad

    def _zero_grad(self, name: str) -> None:
        layer, key, _ = self._slots[name]
        grad, param = layer.grads.get(key), layer.params[key]
        if grad is None or grad.shape != param.shape or grad.dtype != param.dtype:
            layer.grads[key] = xp.zeros_like(param)
        else:
            grad[...] = 0

    def _pack(self, bucket: Bucket) -> Array:
        if len(bucket.names) == 1 and self._grad(bucket.names[0]).flags.c_contiguous:
            bucket.flat = None
            return self._grad(bucket.names[0])  # reduced in place
        grads = [self._grad(name) for name in bucket.names]
        total = sum(int(g.size) for g in grads)
        if bucket.flat is None or bucket.flat.size != total or bucket.flat.dtype != grads[0].dtype:
            bucket.flat = xp.empty(total, dtype=grads[0].dtype)
        offset = 0
        for grad in grads:
            bucket.flat[offset : offset + grad.size] = grad.reshape(-1)
            offset += grad.size
        return bucket.flat

    def _finish(self) -> None:
        for bucket in self.buckets:
            if bucket.pending is None:
                raise DistributedError("DataParallel: a gradient bucket was never started (backward did not reach it)")
            bucket.pending.wait()
            if bucket.flat is not None:  # unpack the sums into the gradient arrays
                offset = 0
                for name in bucket.names:
                    grad = self._grad(name)
                    grad[...] = bucket.flat[offset : offset + grad.size].reshape(grad.shape)
                    offset += grad.size
            bucket.pending = None

    # -- checks ----------------------------------------------------------------------------------------------------
    def check_in_sync(self) -> None:
        """Raise :class:`DistributedError` on every rank unless every rank holds bit-identical parameters."""
        sums = fingerprint(self.model.params)
        everyone = self.comm.allgather_json(sums, "check_in_sync")
        for rank, other in enumerate(everyone):
            differ = [name for name in sums if other.get(name) != everyone[0].get(name)]
            if differ:
                raise DistributedError(
                    f"data parallelism: the replicas have drifted apart: rank {rank} holds other values than rank 0 "
                    f"for {', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''}"
                )
