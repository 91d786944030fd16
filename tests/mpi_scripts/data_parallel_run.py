"""2 ranks: train the mini model with DataParallel and save its weights, for test_distributed_mpi.py.

Usage: data_parallel_run.py DTYPE OVERLAP BUCKET_BYTES BATCH IMAGES EPOCHS OUT.npz

Each rank starts from *different* weights (its own seed): the broadcast from rank 0 must make them equal.
"""

from __future__ import annotations

import sys

import cases
import numpy as np

from minialex import distributed


def main(dtype: str, overlap: str, bucket_bytes: str, batch: str, images: str, epochs: str, out: str) -> None:
    cases.start_rank()
    comm = distributed.init("data", batch_size=int(batch), timeout=60)
    model = cases.build("mini", np.dtype(dtype).type, seed=cases.MODEL_SEED + 100 * comm.rank, dropout=False)
    dp = distributed.DataParallel(model, comm, bucket_bytes=int(bucket_bytes), overlap=overlap == "1")
    dp.broadcast_parameters()
    x, y = cases.batch(model, int(images), seed=2)
    comm.stats.reset()
    cases.epochs(model, x, y, int(batch), int(epochs), dp)
    dp.check_in_sync()
    if comm.is_root:
        arrays = {f"weight.{k}": v for k, v in model.state_dict().items()}
        allreduce = comm.stats.ops["allreduce"]
        arrays.update(
            {
                "allreduce.bytes": allreduce.bytes_sent,
                "allreduce.calls": allreduce.calls,
                "bytes_per_step": dp.bytes_per_step,
                "buckets": len(dp.buckets),
            }
        )
        cases.save(out, arrays)
    comm.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
