"""Model parallelism as in the paper (§3.2, Figure 2): AlexNet's two columns of kernels on two processes.

The data flow of ``alexnet("paper")`` at batch N (rank 0 left, rank 1 right; shapes are what each rank holds)::

    images (N,3,227,227)  ── the same batch on both ranks ──  images (N,3,227,227)
    conv1  filters 0..47 → relu1                                conv1  filters 48..95 → relu1
    norm1  (N,48,55,55)  ◀━ halo: 2 channels each way ━▶        norm1  (N,48,55,55)
    pool1  (N,48,27,27)                                         pool1  (N,48,27,27)
    conv2  group 0: filters 0..127 (sees channels 0..47)        conv2  group 1: filters 128..255 (48..95)
    relu2, norm2 ◀━ halo ━▶, pool2 (N,128,13,13)                relu2, norm2, pool2 (N,128,13,13)
    ═══════════ allgather: each sends its (N,128,13,13) → both hold (N,256,13,13) ═══════════
    conv3  filters 0..191 (sees all 256 channels) → relu3       conv3  filters 192..383 → relu3
    conv4  group 0 → relu4 → conv5 group 0 → relu5              conv4  group 1 → relu4 → conv5 group 1
    pool5 (N,128,6,6) → flatten (N,4608)                        pool5 (N,128,6,6) → flatten (N,4608)
    ═══════════ allgather (N,4608) → (N,9216) ═══════════
    fc6  neurons 0..2047 → relu6 → drop6                        fc6  neurons 2048..4095 → relu6 → drop6
    ═══════════ allgather (N,2048) → (N,4096) ═══════════
    fc7  neurons 0..2047 → relu7 → drop7                        fc7  neurons 2048..4095 → relu7 → drop7
    ═══════════ allgather (N,2048) → (N,4096) ═══════════
    fc8  neurons 0..499                                         fc8  neurons 500..999
    ═══════════ allgather of the logits (N,500) → (N,1000) ═══════════
    softmax cross-entropy: the same loss, and the same dL/dlogits, on both ranks

Backward runs the same path in reverse. The logits gradient is sliced (no traffic: both ranks have all of
it). Each allgather becomes a reduce-scatter: rank r's neurons or filters see *every* input channel, so each
rank's dL/dinput is a partial sum over its own outputs; the two are added and rank r keeps its half. Each
LRN halo sends back the gradient of the two borrowed channels. Weight gradients never travel: each rank
updates its own half of every layer, so the optimiser is unchanged (:class:`~minialex.optim.SGD` on the
:class:`ModelParallel` object updates this rank's slices).

LRN across the split. minialex's single-process ``paper`` model normalises over all 96 (256) channels, so
the window of channels 46..49 crosses the boundary between the columns, whereas in the paper each GPU
normalised over its own 48 channels. ``lrn="exact"`` (the default) keeps minialex's network: each rank
borrows the two boundary channels of its neighbour (forward 2·55·55 values per image into norm1, 2·27·27
into norm2, and as many gradients back), and the split model computes the same function as
``alexnet("paper")`` to round-off. ``lrn="per-column"`` is the paper's layout, with no exchange at the
LRNs; the network then differs from ``alexnet("paper")`` in the four channels next to the boundary (its
weights are still interchangeable with it). The same choice applies to ``mini`` (norm1, norm2).

Dropout draws the mask of the *whole* layer on every rank, from the same generator, and keeps its own
columns: with the same seed on both ranks, the split model drops exactly the units that the single-process
model drops (at the cost of drawing twice the random numbers), so a run with dropout matches one process too.

Exchanges cost (computed by :meth:`SplitPlan.bytes_per_step`, counted in ``comm.stats``; ``paper``,
float32, per image, each rank sends): forward 153 kB, backward 151 kB. See ``docs/distributed.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.distributed.comm import Communicator, fingerprint
from minialex.distributed.split import FULL, SplitPlan, plan_split
from minialex.errors import CheckpointError, LayerInputError, mismatch_report, shape_mismatches
from minialex.layers import Conv2d, Dropout, Layer, Linear, LocalResponseNorm, MaxPool2d, Sequential

Array = Any


# ---------------------------------------------------------------------------------------------------------
# The exchange layers: communication written as layers, so that the split model is a plain Sequential.


class Gather(Layer):
    """Split → full on axis 1: forward an allgather; backward a reduce-scatter (``partial``) or a slice.

    ``partial=True`` before a layer whose rank-r copy sees the whole input but computes only block r of the
    output (its input gradient is then a partial sum); ``partial=False`` for the logits, whose gradient is
    already complete and identical on every rank.
    """

    def __init__(self, comm: Communicator, partial: bool) -> None:
        super().__init__()
        self.comm, self.partial = comm, partial

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self._saved = (tuple(x.shape),)
        n, c, rest, p = x.shape[0], x.shape[1], x.shape[2:], self.comm.size
        blocks = self.comm.allgather(x, self.name)  # (P, N, c, ...)
        return xp.ascontiguousarray(xp.moveaxis(blocks, 0, 1)).reshape(n, p * c, *rest)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        (shape,) = self._saved_for_backward()
        if not need_input_grad:
            return None
        n, c, rest, p, r = shape[0], shape[1], shape[2:], self.comm.size, self.comm.rank
        blocks = dy.reshape(n, p, c, *rest)
        if not self.partial:
            return xp.ascontiguousarray(blocks[:, r])
        return self.comm.reduce_scatter(xp.moveaxis(blocks, 1, 0), self.name)


class Slice(Layer):
    """Full → split on axis 1: forward keeps this rank's block; backward all-gathers the input gradient."""

    def __init__(self, comm: Communicator) -> None:
        super().__init__()
        self.comm = comm

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self._saved = (tuple(x.shape),)
        c = x.shape[1] // self.comm.size
        return x[:, self.comm.rank * c : (self.comm.rank + 1) * c]

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        (shape,) = self._saved_for_backward()
        if not need_input_grad:
            return None
        blocks = self.comm.allgather(dy, self.name)
        return xp.ascontiguousarray(xp.moveaxis(blocks, 0, 1)).reshape(shape)


class HaloLRN(Layer):
    """The LRN of a channel block, with the neighbours' boundary channels borrowed so that windows cross blocks.

    Rank r borrows ``before = size // 2`` channels from rank r − 1 and ``after = (size − 1) // 2`` from rank
    r + 1, runs ``lrn`` on the extended block and keeps its own channels. Backward sends the gradient of the
    borrowed channels back to their owners, who add it to their own.
    """

    def __init__(self, lrn: LocalResponseNorm, comm: Communicator) -> None:
        super().__init__()
        self.lrn, self.comm = LocalResponseNorm(lrn.size, lrn.alpha, lrn.beta, lrn.k), comm
        self.before, self.after = lrn.size // 2, (lrn.size - 1) // 2
        r = comm.rank
        self.prev, self.next = (r - 1 if r > 0 else None), (r + 1 if r < comm.size - 1 else None)
        self._local: tuple[int, int, tuple[int, ...]] | None = None  # own block's offset, channels; extended shape

    def extra_repr(self) -> str:
        return f"{self.lrn.extra_repr()}, halo=({self.before}, {self.after})"

    def _exchange(self, send: Array | None, dest: int | None, count: int, source: int | None, like: Array) -> Array:
        out = None if source is None else xp.empty((like.shape[0], count, *like.shape[2:]), dtype=like.dtype)
        return self.comm.sendrecv(send, dest if send is not None else None, out, source, self.name)

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        c, b, a = x.shape[1], self.before, self.after
        # my last `before` channels go to the next rank; the previous rank's arrive as my left halo
        left = self._exchange(x[:, c - b :] if self.next is not None else None, self.next, b, self.prev, x)
        # my first `after` channels go to the previous rank; the next rank's arrive as my right halo
        right = self._exchange(x[:, :a] if self.prev is not None else None, self.prev, a, self.next, x)
        parts = [p for p in (left, x, right) if p is not None]
        offset = 0 if left is None else b
        extended = xp.concatenate(parts, axis=1) if len(parts) > 1 else x
        self._local = (offset, c, tuple(extended.shape))
        return self.lrn.forward(extended)[:, offset : offset + c]

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._local)
        offset, c, extended = self._local
        b, a = self.before, self.after
        dy_ext = xp.zeros(extended, dtype=dy.dtype)
        dy_ext[:, offset : offset + c] = dy  # the borrowed channels' outputs belong to the neighbours
        dx_ext = self.lrn.backward(dy_ext)
        dx = xp.ascontiguousarray(dx_ext[:, offset : offset + c])
        # the gradient of my left halo goes back to the previous rank; the next rank's tells me about my last b
        mine = self._exchange(dx_ext[:, :b] if self.prev is not None else None, self.prev, b, self.next, dx)
        if mine is not None:
            dx[:, c - b :] += mine
        mine = self._exchange(dx_ext[:, offset + c :] if self.next is not None else None, self.next, a, self.prev, dx)
        if mine is not None:
            dx[:, :a] += mine
        return dx


class SplitDropout(Dropout):
    """Dropout on block r of the channels: draws the whole layer's mask (as one process would) and keeps block r."""

    def __init__(self, p: float, comm: Communicator) -> None:
        super().__init__(p)
        self.comm = comm

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0.0:
            return super().forward(x)
        self._check_float(x)
        c, r = x.shape[1], self.comm.rank
        whole = (x.shape[0], c * self.comm.size, *x.shape[2:])
        keep = backend.uniform(whole, dtype=x.dtype)[:, r * c : (r + 1) * c] >= x.dtype.type(self.p)
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        self._saved = (mask, tuple(x.shape), x.dtype)  # what Dropout.backward reads
        return x * mask


# ---------------------------------------------------------------------------------------------------------
# The split model


def _rows(full: Array, rank: int, size: int) -> Array:
    """Block ``rank`` of ``size`` along axis 0 (every split parameter is cut along its output axis)."""
    step = full.shape[0] // size
    return full[rank * step : (rank + 1) * step]


def _local_layer(layer: Layer, how: str, comm: Communicator) -> Layer:
    """This rank's copy of ``layer`` for the plan's ``how``, with its block of the weights (copied)."""
    p = comm.size
    if how in ("filters", "groups", "neurons"):
        state = backend.get_rng_state()  # constructing draws weights that are replaced below: keep the stream
        dtype = layer.params["weight"].dtype.type
        bias = "bias" in layer.params
        if isinstance(layer, Linear):
            local: Layer = Linear(layer.in_features, layer.out_features // p, bias=bias, dtype=dtype)
        else:
            assert isinstance(layer, Conv2d)
            inputs, groups = (layer.in_channels, 1) if how == "filters" else (layer.in_channels // p, layer.groups // p)
            local = Conv2d(
                inputs, layer.out_channels // p, layer.kernel_size, layer.stride, layer.padding, groups, bias, dtype
            )
        backend.set_rng_state(state)
        for key, value in layer.params.items():
            local.params[key] = xp.ascontiguousarray(_rows(value, comm.rank, p))
        return local
    if how == "halo":
        return HaloLRN(layer, comm)
    if isinstance(layer, Dropout) and how == "per channel":
        return SplitDropout(layer.p, comm)
    return _fresh(layer)


def _fresh(layer: Layer) -> Layer:
    """A new parameterless layer configured like ``layer`` (nothing cached from an earlier forward is copied)."""
    if isinstance(layer, LocalResponseNorm):
        return LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k)
    if isinstance(layer, MaxPool2d):
        return MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, Dropout):
        return Dropout(layer.p)
    return type(layer)()  # ReLU, Flatten


class ModelParallel(Sequential):
    """Rank r's share of ``model`` split over ``comm.size`` ranks (see the module docstring).

    It is a model like the one it splits: ``forward(x)`` takes the whole batch (the same on every rank) and
    returns the whole logits on every rank; ``backward(dlogits, need_input_grad)``; ``params``/``grads`` are
    this rank's slices under the full model's names (``"conv1.weight"`` is filters 48..95 on rank 1), so an
    optimiser works on it unchanged; ``state_dict()`` gathers the full weights (a collective: call it on every
    rank), so checkpoints are those of the single-process model.

    Parameters
    ----------
    model : a flat Sequential (an :class:`~minialex.models.AlexNet`), the same on every rank (same seed)
    comm : the communicator (``comm.size`` ranks; the paper's split is 2)
    lrn : ``"exact"`` (halo exchange: the same network as ``model``) or ``"per-column"`` (the paper's)
    input_shape : the shape of one input, e.g. (C, H, W); default ``model.input_shape`` (an AlexNet has one)
    """

    def __init__(
        self, model: Sequential, comm: Communicator, *, lrn: str = "exact", input_shape: tuple[int, ...] | None = None
    ) -> None:
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        self.plan: SplitPlan = plan_split(model, comm.size, shape, lrn)
        # Every rank slices its own copy, and dropout draws the same masks everywhere: both need the same start.
        comm.check_same(fingerprint(model.state()), "the full model's weights (seed every rank alike)")
        comm.check_same(backend.get_rng_state(), "the random generator's state (seed every rank alike)")
        self.comm = comm
        children: list[tuple[str, Layer]] = []
        for step in self.plan.layers:
            exchange = step.exchange
            if exchange is not None and exchange.kind == "allgather":
                children.append((f"into_{step.name}", Gather(comm, partial=True)))
            elif exchange is not None and exchange.kind == "slice":
                children.append((f"into_{step.name}", Slice(comm)))
            children.append((step.name, _local_layer(model.children[step.name], step.how, comm)))
        if self.plan.output is not None:
            children.append(("logits", Gather(comm, partial=False)))
        super().__init__(*children)
        self._first_compute = next(i for i, layer in enumerate(self) if not isinstance(layer, (Gather, Slice)))
        self.full_shapes = {name: tuple(value.shape) for name, value in model.state().items()}
        self.input_shape = tuple(self.plan.input_shape)
        self.variant = getattr(model, "variant", None)
        self.num_classes = getattr(model, "num_classes", None)
        self.config = dict(getattr(model, "config", {}))
        self.name = f"ModelParallel({getattr(model, 'name', 'Sequential')}, rank {comm.rank} of {comm.size})"
        self.train(model.training)

    # -- the protocol ----------------------------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        """Logits (N, classes) on every rank, for the batch ``x`` (N, *input_shape) given to every rank."""
        if getattr(x, "ndim", None) != 1 + len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape:
            raise LayerInputError(
                f"{self.name}: expected images of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(getattr(x, 'shape', ()))}"
            )
        return super().forward(x)

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        """Backpropagate ``dy`` = dL/dlogits (the same on every rank); returns dL/dimages or None."""
        layers = list(self)
        for index in range(len(layers) - 1, -1, -1):
            dy = layers[index].backward(dy, need_input_grad=need_input_grad or index > self._first_compute)
        if need_input_grad and self.plan.input_grad_partial:  # every rank's filters saw the whole image
            dy = self.comm.allreduce(xp.ascontiguousarray(dy), "image gradient")
        return dy

    # -- full and local tensors ------------------------------------------------------------------------------
    def num_params(self) -> int:
        """Parameters of the whole (unsplit) model."""
        return sum(int(np.prod(shape)) for shape in self.full_shapes.values())

    def local_num_params(self) -> int:
        """Parameters held by this rank."""
        return super().num_params()

    def gather(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        """This rank's slices (name → array) → the full tensors as host arrays, on every rank (a collective)."""
        out = {}
        for name in sorted(tensors):
            local = backend.asarray(tensors[name])
            blocks = self.comm.allgather(local, f"gather {name}")
            out[name] = np.array(backend.to_numpy(blocks)).reshape(self.full_shapes[name])
        return out

    def scatter(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        """Full tensors (name → array) → this rank's slices, as host arrays (no communication)."""
        return {
            name: np.array(_rows(np.asarray(value), self.comm.rank, self.comm.size)) for name, value in tensors.items()
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """The full model's parameters, gathered on every rank (the single-process model's names and shapes)."""
        return self.gather(self.state())

    def local_state_dict(self) -> dict[str, np.ndarray]:
        """This rank's slices, host copies."""
        return {name: np.array(backend.to_numpy(value)) for name, value in self.state().items()}

    def load_state_dict(self, state: dict[str, Any], source: str = "state dict") -> None:
        """Take this rank's slices of a *full* state dict (e.g. a single-process checkpoint); no communication."""
        given = {k: np.asarray(v) for k, v in state.items()}
        expected = {k: np.empty(s, dtype=np.uint8) for k, s in self.full_shapes.items()}  # shapes only
        report = mismatch_report(*shape_mismatches(expected, given))
        if report:
            raise CheckpointError(f"{source} does not fit this model: {report}")
        for name, value in self.state().items():
            value[...] = backend.asarray(_rows(given[name], self.comm.rank, self.comm.size), dtype=value.dtype)

    def full_optimizer_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """An optimiser's ``state_dict()`` with every tensor group (name → slice) gathered to full tensors."""
        return {k: self.gather(v) if self._is_group(v) else v for k, v in state.items()}

    def local_optimizer_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A full optimiser state (e.g. from a checkpoint) with every tensor group cut to this rank's slices."""
        return {k: self.scatter(v) if self._is_group(v) else v for k, v in state.items()}

    def _is_group(self, value: Any) -> bool:
        return isinstance(value, dict) and bool(value) and set(value) <= set(self.full_shapes)

    def summary(self) -> str:
        """The split, layer by layer (see :meth:`SplitPlan.table`)."""
        return f"{self.name}\n{self.plan.table()}"


__all__ = ["FULL", "Gather", "HaloLRN", "ModelParallel", "Slice", "SplitDropout"]
