"""Resuming a run: which options may change, and the checks that a checkpoint fits the run it continues.

A resumed run continues the saved configuration. Only :data:`~minialex.training.config.RESUME_OVERRIDES`
may differ (``epochs``, to train longer; where the data and the run directory live; whether to download);
any other option given with a different value is an error naming it, because it would silently make the
resumed run a different one. The data must be the data the run started on (same classes, image shape,
split sizes and statistics), and the step reached must fit into an epoch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from minialex.data.batches import num_batches
from minialex.errors import CheckpointError, ConfigError
from minialex.training import checkpoint
from minialex.training.build import Parts
from minialex.training.config import RESUME_OVERRIDES, TrainConfig
from minialex.training.data import RunData
from minialex.training.saved_run import SavedRun
from minialex.training.state import RunState


@dataclass
class Resumption:
    """A checkpoint to continue, its checked run record, and the configuration the resumed run uses."""

    checkpoint: checkpoint.Checkpoint
    saved: SavedRun
    config: TrainConfig

    def check_data(self, data: RunData) -> None:
        """ConfigError unless ``data`` is the data the run started on; CheckpointError if its step does not fit."""
        source = f"checkpoint {self.checkpoint.path}"
        differences = self.saved.dataset.differences(data.info)
        if differences:
            raise ConfigError(
                f"{source} was trained on other data than it is given now ({'; '.join(differences)}): a resumed "
                "run must see the data it started on"
            )
        state = self.saved.progress
        steps = num_batches(len(data.train_labels), self.config.batch_size)
        if state is None or state.step_in_epoch >= steps:
            done = "no" if state is None else state.step_in_epoch
            raise CheckpointError(f"{source}: {done} steps done in an epoch of {steps} steps: it cannot be resumed")

    def restore(self, parts: Parts) -> RunState:
        """Load the checkpoint's state into ``parts`` (built from :attr:`config`); return the run's progress."""
        progress = self.saved.progress
        if progress is None:
            raise CheckpointError(f"checkpoint {self.checkpoint.path} holds no progress to resume from")
        checkpoint.restore(self.checkpoint, parts.model, parts.optimizer, parts.scheduler)
        return dataclasses.replace(progress, interrupted=False)


def load_for_resume(path: str | os.PathLike[str], overrides: dict[str, Any]) -> Resumption:
    """Load and check the checkpoint, and reconcile its configuration with the ``overrides``."""
    ckpt = checkpoint.load_checkpoint(path)
    saved = SavedRun.from_checkpoint(ckpt, resumable=True)
    config = reconcile(saved.config, overrides, os.fspath(path))
    progress = saved.progress
    started = progress.epochs_done + (progress.step_in_epoch > 0) if progress is not None else 0
    if config.epochs < started:
        raise ConfigError(
            f"epochs {config.epochs} is fewer than the {started} epochs the run in {path} has already "
            f"{'started' if progress and progress.step_in_epoch else 'done'}: give --epochs {started} or more"
        )
    return Resumption(ckpt, saved, config)


def reconcile(saved: TrainConfig, overrides: dict[str, Any], source: str) -> TrainConfig:
    """The saved configuration with the allowed ``overrides`` applied; ConfigError for any other change.

    ``out_dir`` defaults to None, which a resumed run reads as "the checkpoint's own directory".
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        raise ConfigError(f"unknown training options {', '.join(unknown)}")
    changed = sorted(k for k, v in overrides.items() if k not in RESUME_OVERRIDES and getattr(saved, k) != v)
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming from {source}: a resumed run continues the saved "
            f"configuration (only {', '.join(RESUME_OVERRIDES)} may change); start a new run instead"
        )
    allowed = {k: overrides[k] for k in RESUME_OVERRIDES if overrides.get(k) is not None}
    return dataclasses.replace(saved, **{"out_dir": None, **allowed}).validate()
