"""The configuration of a training run: every option of ``minialex train``, validated, saved with each checkpoint.

Each numeric option has one :class:`Rule` in :data:`RULES` (its type and bounds); :meth:`TrainConfig.validate`
checks the options against it through :mod:`minialex.validate`, and the command line parses its flags with
the same rules, so that no bound is written twice.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from minialex import validate
from minialex.errors import ConfigError
from minialex.models import VARIANTS
from minialex.models.variants import NORM_PLACES, NORMS

OPTIMIZERS = ("sgd", "adam", "adamw")
"""``--optimizer``: the paper's SGD with momentum, Adam (Kingma & Ba, PyTorch's defaults), AdamW (decoupled decay)."""
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.02, "weight_decay": 5e-4},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 0.01},
}
"""The ``lr`` and ``weight_decay`` a run gets when none is given, per optimiser: the tuned SGD recipe, Adam's
(and Keras's) lr 1e-3 without decay, AdamW's lr 1e-3 with ``torch.optim.AdamW``'s λ = 0.01."""
SGD_MOMENTUM = 0.9
"""The paper's momentum μ, SGD's default; another value with Adam or AdamW is refused (they have no μ)."""
SCHEDULES = ("plateau", "step", "none")
INITS = (None, "he", "paper")
DTYPES = ("float32", "float64")
MEANS = ("image", "channel")
PARALLEL = (None, "data", "model")
"""``--parallel``: one process (None), data parallelism or the paper's two-column split, over MPI."""
RESUME_OVERRIDES = ("epochs", "data_dir", "out_dir", "download")
"""The options a resumed run may change; any other differs from the checkpoint's only by mistake."""


@dataclass(frozen=True)
class Rule:
    """The type and bounds of a numeric option: an ``int`` or ``float`` in [low, high] (ends open if asked)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    """None is allowed (it means "the default" or "no limit")."""

    def check(self, value: Any, what: str, error: type = ConfigError) -> Any:
        """``value`` converted to ``kind``, or ``error`` naming ``what``, the bounds and the value."""
        if value is None and self.optional:
            return None
        if self.kind is int:
            low = None if self.low is None else int(self.low) + self.low_open
            return validate.integer(value, what, low=low, high=self.high, error=error)
        return validate.number(
            value, what, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open, error=error
        )

    def describe(self) -> str:
        """The expectation in words, for a command-line message: "a positive integer", "a number in [0, 1)"..."""
        if self.kind is int and self.low is not None and self.high is None:
            low = int(self.low) + self.low_open
            return {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low == 0 and self.high is None:
            return "a positive finite number" if self.low_open else "a finite number >= 0"
        if self.low is None or self.high is None:
            return noun
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE_INT = Rule(int, low=1)
COUNT = Rule(int, low=0)
LIMIT = Rule(int, low=1, optional=True)
RULES: dict[str, Rule] = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": Rule(float, low=0.0, low_open=True, optional=True),
    "momentum": Rule(float, low=0.0, high=1.0, high_open=True),
    "weight_decay": Rule(float, low=0.0, optional=True),
    "lr_factor": Rule(float, low=0.0, high=1.0, low_open=True, high_open=True),
    "patience": COUNT,
    "max_reductions": COUNT,
    "step_size": POSITIVE_INT,
    "seed": COUNT,
    "eval_batch_size": LIMIT,
    "limit_train": LIMIT,
    "limit_val": LIMIT,
    "limit_test": LIMIT,
    "dropout": Rule(float, low=0.0, high=1.0, high_open=True, optional=True),
    "pad": Rule(int, low=0, optional=True),
}
"""The numeric options and their rules (the command line's flags use these too)."""

CHOICES: dict[str, tuple[Any, ...]] = {
    "model": VARIANTS, "schedule": SCHEDULES, "init": INITS, "dtype": DTYPES, "mean": MEANS,
    "parallel": PARALLEL,
}  # fmt: skip
CHOICES["optimizer"] = OPTIMIZERS
CHOICES["norm"] = (None, *NORMS)
CHOICES["norm_at"] = (None, *NORM_PLACES)
FLAGS = ("augment", "ten_crop", "download")
PATHS = ("out_dir", "data_dir")


def check_width_list(value: Any, what: str) -> list[int]:
    """``value`` as a list of 1 to 16 positive integers (the model checks how many it needs), else ConfigError."""
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 16:
        raise ConfigError(f"{what} must be a list of 1 to 16 positive integers, got {value!r}")
    return [validate.integer(w, what, low=1, high=1 << 16) for w in value]


def parse_widths(text: str) -> list[int]:
    """``"64,192,384,384,256"`` -> [64, 192, 384, 384, 256]; ConfigError for anything else."""
    try:
        return check_width_list([int(part) for part in str(text).split(",")], "widths")
    except ValueError:
        raise ConfigError(f"widths must be positive integers separated by commas, got {text!r}") from None


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` and inside every checkpoint.

    The defaults are the recipe tuned for ``minialex train``: the ``mini`` model on the embedded MNIST-5k
    digits, He initialisation, the paper's SGD (momentum 0.9, weight decay 5e-4 on weights), batch 64,
    lr 0.02 divided by 10 after 12 of 18 epochs, pad-2-and-crop augmentation. What it reaches, and how the
    recipe was chosen, is in ``docs/training.md``.

    The validation split takes every decision of a run (the plateau schedule, ``best.safetensors``); the
    test split is evaluated once the run is complete and only reported. The step schedule is the default
    because a small validation split makes the epoch-to-epoch error too noisy to detect a plateau reliably
    in a few epochs; ``schedule="plateau"`` is the paper's rule (the paper, §5).
    """

    model: str = "mini"
    dataset: str = "mnist5k"
    epochs: int = 18
    batch_size: int = 64
    lr: float | None = None
    """The initial learning rate; None is the optimiser's default (:data:`OPTIMIZER_DEFAULTS`: 0.02 for SGD,
    1e-3 for Adam and AdamW), set when the config is made, so that ``config.json`` records the number used."""
    momentum: float = SGD_MOMENTUM
    """SGD's momentum μ (Adam's β₁, β₂ are 0.9, 0.999)."""
    weight_decay: float | None = None
    """λ; None is the optimiser's default (5e-4 for SGD, 0 for Adam, 0.01 for AdamW), resolved like ``lr``."""
    schedule: str = "step"
    """``"plateau"`` (divide by 10 when the validation error stops improving), ``"step"`` or ``"none"``."""
    lr_factor: float = 0.1
    patience: int = 1
    max_reductions: int = 3
    step_size: int = 12
    seed: int = 0
    init: str | None = None
    """``"he"`` or ``"paper"``; None is the model variant's default."""
    augment: bool = True
    ten_crop: bool = False
    out_dir: str | None = None
    data_dir: str | None = None
    download: bool = True
    eval_batch_size: int | None = None
    """Images per forward pass in evaluation; None is ``batch_size``."""
    limit_train: int | None = None
    """Train on a seeded subset of this many images (for quick tests); None is all of them."""
    limit_val: int | None = None
    """Validate on a seeded subset of this many validation images; None is all of them."""
    limit_test: int | None = None
    """Report on a seeded subset of this many test images; None is all of them."""
    dtype: str = "float32"
    optimizer: str = "sgd"
    """``"sgd"`` (the paper's), ``"adam"`` (bias-corrected, ``torch.optim.Adam``'s form and ε = 1e-8) or
    ``"adamw"`` (decoupled weight decay); see :mod:`minialex.optim`."""
    widths: list[int] | None = None
    """The model's convolution widths, optionally followed by its hidden layers' (``alexnet(widths=...)``)."""
    norm: str | None = None
    """``"lrn"``, ``"batchnorm"`` or ``"none"`` in place of the variant's own normalisation (None: keep it)."""
    norm_at: str | None = None
    """Where ``norm`` goes: ``"paper"`` (after conv1 and conv2, the default) or ``"every"`` convolution."""
    pad: int | None = None
    """Zero padding on each side that brings smaller images to the model's input size (28×28 digits padded by
    2 for ``keras-cifar10``'s 32×32); None: the trainer works it out (:func:`~minialex.training.build.input_padding`)
    and records it."""
    mean: str = "image"
    """What a photo folder's images are centred with: the training split's mean ``"image"``, pixel by pixel
    (the paper, §2), or its per-``"channel"`` mean. Other data sets always use the channel means."""
    dropout: float | None = None
    """The drop probability of every dropout layer (0 turns dropout off); None is the variant's (0.5)."""
    parallel: str | None = None
    """``"data"`` or ``"model"``: train over MPI ranks started by ``mpiexec`` (see ``docs/distributed.md``);
    None: one process."""

    def __post_init__(self) -> None:
        self._resolve_optimizer_defaults()

    def _resolve_optimizer_defaults(self) -> None:
        """``lr`` and ``weight_decay`` None become the optimiser's defaults (an unknown optimiser: left for
        :meth:`validate` to reject)."""
        for name, value in (
            OPTIMIZER_DEFAULTS.get(self.optimizer, {}).items() if isinstance(self.optimizer, str) else ()
        ):
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def evaluation_batch_size(self) -> int:
        """Images per forward pass in evaluation: ``eval_batch_size``, else ``batch_size``."""
        return self.eval_batch_size or self.batch_size

    def validate(self) -> TrainConfig:
        """Raise :class:`~minialex.errors.ConfigError` naming the first bad option; return self.

        Valid values are normalised in place (NumPy integers to ``int``, paths to ``str``), so that
        :meth:`to_dict` is always JSON-able.
        """
        for name, options in CHOICES.items():
            validate.choice(getattr(self, name), name, options)
        for name, rule in RULES.items():
            setattr(self, name, rule.check(getattr(self, name), name))
        for name in FLAGS:
            setattr(self, name, validate.flag(getattr(self, name), name))
        for name in PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigError(f"{name} must be a path or None, got {value!r}")
            setattr(self, name, None if value is None else os.fspath(value))
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"dataset must be a data set's name, got {self.dataset!r}")
        self._resolve_optimizer_defaults()
        if self.optimizer != "sgd" and self.momentum != SGD_MOMENTUM:
            raise ConfigError(
                f"momentum applies to optimizer 'sgd' only (Adam's β₁, β₂ are 0.9, 0.999), "
                f"got momentum {self.momentum} with optimizer {self.optimizer!r}"
            )
        if self.widths is not None:
            self.widths = check_width_list(self.widths, "widths")
        if self.norm_at is not None and self.norm is None:
            raise ConfigError(f"norm_at {self.norm_at!r} needs norm ('lrn', 'batchnorm' or 'none')")
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every option."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (missing options take their defaults).

        Raises ConfigError naming ``source`` for a non-dict, unknown keys, or a bad value.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the training configuration must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown training options {', '.join(unknown)}")
        try:
            return cls(**data).validate()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
