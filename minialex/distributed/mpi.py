"""The MPI engine of the communicator: mpi4py over ``MPI.COMM_WORLD``.

NumPy buffers go to MPI as they are (no copy); CuPy buffers are copied to the host and back, which is correct
but slow: on GPUs, :class:`~minialex.distributed.nccl.NCCLComm` moves device buffers directly. ``iallreduce``
is MPI's non-blocking ``Iallreduce``; Open MPI advances it only inside MPI calls, so :meth:`MPIComm.progress`
(a ``Testall``) lets a caller push it along between pieces of work. Barriers, scalars and JSON go over a
duplicate of the communicator, so that control traffic can never be matched with a data collective.

mpi4py is imported when an :class:`MPIComm` is made (which starts MPI), never at module import.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.distributed.comm import Array, Communicator


class MPIComm(Communicator):
    """mpi4py over ``MPI.COMM_WORLD`` (or ``mpi_comm``). NumPy buffers are passed to MPI as they are; CuPy
    buffers are copied to the host and back (use :class:`~minialex.distributed.nccl.NCCLComm` on GPUs)."""

    engine = "mpi"

    def __init__(self, mpi_comm: Any = None, timeout: float | None = None) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self._control = self._comm.Dup()  # barriers and scalars never match a data collective
        super().__init__(self._comm.Get_rank(), self._comm.Get_size(), timeout)
        self._requests: list[Any] = []

    def local_size(self) -> int:
        """How many ranks run on this machine (a collective of the ranks)."""
        shared = self._comm.Split_type(self._MPI.COMM_TYPE_SHARED)
        try:
            return shared.Get_size()
        finally:
            shared.Free()

    # Host staging: identity on NumPy, a device↔host copy on CuPy.
    @staticmethod
    def _host(a: Array) -> np.ndarray:
        return a if not backend.on_gpu else backend.to_numpy(a)

    @staticmethod
    def _back(host: np.ndarray, target: Array) -> None:
        if backend.on_gpu:
            target[...] = xp.asarray(host)

    def _allreduce(self, buf: Array) -> None:
        host = self._host(buf)
        self._comm.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
        self._back(host, buf)

    def _iallreduce(self, buf: Array) -> Any:
        if backend.on_gpu:  # staged buffers: no overlap to be had, finish now
            self._allreduce(buf)
            return lambda: None
        request = self._comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self._requests.append(request)

        def finish() -> None:
            request.Wait()
            self._requests.remove(request)

        return finish

    def progress(self) -> None:
        if self._requests:
            self._MPI.Request.Testall(self._requests)

    def _allgather(self, x: Array, out: Array) -> None:
        host = self._host(out)
        self._comm.Allgather(self._host(x), host)
        self._back(host, out)

    def _reduce_scatter(self, full: Array, out: Array) -> None:
        host = self._host(out)
        self._comm.Reduce_scatter_block(self._host(full), host, op=self._MPI.SUM)
        self._back(host, out)

    def _sendrecv(self, x: Array | None, dest: int | None, out: Array | None, source: int | None) -> None:
        MPI = self._MPI
        send = self._host(x) if x is not None else np.empty(0, np.uint8)
        recv = self._host(out) if out is not None else np.empty(0, np.uint8)
        self._comm.Sendrecv(
            send, MPI.PROC_NULL if dest is None else dest, 7, recv, MPI.PROC_NULL if source is None else source, 7
        )
        if out is not None:
            self._back(recv, out)

    def _broadcast(self, buf: Array, root: int) -> None:
        host = self._host(buf)
        self._comm.Bcast(host, root=root)
        self._back(host, buf)

    def _control_allreduce(self, buf: np.ndarray) -> None:
        self._control.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)

    def _control_allgather_bytes(self, data: np.ndarray) -> list[np.ndarray]:
        sizes = np.zeros(self.size, dtype=np.int64)
        self._control.Allgather(np.array([data.size], dtype=np.int64), sizes)
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._control.Allgatherv(data, (out, sizes))
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [out[bounds[r] : bounds[r + 1]] for r in range(self.size)]

    def _barrier(self) -> None:
        self._control.Barrier()

    def _abort(self, code: int) -> None:
        sys.stderr.flush()
        self._comm.Abort(code)
