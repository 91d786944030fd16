"""2 ranks: rank 1 fails in one way while rank 0 waits for it in a collective, for test_distributed_mpi.py.

Usage: faults.py MODE TIMEOUT     MODE: raise, die, hang, leave, guard-raise, guard-exit, split-seeds, none

``split-seeds`` is a mistake, not a fault: the ranks build the model from different seeds, and the split refuses
(before any step) on every rank.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import cases
import numpy as np

from minialex import distributed
from minialex.errors import ConfigError


def fail(mode: str, comm: distributed.Communicator) -> None:
    if mode == "raise":
        raise RuntimeError("injected failure on purpose")
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        time.sleep(600)
    if mode == "leave":
        sys.exit(0)  # leaves without comm.close(), as a buggy loop that stops early would
    if mode == "guard-raise":
        with distributed.guard(comm):
            raise ConfigError("--lr must be a finite number > 0, got -1 (injected)")
    if mode == "guard-exit":
        with distributed.guard(comm):
            sys.exit(3)


if __name__ == "__main__":
    cases.start_rank()
    mode, timeout = sys.argv[1], float(sys.argv[2])
    comm = distributed.init("data", timeout=timeout)
    if mode == "split-seeds":
        distributed.ModelParallel(cases.build("mini", seed=comm.rank), comm)
    buf = np.ones(1000)
    for step in range(6):
        if comm.rank == 1 and step == 3:
            fail(mode, comm)
        comm.allreduce(buf, f"step {step}")
    print(f"rank {comm.rank}: all steps done, buf[0] = {buf[0]:g}", flush=True)
    comm.close()
