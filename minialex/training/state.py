"""The progress of a run: what a checkpoint restores besides the tensors, described once.

:class:`RunState` is everything that changes while a run trains (epochs and steps done, the running sums of the
epoch in progress, the best validation score, timings, the history of finished epochs). Every checkpoint
stores ``RunState.to_dict()`` under its ``"progress"`` metadata; a resumed run starts from
``RunState.from_dict(...)``, which checks every field and raises :class:`~minialex.errors.CheckpointError`
naming the first bad one, so that a damaged or hand-edited checkpoint never starts a run from nonsense.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from minialex import validate
from minialex.errors import CheckpointError

COUNT = {"low": 0, "error": CheckpointError}


@dataclass
class EpochTotals:
    """Running sums over the steps done so far in one epoch (host numbers, read back from the device)."""

    loss_sum: float = 0.0
    """Σ over steps of (batch-mean loss × batch size)."""
    correct: int = 0
    """Training images whose top-1 prediction was right."""
    seen: int = 0
    """Training images used."""
    seconds: float = 0.0
    """Wall-clock seconds spent in the training steps."""

    def add(self, loss: float, correct: int, count: int) -> None:
        """Add one step: its batch-mean loss, its number of correct predictions and its batch size."""
        self.loss_sum += loss * count
        self.correct += correct
        self.seen += count

    @property
    def loss(self) -> float:
        """Mean training loss so far (0 before the first step)."""
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        """Training top-1 accuracy so far, a fraction."""
        return self.correct / max(self.seen, 1)

    @property
    def rate(self) -> float:
        """Training images per second so far."""
        return self.seen / max(self.seconds, 1e-9)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> EpochTotals:
        """Check and rebuild :func:`dataclasses.asdict` output."""
        what = f"{source}: progress.partial"
        if not isinstance(data, dict) or set(data) != {"loss_sum", "correct", "seen", "seconds"}:
            raise CheckpointError(f"{what} must hold loss_sum, correct, seen and seconds, got {data!r}"[:300])
        seen = validate.integer(data["seen"], f"{what}.seen", **COUNT)
        return cls(
            loss_sum=validate.number(data["loss_sum"], f"{what}.loss_sum", low=0.0, error=CheckpointError),
            correct=validate.integer(data["correct"], f"{what}.correct", low=0, high=seen, error=CheckpointError),
            seen=seen,
            seconds=validate.number(data["seconds"], f"{what}.seconds", low=0.0, error=CheckpointError),
        )


@dataclass
class RunState:
    """Where a run stands. Epochs and steps count those *done*; the history holds one row per finished epoch."""

    epochs_done: int = 0
    step_in_epoch: int = 0
    """Steps done in the epoch in progress (0 between epochs)."""
    global_step: int = 0
    """Steps done since the start of the run."""
    partial: EpochTotals = field(default_factory=EpochTotals)
    """The sums of the epoch in progress."""
    best_epoch: int = 0
    """The epoch of ``best.safetensors`` (0: none yet)."""
    best_val_accuracy: float | None = None
    """Its validation top-1 accuracy (the decision metric)."""
    train_seconds: float = 0.0
    """Seconds of training steps in the finished epochs."""
    train_images_seen: int = 0
    """Training images used in the finished epochs."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One flat dict of numbers per finished epoch (``epoch``, ``lr``, ``train_loss``, ``val_accuracy``...)."""
    interrupted: bool = False
    """The checkpoint was written by a stop request in the middle of the run."""

    def finish_epoch(self, row: dict[str, Any]) -> None:
        """Close the epoch in progress: append its history row, fold its totals in, reset the partial sums."""
        self.history.append(row)
        self.train_seconds += self.partial.seconds
        self.train_images_seen += self.partial.seen
        self.epochs_done += 1
        self.step_in_epoch = 0
        self.partial = EpochTotals()

    def improves(self, epoch: int, val_accuracy: float) -> bool:
        """Record ``epoch`` as the best when its validation accuracy beats every earlier one; return whether."""
        if self.best_val_accuracy is not None and val_accuracy <= self.best_val_accuracy:
            return False
        self.best_epoch, self.best_val_accuracy = epoch, float(val_accuracy)
        return True

    @property
    def position(self) -> str:
        """Where the run stands, in words: "after epoch 3" or "epoch 4, step 17"."""
        done, step = self.epochs_done, self.step_in_epoch
        return f"epoch {done + 1}, step {step}" if step else f"after epoch {done}"

    @property
    def images_per_second(self) -> float | None:
        """Training images per second over the finished epochs (None before the first)."""
        return self.train_images_seen / self.train_seconds if self.train_seconds else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (the ``"progress"`` entry of a checkpoint)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "progress") -> RunState:
        """Check every field of :meth:`to_dict` output and rebuild the state; CheckpointError names a bad one.

        Every field must be present: a field added in a later version needs an explicit default here for the
        checkpoints written before it.
        """
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: progress must be a JSON object, got {type(data).__name__}")
        expected = {f for f in cls.__dataclass_fields__}
        if set(data) != expected:
            missing, extra = sorted(expected - set(data)), sorted(set(map(str, data)) - expected)
            raise CheckpointError(f"{source}: progress fields differ (missing {missing}, unexpected {extra})")

        def count(name: str, high: int | None = None) -> int:
            return validate.integer(data[name], f"{source}: progress.{name}", low=0, high=high, error=CheckpointError)

        def seconds(name: str) -> float:
            return validate.number(data[name], f"{source}: progress.{name}", low=0.0, error=CheckpointError)

        epochs_done = count("epochs_done")
        state = cls(
            epochs_done=epochs_done,
            step_in_epoch=count("step_in_epoch"),
            global_step=count("global_step"),
            partial=EpochTotals.from_dict(data["partial"], source),
            best_epoch=count("best_epoch", high=epochs_done),
            best_val_accuracy=None,
            train_seconds=seconds("train_seconds"),
            train_images_seen=count("train_images_seen"),
            history=_check_history(data["history"], epochs_done, source),
            interrupted=validate.flag(data["interrupted"], f"{source}: progress.interrupted", error=CheckpointError),
        )
        if data["best_val_accuracy"] is not None:
            state.best_val_accuracy = validate.number(
                data["best_val_accuracy"], f"{source}: progress.best_val_accuracy", low=0.0, high=1.0,
                error=CheckpointError,
            )  # fmt: skip
        if (state.best_val_accuracy is None) != (state.best_epoch == 0):
            raise CheckpointError(f"{source}: progress.best_epoch and best_val_accuracy disagree")
        if state.global_step < state.step_in_epoch:
            raise CheckpointError(f"{source}: progress.global_step {state.global_step} < step_in_epoch")
        return state


def _check_history(rows: Any, epochs_done: int, source: str) -> list[dict[str, Any]]:
    """One row per finished epoch, numbered 1, 2, ...; every value a number, a string or None."""
    if not isinstance(rows, list) or len(rows) != epochs_done:
        got = f"{len(rows)} rows" if isinstance(rows, list) else type(rows).__name__
        raise CheckpointError(
            f"{source}: progress.history must hold one row per finished epoch ({epochs_done}), got {got}"
        )
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or row.get("epoch") != number:
            raise CheckpointError(f"{source}: progress.history row {number} is not the row of epoch {number}")
        for key, value in row.items():
            ok = (
                value is None
                or isinstance(value, str)
                or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            )
            if not ok:
                raise CheckpointError(f"{source}: progress.history row {number}: {key} = {value!r} is not a number")
    return [dict(row) for row in rows]
