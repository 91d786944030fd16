"""2 ranks: train a split model (ModelParallel) and save what it computed, for test_distributed_mpi.py.

Usage: model_parallel_run.py VARIANT DTYPE STEPS LRN DROPOUT OUT.npz
"""

from __future__ import annotations

import sys

import cases
import numpy as np

from minialex import backend, distributed
from minialex.layers import SoftmaxCrossEntropy


def traffic(mp: distributed.ModelParallel, x: np.ndarray, y: np.ndarray, input_grad: bool) -> dict:
    """Bytes this rank sent, per operation, in one forward + backward pass."""
    loss_fn = SoftmaxCrossEntropy()
    mp.comm.stats.reset()
    loss_fn(mp.forward(backend.asarray(x)), backend.asarray(y))
    mp.backward(loss_fn.backward(), need_input_grad=input_grad)
    return {op: s.bytes_sent for op, s in mp.comm.stats.ops.items()}


def main(variant: str, dtype: str, steps: str, lrn: str, dropout: str, out: str) -> None:
    cases.start_rank()
    comm = distributed.init("model", timeout=60)
    model = cases.build(variant, np.dtype(dtype).type, dropout=dropout == "1")
    mp = distributed.ModelParallel(model, comm, lrn=lrn)
    full_params, local_params = mp.num_params(), mp.local_num_params()
    del model
    x, y = cases.batch(mp, 4)
    record = cases.train_steps(mp, x, y, int(steps), full=mp.gather)
    # The split model takes a full state dict (a single-process checkpoint) and gives the same one back.
    state = {k[len("weight.") :]: v for k, v in record.items() if k.startswith("weight.")}
    mp.load_state_dict(state)
    roundtrip = max(float(np.abs(mp.state_dict()[k] - v).max()) for k, v in state.items())
    counted = {"train": traffic(mp, x, y, False), "input_grad": traffic(mp, x, y, True)}
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
