"""P ranks: every operation of the communicator against the values it must give, for test_distributed_mpi.py.

Usage: collectives.py DEVICE_COMM OUT.json      DEVICE_COMM: mpi, nccl or auto
Rank 0 writes {"failures": [...], "engine": ..., "bytes": {...}}; an empty list means every check passed.
"""

from __future__ import annotations

import json
import sys

import cases
import numpy as np

from minialex import backend, distributed
from minialex.backend import xp
from minialex.distributed import DistributedError


def main(device_comm: str, out: str) -> None:
    cases.start_rank()
    comm = distributed.init("data", timeout=60, device_comm=device_comm)
    r, p = comm.rank, comm.size
    failures: list[str] = []

    def check(what: str, got: object, want: object) -> None:
        if not np.array_equal(backend.to_numpy(got), np.asarray(want)):
            failures.append(f"rank {r}: {what}: got {backend.to_numpy(got).tolist()}, want {np.asarray(want).tolist()}")

    base = np.arange(6, dtype=np.float64).reshape(2, 3)
    total = sum(base + s for s in range(p))
    check("allreduce", comm.allreduce(xp.asarray(base + r)), total)
    pending = comm.iallreduce(xp.asarray(base + r, dtype=xp.float32))
    comm.progress()
    check("iallreduce", pending.wait(), total.astype(np.float32))
    check("allgather", comm.allgather(xp.asarray(base + 10 * r)), np.stack([base + 10 * s for s in range(p)]))
    blocks = np.stack([base * (b + 1) + r for b in range(p)])  # rank r sends block b = base·(b+1) + r
    check("reduce_scatter", comm.reduce_scatter(xp.asarray(blocks)), sum(base * (r + 1) + s for s in range(p)))
    nxt, prev = (r + 1) % p, (r - 1) % p
    got = comm.sendrecv(xp.asarray(base + r), nxt, xp.empty((2, 3)), prev)
    check("sendrecv", got, base + prev)
    check("broadcast", comm.broadcast(xp.asarray(base + r), root=p - 1), base + p - 1)
    check("allreduce_scalars", comm.allreduce_scalars([r, 1.0]), [sum(range(p)), p])
    check("any", comm.any(r == p - 1), True)
    check(
        "allgather_json",
        np.array(json.dumps(comm.allgather_json({"rank": r}))),
        json.dumps([{"rank": s} for s in range(p)]),
    )
    comm.check_same({"lr": 0.01}, "the learning rate")
    try:
        comm.check_same({"lr": 0.01 * (r + 1)}, "the learning rate")
        failures.append(f"rank {r}: check_same accepted different values")
    except DistributedError as exc:
        if "rank 1" not in str(exc) or "learning rate" not in str(exc):
            failures.append(f"rank {r}: check_same message does not name the rank and the thing: {exc}")
    comm.barrier()
    everyone = comm.allgather_json(failures)
    if comm.is_root:
        result = {
            "failures": [f for fs in everyone for f in fs],
            "engine": comm.engine,
            "bytes": {op: s.bytes_sent for op, s in comm.stats.ops.items()},
        }
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    comm.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
