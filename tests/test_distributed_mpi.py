"""Distributed training on 2 real MPI ranks: the split and the replicated model against one process, and faults.

Each test starts ``mpiexec -n 2`` on a script of ``tests/mpi_scripts/`` (the exact command is
``launcher.command``) with a hard timeout, so that a deadlock fails instead of hanging the suite, and compares
what the ranks saved with the same computation done here, on one process. Skipped, with the reason, when
mpi4py or mpiexec is missing (``pip install 'minialex[mpi]'``).

Bounds: float64 agreement to 1e-12 relative (round-off: the split model sums the same products in another
order at the exchanges; measured ~1e-15), float32 to 1e-4 ("float32 round-off").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import rel_diff
from mpi_scripts import cases
from mpi_scripts.launcher import mpi_skip_reason, run_ranks

from minialex import backend
from minialex.distributed import plan_split
from minialex.distributed.nccl import device_count
from minialex.layers import LocalResponseNorm

pytestmark = pytest.mark.skipif(mpi_skip_reason() is not None, reason=mpi_skip_reason() or "")
FLOAT64_BOUND = 1e-12
FLOAT32_BOUND = 1e-4


def _run(script: str, args: list[str], tmp_path, timeout: float = 150.0, env: dict | None = None):
    run = run_ranks(script, args, tmp_path, timeout=timeout, env=env)
    assert not run.timed_out, f"mpiexec did not finish within {timeout:g} s (a deadlock?):\n{run.output[-3000:]}"
    return run


def _compare(ranks: dict[str, np.ndarray], reference: dict[str, np.ndarray], bound: float) -> None:
    keys = sorted(k for k in reference if not k.startswith("bytes."))
    assert keys and set(keys) <= set(ranks), f"missing from the ranks' output: {sorted(set(keys) - set(ranks))}"
    errors = {k: rel_diff(ranks[k], reference[k]) for k in keys}
    bad = {k: e for k, e in errors.items() if not e <= bound}
    assert not bad, f"{len(bad)} of {len(keys)} arrays differ beyond {bound:g} (relative): {bad}"


# -- model parallelism ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "steps"), [("mini", 3), ("paper", 2)])
def test_split_model_equals_one_process_with_dropout_on(variant, steps, tmp_path):
    """Logits, loss, image gradient, every weight gradient, and weights and velocities after the SGD steps;
    and the bytes each rank sent, counted in the communicator, are those the plan computes from the shapes."""
    out = tmp_path / "mp.npz"
    run = _run("model_parallel_run.py", [variant, "float64", str(steps), "exact", "1", str(out)], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    ranks = cases.load(out)
    model = cases.build(variant, np.float64)
    plan = plan_split(model, 2)
    reference = cases.train_steps(model, *cases.batch(model, 4), steps=steps)
    assert {k for k in reference if k.startswith("grad.")} == {f"grad.{k}" for k in model.params}
    _compare(ranks, reference, FLOAT64_BOUND)
    assert float(ranks["roundtrip"]) == 0.0  # load_state_dict(full) then state_dict() gives it back exactly
    assert int(ranks["params.full"]) == model.num_params()
    assert int(ranks["params.local"]) < model.num_params() * 0.51  # each rank holds about half
    for rank in (0, 1):
        for kind, input_grad in (("train", False), ("input_grad", True)):
            counted = sum(int(v) for k, v in ranks.items() if k.startswith(f"bytes.rank{rank}.{kind}."))
            assert counted == plan.bytes_per_step(4, 8, rank, input_grad), (rank, kind)
    assert "bytes.rank0.train.allreduce" not in ranks  # weights and their gradients never travel
    if variant == "paper":  # at 67×67: into conv3 128×3×3 per rank, into fc6 128, into fc7 and fc8 2048
        assert int(ranks["bytes.rank0.train.reduce_scatter"]) == 4 * 8 * (128 * 3 * 3 + 128 + 2048 + 2048)
        assert int(ranks["bytes.rank0.train.sendrecv"]) == 4 * 8 * 2 * (2 * 15 * 15 + 2 * 7 * 7)  # the LRN halos


def test_per_column_lrn_is_the_papers_layout(tmp_path):
    """lrn="per-column": each rank normalises its own channels, as the paper's GPUs did, with no halo traffic."""
    out = tmp_path / "mp.npz"
    run = _run("model_parallel_run.py", ["mini", "float64", "2", "per-column", "0", str(out)], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    ranks = cases.load(out)
    assert "bytes.rank0.train.sendrecv" not in ranks
    model = cases.build("mini", np.float64, dropout=False)
    for name in ("norm1", "norm2"):  # the single-process reference: LRN over each half of the channels
        model.children[name] = PerHalfLRN(model.children[name])
    reference = cases.train_steps(model, *cases.batch(model, 4), steps=2)
    _compare(ranks, reference, FLOAT64_BOUND)
    exact = cases.train_steps(cases.build("mini", np.float64, dropout=False), *cases.batch(model, 4), steps=2)
    assert rel_diff(ranks["logits"], exact["logits"]) > 1e-8  # and it is another network than alexnet("mini")


class PerHalfLRN(LocalResponseNorm):
    """Test-only: the paper's per-GPU LRN on one process (the window never crosses the middle channel)."""

    def __init__(self, lrn: LocalResponseNorm) -> None:
        super().__init__(lrn.size, lrn.alpha, lrn.beta, lrn.k)
        self.halves = [LocalResponseNorm(lrn.size, lrn.alpha, lrn.beta, lrn.k) for _ in range(2)]

    def forward(self, x):
        c = x.shape[1] // 2
        return backend.xp.concatenate([h.forward(x[:, i * c : (i + 1) * c]) for i, h in enumerate(self.halves)], axis=1)

    def backward(self, dy, need_input_grad=True):
        c = dy.shape[1] // 2
        return backend.xp.concatenate(
            [h.backward(backend.xp.ascontiguousarray(dy[:, i * c : (i + 1) * c])) for i, h in enumerate(self.halves)],
            axis=1,
        )


# -- data parallelism ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "overlap", "bound"),
    [("float64", "1", FLOAT64_BOUND), ("float64", "0", FLOAT64_BOUND), ("float32", "1", FLOAT32_BOUND)],
)
def test_two_ranks_end_with_the_weights_of_one_process(dtype, overlap, bound, tmp_path):
    """2 epochs of 13 images in batches of 6 (the last batch of 1 leaves rank 0 an empty shard), tiny buckets."""
    out = tmp_path / "dp.npz"
    run = _run("data_parallel_run.py", [dtype, overlap, "3000", "6", "13", "2", str(out)], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    ranks = cases.load(out)
    model = cases.build("mini", np.dtype(dtype).type, dropout=False)
    images, labels = cases.batch(model, 13, seed=2)
    before = model.state_dict()
    cases.epochs(model, images, labels, 6, 2)
    reference = {f"weight.{k}": v for k, v in model.state_dict().items()}
    _compare(ranks, reference, bound)
    moved = max(rel_diff(reference[f"weight.{k}"], before[k]) for k in before)
    assert moved > 100 * bound  # the comparison is not trivially passed by weights that never changed
    steps = 2 * 3
    assert int(ranks["buckets"]) > 2
    assert int(ranks["allreduce.calls"]) == steps * int(ranks["buckets"])
    assert int(ranks["allreduce.bytes"]) == steps * int(ranks["bytes_per_step"])
    assert int(ranks["bytes_per_step"]) == model.num_params() * np.dtype(dtype).itemsize  # 2 (P − 1) / P = 1


# -- the communicator ------------------------------------------------------------------------------------------


def test_every_collective_gives_the_exact_values_on_two_ranks(tmp_path):
    out = tmp_path / "collectives.json"
    run = _run("collectives.py", ["mpi", str(out)], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    result = json.loads(out.read_text())
    assert result["failures"] == []
    assert result["engine"] == "mpi"
    assert result["bytes"]["allreduce"] == 48 + 24  # 6 float64 then 6 float32 values; 2 (P − 1) / P = 1


@pytest.mark.gpu
@pytest.mark.skipif(device_count() < 2, reason=f"NCCL needs 2 CUDA devices (one per rank); CuPy sees {device_count()}")
def test_every_collective_gives_the_exact_values_over_nccl(tmp_path):
    out = tmp_path / "collectives.json"
    run = _run("collectives.py", ["nccl", str(out)], tmp_path, env={"MINIALEX_BACKEND": "cupy"})
    assert run.returncode == 0, run.output[-3000:]
    result = json.loads(out.read_text())
    assert result["failures"] == [] and result["engine"] == "nccl"


# -- faults: nothing hangs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("raise", "rank 1 of 2: failed: RuntimeError: injected failure on purpose"),
        ("guard-raise", "rank 1 of 2: failed: ConfigError: --lr must be a finite number > 0"),
        ("guard-exit", "rank 1 of 2: exited with status 3"),
        ("die", "rank 1"),  # mpiexec's own report: "process rank 1 with PID ... exited on signal 9"
        ("hang", "rank 0 of 2: allreduce (step 3) has waited"),
        ("leave", "has waited"),
        ("split-seeds", "failed: DistributedError: ranks disagree on the full model's weights (seed every rank alike)"),
    ],
)
def test_a_failing_rank_stops_every_rank_within_seconds(mode, says, tmp_path):
    """Rank 1 fails at step 3 while rank 0 waits for it in an allreduce; the collective timeout is 3 s."""
    run = _run("faults.py", [mode, "3"], tmp_path, timeout=90)
    assert run.returncode != 0
    assert says in run.output, run.output[-3000:]
    assert "all steps done" not in run.output
    assert run.seconds < 60, f"took {run.seconds:.0f} s to stop"


def test_a_healthy_run_of_the_same_script_finishes(tmp_path):
    run = _run("faults.py", ["none", "30"], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    assert run.output.count("all steps done, buf[0] = 64") == 2  # 6 allreduces of ones over 2 ranks: 2⁶


def test_the_distributed_benchmark_runs_every_mode():
    """benchmarks/distributed.py on a tiny configuration: every mode runs, and counts what the shapes predict."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import distributed as bench

    results = bench.run_rounds([("mini", 8)], rounds=1, steps=1)
    assert [r["mode"] for r in results] == list(bench.MODES)
    for r in results:
        s = r["summary"]
        assert s["step_s"] > 0 and s["peak_rss_mb"] > 0
        assert s["bytes_per_rank"] == s["plan_bytes_per_rank"], r["mode"]
    assert "| mini | 8 | model | 2 × 1 |" in bench.report(results, {"args": "", "date": "", "seconds": 0, "cpu": "", "mpi": "", "load": []})
