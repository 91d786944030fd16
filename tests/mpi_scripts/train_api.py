"""2 ranks: the trainer's API under ``mpiexec``, for test_train_parallel.py.

Usage: train_api.py resume OUT MODE    three runs of :func:`config`: ``OUT/whole`` uninterrupted; ``OUT/part``
                                       stopped after global step 3 by a request on rank 1 alone; then
                                       ``OUT/part`` resumed from its last.safetensors to the end
       train_api.py fail OUT MODE      rank 1 raises at step 2 while rank 0 trains on
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import cases

from minialex.training import TrainConfig, Trainer

STOP_AT = 3


def config(mode: str, out: Path) -> TrainConfig:
    """Dropout and augmentation on: a resumed run must continue every rank's own random stream."""
    return TrainConfig(
        model="mini", epochs=2, batch_size=16, limit_train=88, limit_val=32, limit_test=32, dtype="float64",
        seed=1, parallel=mode, out_dir=str(out),
    )  # fmt: skip


def stop_on_rank_1(trainer: Trainer, epoch: int, step: int) -> None:
    if trainer.parallel.rank == 1 and trainer.state.global_step == STOP_AT:
        trainer.request_stop(signal.SIGTERM)


def fail_on_rank_1(trainer: Trainer, epoch: int, step: int) -> None:
    if trainer.parallel.rank == 1 and step == 2:
        raise RuntimeError("injected failure on purpose")


if __name__ == "__main__":
    cases.start_rank()
    what, out, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if what == "resume":
        Trainer(config(mode, out / "whole"), log=None).fit()
        stopped = Trainer(config(mode, out / "part"), log=None, on_step=stop_on_rank_1).fit()
        assert stopped.interrupted_by == signal.SIGTERM, stopped.interrupted_by  # on rank 0 too: the ranks agreed
        Trainer(resume=out / "part" / "last.safetensors", log=None).fit()
    else:
        Trainer(config(mode, out / "fail"), log=None, on_step=fail_on_rank_1).fit()
    print(f"{what} done", flush=True)
