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
from typing import Any

from minialex.data.batches import num_batches
from minialex.errors import CheckpointError, ConfigError
from minialex.training import checkpoint
from minialex.training.build import Parts
from minialex.training.config import RESUME_OVERRIDES, TrainConfig
from minialex.training.data import RunData
from minialex.training.saved_run import SavedRun
from minialex.training.state import RunState


def load_for_resume(
    path: str | os.PathLike[str], overrides: dict[str, Any]
) -> tuple[checkpoint.Checkpoint, SavedRun, TrainConfig]:
    """Load and check the checkpoint, and the configuration the resumed run uses (the saved one + overrides)."""
    ckpt = checkpoint.load_checkpoint(path)
    saved = SavedRun.from_checkpoint(ckpt, resumable=True)
    return ckpt, saved, reconcile(saved.config, overrides, os.fspath(path))


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


def restore_run(ckpt: checkpoint.Checkpoint, saved: SavedRun, parts: Parts, data: RunData) -> RunState:
    """Check that the checkpoint fits ``data`` and ``parts``, load its state into them; return its progress."""
    source = f"checkpoint {ckpt.path}"
    differences = saved.dataset.differences(data.info)
    if differences:
        raise ConfigError(
            f"{source} was trained on other data than it is given now ({'; '.join(differences)}): a resumed run "
            "must see the data it started on"
        )
    state = saved.progress
    if state is None:
        raise CheckpointError(f"{source} holds no progress to resume from")
    steps = num_batches(len(data.train_labels), saved.config.batch_size)
    if state.step_in_epoch >= steps:
        raise CheckpointError(f"{source}: {state.step_in_epoch} steps done in an epoch of only {steps} steps")
    checkpoint.restore(ckpt, parts.model, parts.optimizer, parts.scheduler)
    state.interrupted = False
    return state
