"""One epoch of the ``paper`` model on photographs through the trainer: does training ever wait for the data?

    python -m benchmarks.pipeline_epoch                          # 320 train + 64 val generated 500×375 JPEGs
    python -m benchmarks.pipeline_epoch --train 640 --val 64 --batch 64
    python -m benchmarks.pipeline_epoch --folder ~/data/imagenette2-320 --limit-train 1024
    python -m benchmarks.pipeline_epoch --tiny                   # seconds: the mini model, 24 photos (tests)

Everything is measured in one fresh interpreter (``--child``), so that its peak memory is this run's alone:

1. the decoded-image cache is built from scratch (the first epoch's decoding; :func:`minialex.data.load_dataset`);
2. ``minialex train --model paper --dataset FOLDER --epochs 1`` runs in-process, and its history row gives the
   training images/s and ``data_wait_seconds``, the time the steps spent blocked waiting for the prefetcher
   (:mod:`minialex.training.feed`), against ``train_seconds``;
3. on the same cache, the pipeline alone: uint8 batches gathered by a :class:`~minialex.data.Prefetcher` (what
   the host delivers to a GPU), and the same plus the paper's augmentation on the CPU (``InputPipeline.train``);
4. the process's peak resident set (VmHWM) over all of it, and its RSS once the cache is open.

The photos are those of :mod:`benchmarks.pipeline` (crops and scalings of scikit-image's photographs, 500×375
JPEGs of quality 90, ten classes), in train/ and val/ (Imagenette's layout: val/ is the test split, a tenth of
train/ the validation split). Results: ``benchmarks/results/pipeline-<machine>-epoch.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pipeline import RESULTS, WORK, _shown, generate, log, write_results


def make_folder(work: Path, train: int, val: int, classes: int) -> Path:
    """``work/epoch-<train>-<val>/{train,val}``: generated photos (kept between runs), linked into one folder."""
    root = work / f"epoch-{train}-{val}-{classes}"
    sources = {
        "train": generate(work / f"epoch-src-train-{train}-{classes}", train, classes=classes),
        "val": generate(work / f"epoch-src-val-{val}-{classes}", val, classes=classes, seed=1),
    }
    root.mkdir(parents=True, exist_ok=True)
    for split, source in sources.items():
        link = root / split
        if not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)
            os.symlink(source / "train", link)
    return root


def _rates(images: Any, batch: int, pipeline: Any) -> dict[str, float]:
    """images/s of one pass over ``images`` in a shuffled order: uint8 batches, and with the CPU augmentation."""
    from minialex.data import Prefetcher

    order = np.random.default_rng(0).permutation(len(images))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    out = {}
    for key, use in (("uint8_batches", lambda b: None), ("augmented_float32", pipeline.train)):
        started = time.perf_counter()
        with Prefetcher.gather(images, batches, ahead=3) as stream:
            for b in stream:
                use(b)
        out[key] = len(order) / (time.perf_counter() - started)
    return out


def child(args: argparse.Namespace) -> None:
    """Steps 1–4 of the module docstring in this interpreter; prints one ``JSON:`` line."""
    from benchmarks.memory import peak_mb, rss_mb
    from minialex.cli import main
    from minialex.data import InputPipeline, load_dataset
    from minialex.data.imagecache import CACHE_FOLDER

    root = Path(args.child)
    shutil.rmtree(root / CACHE_FOLDER, ignore_errors=True)
    started = time.perf_counter()
    dataset = load_dataset(root)
    build_s = time.perf_counter() - started
    rss_open = rss_mb()
    out = Path(args.run_dir)
    shutil.rmtree(out, ignore_errors=True)
    argv = ["train", "--model", args.model, "--dataset", str(root), "--epochs", "1", "--batch-size", str(args.batch)]
    argv += ["--lr", "0.01", "--out-dir", str(out), "--no-progress"]
    argv += ["--limit-train", str(args.limit_train)] if args.limit_train else []
    argv += ["--limit-val", str(args.limit_val), "--limit-test", str(args.limit_val)] if args.limit_val else []
    started = time.perf_counter()
    status = main(argv)
    run_s = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"minialex train exited with status {status}")
    row = json.loads((out / "history.json").read_text())[0]
    metrics = json.loads((out / "metrics.json").read_text())
    input_shape = (
        (3, 227, 227) if args.model == "paper" else (3, 224, 224) if args.model == "torchvision" else (3, 32, 32)
    )
    pipeline = InputPipeline.for_dataset(dataset, input_shape)
    rates = _rates(dataset.train_images, args.batch, pipeline)
    result = {
        "train_images": metrics["train_images"],
        "val_images": metrics["val_images"],
        "test_images": metrics["test_images"],
        "build_s": build_s,
        "files": sum(len(dataset.files[s]) for s in ("train", "val", "test")),
        "build_images_per_s": sum(len(dataset.files[s]) for s in ("train", "val", "test")) / build_s,
        "run_s": run_s,
        "train_seconds": row["train_seconds"],
        "eval_seconds": row["eval_seconds"],
        "data_wait_seconds": row["data_wait_seconds"],
        "train_images_per_s": row["images_per_second"],
        "pipeline_images_per_s": rates,
        "rss_after_cache_open_mb": rss_open,
        "peak_mb": peak_mb(),
        "summary": dataset.summary,
        "pipeline": pipeline.describe(),
    }
    print("JSON:" + json.dumps(result), flush=True)


def markdown(r: dict[str, Any]) -> str:
    m, train = r["machine"], r["train_images_per_s"]
    p = r["pipeline_images_per_s"]
    wait, steps = r["data_wait_seconds"], r["train_seconds"]
    lines = [
        f"# One epoch of `{r['model']}` on photos through the trainer, {m['cpu']} ({m['usable_cpus']} CPUs)",
        "",
        f"Made by `{r['command'].strip()}` on {r['started']} (one run; load average at the end "
        f"{[round(v, 1) for v in r['load_average'] or []]}). Data: {r['summary']}. BLAS: {r['blas_line']}.",
        "",
        "| what | figure |",
        "|---|---:|",
        f"| cache build (first epoch's decoding), {r['files']} photos | {r['build_s']:.1f} s, "
        f"{r['build_images_per_s']:,.0f} images/s |",
        f"| training steps of the epoch ({r['train_images']} images, batch {r['batch']}) | {steps:.1f} s, "
        f"{train:,.1f} images/s |",
        f"| of which blocked waiting for the prefetcher | {wait:.3f} s ({100 * wait / max(steps, 1e-9):.2f} %) |",
        f"| evaluation of the validation split ({r['val_images']} images) | {r['eval_seconds']:.1f} s |",
        f"| the whole `minialex train` (initial-loss check, checkpoints, test split, plots) | {r['run_s']:.1f} s |",
        f"| the pipeline alone from the cache: uint8 batches | {p['uint8_batches']:,.0f} images/s "
        f"({p['uint8_batches'] / train:,.0f}× training) |",
        f"| the pipeline alone: + the paper's augmentation on the CPU | {p['augmented_float32']:,.0f} images/s "
        f"({p['augmented_float32'] / train:,.0f}× training) |",
        f"| peak RSS of the process (cache build, training, the pipeline) | {r['peak_mb']:,.0f} MB |",
        f"| RSS once the cache is open (memory-mapped) | {r['rss_after_cache_open_mb']:,.0f} MB |",
        "",
        f"Pipeline: {r['pipeline']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_epoch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=320, help="generated photos in train/ (default 320)")
    parser.add_argument("--val", type=int, default=64, help="generated photos in val/, the test split (default 64)")
    parser.add_argument("--classes", type=int, default=10, help="classes of the generated photos (default 10)")
    parser.add_argument("--folder", help="use this image folder instead of generated photos")
    parser.add_argument("--model", default="paper", choices=("paper", "torchvision", "mini"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--limit-val", type=int, default=None, help="also limits the test split")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="results file stem (default: pipeline-<machine>-epoch)")
    parser.add_argument("--tiny", action="store_true", help="seconds: the mini model on 24 + 8 photos")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.tiny:
        args.train, args.val, args.classes, args.model, args.batch = 24, 8, 4, "mini", 8
    from benchmarks.machine import blas_line, describe
    from benchmarks.run import _machine_name

    root = (
        Path(args.folder).expanduser().resolve()
        if args.folder
        else make_folder(args.work, args.train, args.val, args.classes)
    )
    log(f"one epoch of {args.model} on {root}")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "benchmarks.pipeline_epoch", "--child", str(root), "--model", args.model]
    command += ["--batch", str(args.batch), "--run-dir", str(args.work / "epoch-run")]
    command += ["--limit-train", str(args.limit_train)] if args.limit_train else []
    command += ["--limit-val", str(args.limit_val)] if args.limit_val else []
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=6 * 3600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")), None)
    if line is None:
        raise SystemExit(f"the measuring process failed (status {proc.returncode}): {proc.stderr[-1500:]}")
    info = describe()
    results = {
        "command": "python -m benchmarks.pipeline_epoch " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": info,
        "blas_line": blas_line(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "folder": _shown(root),
        "model": args.model,
        "batch": args.batch,
        **json.loads(line[5:]),
    }
    results["summary"] = results["summary"].replace(str(root), results["folder"])  # no absolute path in results
    text = markdown(results)
    print(text)
    stem = args.name or "pipeline-" + _machine_name(info, "cpu") + "-epoch" + ("-tiny" if args.tiny else "")
    write_results(args.out, stem, text, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
