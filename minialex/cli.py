"""The ``minialex`` command (also ``python -m minialex``): argument parsing and messages, nothing else.

::

    minialex train                         # the mini AlexNet on the embedded MNIST-5k digits
    minialex train --model mini --dataset fashion-mnist --epochs 20
    minialex train --resume runs/<run>/last.safetensors
    minialex train --model paper --dataset ~/data/imagenette2-320   # a folder of photos: train/<class>/*.jpg
    minialex evaluate runs/<run>/best.safetensors [--split val|test] [--ten-crop] [--dataset FOLDER]
    minialex predict runs/<run>/best.safetensors digit.png other.npy
    minialex predict runs/<run>/best.safetensors photo.jpg          # top-5 class names of a photo
    minialex convert alexnet-owt-7be5be79.pth -o alexnet-imagenet.safetensors   # torchvision's weights
    minialex summary --model paper

Errors never show a traceback (``--debug`` shows it): each ends as one line on stderr naming the problem,
and the exit status says what happened:

====  ==========================================================================================
0     success
1     the run failed: training diverged (NaN or infinite loss, gradient or weight), or memory ran out
2     a problem to fix in the command: a bad argument or option, data, checkpoint, backend
      (``MINIALEX_BACKEND``, ``MINIALEX_THREADS``), a file that cannot be written, an unusable input
130   stopped by Ctrl-C (SIGINT); a training run saved a checkpoint to resume from
143   stopped by SIGTERM (128 + the signal number, as a shell reports it); a checkpoint was saved
====  ==========================================================================================

Output. Progress lines of ``train`` go to stdout; if stdout goes away (``| head`` closed the pipe, a full disk)
the run goes on without them and writes its run directory as always. A command's result that cannot be written
is one line on stderr (status 2). Characters the terminal's encoding lacks are escaped (``\\xd7``), and
``--json`` output is valid JSON (a non-finite figure is ``null``).

The package is imported inside the error handling (:func:`main`): a bad ``MINIALEX_BACKEND`` or
``MINIALEX_THREADS`` raises when the backend or the thread pool is first imported, and must end as one
line too, ``--help`` included.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minialex.errors import DataError, MinialexError, TrainingDivergedError

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


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line: ``minialex train: error: ... (see 'minialex train --help')``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _typed(rule: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` from an option's :class:`~minialex.training.config.Rule`: parse, then check."""
    from minialex.errors import ConfigError

    def parse(text: str) -> Any:
        try:
            return rule.check(rule.kind(text), "value")
        except (ValueError, ConfigError):
            raise argparse.ArgumentTypeError(f"expected {rule.describe()}, got {text!r}") from None

    return parse


def _widths_argument(text: str) -> list[int]:
    """An argparse ``type=`` for ``--widths``: positive integers separated by commas."""
    from minialex.errors import ConfigError
    from minialex.training.config import parse_widths

    try:
        return parse_widths(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None


def _dataset_argument(names: list[str]) -> Callable[[str], str]:
    """An argparse ``type=`` for ``--dataset``: a registered data set's name, or an existing image folder."""

    def parse(text: str) -> str:
        if text.strip().lower() in names:
            return text.strip().lower()
        if os.path.isdir(os.path.expanduser(text)):
            return os.path.abspath(os.path.expanduser(text))  # the run finds it again from any directory
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(names)}, or an image folder (train/<class>/*.jpg), got {text!r}"
            + (" (no such folder)" if os.sep in text or "/" in text else "")
        )

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (see the module docstring). Imports the package (the backend)."""
    from minialex.data import available_datasets
    from minialex.models import VARIANTS
    from minialex.training.config import CHOICES, POSITIVE_INT, RULES, TrainConfig

    defaults = TrainConfig()
    positive = _typed(POSITIVE_INT)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors"
    )
    parser = _Parser(
        prog="minialex",
        description="AlexNet from scratch on NumPy or CuPy: train, evaluate, predict, summarise.",
        epilog="Run 'minialex COMMAND --help' for the options of each command.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    # -- train ---------------------------------------------------------------------------------------------
    train = sub.add_parser(
        "train",
        parents=[common],
        help="train an AlexNet (default: the mini model on the embedded MNIST-5k digits, offline)",
        description="Train an AlexNet with the paper's SGD (momentum, weight decay, learning-rate drops). The "
        "validation split decides the schedule and best.safetensors; the test split is evaluated at the end and "
        "only reported. Writes a run directory with config.json, history.json/.csv, metrics.json, "
        "last/best.safetensors and plots. Ctrl-C saves a checkpoint; --resume continues it exactly. "
        "Exit status: see 'minialex --help'.",
    )
    # Options default to None so that a resumed run can tell what was given on the command line.
    arg = train.add_argument

    def numeric(name: str, text: str, hidden: bool = False) -> None:
        default = getattr(defaults, name)
        shown = text if default is None else f"{text} (default {default})"
        arg(
            "--" + name.replace("_", "-"),
            type=_typed(RULES[name]),
            default=None,
            help=argparse.SUPPRESS if hidden else shown,
        )

    arg("--model", choices=CHOICES["model"], default=None, help=f"AlexNet variant (default {defaults.model})")
    arg(
        "--dataset",
        type=_dataset_argument(available_datasets()),
        default=None,
        metavar="NAME|FOLDER",
        help=f"data set: {', '.join(available_datasets())}, or a folder of photos in the ImageNet layout "
        f"(train/<class>/*.jpg, optional val/ and test/; decoded once into a cache) (default {defaults.dataset})",
    )
    numeric("epochs", "epochs to train")
    numeric("batch_size", "images per SGD step")
    arg(
        "--optimizer", choices=CHOICES["optimizer"], default=None,
        help=f"'sgd' (the paper's, with momentum), 'adam' or 'adamw' (default {defaults.optimizer})",
    )  # fmt: skip
    numeric("lr", "initial learning rate ε (default 0.02 for sgd, 0.001 for adam and adamw)")
    numeric("momentum", "SGD's momentum μ")
    numeric("weight_decay", "weight decay λ (default 5e-4 for sgd, 0 for adam, 0.01 for adamw)")
    arg(
        "--schedule",
        choices=CHOICES["schedule"],
        default=None,
        help="learning-rate schedule: 'plateau' divides by --lr-factor⁻¹ when the validation error stops "
        f"improving for --patience epochs (the paper), 'step' every --step-size epochs (default {defaults.schedule})",
    )
    numeric("lr_factor", "factor of each drop")
    numeric("patience", "plateau: epochs without improvement before a drop")
    numeric("max_reductions", "plateau: at most this many drops")
    numeric("step_size", "step: epochs between drops")
    numeric("seed", "random seed")
    arg("--init", choices=("he", "paper"), default=None, help="weight initialisation (default: the model's own)")
    _model_options(arg)
    arg("--no-augment", dest="augment", action="store_false", default=None, help="turn data augmentation off")
    arg("--ten-crop", action="store_true", default=None, help="evaluate on the paper's ten crops")
    numeric("eval_batch_size", "images per forward pass in evaluation (default: --batch-size)")
    arg("--out-dir", default=None, help="run directory (default runs/<time>-<model>-<dataset>)")
    arg("--data-dir", default=None, help="cache for downloaded data sets (default $MINIALEX_DATA or ~/.cache/minialex)")
    arg("--no-download", dest="download", action="store_false", default=None, help="never download; fail if not cached")
    arg("--resume", metavar="CHECKPOINT", default=None, help="continue the run saved in CHECKPOINT (last.safetensors)")
    arg("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    arg("--dtype", choices=CHOICES["dtype"], default=None, help=argparse.SUPPRESS)
    arg(
        "--mean",
        choices=CHOICES["mean"],
        default=None,
        help="photo folders: subtract the training images' mean 'image' pixel by pixel (the paper) or their "
        f"per-'channel' mean (default {defaults.mean})",
    )
    for split in ("train", "val", "test"):  # quick tests: a seeded subset of each split
        numeric(f"limit_{split}", "", hidden=True)
    numeric("dropout", "drop probability of every dropout layer, 0 for none (default: the model's, 0.5)")
    arg(
        "--parallel",
        choices=CHOICES["parallel"][1:],
        default=None,
        help="train over MPI ranks: 'data' (mpiexec -n N: the batch shared out, gradients summed) or 'model' "
        "(mpiexec -n 2: the paper's two columns of kernels); see docs/distributed.md (default: one process)",
    )
    train.set_defaults(func=_train)

    # -- evaluate ------------------------------------------------------------------------------------------
    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
        help="top-1/top-5 accuracy of a checkpoint on its data set's test (or validation) split",
        description="Load a training checkpoint, rebuild its model, and measure loss, top-1 and top-5 accuracy on "
        "the test split (or, with --split val, the validation split) of the data set it was trained on.",
    )
    evaluate.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by 'minialex train'"
    )
    evaluate.add_argument("--split", choices=("test", "val"), default="test", help="the split to score (default test)")
    evaluate.add_argument("--ten-crop", action="store_true", help="average the softmax over the paper's ten crops")
    evaluate.add_argument(
        "--dataset",
        default=None,
        metavar="FOLDER",
        help="evaluate on this image folder instead of the checkpoint's data set (a moved folder; for a "
        "converted ImageNet model, an ImageNet or Imagenette folder: its class folders are matched by name)",
    )
    evaluate.add_argument("--data-dir", default=None, help="cache for downloaded data sets")
    evaluate.add_argument("--no-download", dest="download", action="store_false", help="never download")
    evaluate.add_argument("--batch-size", type=positive, default=500, help="images per forward pass (default 500)")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--limit-val", type=positive, default=None, help=argparse.SUPPRESS)
    evaluate.add_argument("--limit-test", type=positive, default=None, help=argparse.SUPPRESS)
    evaluate.set_defaults(func=_evaluate)

    # -- predict -------------------------------------------------------------------------------------------
    predict = sub.add_parser(
        "predict",
        parents=[common],
        help="the top-5 classes of images (PNG, JPEG or .npy) under a checkpoint",
        description="Classify image files with a trained checkpoint and print the most probable class names. A "
        "model trained on photographs (or converted from torchvision) reads any JPEG or PNG as it was trained: "
        "shorter side to 256, the central 256×256 square, then the centre crop (or --ten-crop) of the model's "
        "input minus the training data's mean. For other models each image is converted to the model's "
        "channels and resized to its training images' size; MNIST digits are white on black: use --invert "
        "for dark digits on a light background.",
    )
    predict.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by 'minialex train'"
    )
    predict.add_argument(
        "images", metavar="IMAGE", nargs="+", help="PNG/JPEG files, or .npy arrays (H, W[, C]) or (C, H, W)"
    )
    predict.add_argument("--top", type=positive, default=5, help="how many classes to show (default 5)")
    predict.add_argument("--invert", action="store_true", help="use 255 - pixel (dark ink on light paper)")
    predict.add_argument("--ten-crop", action="store_true", help="average the softmax over the ten crops")
    predict.set_defaults(func=_predict)

    # -- convert -------------------------------------------------------------------------------------------
    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="torchvision's pretrained AlexNet weights (.pth or .safetensors) as a minialex checkpoint",
        description="Convert torchvision AlexNet weights (e.g. alexnet-owt-7be5be79.pth, the IMAGENET1K_V1 "
        "weights) into a checkpoint that 'minialex predict' and 'minialex evaluate' read. A .pth file is read "
        "with torch.load(weights_only=True) (PyTorch is needed for that; a safetensors file needs nothing). The "
        "class names come from --classes FILE, else from torchvision if it is installed. The checkpoint applies "
        "torchvision's preprocessing: shorter side 256, centre crop 224, ImageNet mean and std per channel.",
    )
    convert.add_argument("weights", metavar="WEIGHTS", help="torchvision AlexNet state dict (.pth or .safetensors)")
    convert.add_argument(
        "-o", "--output", default=None, help="the checkpoint to write (default WEIGHTS' stem + -minialex.safetensors)"
    )
    convert.add_argument(
        "--classes",
        metavar="FILE",
        default=None,
        help="class names, one per line in output order (1000 for ImageNet), or 'n01440764 tench' lines of the "
        "ImageNet synset list (their WordNet ids then match ImageNet's class folders in 'evaluate')",
    )
    convert.add_argument("--force", action="store_true", help="overwrite an existing output file")
    convert.set_defaults(func=_convert)

    # -- summary -------------------------------------------------------------------------------------------
    summary = sub.add_parser(
        "summary",
        parents=[common],
        help="each layer's output shape, parameters and FLOPs",
        description="Print an AlexNet variant's layers: output shape, parameter count, multiply-adds and FLOPs per "
        "image, with totals.",
    )
    summary.add_argument("--model", choices=VARIANTS, default="mini", help="AlexNet variant (default mini)")
    summary.add_argument("--classes", type=positive, default=None, help="number of classes (default: the variant's)")
    summary.add_argument("--in-channels", type=positive, default=None, help="input channels (default: the variant's)")
    summary.add_argument("--image-size", type=positive, default=None, help="input side (default: the variant's)")
    _model_options(summary.add_argument)
    summary.set_defaults(func=_summary)
    return parser


# ---------------------------------------------------------------------------------------------------------
# The commands. Each returns the exit status.


_stdout_lost: list[str] = []  # why stdout stopped working, once it has


def _drop_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that nothing buffered fails again (at exit, too)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's captured stdout)
        pass


def _model_options(arg: Callable[..., Any]) -> None:
    """``--widths``, ``--norm`` and ``--norm-at``, shared by train and summary."""
    from minialex.models.variants import NORM_PLACES, NORMS

    arg(
        "--widths", type=_widths_argument, default=None, metavar="W1,W2,...",
        help="mini, torchvision, keras-cifar10: the convolutions' widths, optionally followed by the hidden "
        "layers' (e.g. 64,192,384,384,256)",
    )  # fmt: skip
    arg(
        "--norm", choices=NORMS, default=None,
        help="replace the model's normalisation with LRN, BatchNorm or none (default: the model's own)",
    )  # fmt: skip
    arg(
        "--norm-at", choices=NORM_PLACES, default=None,
        help="with --norm: after conv1 and conv2 ('paper', the default) or after every convolution",
    )  # fmt: skip


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
        _drop_stdout()
        with contextlib.suppress(OSError):
            print(f"minialex: stdout lost ({_stdout_lost[0]}); carrying on without messages", file=sys.stderr)


def _out(text: str) -> None:
    """A command's result on stdout; if it cannot be written, a WriteError (one line, status 2)."""
    from minialex.errors import WriteError

    try:
        print(text, flush=True)
    except OSError as exc:
        _drop_stdout()
        raise WriteError(f"the output cannot be written to stdout ({exc.strerror or exc})") from None


def _train(args: argparse.Namespace) -> int:
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


def _evaluate(args: argparse.Namespace) -> int:
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


def _predict(args: argparse.Namespace) -> int:
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


def _convert(args: argparse.Namespace) -> int:
    from minialex.training.convert import convert_torchvision

    convert_torchvision(args.weights, args.output, classes_file=args.classes, overwrite=args.force, log=_say)
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    from minialex.layers.base import shapes_only
    from minialex.models import alexnet

    with shapes_only():  # shapes and counts only: no weight is allocated, whatever the sizes asked for
        model = alexnet(
            args.model, num_classes=args.classes, in_channels=args.in_channels, image_size=args.image_size,
            widths=args.widths, norm=args.norm, norm_at=args.norm_at,
        )  # fmt: skip
    _out(model.summary())
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------


def _fail(message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    with contextlib.suppress(OSError):  # stderr gone as well: the status still says it
        print(f"minialex: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``minialex`` console script; returns the exit status (see the module docstring).

    Everything but the standard library and :mod:`minialex.errors` is imported in here, inside the error
    handling, so that a bad ``MINIALEX_BACKEND`` or ``MINIALEX_THREADS`` ends as one line with status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    for stream in (sys.stdout, sys.stderr):  # a character the terminal cannot show is escaped, never fatal
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except TrainingDivergedError as exc:
        return _fail(str(exc), EXIT_FAILED, debug)
    except MinialexError as exc:
        return _fail(str(exc), EXIT_USAGE, debug)
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        return _fail(f"out of memory{detail}: try a smaller --batch-size or model", EXIT_FAILED, debug)
    except OSError as exc:  # e.g. --help into a closed pipe or onto a full disk: one line, never a traceback
        if exc.filename is None and exc.errno in (errno.EPIPE, errno.ENOSPC):
            _drop_stdout()
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", EXIT_USAGE, debug)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("minialex: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
