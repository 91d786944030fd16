"""The ``minialex`` command (also ``python -m minialex``): argument parsing and messages, nothing else.

::

    minialex train                         # the mini AlexNet on the embedded MNIST-5k digits
    minialex train --model mini --dataset fashion-mnist --epochs 20
    minialex train --resume runs/<run>/last.safetensors
    minialex evaluate runs/<run>/best.safetensors [--ten-crop]
    minialex predict runs/<run>/best.safetensors digit.png other.npy
    minialex summary --model paper

Every error minialex raises on purpose (:class:`~minialex.errors.MinialexError`), and every bad argument,
ends as one line on stderr and a non-zero exit status; ``--debug`` shows the traceback instead. A training
run stopped by Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and exits with 130 or 143 (128 + the signal).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minialex.errors import DataError, MinialexError

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line: ``minialex train: error: ... (see 'minialex train --help')``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _bounded(convert: type, what: str, strictly_positive: bool) -> Any:
    """An argparse ``type=`` that reads a finite number > 0 (or >= 0) and names the expectation when it fails."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _bounded(int, "a positive integer", strictly_positive=True)
_non_negative_int = _bounded(int, "a non-negative integer", strictly_positive=False)
_positive_float = _bounded(float, "a positive finite number", strictly_positive=True)
_non_negative_float = _bounded(float, "a finite number >= 0", strictly_positive=False)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (see the module docstring)."""
    from minialex.data import available_datasets
    from minialex.models import VARIANTS
    from minialex.training.config import SCHEDULES, TrainConfig

    defaults = TrainConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors"
    )

    parser = _Parser(
        prog="minialex",
        description="AlexNet from scratch on NumPy or CuPy: train, evaluate, predict, summarise.",
        epilog="Run 'minialex COMMAND --help' for the options of each command. The backend is chosen by "
        "MINIALEX_BACKEND=numpy|cupy|auto.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    # -- train ---------------------------------------------------------------------------------------------
    train = sub.add_parser(
        "train",
        parents=[common],
        help="train an AlexNet (default: the mini model on the embedded MNIST-5k digits, offline)",
        description="Train an AlexNet with the paper's SGD (momentum, weight decay, learning-rate drops). Writes a "
        "run directory with config.json, history.json/.csv, metrics.json, last/best.safetensors and plots. "
        "Ctrl-C saves a checkpoint; --resume continues it exactly.",
    )
    # Options default to None so that a resumed run can tell what was given on the command line.
    arg = train.add_argument
    arg("--model", choices=VARIANTS, default=None, help=f"AlexNet variant (default {defaults.model})")
    arg("--dataset", choices=available_datasets(), default=None, help=f"data set (default {defaults.dataset})")
    arg("--epochs", type=_positive_int, default=None, help=f"epochs to train (default {defaults.epochs})")
    arg("--batch-size", type=_positive_int, default=None, help=f"images per SGD step (default {defaults.batch_size})")
    arg("--lr", type=_positive_float, default=None, help=f"initial learning rate ε (default {defaults.lr})")
    arg("--momentum", type=_non_negative_float, default=None, help=f"momentum μ (default {defaults.momentum})")
    arg(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        help=f"weight decay λ (default {defaults.weight_decay})",
    )
    arg(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="learning-rate schedule: 'plateau' divides by --lr-factor⁻¹ when the held-out error stops improving "
        f"for --patience epochs (the paper), 'step' every --step-size epochs (default {defaults.schedule})",
    )
    arg("--lr-factor", type=_positive_float, default=None, help=f"factor of each drop (default {defaults.lr_factor})")
    arg(
        "--patience",
        type=_non_negative_int,
        default=None,
        help=f"plateau: epochs without improvement (default {defaults.patience})",
    )
    arg(
        "--step-size",
        type=_positive_int,
        default=None,
        help=f"step: epochs between drops (default {defaults.step_size})",
    )
    arg("--seed", type=_non_negative_int, default=None, help=f"random seed (default {defaults.seed})")
    arg("--init", choices=("he", "paper"), default=None, help="weight initialisation (default: the model's own)")
    arg("--no-augment", dest="augment", action="store_false", default=None, help="turn data augmentation off")
    arg("--ten-crop", action="store_true", default=None, help="evaluate each epoch on the paper's ten crops")
    arg("--out-dir", default=None, help="run directory (default runs/<time>-<model>-<dataset>)")
    arg("--data-dir", default=None, help="cache for downloaded data sets (default $MINIALEX_DATA or ~/.cache/minialex)")
    arg("--no-download", dest="download", action="store_false", default=None, help="never download; fail if not cached")
    arg(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue the run saved in CHECKPOINT (e.g. last.safetensors)",
    )
    arg("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    arg("--dtype", choices=("float32", "float64"), default=None, help=argparse.SUPPRESS)
    arg("--limit-train", type=_positive_int, default=None, help=argparse.SUPPRESS)  # quick tests: a seeded subset
    arg("--limit-test", type=_positive_int, default=None, help=argparse.SUPPRESS)
    train.set_defaults(func=_train)

    # -- evaluate ------------------------------------------------------------------------------------------
    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="top-1/top-5 accuracy of a checkpoint on its data set's held-out split",
        description="Load a training checkpoint, rebuild its model, and measure top-1 and top-5 accuracy on the "
        "held-out split of the data set it was trained on.",
    )
    evaluate.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by 'minialex train'"
    )
    evaluate.add_argument("--ten-crop", action="store_true", help="average the softmax over the paper's ten crops")
    evaluate.add_argument("--data-dir", default=None, help="cache for downloaded data sets")
    evaluate.add_argument("--batch-size", type=_positive_int, default=500, help="images per forward pass (default 500)")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--limit-test", type=_positive_int, default=None, help=argparse.SUPPRESS)
    evaluate.set_defaults(func=_evaluate)

    # -- predict -------------------------------------------------------------------------------------------
    predict = sub.add_parser(
        "predict",
        parents=[common],
        help="the top-5 classes of images (PNG, JPEG or .npy) under a checkpoint",
        description="Classify image files with a trained checkpoint. Each image is converted to the model's "
        "channels and resized to its training images' size. MNIST digits are white on black: use --invert "
        "for dark digits on a light background.",
    )
    predict.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by 'minialex train'"
    )
    predict.add_argument(
        "images", metavar="IMAGE", nargs="+", help="PNG/JPEG files, or .npy arrays (H, W[, C]) or (C, H, W)"
    )
    predict.add_argument("--top", type=_positive_int, default=5, help="how many classes to show (default 5)")
    predict.add_argument("--invert", action="store_true", help="use 255 - pixel (dark ink on light paper)")
    predict.add_argument("--ten-crop", action="store_true", help="average the softmax over the ten crops")
    predict.set_defaults(func=_predict)

    # -- summary -------------------------------------------------------------------------------------------
    summary = sub.add_parser(
        "summary",
        parents=[common],
        help="each layer's output shape, parameters and FLOPs",
        description="Print an AlexNet variant's layers: output shape, parameter count, multiply-adds and FLOPs per "
        "image, with totals.",
    )
    summary.add_argument("--model", choices=VARIANTS, default="mini", help="AlexNet variant (default mini)")
    summary.add_argument(
        "--classes", type=_positive_int, default=None, help="number of classes (default: the variant's)"
    )
    summary.add_argument(
        "--in-channels", type=_positive_int, default=None, help="input channels (default: the variant's)"
    )
    summary.add_argument("--image-size", type=_positive_int, default=None, help="input side (default: the variant's)")
    summary.set_defaults(func=_summary)
    return parser


# ---------------------------------------------------------------------------------------------------------
# The commands. Each returns the exit status.


def _say(message: str) -> None:
    """One line of progress on stdout, flushed at once (``minialex train | tee log`` shows each epoch)."""
    print(message, flush=True)


def _train(args: argparse.Namespace) -> int:
    from minialex.training import TrainConfig, Trainer, format_rate

    names = (
        "model dataset epochs batch_size lr momentum weight_decay schedule lr_factor patience step_size seed init "
        "augment ten_crop out_dir data_dir download dtype limit_train limit_test"
    ).split()
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.resume is not None:
        trainer = Trainer(resume=args.resume, overrides=given, log=_say, progress=args.progress)
    else:
        trainer = Trainer(TrainConfig(**given), log=_say, progress=args.progress)
    result = trainer.fit()
    if result.interrupted_by is not None:
        name = signal.Signals(result.interrupted_by).name
        print(
            f"stopped by {name}: checkpoint saved to {result.checkpoint}\n"
            f"resume with: minialex train --resume {result.checkpoint}",
            file=sys.stderr,
        )
        return 128 + int(result.interrupted_by)
    m = result.metrics
    print(
        f"done: held-out top-1 accuracy {m['test_accuracy']:.2%}, top-5 {m['test_top5_accuracy']:.2%} after "
        f"{m['epochs']} epoch{'s' if m['epochs'] != 1 else ''} ({m['train_seconds']:.1f} s of training, {format_rate(m['images_per_second'] or 0.0)} images/s)"
    )
    print(f"run directory: {result.run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from minialex.data import load_dataset
    from minialex.training.evaluation import load_trained

    trained = load_trained(args.checkpoint)
    data_dir = args.data_dir if args.data_dir is not None else trained.config.data_dir
    data = load_dataset(trained.config.dataset, data_dir=data_dir)
    images, labels = data.test_images, data.test_labels
    if args.limit_test is not None:
        images, labels = images[: args.limit_test], labels[: args.limit_test]
    result = trained.evaluate(images, labels, ten_crop=args.ten_crop, batch_size=args.batch_size)
    views = "ten crops" if args.ten_crop else "centre view"
    if args.json:
        out = {
            "checkpoint": str(args.checkpoint),
            "dataset": trained.config.dataset,
            "images": result.count,
            "ten_crop": bool(args.ten_crop),
            "test_accuracy": result.accuracy,
            "test_top5_accuracy": result.top5_accuracy,
            "test_loss": result.loss,
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{args.checkpoint}: {trained.config.model} on {trained.config.dataset} held-out ({result.count} images, "
            f"{views}): top-1 accuracy {result.accuracy:.2%} (error {result.error:.2%}), top-5 accuracy "
            f"{result.top5_accuracy:.2%}, loss {result.loss:.4f}"
        )
    return 0


def load_image(path: str | os.PathLike[str], shape: tuple[int, int, int], invert: bool = False) -> np.ndarray:
    """Read an image file as uint8 (C, H, W) of the given shape: channels converted, resized bilinearly.

    PNG and JPEG are read with Pillow (a dependency of matplotlib); ``.npy`` arrays (H, W), (H, W, C) or
    (C, H, W), uint8 or floats in [0, 1], are read with ``allow_pickle=False``.
    """
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
                array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3) or array.size == 0:
                raise DataError(
                    f"{path}: expected an image array (H, W), (H, W, 3) or (C, H, W), got shape {array.shape}"
                )
            if array.dtype.kind == "f":
                if not np.isfinite(array).all():
                    raise DataError(f"{path}: the array holds NaN or infinite values")
                array = array * 255.0 if array.max() <= 1.0 else array
            if array.dtype.kind not in "fiub":
                raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
            image = Image.fromarray(np.clip(np.rint(array.astype(np.float64)), 0, 255).astype(np.uint8))
        else:
            image = Image.open(path)
            image.load()
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot be read as an image ({exc})") from exc
    image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if pixels.shape[0] != channels:
        raise DataError(f"{path}: cannot convert to {channels} channels")
    return 255 - pixels if invert else pixels


def _predict(args: argparse.Namespace) -> int:
    from minialex.training.evaluation import load_trained

    trained = load_trained(args.checkpoint)
    images = np.stack([load_image(p, trained.image_shape, args.invert) for p in args.images])
    probs = trained.predict(images, ten_crop=args.ten_crop)
    top = min(args.top, probs.shape[1])
    width = max(len(c) for c in trained.classes)
    for path, p in zip(args.images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        print(f"{path}:")
        for rank, k in enumerate(order, 1):
            print(f"  {rank}. {trained.classes[k]:<{width}}  {p[k]:7.2%}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from minialex.models import alexnet

    model = alexnet(args.model, num_classes=args.classes, in_channels=args.in_channels, image_size=args.image_size)
    print(model.summary())
    return 0


# ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``minialex`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = debug or getattr(args, "debug", False)
        return int(args.func(args))
    except MinialexError as exc:
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split())
        print(f"minialex: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("minialex: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
