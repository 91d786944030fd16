"""The photo pipeline's speed and memory: is the data ever what training waits for?

    python -m benchmarks.pipeline                        # 2,000 generated photos, 3 rounds (minutes on 2 cores)
    python -m benchmarks.pipeline --images 500 --rounds 2
    python -m benchmarks.pipeline --folder ~/data/imagenette2-320 --limit 3000
    python -m benchmarks.pipeline --tiny                 # seconds: a smoke run (the tests use it)

What it measures, side by side in one process (A B A B ..., medians of ``--rounds``, after a warm-up that
puts every file in the page cache, so both sides read from memory):

* **cache build** (the first epoch): ``minialex.data.imagecache.open_cache`` from scratch (the JPEG decoder's
  ``draft`` scaling, every CPU decoding, the cache and the statistics written), with all threads and with
  one; against **the plain PIL loop** torchvision's ``ImageFolder`` runs by default (``DataLoader``
  ``num_workers=0``): open, ``convert("RGB")``, ``Resize(256)`` (bilinear), ``CenterCrop(256)``, to an array.
* **epochs from the cache** (later epochs), batch 128 in a shuffled order: uint8 batches gathered from the
  memory-mapped cache by a :class:`~minialex.data.Prefetcher` (what the host must deliver to a GPU), and the
  same plus the paper's augmentation on the CPU (``InputPipeline.train``: 227×227 crops, flips, PCA noise,
  the mean image, float32), which is what a CPU training run pays.
* **the paper model's training step** (batch 128, NumPy): the images/s recorded in
  ``benchmarks/results/<machine>.json`` by ``python -m benchmarks.run`` when present, else measured here
  (``--step`` measures it in any case, at ``--step-batch``).
* **peak memory of a build** (``--memory 1000,4000``): each size built in a fresh interpreter, peak RSS
  (VmHWM) reported, to show that it does not grow with the number of images.

The generated photos are random crops, scalings and flips of the photographs scikit-image ships (or smooth
synthetic images without it), saved as 500×375 / 375×500 JPEGs of quality 90 — the size of a typical
ImageNet or Imagenette photo. Results: ``benchmarks/results/pipeline-<machine>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
WORK = RESULTS / "tmp" / "pipeline"
PHOTO_SIZE = (500, 375)


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (results files are committed)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        return path.resolve().relative_to(repo).as_posix()
    except ValueError:
        return str(path)


def log(message: str) -> None:
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)


# -- the data -----------------------------------------------------------------------------------------------
def _sources() -> list[np.ndarray]:
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    folder = Path(spec.submodule_search_locations[0], "data") if spec and spec.submodule_search_locations else None
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg"]
    names += ["hubble_deep_field.jpg", "ihc.png", "motorcycle_right.png"]
    found = [folder / n for n in names if folder is not None and (folder / n).is_file()]
    if found:
        return [np.asarray(Image.open(p).convert("RGB")) for p in found]
    rng = np.random.default_rng(0)  # no scikit-image: smooth synthetic scenes with some texture
    y, x = np.mgrid[0:600, 0:800] / 800
    out = []
    for _ in range(6):
        planes = [
            127 + 90 * np.sin(rng.uniform(2, 9) * x + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 9) * y)
            for _ in range(3)
        ]
        out.append(np.clip(np.stack(planes, -1) + rng.normal(0, 12, (600, 800, 3)), 0, 255).astype(np.uint8))
    return out


def generate(root: Path, count: int, size: tuple[int, int] = PHOTO_SIZE, classes: int = 10, seed: int = 0) -> Path:
    """``root/train/<class>/<i>.jpg``: ``count`` photo-like JPEGs of ``size`` or its transpose (reused when
    already generated)."""
    from PIL import Image

    stamp = root / ".generated"
    if stamp.is_file() and stamp.read_text() == f"{count} {size} {classes} {seed}":
        return root
    shutil.rmtree(root, ignore_errors=True)
    sources, rng = _sources(), np.random.default_rng(seed)
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        side = int(rng.uniform(0.45, 1.0) * min(h, w))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        shape = size if rng.random() < 0.7 else size[::-1]
        crop = src[top : top + side, left : left + side]
        image = Image.fromarray(crop[:, ::-1] if rng.random() < 0.5 else crop).resize(shape, Image.Resampling.BICUBIC)
        folder = root / "train" / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)
    stamp.write_text(f"{count} {size} {classes} {seed}")
    return root


def image_files(root: Path, limit: int | None) -> list[Path]:
    from minialex.data.folder import scan

    listing = scan(root)
    files = [root / e.path for split in listing.files.values() for e in split]
    return files[:limit] if limit else files


# -- the two ways of decoding ---------------------------------------------------------------------------------
def plain_pil_loop(paths: list[Path]) -> None:
    """torchvision's default ImageFolder path: pil_loader, Resize(256), CenterCrop(256), to an array."""
    from PIL import Image

    for path in paths:
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        w, h = image.size
        ow, oh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        image = image.resize((ow, oh), Image.Resampling.BILINEAR)
        left, top = round((ow - 256) / 2), round((oh - 256) / 2)
        np.asarray(image.crop((left, top, left + 256, top + 256)))


def remove_cache(root: Path) -> None:
    from minialex.data.imagecache import CACHE_FOLDER

    shutil.rmtree(root / CACHE_FOLDER, ignore_errors=True)


def minialex_build(root: Path, workers: int) -> Any:
    """The first epoch: list, decode and write the cache (and its statistics) from scratch."""
    from minialex.data.imagecache import open_cache

    return open_cache(root, workers=workers)


def _timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process: every thread) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


# -- epochs from the cache ------------------------------------------------------------------------------------
def epoch_batches(n: int, batch: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)] or [order]


def epoch_uint8(images: np.ndarray, batches: list[np.ndarray]) -> None:
    from minialex.data import Prefetcher

    with Prefetcher.gather(images, batches, ahead=3) as stream:
        for _ in stream:
            pass


def epoch_augmented(images: np.ndarray, batches: list[np.ndarray], pipeline: Any) -> None:
    from minialex.data import Prefetcher

    with Prefetcher.gather(images, batches, ahead=3) as stream:
        for batch in stream:
            pipeline.train(batch)


# -- the training step ----------------------------------------------------------------------------------------
def recorded_step(batch: int = 128) -> dict[str, Any] | None:
    """The paper model's minialex training step (images/s) from the main benchmark's results, if any."""
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem.startswith("pipeline-") or path.stem.endswith(("-quick", "-tiny")):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for step in data.get("steps", []):
            seconds = (step.get("median_s") or {}).get("minialex")
            if (
                step.get("variant") == "paper"
                and step.get("batch") == batch
                and seconds
                and step.get("device", "cpu") == "cpu"
            ):
                return {"images_per_s": batch / seconds, "batch": batch, "source": f"benchmarks/results/{path.name}"}
    return None


def measured_step(batch: int, repeats: int = 2) -> dict[str, Any]:
    from benchmarks import bench

    model = bench.make_minialex("paper")
    x, labels = bench.batch(model, batch)
    step = bench.minialex_step_fn(model, x, labels)
    step()  # warm-up
    times = [_timed(step)[0] for _ in range(repeats)]
    return {"images_per_s": batch / statistics.median(times), "batch": batch, "source": "measured in this run"}


# -- memory -----------------------------------------------------------------------------------------------------
def memory_child(root: Path) -> None:
    """Build the cache of ``root`` in this (fresh) interpreter and print its peak memory as JSON."""
    from benchmarks.memory import peak_mb, rss_mb
    from minialex.data import imagecache

    ready = rss_mb()
    files = len(image_files(root, None))
    remove_cache(root)
    minialex_build(root, workers=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    print(
        "JSON:"
        + json.dumps({"images": files, "rss_ready_mb": ready, "peak_mb": peak_mb(), "module": imagecache.__name__})
    )


def measure_memory(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        root = generate(work / f"memory-{n}", n)
        log(f"memory: building the cache of {n} images in a fresh interpreter")
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.pipeline", "--memory-child", str(root)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=3600,
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")), None)
        if line is None:
            raise RuntimeError(f"memory child failed: {proc.stderr[-800:]}")
        rows.append(json.loads(line[5:]))
    return rows


# -- the run ----------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.machine import blas_line, describe
    from minialex.data import InputPipeline, load_dataset

    info = describe()
    cpus = info["usable_cpus"]
    size = args.photo_size
    if args.folder:
        root = Path(args.folder).expanduser().resolve()
    else:
        root = generate(args.work / f"photos-{args.images}-{size[0]}x{size[1]}", args.images, size)
    files = image_files(root, args.limit)
    if args.folder and args.limit:  # benchmark a sub-set of a big folder: link its first files into the work dir
        sub = args.work / f"subset-{args.limit}"
        shutil.rmtree(sub, ignore_errors=True)
        for path in files:
            target = sub / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target)
        root, files = sub, image_files(sub, None)
    log(f"{len(files)} photos in {root}; {cpus} CPUs; {blas_line()}")
    for path in files:  # warm-up: every file in the page cache, for both sides alike
        path.read_bytes()

    build: dict[str, list[float]] = {"minialex": [], "minialex_1_thread": [], "pil_loop": []}
    build_cpu: dict[str, list[float]] = {k: [] for k in build}
    for r in range(args.rounds):
        for key, fn, arg in (
            ("minialex", minialex_build, cpus),
            ("pil_loop", plain_pil_loop, None),
            ("minialex_1_thread", minialex_build, 1),
        ):
            remove_cache(root)  # not timed: the previous round's cache
            wall, cpu = _timed(fn, root, arg) if arg is not None else _timed(fn, files)
            build[key].append(wall)
            build_cpu[key].append(cpu)
        log(f"build round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in build.items()))

    dataset = load_dataset(root)
    images = dataset.train_images
    pipeline = InputPipeline.for_dataset(dataset, (3, 227, 227))
    batches = epoch_batches(len(images), args.batch, seed=0)
    served = sum(len(b) for b in batches)
    epoch_augmented(images, batches[:1], pipeline)  # warm-up: the cache's pages and the pipeline's buffers
    epochs: dict[str, list[float]] = {"uint8_batches": [], "augmented_float32": []}
    epochs_cpu: dict[str, list[float]] = {k: [] for k in epochs}
    for r in range(args.rounds):
        for key, timing in (
            ("uint8_batches", _timed(epoch_uint8, images, batches)),
            ("augmented_float32", _timed(epoch_augmented, images, batches, pipeline)),
        ):
            epochs[key].append(timing[0])
            epochs_cpu[key].append(timing[1])
        log(f"epoch round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in epochs.items()))

    step = None if args.step else recorded_step()
    if step is None and not args.tiny:
        log(f"measuring the paper model's training step at batch {args.step_batch}")
        step = measured_step(args.step_batch)
    memory = measure_memory(args.memory, args.work) if args.memory else []

    def rate(times: list[float], count: int) -> float:
        return count / statistics.median(times)

    results = {
        "command": "python -m benchmarks.pipeline " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": info,
        "blas_line": blas_line(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "folder": _shown(root),
        "images": len(files),
        "train_images": len(images),
        "batch": args.batch,
        "rounds": args.rounds,
        "photo_size": None if args.folder else list(size),
        "build_s": build,
        "build_cpu_s": build_cpu,
        "epoch_s": epochs,
        "epoch_cpu_s": epochs_cpu,
        "build_images_per_s": {k: rate(v, len(files)) for k, v in build.items()},
        "build_images_per_cpu_s": {k: rate(v, len(files)) for k, v in build_cpu.items()},
        "epoch_images_per_s": {k: rate(v, served) for k, v in epochs.items()},
        "epoch_images_per_cpu_s": {k: rate(v, served) for k, v in epochs_cpu.items()},
        "step": step,
        "memory": memory,
        "pipeline": pipeline.describe(),
    }
    return results


def markdown(results: dict[str, Any]) -> str:
    b, e, step = results["build_images_per_s"], results["epoch_images_per_s"], results["step"]
    bc, ec = results["build_images_per_cpu_s"], results["epoch_images_per_cpu_s"]
    m = results["machine"]
    cpus = m["usable_cpus"]
    what = f"{results['images']} photos" + (
        f" of {results['photo_size'][0]}×{results['photo_size'][1]}" if results.get("photo_size") else ""
    )
    lines = [
        f"# The photo pipeline: {what}, {m['cpu']} ({cpus} CPUs)",
        "",
        f"Made by `{results['command'].strip()}` on {results['started']}; medians of {results['rounds']} rounds, "
        f"run side by side (A B A B); load average at the end {[round(v, 1) for v in results['load_average'] or []]}. "
        f"BLAS: {results['blas_line']}. *images/s* is wall-clock; *images per CPU-second* counts the CPU time of "
        "every thread, which is what a busy machine cannot hide: on idle cores a threaded build reaches about "
        "CPUs × that figure.",
        "",
        "| stage | images/s | ratio | images per CPU-second | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("minialex", f"cache build, minialex ({cpus} threads)"),
        ("minialex_1_thread", "cache build, minialex (1 thread)"),
        ("pil_loop", "plain PIL loop (torchvision ImageFolder default)"),
    ):
        lines.append(
            f"| {label} | {b[key]:,.0f} | {b[key] / b['pil_loop']:.2f}× | {bc[key]:,.0f} | {bc[key] / bc['pil_loop']:.2f}× |"
        )
    train = step["images_per_s"] if step else None
    for key, label in (
        ("uint8_batches", "epoch from the cache: uint8 batches"),
        ("augmented_float32", "epoch from the cache: + augmentation (CPU, float32)"),
    ):
        ratio = f"{e[key] / train:,.0f}× the step" if train else "–"
        lines.append(f"| {label}, batch {results['batch']} | {e[key]:,.0f} | {ratio} | {ec[key]:,.0f} | |")
    if step:
        lines.append(
            f"| paper training step, batch {step['batch']} (NumPy; {step['source']}) | {train:,.1f} | 1× | | |"
        )
    if results["memory"]:
        lines += ["", "| cache build of | peak RSS (MB) | RSS before the build (MB) |", "|---:|---:|---:|"]
        lines += [
            f"| {r['images']:,} images | {r['peak_mb']:,.0f} | {r['rss_ready_mb']:,.0f} |" for r in results["memory"]
        ]
    lines += ["", f"Pipeline: {results['pipeline']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="generated photos (default 2000)")
    parser.add_argument(
        "--photo-size",
        type=lambda t: tuple(int(v) for v in t.lower().split("x")),
        default=PHOTO_SIZE,
        help="size of the generated photos, WxH (default 500x375, an ImageNet photo)",
    )
    parser.add_argument("--folder", help="benchmark this image folder instead of generated photos")
    parser.add_argument("--limit", type=int, help="with --folder: only its first N images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--step", action="store_true", help="measure the training step even if a result exists")
    parser.add_argument("--step-batch", type=int, default=128)
    parser.add_argument(
        "--memory", type=lambda s: [int(v) for v in s.split(",") if v], default=[], help="e.g. 1000,4000"
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where generated photos are kept between runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="results file stem (default: pipeline-<machine>)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (no step, no memory)")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    if args.tiny:
        args.images, args.rounds, args.batch, args.memory, args.photo_size = 24, 1, 8, [], (200, 150)
    results = run(args)
    text = markdown(results)
    print(text)
    from benchmarks.run import _machine_name

    stem = args.name or "pipeline-" + _machine_name(results["machine"], "cpu") + ("-tiny" if args.tiny else "")
    write_results(args.out, stem, text, results)
    return 0


def write_results(out: Path, stem: str, text: str, results: dict[str, Any]) -> None:
    """``out/<stem>.md`` (the report) and ``out/<stem>.json`` (every figure)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    log(f"written: {out / stem}.md, .json")


if __name__ == "__main__":
    raise SystemExit(main())
