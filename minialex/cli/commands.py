"""The ``minialex`` commands: each runs one subcommand from its parsed arguments, writes its result and
returns the exit status; and the two ways they write to stdout (progress lines that may be lost, results that
must not be).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

import numpy as np

from minialex.errors import DataError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CODES = f"""exit status:
  {EXIT_OK}    success
  {EXIT_FAILED}    the run failed: training diverged (NaN/inf), or memory ran out
  {EXIT_USAGE}    a problem to fix: bad arguments, options, data, checkpoint, backend, unwritable file
  130  stopped by Ctrl-C (SIGINT): a training run saved a checkpoint; --resume continues it
  143  stopped by SIGTERM (128 + the signal number), checkpoint saved

environment:
  MINIALEX_BACKEND  numpy (default), cupy or auto
  MINIALEX_THREADS  threads for the memory-bound passes (default: the CPUs, at most 4)
  MINIALEX_DATA     cache for downloaded data sets (default ~/.cache/minialex)"""


_stdout_lost: list[str] = []  # why stdout stopped working, once it has


def drop_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that nothing buffered fails again (at exit, too)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's captured stdout)
        pass


def _say(message: str) -> None:
    """One line of progress on stdout, flushed at once (``minialex train | tee log`` shows each epoch).

    Progress is not the result: when stdout goes away (``| head`` closed the pipe, a full disk) the run goes
    on, its messages are dropped after one note on stderr, and its run directory is written as always.
    """
    if _stdout_lost:
        return
    try:
        print(message, flush=True)
    except OSError as exc:
        _stdout_lost.append(exc.strerror or type(exc).__name__)
        drop_stdout()
        with contextlib.suppress(OSError):
            print(f"minialex: stdout lost ({_stdout_lost[0]}); carrying on without messages", file=sys.stderr)


def _out(text: str) -> None:
    """A command's result on stdout; if it cannot be written, a WriteError (one line, status 2)."""
    from minialex.errors import WriteError

    try:
        print(text, flush=True)
    except OSError as exc:
        drop_stdout()
        raise WriteError(f"the output cannot be written to stdout ({exc.strerror or exc})") from None


def train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from minialex.training import TrainConfig, Trainer
    from minialex.training.report import done_message

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if args.resume is not None:
        trainer = Trainer(resume=args.resume, overrides=given, log=_say, progress=args.progress)
    else:
        trainer = Trainer(TrainConfig(**given), log=_say, progress=args.progress)
    result = trainer.fit()
    if result.rank != 0:  # --parallel: rank 0 reports for every rank
        return EXIT_OK if result.interrupted_by is None else 128 + int(result.interrupted_by)
    if result.interrupted_by is not None:
        name = signal.Signals(result.interrupted_by).name
        launch = f"mpiexec -n {trainer.parallel.size} " if trainer.config.parallel else ""
        print(
            f"stopped by {name}: checkpoint saved to {result.checkpoint}\n"
            f"resume with: {launch}minialex train --resume {result.checkpoint}",
            file=sys.stderr,
        )
        return 128 + int(result.interrupted_by)
    _say(done_message(result.metrics))
    _say(f"run directory: {result.run_dir}")
    return EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from minialex.training import metrics
    from minialex.training.evaluation import evaluate_split, load_trained

    trained = load_trained(args.checkpoint)
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else _say  # JSON alone on stdout
    result, name, mapped = evaluate_split(
        trained, args.checkpoint, args.dataset, args.split, args.limit_val if args.split == "val" else args.limit_test,
        ten_crop=args.ten_crop, batch_size=args.batch_size, data_dir=args.data_dir, download=args.download,
        log=progress,
    )  # fmt: skip
    config = trained.config
    views = "ten crops" if args.ten_crop else "centre crop"
    split = {"val": "validation", "test": "test"}[args.split]
    if args.json:
        out = {
            "checkpoint": str(args.checkpoint),
            "dataset": name,
            "split": args.split,
            "images": result.count,
            "ten_crop": bool(args.ten_crop),
            **result.as_dict(args.split),
        }
        _out(metrics.dumps(out))  # valid JSON: a non-finite figure is null
    else:
        among = f", scored over the model's {len(trained.classes)} classes" if mapped else ""
        _out(
            f"{args.checkpoint}: {config.model} on {name}, {split} split ({result.count} images, {views}{among}): "
            f"top-1 error {result.error:.2%}, top-5 error {1 - result.top5_accuracy:.2%} (top-1 accuracy "
            f"{result.accuracy:.2%}, top-5 accuracy {result.top5_accuracy:.2%}), loss {result.loss:.4f}"
        )
    return EXIT_OK


def load_image(path: str | os.PathLike[str], shape: tuple[int, int, int], invert: bool = False) -> np.ndarray:
    """An image file as uint8 (C, H, W) of ``shape`` (see :func:`minialex.data.imagefile.load_image`)."""
    from minialex.data.imagefile import load_image as load

    return load(path, shape, invert)


def predict(args: argparse.Namespace) -> int:
    from minialex.training.evaluation import load_trained

    trained = load_trained(args.checkpoint)
    if trained.image_rule in ("paper", "torchvision"):  # a photo model: its training images' own decoding
        from minialex.data.photo import decode

        if args.invert:
            raise DataError("--invert is for digit checkpoints; this model was trained on photographs")
        images = np.stack([decode(p, trained.image_shape[1], rule=trained.image_rule) for p in args.images])
    else:
        images = np.stack([load_image(p, trained.image_shape, args.invert) for p in args.images])
    probs = trained.predict(images, ten_crop=args.ten_crop)
    top = min(args.top, probs.shape[1])
    width = max(len(c) for c in trained.classes)
    lines = []
    for path, p in zip(args.images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        lines.append(f"{path}:")
        lines += [f"  {rank}. {trained.classes[k]:<{width}}  {p[k]:7.2%}" for rank, k in enumerate(order, 1)]
    _out("\n".join(lines))
    return 0


def convert(args: argparse.Namespace) -> int:
    from minialex.training.convert import convert_torchvision

    convert_torchvision(args.weights, args.output, classes_file=args.classes, overwrite=args.force, log=_say)
    return EXIT_OK


def summary(args: argparse.Namespace) -> int:
    from minialex.layers.base import shapes_only
    from minialex.models import alexnet

    with shapes_only():  # shapes and counts only: no weight is allocated, whatever the sizes asked for
        model = alexnet(
            args.model, num_classes=args.classes, in_channels=args.in_channels, image_size=args.image_size,
            widths=args.widths, norm=args.norm, norm_at=args.norm_at,
        )  # fmt: skip
    _out(model.summary())
    return EXIT_OK


