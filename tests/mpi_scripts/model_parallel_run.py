"""2 ranks: train a split model (ModelParallel) and save what it computed, for test_distributed_mpi.py.

Usage: model_parallel_run.py VARIANT DTYPE STEPS LRN DROPOUT OUT.npz
"""

from __future__ import annotations

import sys

import cases
import numpy as np

from minialex import distributed


def main(variant: str, dtype: str, steps: str, lrn: str, dropout: str, out: str) -> None:
    cases.start_rank()
    comm = distributed.init("model", timeout=60)
    model = cases.build(variant, np.dtype(dtype).type, dropout=dropout == "1")
    mp = distributed.ModelParallel(model, comm, lrn=lrn)
    full_params, local_params = mp.num_params(), mp.local_num_params()
    del model
    x, y = cases.batch(mp, 4)
    traffic: list[dict] = []
    record = cases.train_steps(mp, x, y, int(steps), full=mp.gather, traffic=traffic)
    # The split model takes a full state dict (a single-process checkpoint) and gives the same one back.
    state = {k[len("weight.") :]: v for k, v in record.items() if k.startswith("weight.")}
    mp.load_state_dict(state)
    back = mp.state_dict()
    roundtrip = max(float(np.abs(back[k] - v).max()) for k, v in state.items())
    counted = {"input_grad": traffic[0], "train": traffic[-1]}  # step 1 computes the image gradient too
    everyone = comm.allgather_json(counted)
    if comm.is_root:
        meta = {
            f"bytes.rank{r}.{kind}.{op}": n
            for r, c in enumerate(everyone)
            for kind, ops in c.items()
            for op, n in ops.items()
        }
        meta.update({"roundtrip": roundtrip, "params.full": full_params, "params.local": local_params})
        cases.save(out, {**record, **meta})
    comm.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
