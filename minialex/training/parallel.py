"""What the trainer does differently when ``mpiexec`` starts it on several ranks (``--parallel data|model``).

The loop of :mod:`minialex.training.loop` is the same on every rank and for one process; this module holds
every place where the ranks differ or talk. One step of each mode (P ranks, a global batch of B images)::

    --parallel data (every rank holds the whole model)        --parallel model (P = 2: the paper's columns)
    every rank: the batch's B indices, from (seed, epoch)      every rank: the same B indices and images
    rank r: its shard, indices[⌊rB/P⌋ : ⌊(r+1)B/P⌋]           rank r: column r of the network
            forward, loss (mean over the shard)                        forward: activations allgathered into
            backward, dL/dlogits · b_r / B                             conv3 and each fully connected layer
            ══ allreduce of the gradients (buckets) ══                 backward: the matching reduce-scatters
    every rank: the same summed gradient, the same SGD step    every rank: SGD on its own half of each layer
    ══ after each step: "did any rank get a stop signal?" (one scalar on the control channel) ══

Rank 0 writes the run directory and every checkpoint; the other ranks write nothing and log nothing (errors
excepted). A checkpoint is the single-process model's: under model parallelism its weights and velocities
are gathered from the two columns first (every rank takes part, rank 0 writes). Its metadata records the
mode, the rank count and every rank's random state, so that ``--resume`` (with the same number of ranks:
another count is refused by name) continues each rank's own dropout and augmentation streams.

Evaluation runs on every rank: under data parallelism each replica evaluates the whole split (identical
replicas give the single-process result exactly, with no traffic); under model parallelism the split model's
forward pass is itself collective. Only the test evaluation of ``best.safetensors`` at the end, a single-process
model read from the file, is rank 0's alone.

Randomness. The data order depends on (seed, epoch) only. Under data parallelism rank 0 keeps the run's
random stream and rank r > 0 is reseeded with :func:`~minialex.distributed.rank_seed` after the model is built
(its weights come from rank 0 anyway), so that the shards draw different dropout masks and crops. Under model
parallelism every rank draws the same numbers (the split dropout draws the whole layer's mask and keeps its
block), exactly as one process does.
"""

from __future__ import annotations

import dataclasses
import signal
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import CheckpointError, ConfigError
from minialex.training.state import EpochTotals

GRACEFUL_SIGNAL = signal.SIGUSR1
"""What ``kill -USR1 <pid of mpiexec>`` sends to every rank: Open MPI forwards it untouched, whereas it turns
Ctrl-C into a SIGTERM that it follows with a SIGKILL too soon for a checkpoint."""


class FullModel:
    """The single-process view of a split model for a checkpoint: the gathered weights and the model config."""

    def __init__(self, state: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.params, self.config = state, config

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.params


class FullOptimizer:
    """An optimiser's ``state_dict()`` with its tensor groups gathered to the full tensors."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


def _check_ranks(saved: int, size: int | None, mode: str, source: str) -> None:
    """ConfigError when a checkpoint written on ``saved`` ranks is resumed on ``size`` (None: not known yet)."""
    if size is not None and size != saved:
        raise ConfigError(
            f"{source} was written by a run on {saved} ranks (--parallel {mode}), but this one has {size}: "
            f"resume with `mpiexec -n {saved} minialex train --resume {source}`"
        )


class RunParallel:
    """The ranks of one run (``mode`` None: one process; every collective is then the identity).

    Build it with :meth:`start` before any work: it makes every check that needs no MPI first (launcher,
    mpi4py, rank count, batch size, the rank count of a checkpoint to resume), then starts MPI.
    """

    def __init__(self, mode: str | None = None, comm: Any = None) -> None:
        from minialex.distributed import local_comm

        self.mode, self.comm = mode, comm if comm is not None else local_comm()
        self.data_parallel: Any = None

    @classmethod
    def start(cls, mode: str | None, batch_size: int, resume_meta: Any = None, source: str = "") -> RunParallel:
        """Check the launch and start MPI for ``mode`` (None: one process, nothing started)."""
        saved = resume_meta.get("parallel") if isinstance(resume_meta, dict) else None
        if mode is None:
            return cls()
        from minialex import distributed

        info = distributed.check_launch(mode, batch_size)
        ranks = None
        if saved is not None:
            ranks = saved.get("ranks") if isinstance(saved, dict) else None
            if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1:
                raise CheckpointError(f"{source}: its parallel.ranks must be a positive integer, got {ranks!r}")
            _check_ranks(ranks, info.size, mode, source)
        comm = distributed.init(mode, batch_size)
        if ranks is not None:
            _check_ranks(ranks, comm.size, mode, source)  # a launcher that does not say the size (PMIx)
        return cls(mode, comm)

    # -- who does what ---------------------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return int(self.comm.rank)

    @property
    def size(self) -> int:
        return int(self.comm.size)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def guard(self) -> AbstractContextManager[Any]:
        """An exception inside stops every rank, naming this one (one process: nothing changes)."""
        if self.size == 1:
            return nullcontext()
        from minialex.distributed import guard

        return guard(self.comm)

    def root_first(self, make: Any) -> Any:
        """``make()`` on rank 0, then on the others (a download or a cache is then built once)."""
        if not self.is_root:
            self.comm.barrier("rank 0 prepares the data")
        result = make()
        if self.is_root and self.size > 1:
            self.comm.barrier("rank 0 prepares the data")
        return result

    def close(self) -> None:
        """Every rank reaches the end together (one process: nothing)."""
        if self.size > 1:
            self.comm.close()

    # -- building ---------------------------------------------------------------------------------------------
    def wrap(self, model: Any) -> Any:
        """The model this rank trains: its column (model), or the replica with rank 0's weights (data)."""
        from minialex import distributed

        if self.mode == "model":
            return distributed.ModelParallel(model, self.comm)
        if self.mode == "data":
            self.data_parallel = distributed.DataParallel(model, self.comm)
            self.data_parallel.broadcast_parameters()
        return model

    def seed_ranks(self, seed: int) -> None:
        """Data parallelism: rank r > 0 draws dropout and crops from a seed of its own (rank 0 keeps the run's)."""
        from minialex.distributed import rank_seed

        if self.mode == "data" and self.rank > 0:
            backend.seed(rank_seed(seed, self.rank))

    # -- one step -----------------------------------------------------------------------------------------------
    def shard(self, indices: Any) -> Any:
        """This rank's share of a batch's indices (data parallelism), else all of them."""
        return self.data_parallel.shard(indices) if self.data_parallel is not None else indices

    def backward(self, model: Any, dy: Any, count: int, total: int) -> None:
        """Backward of this rank's ``count`` images of a batch of ``total``; the batch's gradient in ``model.grads``."""
        if self.data_parallel is not None:
            self.data_parallel.backward(dy, count, total)
        else:
            model.backward(dy, need_input_grad=False)

    def agree_stop(self, signum: int | None) -> int | None:
        """The stop signal of any rank (the same answer on every rank), or None: every rank stops together."""
        if self.size == 1 or not self.comm.any(signum is not None, "a stop requested on some rank"):
            return signum
        signals = [s for s in self.comm.allgather_json(signum, "the stop signals") if s is not None]
        return signum if signum is not None else int(signals[0])

    def global_totals(self, totals: EpochTotals) -> EpochTotals:
        """The epoch's running sums over every rank's shard (data parallelism; rank 0's seconds), else ``totals``."""
        if self.data_parallel is None:
            return totals
        loss_sum, correct, seen = self.comm.allreduce_scalars([totals.loss_sum, totals.correct, totals.seen])
        return EpochTotals(float(loss_sum), int(np.rint(correct)), int(np.rint(seen)), totals.seconds)

    # -- checkpoints --------------------------------------------------------------------------------------------
    def checkpoint_parts(self, parts: Any) -> Any:
        """``parts`` as one process would save them (a collective under model parallelism)."""
        if self.mode != "model":
            return parts
        model = parts.model
        full = FullModel(model.state_dict(), model.config)
        optimizer = FullOptimizer(model.full_optimizer_state(parts.optimizer.state_dict()))
        return dataclasses.replace(parts, model=full, optimizer=optimizer)

    def full_params(self, model: Any, names: tuple[str, ...]) -> Any:
        """An object whose ``params`` hold the full tensors ``names`` (for the plots; a collective when split)."""
        if self.mode != "model":
            return model
        return FullModel(model.gather({name: model.params[name] for name in names}), model.config)

    def metadata(self) -> dict[str, Any] | None:
        """What a checkpoint records about the ranks (a collective): mode, count, every rank's random state."""
        if self.mode is None:
            return None
        states = self.comm.allgather_json(backend.get_rng_state(), "the ranks' random states")
        return {"mode": self.mode, "ranks": self.size, "rng_states": states}

    def adapt_checkpoint(self, ckpt: Any, model: Any) -> None:
        """Before restoring: cut a checkpoint's full optimiser state to this rank's slices (model parallelism)."""
        if self.mode == "model" and ckpt.optimizer_state is not None:
            ckpt.optimizer_state = model.local_optimizer_state(ckpt.optimizer_state)

    def after_restore(self, ckpt: Any, state: Any) -> None:
        """After restoring: this rank's own random state; under data parallelism only rank 0 keeps the saved
        partial sums of the epoch (they are already the sums over every rank)."""
        if self.mode is None:
            return
        saved = ckpt.metadata.get("parallel") if isinstance(ckpt.metadata, dict) else None
        states = saved.get("rng_states") if isinstance(saved, dict) else None
        if not isinstance(states, list) or len(states) != self.size:
            raise CheckpointError(
                f"checkpoint {ckpt.path} holds no random state for each of {self.size} ranks: it was not written "
                f"by a --parallel {self.mode} run on {self.size} ranks"
            )
        if saved.get("mode") != self.mode:
            raise CheckpointError(f"checkpoint {ckpt.path} was written by --parallel {saved.get('mode')}")
        backend.set_rng_state(states[self.rank])
        if self.data_parallel is not None and not self.is_root:
            state.partial = EpochTotals()
