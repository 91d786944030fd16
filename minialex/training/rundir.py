"""The run directory: every file one training run writes, each written atomically.

========================  ===========================================================================
``config.json``           the run's options (:class:`~minialex.training.TrainConfig`), written at the start
``history.json`` / .csv   one row per finished epoch: training and validation loss and accuracy, lr, timings
``metrics.json``          the outcome: status, validation and test results, speed, model, data, backend
``last.safetensors``      the newest checkpoint (after each epoch, at a stop request, and before training)
``best.safetensors``      the checkpoint of the epoch with the best validation top-1 accuracy
``curves.png``            loss and accuracy per epoch
``conv1_filters.png``     the learned first-layer filters (the paper's Figure 3)
``confusion_matrix.png``  the test split's confusion matrix at the end (the validation split's before)
========================  ===========================================================================

A file that cannot be written raises :class:`~minialex.errors.WriteError` naming it; every file already
there, checkpoints included, stays whole (see :mod:`minialex.atomic`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from minialex import backend
from minialex.errors import ConfigError
from minialex.training import checkpoint, metrics, plots

LAST, BEST = "last.safetensors", "best.safetensors"


def default_run_dir(model: str, dataset: str) -> Path:
    """``runs/<UTC time>-<model>-<dataset>``."""
    return Path("runs") / f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{model}-{dataset}"


class RunDirectory:
    """The files of one run under ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def prepare(self, config: dict[str, Any], option: str = "--out-dir") -> None:
        """Create the directory (and parents), check that a file can be written in it, write ``config.json``."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{option} {self.path}: the run directory cannot be created or written ({exc.strerror or exc}); "
                f"choose a writable directory with {option}"
            ) from exc
        metrics.write_json(self.path / "config.json", config)

    def save_checkpoint(self, name: str, parts: Any, metadata: dict[str, Any], data: dict | None = None) -> Path:
        """Write the model, optimiser, schedule and random state of ``parts`` with ``metadata`` (and the
        ``data`` arrays inference needs, e.g. a mean image) to ``name``."""
        return checkpoint.save_checkpoint(
            self.path / name, parts.model, parts.optimizer, parts.scheduler, metadata=metadata, data=data
        )

    def write_records(self, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """``history.json``, ``history.csv`` and ``metrics.json``."""
        metrics.write_json(self.path / "history.json", history)
        metrics.write_text_atomic(self.path / "history.csv", metrics.history_csv(history))
        metrics.write_json(self.path / "metrics.json", summary)

    def write_plots(self, state: Any, model: Any, config: Any, classes: list[str], result: Any, split: str) -> None:
        """``curves.png`` from the history, ``conv1_filters.png`` from the model's first layer and, given the
        :class:`~minialex.training.evaluation.EvalResult` of a split, ``confusion_matrix.png``."""
        if not state.history:
            return
        plots.save_figure(plots.plot_curves(state.history), self.path / "curves.png")
        weight = backend.to_numpy(model.params["conv1.weight"])
        figure = plots.plot_filters(weight, title=f"{config.model} conv1 filters")
        plots.save_figure(figure, self.path / "conv1_filters.png")
        if result is not None:
            caption = f"{config.dataset}, {split} split, epoch {state.epochs_done}"
            figure = plots.plot_confusion_matrix(result.confusion, classes, caption)
            plots.save_figure(figure, self.path / "confusion_matrix.png")
