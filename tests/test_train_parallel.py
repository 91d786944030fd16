"""``minialex train --parallel data|model`` under ``mpiexec -n 2``: the same run as one process, exact resume,
faults; and the checks made before any work, in this process.

The 2-rank tests start ``mpiexec`` on ``tests/mpi_scripts/train_cli.py`` (the command line's own entry point) or
``train_api.py`` (the trainer's API, to stop or fail one rank at a chosen step) with a hard timeout, and compare
what rank 0 wrote with a single-process run made here. Skipped, with the reason, without mpi4py or mpiexec.

Bounds: with augmentation off and dropout 0, float64 weights and velocities agree to 1e-12 relative (round-off:
the shards' gradients are summed in another order, the split model's exchanges sum the same products in another
order; measured ≲ 1e-15) and float32 to 1e-4. A resumed 2-rank run, dropout and augmentation on, ends bit for
bit where the uninterrupted 2-rank run ends.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import rel_diff
from mpi_scripts.launcher import REPO, command, mpi_skip_reason, run_ranks

from minialex.cli import main
from minialex.errors import CheckpointError, ConfigError
from minialex.training import TrainConfig, Trainer
from minialex.training.checkpoint import load_checkpoint
from minialex.training.parallel import RunParallel

needs_mpi = pytest.mark.skipif(mpi_skip_reason() is not None, reason=mpi_skip_reason() or "")
BOUNDS = {"float64": 1e-12, "float32": 1e-4}
TIMINGS = ("train_seconds", "eval_seconds", "images_per_second", "data_wait_seconds")
# 88 images in batches of 16: 5 full batches and one of 8 (4 per rank), 2 epochs; augmentation off, dropout 0
TINY = {"model": "mini", "epochs": 2, "batch_size": 16, "limit_train": 88, "limit_val": 32, "limit_test": 32}
TINY_ARGS = [
    "train", "--epochs", "2", "--batch-size", "16", "--limit-train", "88", "--limit-val", "32", "--limit-test", "32",
    "--no-augment", "--dropout", "0", "--seed", "4", "--no-progress",
]  # fmt: skip


def _single(tmp_path: Path, dtype: str, **options) -> Path:
    """The same run on one process, here; returns its last.safetensors."""
    config = TrainConfig(**TINY, augment=False, dropout=0.0, seed=4, dtype=dtype, out_dir=str(tmp_path), **options)
    return Trainer(config, log=None, progress=False).fit().checkpoint


def _ranks(script: str, args: list[str], tmp_path: Path, timeout: float = 240.0):
    run = run_ranks(script, args, tmp_path, timeout=timeout)
    assert not run.timed_out, f"mpiexec did not finish within {timeout:g} s (a deadlock?):\n{run.output[-3000:]}"
    return run


def _assert_same_run(ours: Path, theirs: Path, bound: float) -> None:
    a, b = load_checkpoint(ours), load_checkpoint(theirs)
    assert a.model_state.keys() == b.model_state.keys()
    worst = {k: rel_diff(a.model_state[k], v) for k, v in b.model_state.items()}
    worst |= {f"velocity.{k}": rel_diff(a.optimizer_state["velocity"][k], v) for k, v in
              b.optimizer_state["velocity"].items()}  # fmt: skip
    bad = {k: e for k, e in worst.items() if not e <= bound}
    assert not bad, f"{len(bad)} of {len(worst)} tensors differ beyond {bound:g} (relative): {bad}"
    ha, hb = a.metadata["progress"]["history"], b.metadata["progress"]["history"]
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb] == [1, 2]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert np.allclose([r[key] for r in ha], [r[key] for r in hb], rtol=bound, atol=0), key


# -- 2 ranks against one process --------------------------------------------------------------------------------


@needs_mpi
@pytest.mark.parametrize(("mode", "dtype"), [("data", "float64"), ("model", "float64"), ("data", "float32"),
                                             ("model", "float32")])  # fmt: skip
def test_two_ranks_end_with_the_weights_of_one_process(mode, dtype, tmp_path):
    """``mpiexec -n 2 minialex train --parallel MODE`` and ``minialex train`` with the same arguments: the same
    weights, velocities and history; rank 0 alone writes the run's files and reports, once."""
    out = tmp_path / "ranks"
    run = _ranks("train_cli.py", [*TINY_ARGS, "--dtype", dtype, "--parallel", mode, "--out-dir", str(out)], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    reference = _single(tmp_path / "single", dtype)
    _assert_same_run(out / "last.safetensors", reference, BOUNDS[dtype])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.parent.iterdir())
    assert run.stdout.count("epoch 1/2:") == 1 and run.stdout.count("done: test top-1") == 1  # rank 1 says nothing
    saved = load_checkpoint(out / "last.safetensors").metadata
    assert saved["config"]["parallel"] == mode and saved["parallel"]["ranks"] == 2
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, reference.parent))
    for key, value in theirs.items():  # the whole model's parameter count, the images of every rank, the results
        if key not in TIMINGS and key not in ("config", "backend"):
            close = np.isclose(ours[key], value, rtol=BOUNDS[dtype], atol=0) if isinstance(value, float) else None
            assert close if close is not None else ours[key] == value, key


@needs_mpi
def test_three_ranks_with_uneven_and_empty_shards_match_one_process(tmp_path):
    """Batches of 3 over 3 ranks, and a last batch of 1 image: two ranks get none and contribute zeros."""
    out, args = tmp_path / "ranks", ["--limit-train", "40", "--batch-size", "3", "--epochs", "1", "--dtype", "float64"]
    run = run_ranks("train_cli.py", [*TINY_ARGS, *args, "--parallel", "data", "--out-dir", str(out)], tmp_path,
                    ranks=3, timeout=240)  # fmt: skip
    assert not run.timed_out and run.returncode == 0, run.output[-3000:]
    config = TrainConfig(**{**TINY, "limit_train": 40, "batch_size": 3, "epochs": 1}, augment=False, dropout=0.0,
                         seed=4, dtype="float64", out_dir=str(tmp_path / "single"))  # fmt: skip
    reference = Trainer(config, log=None, progress=False).fit().checkpoint
    a, b = load_checkpoint(out / "last.safetensors"), load_checkpoint(reference)
    worst = max(rel_diff(a.model_state[k], v) for k, v in b.model_state.items())
    assert worst <= BOUNDS["float64"], worst
    assert a.metadata["progress"]["history"][0]["train_loss"] == pytest.approx(
        b.metadata["progress"]["history"][0]["train_loss"], rel=BOUNDS["float64"]
    )


@needs_mpi
@pytest.mark.parametrize("mode", ["data", "model"])
def test_a_run_stopped_on_one_rank_resumes_to_the_uninterrupted_run(mode, tmp_path):
    """Dropout and augmentation on: rank 1 alone asks to stop after global step 3, both ranks stop there and
    rank 0 saves; the resumed run (every rank's random state restored) ends bit for bit like the whole run."""
    run = _ranks("train_api.py", ["resume", str(tmp_path / "out"), mode], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert run.stdout.count("resume done") == 2
    whole, part = (load_checkpoint(tmp_path / "out" / name / "last.safetensors") for name in ("whole", "part"))
    for name, value in whole.model_state.items():
        assert np.array_equal(part.model_state[name], value), name
    rows = [[{k: v for k, v in row.items() if k not in TIMINGS} for row in c.metadata["progress"]["history"]]
            for c in (whole, part)]  # fmt: skip
    assert rows[0] == rows[1] and len(rows[0]) == 2
    assert [s == whole.metadata["parallel"]["rng_states"][0] for s in whole.metadata["parallel"]["rng_states"]] == [
        True, mode == "model"
    ]  # data parallelism: each rank its own dropout and crops; the split: the same draws everywhere


@needs_mpi
def test_a_rank_that_fails_stops_every_rank_within_seconds(tmp_path):
    run = _ranks("train_api.py", ["fail", str(tmp_path / "out"), "data"], tmp_path, timeout=120)
    assert run.returncode != 0
    assert "rank 1 of 2: failed: RuntimeError: injected failure on purpose" in run.output, run.output[-3000:]
    assert "fail done" not in run.output
    assert run.seconds < 90, f"took {run.seconds:.0f} s to stop"


@needs_mpi
def test_sigusr1_to_mpiexec_saves_one_checkpoint_and_every_rank_exits(tmp_path):
    """The graceful stop of a distributed run: ``kill -USR1 <mpiexec>`` reaches every rank; they agree to stop
    after the same step, rank 0 saves once, and ``--resume`` on 2 ranks continues it."""
    out = tmp_path / "run"
    # Three epochs, so that the signal lands while training runs however slow the machine is.
    args = [*TINY_ARGS, "--limit-train", "4000", "--epochs", "3", "--parallel", "data", "--out-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIALEX_THREADS": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    proc = subprocess.Popen(
        command("train_cli.py", args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / "last.safetensors").exists() and time.monotonic() < deadline:  # epoch 0 is saved
            assert proc.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.2)
        assert (out / "last.safetensors").exists(), "no epoch-0 checkpoint within 300 s"
        time.sleep(1.0)  # a few steps in
        proc.send_signal(signal.SIGUSR1)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGUSR1, stdout + stderr
    assert stderr.count("stopped by SIGUSR1: checkpoint saved") == 1, stderr
    assert "mpiexec -n 2 minialex train --resume" in stderr
    progress = load_checkpoint(out / "last.safetensors").metadata["progress"]
    assert progress["interrupted"] and 0 < progress["step_in_epoch"] < 250


# -- before any work, in this process -----------------------------------------------------------------------------


def _launched(monkeypatch, size: int) -> None:
    """This process as rank 0 of ``size`` ranks of Open MPI (the environment only: nothing starts MPI before the
    checks below have failed)."""
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", str(size))
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")


def test_parallel_without_mpiexec_is_one_line_before_any_work(tmp_path, capsys):
    status = main([*TINY_ARGS, "--parallel", "data", "--out-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().splitlines() == [
        "minialex: error: --parallel data runs one process per rank, started by an MPI launcher, but this process "
        "was not started by one: run `mpiexec -n 2 minialex train --parallel data ...`"
    ]
    assert not (tmp_path / "run").exists()


def test_mpi4py_missing_names_the_extra(monkeypatch, tmp_path, capsys):
    _launched(monkeypatch, 2)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    assert main([*TINY_ARGS, "--parallel", "data", "--out-dir", str(tmp_path / "run")]) == 2
    assert "pip install 'minialex[mpi]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("mode", "size", "batch", "says"),
    [
        ("model", 3, 16, "--parallel model needs exactly 2 ranks (the paper's two columns of kernels), got 3"),
        ("data", 3, 16, "--batch-size 16 does not split evenly over 3 ranks"),
    ],
)
def test_rank_counts_and_batches_the_mode_cannot_use(monkeypatch, mode, size, batch, says):
    _launched(monkeypatch, size)
    with pytest.raises(ConfigError, match=rf"^{re.escape(says)}"):
        Trainer(TrainConfig(**{**TINY, "batch_size": batch}, parallel=mode), log=None)


def test_resume_on_another_rank_count_is_refused_by_name(monkeypatch):
    _launched(monkeypatch, 4)
    saved = {"parallel": {"mode": "data", "ranks": 2, "rng_states": [{}, {}]}}
    with pytest.raises(ConfigError, match=r"written by a run on 2 ranks \(--parallel data\), but this one has 4: "
                                          r"resume with `mpiexec -n 2 minialex train --resume run/last"):  # fmt: skip
        RunParallel.start("data", 16, saved, "run/last.safetensors")
    with pytest.raises(CheckpointError, match=r"parallel\.ranks must be a positive integer"):
        RunParallel.start("data", 16, {"parallel": {"ranks": "two"}}, "run/last.safetensors")


def test_dropout_option_sets_every_dropout_layer(tmp_path):
    """``--dropout 0`` turns dropout off (the one-process baseline of the tests above), 0.25 sets each layer's rate."""
    from minialex.layers import Dropout

    for p in (0.0, 0.25):
        trainer = Trainer(TrainConfig(**TINY, dropout=p, out_dir=str(tmp_path)), log=None)
        rates = [layer.p for _, layer in trainer.model.named_layers() if isinstance(layer, Dropout)]
        assert rates and rates == [p] * len(rates)
    default = Trainer(TrainConfig(**TINY, out_dir=str(tmp_path)), log=None)
    assert {layer.p for _, layer in default.model.named_layers() if isinstance(layer, Dropout)} == {0.5}
    with pytest.raises(ConfigError, match="dropout"):
        TrainConfig(dropout=1.0).validate()


def test_model_parallelism_refuses_a_model_it_cannot_split_naming_the_layer():
    """The split is planned from the shapes before any exchange: an odd number of classes cannot be shared by
    the two columns (a photo folder of 5 classes, say), and the error says which layer."""
    from minialex.distributed import LocalComm
    from minialex.models import alexnet

    class TwoRanks(LocalComm):  # rank 0 of 2 as far as the plan is concerned; nothing is exchanged before it
        def __init__(self) -> None:
            super().__init__()
            self.size = 2

    with pytest.raises(ConfigError, match=r"^model parallelism: fc5's output features = 5 cannot be shared evenly "):
        RunParallel("model", TwoRanks()).wrap(alexnet("mini", num_classes=5))
