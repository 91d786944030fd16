"""LRN versus BatchNorm versus neither: the ``mini`` AlexNet trained on the embedded digits, several seeds each.

::

    python -m benchmarks.ablation                        # 3 normalisations × 3 seeds, the short recipe below
    python -m benchmarks.ablation --seeds 0,1,2,3,4 --epochs 18 --limit-train 0   # the full recipe, 5 seeds

Every run is ``minialex train --model mini --norm NORM --seed S`` with the trainer's default recipe (SGD,
momentum 0.9, weight decay 5e-4, batch 64, lr 0.02 divided by 10 after ``--step-size`` epochs, pad-and-crop
augmentation), shortened to ``--epochs`` epochs on a seeded subset of ``--limit-train`` training digits (0:
all 3,500); the validation split (500) and the test split (1,000) are always whole. The three normalisations
sit where the paper has LRN, after conv1 and conv2 (``--norm-at paper``): LRN after the ReLU, BatchNorm
before it, or nothing. The seed draws the weights, the subset, the batch order, the crops and the dropout
masks, so the spread over seeds is the run-to-run noise that any difference has to exceed.

Writes ``ablation.json`` (every run's history, then mean ± sample std per normalisation), ``ablation.md``
(the table) and ``ablation-curves.png`` (training loss and validation accuracy per epoch over the seeds, and
the final test accuracy of each seed) to ``--out`` (default ``benchmarks/results``). Runs already in
``ablation.json`` with the same recipe are kept and skipped, so an interrupted ablation continues where it
stopped (and a call with nothing left to run rewrites the report and the plot).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from minialex.data import load_dataset
from minialex.training import Trainer
from minialex.training.config import TrainConfig
from minialex.training.metrics import write_json, write_text_atomic

NORMS = ("lrn", "batchnorm", "none")
LABELS = {"lrn": "LRN (the paper's)", "batchnorm": "BatchNorm", "none": "neither"}


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The options shared by every run (what ``ablation.json`` records, and what a continued ablation must match)."""
    return {
        "model": "mini",
        "dataset": "mnist5k",
        "epochs": args.epochs,
        "step_size": args.step_size,
        "limit_train": args.limit_train or None,
        "norm_at": "paper",
        "batch_size": 64,
        "optimizer": "sgd",
    }


def run_one(options: dict[str, Any], norm: str, seed: int, dataset: Any, folder: Path) -> dict[str, Any]:
    """Train one model; its per-epoch history and final figures."""
    config = TrainConfig(**options, norm=norm, seed=seed, out_dir=str(folder / f"{norm}-{seed}"))
    started = time.perf_counter()
    result = Trainer(config, dataset=dataset, log=None, progress=False).fit()
    history = [
        {k: row[k] for k in ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")}
        for row in result.history
    ]
    metrics = result.metrics
    return {
        "norm": norm,
        "seed": seed,
        "history": history,
        "val_accuracy": history[-1]["val_accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "seconds": time.perf_counter() - started,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per normalisation: seeds, mean ± std of the final validation and test accuracy and of each epoch's."""
    out = {}
    for norm in NORMS:
        mine = sorted((r for r in runs if r["norm"] == norm), key=lambda r: r["seed"])
        if not mine:
            continue
        epochs = min(len(r["history"]) for r in mine)
        curve = [mean_std([r["history"][e]["val_accuracy"] for r in mine]) for e in range(epochs)]
        out[norm] = {
            "seeds": [r["seed"] for r in mine],
            "val_accuracy": mean_std([r["val_accuracy"] for r in mine]),
            "test_accuracy": mean_std([r["test_accuracy"] for r in mine]),
            "test_accuracies": [r["test_accuracy"] for r in mine],
            "val_curve_mean": [m for m, _ in curve],
            "val_curve_std": [s for _, s in curve],
            "seconds_per_run": mean_std([r["seconds"] for r in mine])[0],
        }
    return out


def table(summary: dict[str, Any], options: dict[str, Any], load: str) -> str:
    """The markdown report."""
    train = f"a seeded subset of {options['limit_train']:,}" if options["limit_train"] else "all 3,500"
    lines = [
        "# LRN vs BatchNorm vs neither (`mini` on the embedded digits)",
        "",
        f"Recipe: {options['epochs']} epochs, lr 0.02 ÷ 10 after {options['step_size']}, batch 64, SGD (momentum 0.9, "
        f"weight decay 5e-4), {train} training digits, validation 500, test 1,000; normalisation after conv1 and "
        f"conv2. Mean ± sample std over seeds; {load}.",
        "",
        "| normalisation | seeds | validation top-1 | test top-1 | test top-1 per seed | s per run |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for norm, s in summary.items():
        (vm, vs), (tm, ts) = s["val_accuracy"], s["test_accuracy"]
        per_seed = ", ".join(f"{100 * a:.1f}" for a in s["test_accuracies"])
        lines.append(
            f"| {LABELS[norm]} | {len(s['seeds'])} | {100 * vm:.2f} ± {100 * vs:.2f} % | {100 * tm:.2f} ± "
            f"{100 * ts:.2f} % | {per_seed} | {s['seconds_per_run']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy per epoch (mean ± std band) and each seed's final test accuracy, per normalisation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from minialex.training.plots import save_figure

    fig = Figure(figsize=(15, 4))
    FigureCanvasAgg(fig)
    losses, curves, tests = (fig.add_subplot(1, 3, k) for k in (1, 2, 3))
    for i, (norm, s) in enumerate(summary.items()):
        mine = [r for r in runs if r["norm"] == norm]
        epochs_done = min(len(r["history"]) for r in mine)
        loss = np.array([[r["history"][e]["train_loss"] for e in range(epochs_done)] for r in mine])
        x = np.arange(1, epochs_done + 1)
        losses.plot(x, loss.mean(axis=0), marker="o", label=LABELS[norm], color=f"C{i}")
        losses.fill_between(x, loss.min(axis=0), loss.max(axis=0), alpha=0.25, color=f"C{i}")
        mean, std = np.array(s["val_curve_mean"]) * 100, np.array(s["val_curve_std"]) * 100
        epochs = np.arange(1, len(mean) + 1)
        curves.plot(epochs, mean, marker="o", label=LABELS[norm], color=f"C{i}")
        curves.fill_between(epochs, mean - std, mean + std, alpha=0.25, color=f"C{i}")
        accs = np.array(s["test_accuracies"]) * 100
        tests.errorbar([i], [accs.mean()], yerr=[accs.std(ddof=1) if accs.size > 1 else 0], fmt="o", color=f"C{i}",
                       capsize=6)  # fmt: skip
        tests.scatter(np.full(accs.size, i + 0.15), accs, color=f"C{i}", s=12, alpha=0.7)
    losses.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss, mean (band: min–max)")
    losses.legend()
    losses.grid(alpha=0.3)
    curves.set(xlabel="epoch", ylabel="validation top-1 (%)", title="validation accuracy, mean ± std over seeds")
    curves.legend()
    curves.grid(alpha=0.3)
    tests.set_xticks(range(len(summary)), [LABELS[n] for n in summary])
    tests.set(ylabel="test top-1 (%)", title="final test accuracy: mean ± std, and each seed")
    tests.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def write_all(
    out: Path, stem: str, options: dict[str, Any], runs: list[dict[str, Any]], machine: dict | None = None
) -> None:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>-curves.png`` from the runs so far (``machine``: the recorded
    one; None: this machine, now)."""
    summary = summarise(runs)
    if machine is None:
        machine = {"platform": platform.platform(), "processor": platform.processor(), "load": load_average()}
    write_json(out / f"{stem}.json", {"recipe": options, "machine": machine, "runs": runs, "summary": summary})
    write_text_atomic(out / f"{stem}.md", table(summary, options, machine["load"]))
    plot(summary, runs, out / f"{stem}-curves.png")


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return "load average " + f.read().split()[0] + " at the end"
    except OSError:
        return "load average unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LRN vs BatchNorm vs neither in the mini AlexNet, several seeds")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    parser.add_argument("--step-size", type=int, default=4, help="epochs before the lr drop (default 4)")
    parser.add_argument("--limit-train", type=int, default=1000, help="training digits per run; 0: all (default 1000)")
    parser.add_argument("--norms", default=",".join(NORMS), help="which normalisations (default all three)")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--stem", default="ablation", help="file names: STEM.json, STEM.md, STEM-curves.png")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    norms = [n for n in args.norms.split(",") if n]
    options = recipe(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = out / f"{args.stem}.json"
    runs: list[dict[str, Any]] = []
    machine = None
    if record.exists():
        saved = json.loads(record.read_text())
        if saved.get("recipe") == options:
            runs, machine = saved["runs"], saved.get("machine")
    dataset = load_dataset("mnist5k")
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        for seed in seeds:  # seed-major: after each round every normalisation has the same number of runs
            for norm in norms:
                if any(r["norm"] == norm and r["seed"] == seed for r in runs):
                    continue
                run = run_one(options, norm, seed, dataset, Path(tmp))
                runs.append(run)
                machine = None  # a new run: the load now
                print(
                    f"{norm:9s} seed {seed}: val {100 * run['val_accuracy']:.2f} %, test "
                    f"{100 * run['test_accuracy']:.2f} %, {run['seconds']:.0f} s",
                    flush=True,
                )
                write_all(out, args.stem, options, runs)
    write_all(out, args.stem, options, runs, machine)  # also when every run was already recorded: the report and plot again
    for norm, s in summarise(runs).items():
        (tm, ts) = s["test_accuracy"]
        print(f"{LABELS[norm]:18s} test {100 * tm:.2f} ± {100 * ts:.2f} % over {len(s['seeds'])} seeds")
    return 0 if all(math.isfinite(r["test_accuracy"]) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
