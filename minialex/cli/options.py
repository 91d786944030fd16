"""The parser of every ``minialex`` subcommand, and the exit statuses its help lists.

Options of ``train`` default to None, so that a resumed run can tell what was given on the command line; their
types and bounds come from the trainer's own rules (:data:`minialex.training.config.RULES`), so that the
command line and :class:`~minialex.training.TrainConfig` accept exactly the same values.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from minialex.cli import commands
from minialex.cli.commands import EXIT_CODES, EXIT_USAGE


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
    train.set_defaults(func=commands.train)

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
    evaluate.set_defaults(func=commands.evaluate)

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
    predict.set_defaults(func=commands.predict)

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
    convert.set_defaults(func=commands.convert)

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
    summary.set_defaults(func=commands.summary)
    return parser



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
