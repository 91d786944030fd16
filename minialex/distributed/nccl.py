"""NCCL for CuPy device buffers: the same :class:`~minialex.distributed.comm.Communicator`, GPU to GPU.

On CuPy, copying every gradient and activation to the host for MPI would cost more than the step, so device
buffers go through NCCL (``cupy.cuda.nccl``) instead. MPI still starts the processes and carries the control
traffic; it is used once to share NCCL's unique id::

    rank 0: uid = nccl.get_unique_id()  ──MPI broadcast (128 bytes)──▶  every rank
    every rank: NcclCommunicator(P, uid, rank)         (one GPU per rank: local rank mod device count)

Streams. A blocking operation is queued on the current CuPy stream and waited for (under the watchdog), so
that its time is measured and a dead peer is noticed. :meth:`NCCLComm.iallreduce` queues the reduction on a
separate communication stream after an event on the compute stream; the backward pass goes on queueing its
kernels meanwhile, and ``Pending.wait()`` makes the compute stream wait for the reduction (the gradients are
then ready for the optimiser). That is where the overlap of data parallelism pays on a GPU.

Control operations (barriers, scalars, JSON) are delegated to the MPI communicator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex.distributed.comm import Communicator, DistributedError
from minialex.distributed.mpi import MPIComm

Array = Any


def available() -> bool:
    """True when CuPy was built with NCCL (``cupy.cuda.nccl`` imports and says it is available)."""
    try:
        from cupy.cuda import nccl
    except Exception:
        return False
    return bool(getattr(nccl, "available", False))


def device_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy)."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def _share_unique_id(mpi: MPIComm, nccl: Any) -> Any:
    """NCCL's unique id, made on rank 0 and broadcast over MPI as raw bytes; returned as CuPy gives it.

    CuPy returns (and expects) ``bytes`` in recent versions and a tuple of signed C chars in older ones; the
    first byte of the broadcast says which.
    """
    buf = np.zeros(129, dtype=np.uint8)
    if mpi.rank == 0:
        uid = nccl.get_unique_id()
        raw = uid if isinstance(uid, bytes) else bytes(int(c) & 0xFF for c in uid)
        buf[0] = 1 if isinstance(uid, bytes) else 2
        buf[1 : 1 + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    mpi._control.Bcast(buf, root=0)  # the control channel: no data collective can interleave with it
    raw = bytes(buf[1:])
    if buf[0] == 1:
        return raw
    return tuple(b - 256 if b > 127 else b for b in raw)


class NCCLComm(Communicator):
    """NCCL over CuPy arrays, one GPU per rank; ``mpi`` (an :class:`MPIComm`) bootstraps it and carries control."""

    engine = "nccl"

    def __init__(self, mpi: MPIComm, local_rank: int | None = None) -> None:
        import cupy
        from cupy.cuda import nccl

        if not available():
            raise DistributedError("NCCL is not available in this CuPy build: use device_comm='mpi'")
        devices = device_count()
        if devices < 1:
            raise DistributedError("NCCLComm needs a CUDA device, and CuPy sees none")
        self._cupy, self._nccl_mod, self._mpi = cupy, nccl, mpi
        self.device = (mpi.rank if local_rank is None else local_rank) % devices
        cupy.cuda.Device(self.device).use()
        super().__init__(mpi.rank, mpi.size, mpi.timeout)
        self._comm = nccl.NcclCommunicator(mpi.size, _share_unique_id(mpi, nccl), mpi.rank)
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._types = {
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int64): nccl.NCCL_INT64,
            np.dtype(np.int32): nccl.NCCL_INT32,
            np.dtype(np.uint8): nccl.NCCL_UINT8,
        }

    def describe(self) -> str:
        return f"nccl on GPU {self.device}, rank {self.rank} of {self.size}"

    def _type(self, a: Array) -> int:
        try:
            return self._types[np.dtype(a.dtype)]
        except KeyError:
            raise DistributedError(f"NCCL: no type code for dtype {a.dtype}") from None

    def _current(self) -> Any:
        return self._cupy.cuda.get_current_stream()

    def _sync(self) -> None:
        self._current().synchronize()

    def _allreduce(self, buf: Array) -> None:
        stream = self._current()
        self._comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), self._nccl_mod.NCCL_SUM, stream.ptr)
        stream.synchronize()

    def _iallreduce(self, buf: Array) -> Any:
        ready = self._current().record()  # the gradients in buf are written by kernels queued before this
        self._stream.wait_event(ready)
        self._comm.allReduce(
            buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), self._nccl_mod.NCCL_SUM, self._stream.ptr
        )
        done = self._stream.record()

        def finish() -> None:
            self._current().wait_event(done)
            done.synchronize()  # bounded by the watchdog: a dead peer stops here, not in the optimiser

        return finish

    def _allgather(self, x: Array, out: Array) -> None:
        self._comm.allGather(x.data.ptr, out.data.ptr, x.size, self._type(x), self._current().ptr)
        self._sync()

    def _reduce_scatter(self, full: Array, out: Array) -> None:
        self._comm.reduceScatter(
            full.data.ptr, out.data.ptr, out.size, self._type(full), self._nccl_mod.NCCL_SUM, self._current().ptr
        )
        self._sync()

    def _sendrecv(self, x: Array | None, dest: int | None, out: Array | None, source: int | None) -> None:
        stream = self._current().ptr
        self._nccl_mod.groupStart()
        try:
            if x is not None:
                self._comm.send(x.data.ptr, x.size, self._type(x), dest, stream)
            if out is not None:
                self._comm.recv(out.data.ptr, out.size, self._type(out), source, stream)
        finally:
            self._nccl_mod.groupEnd()
        self._sync()

    def _broadcast(self, buf: Array, root: int) -> None:
        self._comm.broadcast(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf), root, self._current().ptr)
        self._sync()

    # Control traffic stays on MPI (host values).
    def _control_allreduce(self, buf: np.ndarray) -> None:
        self._mpi._control_allreduce(buf)

    def _control_allgather_bytes(self, data: np.ndarray) -> list[np.ndarray]:
        return self._mpi._control_allgather_bytes(data)

    def _barrier(self) -> None:
        self._sync()
        self._mpi._barrier()

    def _abort(self, code: int) -> None:
        try:
            self._comm.abort()
        finally:
            self._mpi._abort(code)
