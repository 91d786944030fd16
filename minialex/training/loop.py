"""Training: the paper's SGD loop with evaluation, history, checkpoints, plots, exact resume and safe stops.

One epoch::

    order  = permutation of the training images drawn from (seed, epoch) alone
    for each batch of `batch_size` indices in that order (the last batch may be smaller):
        x      = augment(normalise(images[batch]))          on the backend's device
        loss   = softmax_cross_entropy(model.forward(x), labels[batch])      (NaN/inf -> stop)
        model.backward(loss.backward())                                      (NaN/inf grads -> stop)
        optimizer.step()                                    v <- mu v - lambda eps w - eps dL/dw ; w <- w + v
    evaluate top-1/top-5 error on the held-out split (eval mode: no dropout, centre or ten crops)
    append the epoch to history.json / history.csv, write last.safetensors (and best.safetensors)
    scheduler.step(held-out top-1 error)

The run directory (default ``runs/<timestamp>-<variant>-<dataset>``) receives ``config.json``,
``history.json``, ``history.csv``, ``metrics.json``, ``last.safetensors``, ``best.safetensors`` and the plots
``curves.png``, ``conv1_filters.png``, ``confusion_matrix.png``.

Exact resume. Every random draw in a run is either a function of (seed, epoch) (the data order) or comes
from the one host generator of :mod:`minialex.backend` (initialisation, dropout, augmentation), whose state
every checkpoint stores. A checkpoint also stores the weights, the optimiser's velocities, the schedule, the
epoch, the step within the epoch and the history. Resuming restores all of it and skips the batches already
done, so an interrupted run, resumed, ends with the same weights as an uninterrupted one, bit for bit on
NumPy (and on CuPy up to the non-determinism of its reductions).

Safe stops.

* NaN or infinite loss or gradient: :class:`~minialex.errors.TrainingDivergedError` naming the epoch, the
  step and the learning rate, with a hint. Nothing is written after the divergence: ``last.safetensors``
  keeps the last good weights (those of the last finished epoch; an epoch-0 checkpoint of the initial
  weights is written before training starts, so there always is one).
* SIGINT (Ctrl-C) and SIGTERM: the current step is finished, a checkpoint of that exact point is written,
  and :meth:`Trainer.fit` returns with ``interrupted_by`` set; ``minialex train --resume`` continues it.
  A second Ctrl-C aborts at once (the checkpoint files are written atomically, so none is ever torn).
* A file that cannot be written (full disk, read-only directory): :class:`~minialex.errors.CheckpointError`
  naming the file and the reason; every file already written, checkpoints included, stays intact.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.data.pipeline import InputPipeline
from minialex.errors import CheckpointError, ConfigError, TrainingDivergedError
from minialex.layers import SoftmaxCrossEntropy
from minialex.models import AlexNet, alexnet
from minialex.optim import SGD, ReduceLROnPlateau, StepLR
from minialex.training import checkpoint, metrics, plots
from minialex.training.config import CHECKPOINT_FORMAT, RESUME_OVERRIDES, SCHEDULES, TrainConfig
from minialex.training.evaluation import EvalResult, evaluate_model

__all__ = ["SCHEDULES", "RunResult", "TrainConfig", "Trainer", "fit", "format_rate"]


@dataclass
class RunResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    interrupted_by: int | None = None
    """The signal number (SIGINT, SIGTERM) that stopped the run early, or None when it finished."""
    checkpoint: Path | None = None
    """The checkpoint to resume from (``last.safetensors``)."""


def format_rate(per_second: float) -> str:
    """A rate with as many digits as it needs: 1234, 56.7, 0.36."""
    return f"{per_second:.0f}" if per_second >= 100 else f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2f}"


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model}-{config.dataset}"


def _prepare_run_dir(path: Path, option: str = "--out-dir") -> Path:
    """Create ``path`` (and parents) and check that a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: the run directory cannot be created or written ({exc.strerror or exc}); "
            f"choose a writable directory with {option}"
        ) from exc
    return path


def _subset(n: int, limit: int | None, seed: int, salt: int) -> np.ndarray | None:
    """Sorted indices of a seeded subset of ``limit`` of ``n`` items (None when no limit applies)."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng([seed, salt]).permutation(n)[:limit])


def _grads_finite(grads: dict[str, Any]) -> str | None:
    """The name of the first gradient holding NaN or inf, or None; one device sync for all of them."""
    sums = [xp.sum(g, dtype=xp.float64) for g in grads.values()]
    if not sums:
        return None
    total = float(backend.to_numpy(xp.stack(sums).sum()))
    if math.isfinite(total):
        return None
    for name, s in zip(grads, sums, strict=True):
        if not math.isfinite(float(s)):
            return name
    return "(sum of all gradients overflowed)"


class Trainer:
    """Train an AlexNet by the paper's recipe, with checkpoints, exact resume and safe stops.

    Parameters
    ----------
    config : TrainConfig
    resume : path of a checkpoint to continue from, with the configuration saved in it (``config`` must then
        be None). None starts a new run.
    overrides : with ``resume``, options to change: ``epochs`` (e.g. to train longer), ``data_dir``, ``out_dir``
        (default: the checkpoint's directory), ``download``; any other option that differs from the saved
        one raises ConfigError.
    log : where one-line messages go (default ``print``); None silences them.
    dataset : an already loaded :class:`minialex.data.Dataset` (default: ``load_dataset(config.dataset)``)
    on_step : called as ``on_step(trainer, epoch, step)`` after every training step (tests use it to stop
        or to inject faults)
    progress : show a tqdm bar (None: only on a terminal, and never when ``TQDM_DISABLE`` is set)
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        resume: str | os.PathLike[str] | None = None,
        overrides: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = print,
        dataset: Any = None,
        on_step: Callable[[Trainer, int, int], None] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.log = log or (lambda message: None)
        self.on_step = on_step
        self.progress = progress
        self._stop_signal: int | None = None
        self._resume_ckpt = None
        if resume is not None:
            if config is not None:
                raise ConfigError("Trainer: give either a config (a new run) or resume= (its saved config), not both")
            self._resume_ckpt = checkpoint.load_checkpoint(resume)
            config = self._config_for_resume(self._resume_ckpt, dict(overrides or {}), Path(resume))
        elif overrides:
            raise ConfigError("Trainer: overrides= applies to resume= only; put the options in the config")
        self.config = (config or TrainConfig()).validate()
        cfg = self.config
        backend.seed(cfg.seed)

        if dataset is None:
            from minialex.data import load_dataset

            dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download)
        self.dataset = dataset
        self.classes = list(dataset.classes)
        train_idx = _subset(len(dataset.train_labels), cfg.limit_train, cfg.seed, 1)
        test_idx = _subset(len(dataset.test_labels), cfg.limit_test, cfg.seed, 2)
        self.train_images = dataset.train_images if train_idx is None else dataset.train_images[train_idx]
        self.train_labels = dataset.train_labels if train_idx is None else dataset.train_labels[train_idx]
        self.test_images = dataset.test_images if test_idx is None else dataset.test_images[test_idx]
        self.test_labels = dataset.test_labels if test_idx is None else dataset.test_labels[test_idx]
        image_shape = tuple(int(s) for s in dataset.train_images.shape[1:])

        self.model: AlexNet = alexnet(
            cfg.model, num_classes=len(self.classes), in_channels=image_shape[0], init=cfg.init, dtype=cfg.dtype
        )
        pca = None
        if cfg.augment and image_shape[0] == 3:
            from minialex.data import rgb_pca

            pca = rgb_pca(self.train_images)  # the paper's colour augmentation needs the RGB eigenvectors
        self.pipeline = InputPipeline(
            cfg.dataset, image_shape, self.model.input_shape, dataset.mean, dataset.std, cfg.augment, cfg.dtype, pca
        )
        self.loss_fn = SoftmaxCrossEntropy()
        self.eval_batch_size = cfg.eval_batch_size or cfg.batch_size
        self.optimizer = SGD(self.model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scheduler: ReduceLROnPlateau | StepLR | None = None
        if cfg.schedule == "plateau":
            self.scheduler = ReduceLROnPlateau(
                self.optimizer, factor=cfg.lr_factor, patience=cfg.patience, max_reductions=cfg.max_reductions
            )
        elif cfg.schedule == "step":
            self.scheduler = StepLR(self.optimizer, step_size=cfg.step_size, gamma=cfg.lr_factor)

        self.dataset_info = {
            "name": cfg.dataset,
            "classes": self.classes,
            "mean": [float(m) for m in dataset.mean],
            "std": [float(s) for s in dataset.std],
            "image_shape": list(image_shape),
            "train_images": len(self.train_labels),
            "test_images": len(self.test_labels),
            "source": getattr(dataset, "source", ""),
        }
        # Progress through the run; all of it goes into every checkpoint.
        self.history: list[dict[str, Any]] = []
        self.epochs_done = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self.train_seconds = 0.0
        self.train_images_seen = 0
        self.last_eval: EvalResult | None = None

        if self._resume_ckpt is not None:
            self._restore(self._resume_ckpt)
            default_dir = Path(resume).resolve().parent
        else:
            default_dir = _default_run_dir(cfg)
        self.run_dir = Path(cfg.out_dir) if cfg.out_dir else default_dir

    # -- configuration and checkpoints ------------------------------------------------------------------------
    @staticmethod
    def _config_for_resume(ckpt: Any, overrides: dict[str, Any], path: Path) -> TrainConfig:
        meta = ckpt.metadata
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or "config" not in meta:
            raise CheckpointError(
                f"{path}: not a minialex training checkpoint (no '{CHECKPOINT_FORMAT}' metadata); it cannot be resumed"
            )
        saved = TrainConfig.from_dict(dict(meta["config"]), source=f"{path}")
        changed = sorted(k for k, v in overrides.items() if k not in RESUME_OVERRIDES and getattr(saved, k, v) != v)
        unknown = sorted(k for k in overrides if k not in saved.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown training options {', '.join(unknown)}")
        if changed:
            raise ConfigError(
                f"cannot change {', '.join(changed)} when resuming from {path}: a resumed run continues the saved "
                f"configuration (only {', '.join(RESUME_OVERRIDES)} may change); start a new run instead"
            )
        saved.out_dir = None  # default: continue in the checkpoint's own directory
        for key in RESUME_OVERRIDES:
            if overrides.get(key) is not None:
                setattr(saved, key, overrides[key])
        return saved

    def _metadata(self, interrupted: bool = False) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model": self.model.config,
            "dataset": self.dataset_info,
            "progress": {
                "epochs_done": self.epochs_done,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "partial": dict(self.partial),
                "best_accuracy": self.best_accuracy,
                "best_epoch": self.best_epoch,
                "train_seconds": self.train_seconds,
                "train_images_seen": self.train_images_seen,
                "interrupted": interrupted,
            },
            "history": self.history,
            "backend": backend.describe(),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _save(self, name: str, interrupted: bool = False) -> Path:
        path = self.run_dir / name
        checkpoint.save_checkpoint(
            path, self.model, self.optimizer, self.scheduler, metadata=self._metadata(interrupted)
        )
        return path

    def _restore(self, ckpt: Any) -> None:
        checkpoint.restore(ckpt, self.model, self.optimizer, self.scheduler)
        meta = ckpt.metadata
        progress = meta["progress"]
        self.history = [dict(row) for row in meta.get("history", [])]
        self.epochs_done = int(progress["epochs_done"])
        self.step_in_epoch = int(progress["step_in_epoch"])
        self.global_step = int(progress["global_step"])
        self.partial = dict(progress["partial"])
        self.best_accuracy = float(progress["best_accuracy"])
        self.best_epoch = int(progress["best_epoch"])
        self.train_seconds = float(progress["train_seconds"])
        self.train_images_seen = int(progress["train_images_seen"])

    # -- signals ----------------------------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop after the current step, save a checkpoint, and return (as Ctrl-C does)."""
        self._stop_signal = int(signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (every file on disk is whole)
        self._stop_signal = signum
        # Written straight to file descriptor 2: print() is not safe inside a signal handler.
        note = f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint (Ctrl-C again aborts)\n"
        try:
            os.write(2, note.encode())
        except OSError:
            pass

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluate(
        self, images: np.ndarray | None = None, labels: np.ndarray | None = None, ten_crop: bool | None = None
    ) -> EvalResult:
        """Loss, top-1 and top-5 accuracy and confusion matrix on ``images`` (default: the held-out split).

        The model runs in eval mode (dropout off), in batches of ``config.eval_batch_size`` (default
        ``batch_size``). With ten crops the softmax outputs of the views are averaged, as in the paper
        ([P] §4.1), and the loss is −log of that average.
        """
        images = self.test_images if images is None else images
        labels = self.test_labels if labels is None else labels
        ten_crop = self.config.ten_crop if ten_crop is None else ten_crop
        return evaluate_model(self.model, self.pipeline, images, labels, self.eval_batch_size, ten_crop)

    # -- training ---------------------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> np.ndarray:
        """The data order of ``epoch``: a function of (seed, epoch) only, so a resumed run sees the same."""
        return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train_labels))

    def _diverged(self, what: str, epoch: int, step: int) -> TrainingDivergedError:
        last = self.run_dir / "last.safetensors"
        return TrainingDivergedError(
            f"training diverged: {what} at epoch {epoch}, step {step} (global step {self.global_step + 1}) with "
            f"learning rate {self.optimizer.lr:g}. Hint: lower the learning rate (e.g. --lr {self.optimizer.lr / 10:g}), "
            f"check the input scaling and the initialisation. The last good checkpoint, {last} "
            f"(after epoch {self.epochs_done}), is kept."
        )

    def _train_step(self, x: Any, y: Any, epoch: int, step: int) -> tuple[float, int]:
        # Overflow is detected below and reported as TrainingDivergedError; NumPy's warnings would only add noise.
        with np.errstate(over="ignore", invalid="ignore"):
            return self._train_step_unchecked(x, y, epoch, step)

    def _train_step_unchecked(self, x: Any, y: Any, epoch: int, step: int) -> tuple[float, int]:
        logits = self.model.forward(x)
        loss = float(self.loss_fn.forward(logits, y))
        if not math.isfinite(loss):
            raise self._diverged(f"the loss became {loss}", epoch, step)
        self.model.backward(self.loss_fn.backward(), need_input_grad=False)  # the images need no gradient
        bad = _grads_finite(self.model.grads)
        if bad is not None:
            raise self._diverged(f"the gradient of {bad} became NaN or infinite", epoch, step)
        self.optimizer.step()
        correct = int((xp.argmax(logits, axis=1) == y).sum())
        return loss, correct

    def initial_loss(self, count: int = 500) -> float:
        """Mean loss of the network on ``count`` evenly spaced training images (eval mode, no random draws).

        Evenly spaced, not the first ``count``: a data set sorted by label (like MNIST-5k) would otherwise
        show one class only.
        """
        n = len(self.train_labels)
        idx = np.linspace(0, n - 1, min(count, n)).round().astype(np.int64)
        result = evaluate_model(
            self.model, self.pipeline, self.train_images[idx], self.train_labels[idx], self.eval_batch_size
        )
        return result.loss

    def check_initial_loss(self) -> float:
        """Log the initial loss against ln(classes), the loss of a uniform guess; warn when it is far off.

        An untrained network should be unsure of every class, so its loss is near ln K: minialex's
        initialisations draw the output layer at N(0, 0.01²), so its logits start near 0 (``mini`` on digits:
        2.33 against ln 10 = 2.30). A full-scale output layer gives 1–3 ln K; un-normalised pixels give
        ~40 ln K, a broken initialisation more. Far off means outside [0.5, 3] ln K; above 1.5 ln K a note
        says the logits start large.
        """
        k = len(self.classes)
        loss, expected = self.initial_loss(), math.log(k)
        self.log(f"initial loss {loss:.4f} (a uniform guess over {k} classes gives ln {k} = {expected:.4f})")
        if not math.isfinite(loss) or not 0.5 * expected < loss < 3.0 * expected:
            self.log(
                f"WARNING: the initial loss {loss:.4f} is far from ln {k} = {expected:.4f} (expected within "
                f"[{0.5 * expected:.2f}, {3 * expected:.2f}]): check the input normalisation, the labels and the "
                "initialisation before trusting this run"
            )
        elif loss > 1.5 * expected:
            self.log(
                "  (well above ln K: the untrained network makes confident random guesses; its logits start large)"
            )
        return loss

    def _make_bar(self, total: int, initial: int, epoch: int) -> Any:
        from tqdm import tqdm

        kwargs: dict[str, Any] = {}
        if self.progress is not None:
            kwargs["disable"] = not self.progress
        elif "TQDM_DISABLE" not in os.environ:
            kwargs["disable"] = None  # only on a terminal
        return tqdm(
            total=total,
            initial=initial,
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            **kwargs,
        )

    def _run_epoch(self, epoch: int) -> bool:
        """Train one epoch from ``self.step_in_epoch``; returns False when a stop was requested."""
        cfg = self.config
        n = len(self.train_labels)
        order = self._epoch_order(epoch)
        steps = math.ceil(n / cfg.batch_size)
        bar = self._make_bar(steps, self.step_in_epoch, epoch)
        self.model.train()
        try:
            for step in range(self.step_in_epoch, steps):
                started = time.perf_counter()
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                x = self.pipeline.train(self.train_images[idx])
                y = backend.asarray(self.train_labels[idx])
                loss, correct = self._train_step(x, y, epoch, step + 1)
                backend.synchronize()
                seconds = time.perf_counter() - started
                p = self.partial
                p["loss_sum"] += loss * len(idx)
                p["correct"] += correct
                p["seen"] += len(idx)
                p["seconds"] += seconds
                self.step_in_epoch = step + 1
                self.global_step += 1
                bar.update(1)
                if step % 5 == 0 or step + 1 == steps:
                    bar.set_postfix(
                        loss=f"{p['loss_sum'] / p['seen']:.4f}",
                        acc=f"{p['correct'] / p['seen']:.2%}",
                        img_s=format_rate(p["seen"] / max(p["seconds"], 1e-9)),
                        refresh=False,
                    )
                if self.on_step is not None:
                    self.on_step(self, epoch, step + 1)
                if self._stop_signal is not None and step + 1 < steps:
                    return False
        finally:
            bar.close()
        return True

    def _finish_epoch(self, epoch: int) -> dict[str, Any]:
        """Evaluate, record the epoch, write the checkpoints and the records, step the schedule."""
        p = self.partial
        started = time.perf_counter()
        result = self.evaluate()
        eval_seconds = time.perf_counter() - started
        self.last_eval = result
        lr = self.optimizer.lr
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": p["loss_sum"] / max(p["seen"], 1),
            "train_accuracy": p["correct"] / max(p["seen"], 1),
            "test_loss": result.loss,
            "test_accuracy": result.accuracy,
            "test_top5_accuracy": result.top5_accuracy,
            "test_error": result.error,
            "test_top5_error": 1.0 - result.top5_accuracy,
            "train_seconds": p["seconds"],
            "eval_seconds": eval_seconds,
            "images_per_second": p["seen"] / max(p["seconds"], 1e-9),
        }
        self.history.append(row)
        self.train_seconds += p["seconds"]
        self.train_images_seen += p["seen"]
        self.epochs_done = epoch
        self.step_in_epoch = 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        if self.scheduler is not None:
            # The schedule sees this epoch's held-out error; the lr it sets applies from the next epoch on,
            # and is what the checkpoint below stores.
            self.scheduler.step(result.error)
        improved = result.accuracy > self.best_accuracy
        if improved:
            self.best_accuracy, self.best_epoch = result.accuracy, epoch
        self._write_records()
        self._save("last.safetensors")
        if improved:
            self._save("best.safetensors")
        return row

    def _write_records(self, final: bool = False, interrupted_by: int | None = None) -> dict[str, Any]:
        metrics.write_json(self.run_dir / "history.json", self.history)
        metrics.write_text_atomic(self.run_dir / "history.csv", metrics.history_csv(self.history))
        summary = self.summary_metrics(final, interrupted_by)
        metrics.write_json(self.run_dir / "metrics.json", summary)
        return summary

    def summary_metrics(self, final: bool = False, interrupted_by: int | None = None) -> dict[str, Any]:
        """The run's outcome as written to ``metrics.json``."""
        last = self.history[-1] if self.history else {}
        status = "complete" if final else "interrupted" if interrupted_by is not None else "running"
        return {
            "status": status,
            "test_accuracy": last.get("test_accuracy"),
            "test_top5_accuracy": last.get("test_top5_accuracy"),
            "test_loss": last.get("test_loss"),
            "test_error": last.get("test_error"),
            "test_top5_error": last.get("test_top5_error"),
            "best_test_accuracy": self.best_accuracy if self.history else None,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_done,
            "train_seconds": self.train_seconds,
            "images_per_second": self.train_images_seen / self.train_seconds if self.train_seconds else None,
            "train_images": len(self.train_labels),
            "test_images": len(self.test_labels),
            "ten_crop": self.config.ten_crop,
            "model": self.model.config,
            "parameters": self.model.num_params(),
            "dataset": {k: v for k, v in self.dataset_info.items() if k not in ("mean", "std")},
            "config": self.config.to_dict(),
            "backend": backend.describe(),
        }

    def _write_plots(self) -> None:
        if not self.history:
            return
        figures = [("curves.png", plots.plot_curves(self.history))]
        weight = backend.to_numpy(self.model.params["conv1.weight"])
        figures.append(("conv1_filters.png", plots.plot_filters(weight, title=f"{self.config.model} conv1 filters")))
        if self.last_eval is not None:
            title = f"{self.config.dataset}, held-out, epoch {self.epochs_done}"
            figures.append(
                ("confusion_matrix.png", plots.plot_confusion_matrix(self.last_eval.confusion, self.classes, title))
            )
        for name, fig in figures:
            try:
                plots.save_figure(fig, self.run_dir / name)
            except OSError as exc:
                raise CheckpointError(f"could not write {self.run_dir / name}: {exc.strerror or exc}") from exc

    def fit(self) -> RunResult:
        """Run (or continue) training to ``config.epochs``; returns the :class:`RunResult`."""
        cfg = self.config
        _prepare_run_dir(self.run_dir)
        metrics.write_json(self.run_dir / "config.json", cfg.to_dict())
        self.log(
            f"training {cfg.model} AlexNet ({self.model.num_params():,} parameters) on {cfg.dataset}: "
            f"{len(self.train_labels)} train / {len(self.test_labels)} held-out images, {backend.describe()}"
        )
        self.log(f"run directory: {self.run_dir}")
        if self._resume_ckpt is None:
            self.check_initial_loss()
            self._save("last.safetensors")  # epoch 0: a good checkpoint exists before the first step
        elif self.epochs_done >= cfg.epochs:
            self.log(f"the run already has {self.epochs_done} epochs: nothing to train (raise --epochs to continue)")
        else:
            where = (
                f"epoch {self.epochs_done + 1}, step {self.step_in_epoch}"
                if self.step_in_epoch
                else f"epoch {self.epochs_done + 1}"
            )
            self.log(f"resuming at {where} of {cfg.epochs} (lr {self.optimizer.lr:g})")

        old_handlers = self._install_signal_handlers()
        self._stop_signal = None
        try:
            for epoch in range(self.epochs_done + 1, cfg.epochs + 1):
                finished = self._run_epoch(epoch)
                if not finished:
                    return self._interrupted()
                row = self._finish_epoch(epoch)
                self.log(
                    f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%} | "
                    f"held-out loss {row['test_loss']:.4f} top-1 {row['test_accuracy']:.2%} "
                    f"top-5 {row['test_top5_accuracy']:.2%} | lr {row['lr']:g} | "
                    f"{format_rate(row['images_per_second'])} img/s, {row['train_seconds']:.1f} s"
                )
                if self._stop_signal is not None and epoch < cfg.epochs:
                    return self._interrupted()
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        summary = self._write_records(final=True)
        self._write_plots()
        return RunResult(self.run_dir, summary, self.history, None, self.run_dir / "last.safetensors")

    def _interrupted(self) -> RunResult:
        path = self._save("last.safetensors", interrupted=True)
        summary = self._write_records(interrupted_by=self._stop_signal)
        self._write_plots()
        return RunResult(self.run_dir, summary, self.history, self._stop_signal, path)


def fit(config: TrainConfig | None = None, **kwargs: Any) -> RunResult:
    """``Trainer(config, **kwargs).fit()``."""
    return Trainer(config, **kwargs).fit()
