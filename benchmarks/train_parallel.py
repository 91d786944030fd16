"""``minialex train`` on this machine: 1 process × 2 threads against 2 ranks × 1 thread (``--parallel data|model``).

The command (from the repository root, with ``pip install -e ".[mpi]"``)::

    python -m benchmarks.train_parallel              # mini on mnist5k, 1,024 images per epoch, 3 rounds
    python -m benchmarks.train_parallel --rounds 1 --limit-train 256      # a smoke run
    python -m benchmarks.train_parallel --rounds 1 --epochs 4 --limit-train 0 --name train-parallel-accuracy
                                                     # the whole mnist5k, 4 epochs: the accuracy each reaches

Each configuration is a real ``minialex train`` (one epoch, augmentation on, dropout as the model's) started
as a user would: ``single`` with ``MINIALEX_THREADS=2`` and 2 BLAS threads; ``data`` and ``model`` under
``mpiexec -n 2`` with 1 thread per rank. What is compared is the training throughput the run itself records
(``images_per_second`` of its history: the steps only, not start-up or evaluation), and the validation and
test top-1 accuracy it reaches (augmentation and dropout make the ranks draw other numbers than one process:
the same accuracy band is expected, not the same weights). The configurations
alternate inside each round (the machine is shared and drifts); the report gives the median over rounds and
every round's figure. It writes ``benchmarks/results/<name>.{md,json}`` (``--name``, default
``train-parallel``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONFIGS = ("single", "data", "model")


def command(config: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one configuration."""
    threads = "2" if config == "single" else "1"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIALEX_THREADS": threads, "OMP_NUM_THREADS": threads,
           "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}  # fmt: skip
    train = [sys.executable, "-m", "minialex", "train", *args]
    if config == "single":
        return train, env
    exe = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    flags = ["--oversubscribe", *(["--allow-run-as-root"] if os.geteuid() == 0 else [])]
    return [exe or "mpiexec", *flags, "-n", "2", *train, "--parallel", config], env


def run_once(config: str, args: list[str], work: Path) -> tuple[float, float, float]:
    """Training images per second (over the epochs), and validation and test top-1 accuracy, of one run."""
    out = work / f"{config}-{time.monotonic_ns()}"
    cmd, env = command(config, [*args, "--out-dir", str(out), "--no-progress"])
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=3600)
    metrics = json.loads((out / "metrics.json").read_text())
    return float(metrics["images_per_second"]), float(metrics["val_accuracy"]), float(metrics["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="mini")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-train", type=int, default=1024, help="training images (0: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--name", default="train-parallel")
    opts = parser.parse_args()
    args = ["--model", opts.model, "--epochs", str(opts.epochs), "--batch-size", str(opts.batch_size)]
    if opts.limit_train:
        args += ["--limit-train", str(opts.limit_train), "--limit-val", "64", "--limit-test", "64"]
    if opts.epochs < 18:  # the default step schedule divides the lr after 12 epochs
        args += ["--schedule", "none"]
    rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
    accuracy: dict[str, list[tuple[float, float]]] = {c: [] for c in CONFIGS}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.rounds):
            for config in CONFIGS:
                rate, val, test = run_once(config, args, Path(tmp))
                rates[config].append(rate)
                accuracy[config].append((val, test))
    load = os.getloadavg()
    medians = {c: statistics.median(r) for c, r in rates.items()}
    lines = [
        "# `minialex train`: 1 process × 2 threads against 2 ranks × 1 thread",
        "",
        f"`python -m benchmarks.train_parallel --rounds {opts.rounds} --model {opts.model} --batch-size "
        f"{opts.batch_size} --limit-train {opts.limit_train} --epochs {opts.epochs} --name {opts.name}`: "
        f"`minialex train {' '.join(args)}` (augmentation on, dropout the model's), configurations alternated "
        f"inside each round; {time.time() - started:.0f} s in all, load average at the end {load[0]:.1f} on "
        f"{os.cpu_count()} cores ({time.strftime('%Y-%m-%d', time.gmtime())}).",
        "",
        "| configuration | training images/s (median) | every round | ÷ single | validation / test top-1, every round |",
        "|---|---:|---|---:|---|",
    ]
    names = {"single": "1 process × 2 threads", "data": "`--parallel data`, 2 × 1", "model": "`--parallel model`, 2 × 1"}
    for c in CONFIGS:
        each = ", ".join(f"{r:.0f}" for r in rates[c])
        acc = ", ".join(f"{v:.1%} / {t:.1%}" for v, t in accuracy[c])
        lines.append(f"| {names[c]} | {medians[c]:.0f} | {each} | {medians[c] / medians['single']:.2f} | {acc} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{opts.name}.md").write_text(text)
    record = {"options": vars(opts), "rates": rates, "medians": medians, "accuracy": accuracy, "load": load}
    (RESULTS / f"{opts.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
