"""Distributed training on one machine: 1 rank × 2 threads against 2 ranks × 1 thread, communication vs computation.

The command (from the repository root, with ``pip install -e ".[mpi]"``)::

    python -m benchmarks.distributed            # mini at batch 128, paper at batch 32; ~10 min on 2 idle cores
    python -m benchmarks.distributed --quick    # mini at 128, paper at 16, fewer rounds
    python -m benchmarks.distributed --tiny     # seconds: a smoke run of every mode
    python -m benchmarks.distributed --agreement   # only: 2 ranks vs 1 process after one epoch of mnist5k

It runs, in rounds (A B C D A B C D ...: the machine is shared and drifts), one process per configuration:

* ``single``: the plain model, 1 rank with 2 BLAS threads and ``MINIALEX_THREADS=2`` (minialex as usual);
* ``data``: ``mpiexec -n 2``, each rank 1 thread, :class:`~minialex.distributed.DataParallel` (half the batch
  each, the gradients allreduced in buckets after backward: the default on MPI) — and ``data-overlap``, the same
  with ``overlap=True`` (each bucket started during backward);
* ``model``: ``mpiexec -n 2``, each rank 1 thread, :class:`~minialex.distributed.ModelParallel` (the paper's
  split: the whole batch on each rank, half of every layer).

Each process builds the model (float32), trains one warm-up step and ``--steps`` timed steps (forward, loss,
backward, SGD); a step's *communication* time is the time its rank spent inside the communicator's calls
(``comm.stats``: for overlapped buckets, only the waiting), its *computation* the rest. Reported per
configuration: medians over rounds of the per-process median step, images/s, communication and computation
seconds, the bytes each rank sent per step (counted, and as computed from the shapes), and peak RSS per rank
(VmHWM). Then one epoch of ``mini`` on mnist5k, 2 ranks against 1 process, float32 and float64: the worst
relative difference of the weights. It writes ``benchmarks/results/distributed.{md,json}``.

A single measurement (what the rounds run)::

    mpiexec -n 2 python -m benchmarks.distributed --worker --mode model --model paper --batch 32 --steps 3 --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODES = ("single", "data", "data-overlap", "model")
EPOCH_BATCH = 64


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------------
# One measurement, in each rank


def worker(mode: str, variant: str, batch: int, steps: int, out: str) -> None:
    import minialex
    from minialex import backend, distributed
    from minialex.layers import SoftmaxCrossEntropy
    from minialex.models import alexnet
    from minialex.optim import SGD

    comm = distributed.local_comm() if mode == "single" else distributed.init("model" if mode == "model" else "data")
    minialex.seed(0)
    model = alexnet(variant)
    for _, layer in model.named_layers():
        if hasattr(layer, "p"):
            layer.p = 0.0  # dropout off: every configuration does the same arithmetic
    dp = None
    if mode == "model":
        model = distributed.ModelParallel(model, comm)
        plan_bytes = model.plan.bytes_per_step(batch, 4, comm.rank)
    elif mode in ("data", "data-overlap"):
        dp = distributed.DataParallel(model, comm, overlap=mode == "data-overlap")
        dp.broadcast_parameters()
        plan_bytes = dp.bytes_per_step
    else:
        plan_bytes = 0
    rng = np.random.default_rng(1)
    images = rng.standard_normal((batch, *model.input_shape), dtype=np.float32)
    labels = rng.integers(0, model.num_classes, batch)
    mine = slice(*distributed.shard_bounds(batch, comm.rank, comm.size)) if dp is not None else slice(None)
    x, y = backend.asarray(images[mine]), backend.asarray(labels[mine])
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model, lr=0.001)
    rows = []
    for step in range(steps + 1):
        comm.barrier("step start")
        comm.stats.reset()
        start = time.perf_counter()
        loss_fn(model.forward(x), y)
        if dp is None:
            model.backward(loss_fn.backward(), need_input_grad=False)
        else:
            dp.backward(loss_fn.backward(), len(y), batch)
        opt.step()
        backend.synchronize()
        seconds = time.perf_counter() - start
        ops = {op: s for op, s in comm.stats.ops.items() if op != "control"}
        if step:  # step 0 warms up (buffers, pages, threads)
            comm_s = sum(s.seconds for s in ops.values())
            rows.append({"step_s": seconds, "comm_s": comm_s, "bytes": sum(s.bytes_sent for s in ops.values())})
    mine_summary = {
        "step_s": statistics.median(r["step_s"] for r in rows),
        "comm_s": statistics.median(r["comm_s"] for r in rows),
        "bytes": rows[-1]["bytes"],
        "plan_bytes": plan_bytes,
        "peak_rss_mb": _peak_rss_mb(),
    }
    everyone = comm.allgather_json(mine_summary)
    if comm.is_root:
        Path(out).write_text(json.dumps({"ranks": everyone, "steps": rows}), encoding="utf-8")
    if comm.size > 1:
        comm.close()


def epoch_worker(dtype: str, out: str) -> None:
    """One epoch of ``mini`` on mnist5k's training split (batch 64, no augmentation, dropout off): its weights."""
    import minialex
    from minialex import backend, distributed
    from minialex.data import load_dataset
    from minialex.data.pipeline import InputPipeline
    from minialex.layers import SoftmaxCrossEntropy
    from minialex.models import alexnet
    from minialex.optim import SGD

    launched = distributed.launch_info() is not None
    comm = distributed.init("data", EPOCH_BATCH) if launched else distributed.local_comm()
    data = load_dataset("mnist5k")
    minialex.seed(0)
    model = alexnet("mini", dtype=np.dtype(dtype).type)
    model["drop4"].p = 0.0
    dp = distributed.DataParallel(model, comm)
    dp.broadcast_parameters()
    pipeline = InputPipeline("mnist5k", data.train_images.shape[1:], model.input_shape, data.mean, data.std, False, dtype)
    loss_fn, opt = SoftmaxCrossEntropy(), SGD(model, lr=0.01)
    order = np.random.default_rng([0, 1]).permutation(len(data.train_labels))
    for start in range(0, len(order), EPOCH_BATCH):
        idx = order[start : start + EPOCH_BATCH]
        mine = dp.shard(idx)
        loss_fn(model.forward(pipeline.train(data.train_images[mine])), backend.asarray(data.train_labels[mine]))
        dp.backward(loss_fn.backward(), len(mine), len(idx))
        opt.step()
    if comm.is_root:
        np.savez(out, **model.state_dict())
    if comm.size > 1:
        comm.close()


def agreement(timeout: float = 1800) -> list[dict[str, Any]]:
    """2 ranks against 1 process after one epoch, float32 and float64: the worst relative weight difference."""
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    for dtype in ("float32", "float64"):
        with tempfile.TemporaryDirectory() as tmp:
            outs = {}
            for ranks in (1, 2):
                outs[ranks] = Path(tmp) / f"{ranks}.npz"
                args = [sys.executable, "-m", "benchmarks.distributed", "--epoch-worker", dtype, "--out", str(outs[ranks])]
                cmd = args if ranks == 1 else [*_mpiexec(), "-n", "2", *args]
                subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=timeout, capture_output=True)
            with np.load(outs[1], allow_pickle=False) as one, np.load(outs[2], allow_pickle=False) as two:
                worst = max(float(np.abs(two[k] - one[k]).max() / np.abs(one[k]).max()) for k in one.files)
        rows.append({"dtype": dtype, "worst_relative_difference": worst})
        print(f"one epoch, {dtype}: 2 ranks vs 1 process, worst relative weight difference {worst:.2e}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------------
# The rounds


def _mpiexec() -> list[str]:
    exe = Path(sys.executable).parent / "mpiexec"
    cmd = [str(exe) if exe.exists() else "mpiexec", "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def run_one(mode: str, variant: str, batch: int, steps: int, timeout: float) -> dict[str, Any]:
    """Start one configuration in fresh processes and return what rank 0 wrote."""
    threads = "2" if mode == "single" else "1"
    env = dict(os.environ, MINIALEX_THREADS=threads, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--mode", mode, "--model", variant]
        args += ["--batch", str(batch), "--steps", str(steps), "--out", str(out)]
        cmd = args if mode == "single" else [*_mpiexec(), "-n", "2", *args]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def summarise(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Medians over rounds of rank 0's median step (and the slowest rank's peak memory)."""
    step = statistics.median(r["ranks"][0]["step_s"] for r in runs)
    comm = statistics.median(r["ranks"][0]["comm_s"] for r in runs)
    return {
        "step_s": step,
        "images_per_s": batch / step,
        "comm_s": comm,
        "compute_s": step - comm,
        "bytes_per_rank": runs[-1]["ranks"][0]["bytes"],
        "plan_bytes_per_rank": runs[-1]["ranks"][0]["plan_bytes"],
        "peak_rss_mb": max(rank["peak_rss_mb"] for r in runs for rank in r["ranks"]),
        "rounds": len(runs),
        "step_s_all": [r["ranks"][0]["step_s"] for r in runs],
    }


def run_rounds(plan: list[tuple[str, int]], rounds: int, steps: int) -> list[dict[str, Any]]:
    """Every (model, batch) of ``plan`` in every mode, ``rounds`` times, alternating; the summaries per configuration."""
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for round_index in range(rounds):
        for variant, batch in plan:
            for mode in MODES:
                print(f"round {round_index + 1}/{rounds}: {variant} batch {batch} {mode}", flush=True)
                runs.setdefault((variant, batch, mode), []).append(run_one(mode, variant, batch, steps, 900))
    return [{"model": v, "batch": b, "mode": m, "summary": summarise(rs, b)} for (v, b, m), rs in runs.items()]


def report(results: list[dict[str, Any]], info: dict[str, Any], agreed: list[dict[str, Any]] = ()) -> str:
    lines = [
        "# Distributed training on one machine: 1 rank × 2 threads vs 2 ranks × 1 thread",
        "",
        f"Made by `python -m benchmarks.distributed {info['args']}` on {info['date']} ({info['seconds']:.0f} s).",
        f"CPU: {info['cpu']}; {info['mpi']}; load average at start {info['load']}.",
        "",
        "| model | batch | mode | ranks × threads | step (s) | img/s | communication (s) | computation (s) | "
        "sent per rank per step | computed from shapes | peak RSS per rank |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["summary"]
        layout = "1 × 2" if r["mode"] == "single" else "2 × 1"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['mode']} | {layout} | {s['step_s']:.3f} | {s['images_per_s']:.1f} | "
            f"{s['comm_s']:.3f} | {s['compute_s']:.3f} | {s['bytes_per_rank'] / 1e6:.2f} MB | "
            f"{s['plan_bytes_per_rank'] / 1e6:.2f} MB | {s['peak_rss_mb']:.0f} MB |"
        )
    lines += [
        "",
        f"Medians over {results[0]['summary']['rounds']} rounds (configurations alternated within each round) of "
        "each process's median step; communication = time rank 0 spent in the communicator's calls (for "
        "overlapped buckets only the waiting), computation = the rest of the step.",
    ]
    if agreed:
        lines += ["", f"One epoch of `mini` on mnist5k (batch {EPOCH_BATCH}, no augmentation, dropout off), 2 ranks "
                  "(DataParallel) against 1 process: worst relative weight difference "
                  + ", ".join(f"{a['worst_relative_difference']:.1e} in {a['dtype']}" for a in agreed) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="run one measurement (under mpiexec for data/model)")
    parser.add_argument("--epoch-worker", default=None, help="(internal) one epoch of mini in this dtype")
    parser.add_argument("--agreement", action="store_true", help="only the one-epoch agreement check")
    parser.add_argument("--mode", choices=MODES, default="single")
    parser.add_argument("--model", default="mini")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--results", default=str(RESULTS), help="directory for the .md and .json report")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.mode, args.model, args.batch, args.steps, args.out)
        return 0
    if args.epoch_worker:
        epoch_worker(args.epoch_worker, args.out)
        return 0
    if args.agreement:
        agreement()
        return 0

    if args.tiny:
        plan, rounds, steps = [("mini", 8)], args.rounds or 1, 1
    elif args.quick:
        plan, rounds, steps = [("mini", 128), ("paper", 16)], args.rounds or 2, 3
    else:
        plan, rounds, steps = [("mini", 128), ("paper", 32)], args.rounds or 3, 3
    from benchmarks import machine

    started = time.time()
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []
    results = run_rounds(plan, rounds, steps)
    agreed = [] if args.tiny else agreement()
    version = subprocess.run([_mpiexec()[0], "--version"], capture_output=True, text=True, timeout=60)

    info = {
        "args": " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.time() - started,
        "cpu": machine.cpu_model(),
        "mpi": (version.stdout.strip().splitlines() or ["mpiexec (unknown)"])[0],
        "load": load,
    }
    text = report(results, info, agreed)
    print(text)
    if not args.tiny:
        out = Path(args.results)
        out.mkdir(parents=True, exist_ok=True)
        name = "distributed-quick" if args.quick else "distributed"
        (out / f"{name}.md").write_text(text, encoding="utf-8")
        record = {"info": info, "results": results, "agreement": agreed}
        (out / f"{name}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
