"""The communication core: one small interface over MPI (host buffers), NCCL (device buffers) or one process.

Both parallel modes talk only through a :class:`Communicator`::

    comm.rank, comm.size, comm.is_root         who this process is
    comm.allreduce(buf)                        buf ← Σ_r buf_r, in place, on every rank
    comm.iallreduce(buf) -> Pending            the same, started now; pending.wait() finishes it
    comm.allgather(x)        -> (P, *x.shape)  every rank's x, stacked in rank order
    comm.reduce_scatter(full)-> full.shape[1:] rank r gets Σ_s full_s[r]   (full: (P, ...))
    comm.sendrecv(x, dest, out, source)        x to rank dest while out is filled from rank source
    comm.broadcast(buf, root)                  buf ← buf_root, in place
    comm.allreduce_scalars(values)             host float64 sums (losses, counts, flags)
    comm.barrier(), comm.abort(message), comm.close()

Engines (``comm.engine``): :class:`LocalComm` (here: one process, every collective is the identity),
``MPIComm`` (:mod:`minialex.distributed.mpi`: mpi4py; NumPy arrays go straight into MPI, CuPy arrays are staged
through the host) and ``NCCLComm`` (:mod:`minialex.distributed.nccl`: CuPy device buffers, MPI only to
bootstrap). The model code does not know which one it has.

Traffic accounting. ``comm.stats`` counts, per operation, the calls, the seconds spent waiting in them and
the bytes *this rank sends* under the bandwidth-optimal algorithm for P ranks (what a ring sends; MPI may pick
another algorithm, which never sends less)::

    allreduce of n bytes            2 (P − 1) / P · n     (reduce-scatter, then all-gather)
    allgather of m bytes per rank   (P − 1) · m
    reduce_scatter of n bytes       (P − 1) / P · n
    sendrecv of m bytes             m                     (0 when there is no destination)
    broadcast of n bytes            n on the root, 0 elsewhere

Deadlock guard. Every blocking call runs under a watchdog: a collective that waits longer than
``timeout`` seconds (default :data:`DEFAULT_TIMEOUT`, or ``MINIALEX_COLLECTIVE_TIMEOUT``) means that another
rank has died, hung, or stopped calling the same collectives; the watchdog prints one line naming this rank
and the operation and aborts every rank (``MPI_Abort``). Control traffic (barriers, scalars, the exit check)
runs on a duplicate of the communicator, so it can never be matched with a data collective.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from minialex import backend, validate
from minialex.backend import xp
from minialex.errors import MinialexError

Array = Any
DEFAULT_TIMEOUT = 300.0
"""Seconds a collective may wait for the other ranks before every rank is aborted."""
TIMEOUT_ENV = "MINIALEX_COLLECTIVE_TIMEOUT"


class DistributedError(MinialexError, RuntimeError):
    """Ranks disagree (configuration, weights, collective sequence) or a collective cannot be used."""


def default_timeout() -> float:
    """``MINIALEX_COLLECTIVE_TIMEOUT`` in seconds, else :data:`DEFAULT_TIMEOUT`."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    return validate.number(value, f"{TIMEOUT_ENV}={raw!r}", low=0.0, low_open=True)


# ---------------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class OpStats:
    """One operation's tally: calls, bytes this rank sent, seconds spent in (or waiting for) it."""

    calls: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0


@dataclass
class CommStats:
    """Per-operation :class:`OpStats`; :meth:`reset` between measurements."""

    ops: dict[str, OpStats] = field(default_factory=dict)

    def add(self, op: str, nbytes: float = 0, seconds: float = 0.0, calls: int = 1) -> None:
        entry = self.ops.setdefault(op, OpStats())
        entry.calls += calls
        entry.bytes_sent += math.ceil(nbytes)
        entry.seconds += seconds

    @property
    def bytes_sent(self) -> int:
        return sum(s.bytes_sent for s in self.ops.values())

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.ops.values())

    def reset(self) -> None:
        self.ops.clear()

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {op: {"calls": s.calls, "bytes_sent": s.bytes_sent, "seconds": s.seconds} for op, s in self.ops.items()}


# ---------------------------------------------------------------------------------------------------------
# The watchdog


class Watchdog:
    """Calls ``on_timeout(what, waited)`` from a daemon thread when one watched call outlasts ``timeout``."""

    def __init__(self, timeout: float, on_timeout: Any) -> None:
        self.timeout = float(timeout)
        self._on_timeout = on_timeout
        self._current: tuple[str, float] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, what: str) -> Iterator[None]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="minialex-watchdog", daemon=True)
            self._thread.start()
        with self._lock:
            outer, self._current = self._current, (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._current = outer

    def _run(self) -> None:
        tick = min(1.0, self.timeout / 4)
        while True:
            time.sleep(tick)
            with self._lock:
                current = self._current
            if current is not None and time.monotonic() - current[1] > self.timeout:
                self._on_timeout(current[0], time.monotonic() - current[1])
                return


# ---------------------------------------------------------------------------------------------------------
# The interface


class Pending:
    """An operation started by :meth:`Communicator.iallreduce`; :meth:`wait` returns its buffer, reduced."""

    def __init__(self, buf: Array, finish: Any = None) -> None:
        self.buf = buf
        self._finish = finish
        self.done = finish is None

    def wait(self) -> Array:
        if not self.done:
            self._finish()
            self.done = True
        return self.buf


class Communicator:
    """The operations the parallel modes use; subclasses provide the ``_`` methods (see the module docstring).

    Buffers are arrays of the active backend (``xp``). In-place operations need C-contiguous buffers.
    """

    engine = "abstract"

    def __init__(self, rank: int, size: int, timeout: float | None = None) -> None:
        self.rank, self.size = int(rank), int(size)
        self.timeout = (
            default_timeout() if timeout is None else validate.number(timeout, "timeout", low=0.0, low_open=True)
        )
        self.stats = CommStats()
        self.closed = False
        self._watchdog = Watchdog(self.timeout, self._timed_out)

    # -- who am I ------------------------------------------------------------------------------------------
    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.engine}, rank {self.rank} of {self.size}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"

    # -- data collectives ------------------------------------------------------------------------------------
    def allreduce(self, buf: Array, what: str = "allreduce") -> Array:
        """``buf ← Σ_r buf_r`` on every rank, in place; returns ``buf``."""
        _check_contiguous(buf, what)
        with self._timed("allreduce", 2 * (self.size - 1) / self.size * buf.nbytes, what):
            self._allreduce(buf)
        return buf

    def iallreduce(self, buf: Array, what: str = "allreduce") -> Pending:
        """Start ``allreduce(buf)``; the returned :class:`Pending`'s ``wait()`` finishes it (time counted there)."""
        _check_contiguous(buf, what)
        self.stats.add("allreduce", 2 * (self.size - 1) / self.size * buf.nbytes, calls=1)
        finish = self._iallreduce(buf)

        def wait() -> None:
            with self._timed("allreduce", 0, what, calls=0):
                finish()

        return Pending(buf, wait)

    def progress(self) -> None:
        """Let started operations advance (MPI progresses non-blocking collectives only inside MPI calls)."""

    def allgather(self, x: Array, what: str = "allgather") -> Array:
        """Every rank's ``x`` (same shape and dtype everywhere), stacked: shape (P, *x.shape), rank order."""
        x = xp.ascontiguousarray(x)
        out = xp.empty((self.size, *x.shape), dtype=x.dtype)
        with self._timed("allgather", (self.size - 1) * x.nbytes, what):
            self._allgather(x, out)
        return out

    def reduce_scatter(self, full: Array, what: str = "reduce_scatter") -> Array:
        """``full`` of shape (P, ...) on every rank; returns Σ_s full_s[rank], shape ``full.shape[1:]``."""
        full = xp.ascontiguousarray(full)
        if full.shape[0] != self.size:
            raise DistributedError(
                f"{what}: expected a leading axis of {self.size} (one block per rank), got {full.shape}"
            )
        out = xp.empty(full.shape[1:], dtype=full.dtype)
        with self._timed("reduce_scatter", (self.size - 1) / self.size * full.nbytes, what):
            self._reduce_scatter(full, out)
        return out

    def sendrecv(
        self, x: Array | None, dest: int | None, out: Array | None, source: int | None, what: str = "sendrecv"
    ) -> Array | None:
        """Send ``x`` to ``dest`` while ``out`` (contiguous) is filled from ``source``; either side may be None."""
        if (x is None) != (dest is None) or (out is None) != (source is None):
            raise DistributedError(f"{what}: give x with dest and out with source (or None for both)")
        if x is not None:
            x = xp.ascontiguousarray(x)
        if out is not None:
            _check_contiguous(out, what)
        with self._timed("sendrecv", 0 if x is None or dest == self.rank else x.nbytes, what):
            self._sendrecv(x, dest, out, source)
        return out

    def broadcast(self, buf: Array, root: int = 0, what: str = "broadcast") -> Array:
        """``buf ← buf_root`` on every rank, in place; returns ``buf``."""
        _check_contiguous(buf, what)
        with self._timed("broadcast", buf.nbytes if self.rank == root else 0, what):
            self._broadcast(buf, root)
        return buf

    # -- control (host values, a separate channel) ------------------------------------------------------------
    def allreduce_scalars(self, values: Any, what: str = "scalars") -> np.ndarray:
        """Σ over ranks of a few host numbers, as a float64 NumPy array (one call for all of them)."""
        buf = np.array(values, dtype=np.float64).reshape(-1)
        with self._timed("control", 0, what):
            self._control_allreduce(buf)
        return buf

    def any(self, flag: bool, what: str = "any") -> bool:
        """True on every rank when ``flag`` is true on at least one (e.g. "a stop was requested")."""
        return bool(self.allreduce_scalars([1.0 if flag else 0.0], what)[0] > 0)

    def allgather_json(self, value: Any, what: str = "allgather_json") -> list[Any]:
        """Every rank's JSON-able ``value``, in rank order (sent as UTF-8 text, never pickled)."""
        data = np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8)
        with self._timed("control", 0, what):
            blobs = self._control_allgather_bytes(data)
        return [json.loads(bytes(blob).decode()) for blob in blobs]

    def check_same(self, value: Any, what: str) -> None:
        """Raise :class:`DistributedError` on every rank unless every rank passes an equal JSON-able ``value``."""
        values = self.allgather_json(value, f"check_same({what})")
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise DistributedError(
                f"ranks disagree on {what}: rank 0 has {_brief(values[0])} but rank {differ[0]} has "
                f"{_brief(values[differ[0]])}"
            )

    def barrier(self, what: str = "barrier") -> None:
        """Wait until every rank is here (bounded by the timeout, like every collective)."""
        with self._timed("control", 0, what):
            self._barrier()

    def close(self) -> None:
        """The clean end: a barrier (so that no rank leaves while others still need it), then release."""
        if not self.closed:
            self.barrier("close (the end of the run)")
            self.closed = True

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print ``minialex: rank r of P: message`` to stderr and stop every rank now."""
        text = f"minialex: rank {self.rank} of {self.size}: {message}\n"
        try:
            os.write(2, text.encode(errors="replace"))
        except OSError:
            pass
        self._abort(code)
        os._exit(code)  # pragma: no cover - _abort does not return

    # -- machinery ----------------------------------------------------------------------------------------------
    @contextmanager
    def _timed(self, op: str, nbytes: float, what: str, calls: int = 1) -> Iterator[None]:
        start = time.perf_counter()
        with self._watchdog.watch(f"{op} ({what})" if what != op else op):
            yield
        self.stats.add(op, nbytes, time.perf_counter() - start, calls)

    def _timed_out(self, what: str, waited: float) -> None:
        self.abort(
            f"{what} has waited {waited:.0f} s for the other ranks (timeout {self.timeout:g} s, {TIMEOUT_ENV}): "
            "another rank has died, hung or stopped calling the same collectives; stopping every rank"
        )

    def _allreduce(self, buf: Array) -> None:
        raise NotImplementedError

    def _iallreduce(self, buf: Array) -> Any:
        self._allreduce(buf)  # engines without a non-blocking path finish at once
        return lambda: None

    def _allgather(self, x: Array, out: Array) -> None:
        raise NotImplementedError

    def _reduce_scatter(self, full: Array, out: Array) -> None:
        raise NotImplementedError

    def _sendrecv(self, x: Array | None, dest: int | None, out: Array | None, source: int | None) -> None:
        raise NotImplementedError

    def _broadcast(self, buf: Array, root: int) -> None:
        raise NotImplementedError

    def _control_allreduce(self, buf: np.ndarray) -> None:
        raise NotImplementedError

    def _control_allgather_bytes(self, data: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _barrier(self) -> None:
        raise NotImplementedError

    def _abort(self, code: int) -> None:
        os._exit(code)


def fingerprint(tensors: dict[str, Array]) -> dict[str, list]:
    """name → [shape, dtype, CRC-32 of the bytes], to compare tensors across ranks without sending them.

    Identical tensors give equal fingerprints; different ones differ but for a CRC collision (1 in 2³²).
    """
    out = {}
    for name, value in tensors.items():
        host = np.ascontiguousarray(backend.to_numpy(value))
        out[name] = [list(host.shape), host.dtype.name, zlib.crc32(host.view(np.uint8))]
    return out


def _check_contiguous(buf: Array, what: str) -> None:
    if not isinstance(buf, xp.ndarray) or not buf.flags.c_contiguous:
        kind = f"{type(buf).__module__}.{type(buf).__name__}"
        layout = "" if not isinstance(buf, xp.ndarray) else " non-contiguous"
        raise DistributedError(f"{what}: expected a C-contiguous {xp.__name__} array, got a{layout} {kind}")


def _brief(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# One process


class LocalComm(Communicator):
    """Size 1: every collective is the identity (data parallelism on one process is plain training)."""

    engine = "local"

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(0, 1, timeout)

    def _allreduce(self, buf: Array) -> None:
        pass

    def _allgather(self, x: Array, out: Array) -> None:
        out[0] = x

    def _reduce_scatter(self, full: Array, out: Array) -> None:
        out[...] = full[0]

    def _sendrecv(self, x: Array | None, dest: int | None, out: Array | None, source: int | None) -> None:
        if dest not in (None, 0) or source not in (None, 0):
            raise DistributedError(
                f"sendrecv: rank {dest if dest not in (None, 0) else source} does not exist (size 1)"
            )
        if out is not None and x is not None:
            out[...] = x

    def _broadcast(self, buf: Array, root: int) -> None:
        if root != 0:
            raise DistributedError(f"broadcast: root {root} does not exist (size 1)")

    def _control_allreduce(self, buf: np.ndarray) -> None:
        pass

    def _control_allgather_bytes(self, data: np.ndarray) -> list[np.ndarray]:
        return [data]

    def _barrier(self) -> None:
        pass
