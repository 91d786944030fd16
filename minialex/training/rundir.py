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

A run directory belongs to one run. :meth:`RunDirectory.prepare` takes it with a lock file, ``.minialex.lock``,
created atomically (``O_CREAT | O_EXCL``) and holding the process id; a second run started into it while the
first runs is refused, and a lock left by a process that no longer exists (killed) is taken over. A directory
that already holds a run's checkpoints is refused unless the run resumes from it, so that nothing is
overwritten by mistake. The default name (``runs/<UTC time>-<model>-<dataset>``) gets ``-2``, ``-3``... when
that directory exists, claimed with an atomic ``mkdir``, so that runs started in the same second get a
directory each. Temporaries left in the directory by a killed writer are removed when a run takes it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from minialex import atomic, backend
from minialex.errors import CheckpointError, ConfigError
from minialex.training import checkpoint, metrics, plots, tensorfile

LAST, BEST = "last.safetensors", "best.safetensors"
LOCK = ".minialex.lock"
RECORDS = ("config.json", "history.json", "history.csv", "metrics.json", "dataset.json", LAST, BEST)
RECORDS += ("curves.png", "conv1_filters.png", "confusion_matrix.png")


def default_run_dir(model: str, dataset: str) -> Path:
    """``runs/<UTC time>-<model>-<dataset>``."""
    return Path("runs") / f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{model}-{dataset}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


class RunDirectory:
    """The files of one run under ``path``.

    Parameters
    ----------
    path : the directory
    fresh : ``path`` is a default name: if it exists, take ``<path>-2``, ``<path>-3``... instead
    resuming : the run continues the checkpoints in ``path`` (they are not refused)
    """

    def __init__(self, path: str | os.PathLike[str], fresh: bool = False, resuming: bool = False) -> None:
        self.path = Path(path)
        self.fresh, self.resuming = fresh, resuming
        self._locked = False

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    def prepare(self, config: dict[str, Any], option: str = "--out-dir") -> None:
        """Create and lock the directory, refuse another run's checkpoints, write ``config.json``.

        Raises ConfigError when the directory cannot be created or written, is in use by another run, or
        holds a run's checkpoints that this run does not resume.
        """
        try:
            self._claim()
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{option} {self.path}: the run directory cannot be created or written ({exc.strerror or exc}); "
                f"choose a writable directory with {option}"
            ) from exc
        self._lock(option)
        try:
            held = [name for name in (LAST, BEST) if (self.path / name).exists()]
            if held and not self.resuming:
                raise ConfigError(
                    f"{option} {self.path} already holds a run ({', '.join(held)}): continue it with --resume "
                    f"{self.path / held[0]}, or give another {option}"
                )
            for name in RECORDS:
                atomic.remove_stale_temps(self.path / name)
            metrics.write_json(self.path / "config.json", config)
        except BaseException:
            self.release()
            raise

    def _claim(self) -> None:
        """Create the directory; a fresh (default) name that exists becomes ``<name>-2``, ``<name>-3``..."""
        if not self.fresh:
            self.path.mkdir(parents=True, exist_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        base = self.path
        for n in range(1, 10_000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                candidate.mkdir()  # atomic: of two runs in the same second, one gets each name
            except FileExistsError:
                continue
            self.path = candidate
            return
        raise FileExistsError(f"every name {base}-N is taken")

    def _lock(self, option: str) -> None:
        """Take the lock file, or raise ConfigError naming the process that holds it."""
        lock = self.path / LOCK
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner(lock)
                if owner is not None:
                    raise ConfigError(
                        f"{option} {self.path} is in use by another run (process {owner}, lock file {lock}); "
                        f"give another {option}, or wait for it to end"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock)  # left by a process that no longer exists
                continue
            except OSError as exc:
                raise ConfigError(f"{option} {self.path}: cannot create the lock file ({exc.strerror})") from exc
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()} {socket.gethostname()}\n")
            self._locked = True
            return
        raise ConfigError(f"{option} {self.path}: cannot take the lock file {lock}; give another {option}")

    @staticmethod
    def _owner(lock: Path) -> int | None:
        """The process id holding ``lock`` if it may still run (another host's counts as running), else None."""
        try:
            pid_text, _, host = lock.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):  # half-written: by a run starting now, or by one killed while creating it
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime < 10:
                    return 0
            return None
        if host and host != socket.gethostname():
            return pid
        return pid if _process_alive(pid) else None

    def release(self) -> None:
        """Remove the lock file (at the end of the run, however it ends)."""
        if self._locked:
            self._locked = False
            with contextlib.suppress(OSError):
                os.remove(self.path / LOCK)

    def save_checkpoint(self, name: str, parts: Any, metadata: dict[str, Any], data: dict | None = None) -> Path:
        """Write the model, optimiser, schedule and random state of ``parts`` with ``metadata`` (and the
        ``data`` arrays inference needs, e.g. a mean image) to ``name``."""
        return checkpoint.save_checkpoint(
            self.path / name, parts.model, parts.optimizer, parts.scheduler, metadata=metadata, data=data
        )

    def checkpoint_epoch(self, name: str) -> int | None:
        """The epochs done recorded in checkpoint ``name`` (from its header alone), or None if it has none."""
        path = self.path / name
        try:
            header, _ = tensorfile.read_header(os.fspath(path), path.stat().st_size)
            record = tensorfile.parse_json(header["__metadata__"]["metadata"], os.fspath(path))
            epochs = record["progress"]["epochs_done"]
        except (OSError, KeyError, TypeError, CheckpointError):
            return None
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None

    def set_aside_unfinished_best(self, epochs_done: int) -> str | None:
        """Move aside a ``best.safetensors`` of an epoch after ``epochs_done`` (the checkpoint a run resumes from);
        the message saying so, or None when there is nothing to move.

        ``best`` is written before ``last``, so a run killed between the two leaves a ``best`` one epoch ahead
        of its ``last``; the resumed run repeats that epoch and writes ``best`` again if it improves. The file
        is renamed, not deleted (``superseded-best-epoch<N>.safetensors``), so that nothing is lost when the
        run resumes from an older copy on purpose; either way the best epoch it reports is one whose file exists.
        """
        best_epoch = self.checkpoint_epoch(BEST)
        if best_epoch is None or best_epoch <= epochs_done:
            return None
        aside = self.best.with_name(f"superseded-best-epoch{best_epoch}.safetensors")
        os.replace(self.best, aside)
        return f"{self.best} is of epoch {best_epoch}, after the resumed checkpoint: moved to {aside}"

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
