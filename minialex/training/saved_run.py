"""What a training run writes into the metadata of its checkpoints, and the one place that reads it back.

A checkpoint file is recognised by its format tag, which only :func:`minialex.training.checkpoint.load_checkpoint`
checks. A *training* checkpoint is one whose metadata holds a run's record::

    config    TrainConfig.to_dict()          every option of the run
    dataset   DataInfo.to_dict()             class names, image shape, normalisation, split sizes
    progress  RunState.to_dict()             epochs and steps done, partial sums, best epoch, history
    backend   the writer's backend, one line
    saved_at  UTC time of writing (ISO 8601)
    converted_from   only in a checkpoint made from another framework's weights (``minialex convert``):
                     the source file's name, sha256 and format; such a checkpoint has no run to resume

(the model's architecture, the optimiser, the schedule and the random state have entries of the file itself).
:meth:`SavedRun.from_checkpoint` validates all of it before anything is built from it: the model
configuration too, so that a damaged file never reaches :func:`minialex.models.alexnet`.

Checkpoints of format 1 (minialex 0.1.0) can be evaluated and used for prediction, not resumed: their
progress predates the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import minialex
from minialex import backend, validate
from minialex.errors import CheckpointError, ConfigError, LayerInputError, mismatch_report, shape_mismatches
from minialex.layers.base import shapes_only
from minialex.models import VARIANTS, alexnet
from minialex.training.config import DTYPES, TrainConfig
from minialex.training.data import DataInfo
from minialex.training.state import RunState


@dataclass
class SavedRun:
    """A training run's record in a checkpoint: config, data, progress (None for format 1) and model config."""

    config: TrainConfig
    dataset: DataInfo
    progress: RunState | None
    model_config: dict[str, Any]
    converted_from: dict[str, Any] | None = None
    """Where a converted checkpoint's weights came from (None for a training run's)."""

    def to_metadata(self) -> dict[str, Any]:
        """The ``metadata`` dict for :func:`~minialex.training.checkpoint.save_checkpoint`."""
        if self.progress is None:
            raise CheckpointError("SavedRun.to_metadata: a saved run needs its progress")
        out = {
            "config": self.config.to_dict(),
            "dataset": self.dataset.to_dict(),
            "progress": self.progress.to_dict(),
            "backend": backend.describe(),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return out if self.converted_from is None else {**out, "converted_from": self.converted_from}

    @classmethod
    def from_checkpoint(cls, ckpt: Any, resumable: bool = False) -> SavedRun:
        """Read and check the run record of a loaded :class:`~minialex.training.checkpoint.Checkpoint`.

        ``resumable=True`` also requires the progress of a run that can continue (format 2 or later).
        Raises :class:`CheckpointError` naming the file and the first problem.
        """
        source = f"checkpoint {ckpt.path}"
        meta = ckpt.metadata
        if not isinstance(meta, dict) or "config" not in meta or "dataset" not in meta:
            raise CheckpointError(
                f"{source} is not a minialex training checkpoint (it holds no training run's configuration and "
                "data): it cannot be resumed, evaluated or used for prediction"
            )
        written_by = f"written by minialex {ckpt.minialex_version}, read by minialex {minialex.__version__}"
        try:
            config = TrainConfig.from_dict(meta["config"], source=source)
        except ConfigError as exc:
            raise CheckpointError(f"{exc} ({written_by})") from exc
        dataset = DataInfo.from_dict(meta["dataset"], source)
        model_config = check_model_config(ckpt.model_config, dataset, source)
        check_tensor_shapes(ckpt.model_state, model_config, source)
        converted = meta.get("converted_from")
        if converted is not None and not isinstance(converted, dict):
            raise CheckpointError(f"{source}: converted_from must be a JSON object, got {converted!r}"[:300])
        if converted is not None and resumable:
            raise CheckpointError(
                f"{source} was converted from {converted.get('format', 'other')} weights "
                f"({converted.get('file', '?')}): it can be evaluated and used for prediction, but it holds no "
                "training run to resume"
            )
        progress = None
        if ckpt.format_version >= 2:
            progress = RunState.from_dict(meta.get("progress"), source)
        elif resumable:
            raise CheckpointError(
                f"{source} has checkpoint format {ckpt.format_version} ({written_by}): it can be evaluated and "
                "used for prediction, but not resumed; start a new run"
            )
        return cls(config, dataset, progress, model_config, converted)


def check_model_config(config: Any, dataset: DataInfo, source: str) -> dict[str, Any]:
    """The checkpoint's model config, its known fields checked and compared with the data (classes, channels).

    Fields this version does not know pass unchanged to :func:`~minialex.models.alexnet`, which rejects
    what it cannot build.
    """
    if not isinstance(config, dict) or "variant" not in config:
        raise CheckpointError(f"{source}: the model entry is not an AlexNet configuration: {config!r}"[:300])
    what = f"{source}: model"
    out = dict(config)
    out["variant"] = validate.choice(config["variant"], f"{what}.variant", VARIANTS, error=CheckpointError)
    for key in ("num_classes", "in_channels", "image_size"):
        if config.get(key) is not None:
            out[key] = validate.integer(config[key], f"{what}.{key}", low=1, high=1 << 16, error=CheckpointError)
    if config.get("init") is not None:
        out["init"] = validate.choice(config["init"], f"{what}.init", ("he", "paper"), error=CheckpointError)
    if config.get("dtype") is not None:
        out["dtype"] = validate.choice(config["dtype"], f"{what}.dtype", DTYPES, error=CheckpointError)
    if config.get("widths") is not None:
        widths = config["widths"]
        if not isinstance(widths, list) or not 1 <= len(widths) <= 16:
            raise CheckpointError(f"{what}.widths must be a list of 1 to 16 integers, got {widths!r}")
        out["widths"] = [
            validate.integer(w, f"{what}.widths", low=1, high=1 << 16, error=CheckpointError) for w in widths
        ]
    classes, channels = len(dataset.classes), dataset.image_shape[0]
    if out.get("num_classes", classes) != classes or out.get("in_channels", channels) != channels:
        raise CheckpointError(
            f"{source}: the model has {out.get('num_classes')} classes and {out.get('in_channels')} input channels, "
            f"its data set {classes} classes and {channels} channels"
        )
    return out


def check_tensor_shapes(model_state: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """CheckpointError unless the checkpoint's tensors are those of the model ``config`` describes.

    The model is built with :func:`~minialex.layers.base.shapes_only` (its shapes, no memory), so that a
    configuration claiming millions of classes or a huge image costs nothing before it is refused.
    """
    try:
        with shapes_only():
            probe = alexnet(**config)
    except (ConfigError, LayerInputError, TypeError) as exc:
        raise CheckpointError(f"{source}: its model configuration cannot be built ({exc})"[:400]) from None
    report = mismatch_report(*shape_mismatches(probe.state(), model_state))
    if report:
        raise CheckpointError(f"{source}: its tensors do not fit its model configuration: {report}")
