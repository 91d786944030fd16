"""The training loop: the paper's SGD with evaluation, records, checkpoints, exact resume and safe stops.

One epoch::

    for each batch of `batch_size` indices in the order drawn from (seed, epoch):   data.batches
        images[batch], gathered ahead on threads                                      .feed (the wait measured)
        x = augment(normalise(images[batch]))                                         the input pipeline
        loss = softmax_cross_entropy(model.forward(x), labels[batch])
        model.backward(loss.backward()); optimizer.step()      v <- mu v - lambda eps w - eps dL/dw ; w <- w + v
    evaluate the validation split (eval mode: no dropout; centre view or ten crops)
    append the epoch to the history, step the schedule on the validation error
    write the records and last.safetensors (and best.safetensors when validation top-1 improved)

When the epochs are done the test split is evaluated, for the final model and for ``best.safetensors``, and
reported in ``metrics.json``; it takes no decision. The collaborators each do one job: :mod:`.build` (parts
from the config), :mod:`.data` (splits and subsets), :mod:`.feed` (batches read ahead on threads, the wait
measured), :mod:`.state` (progress), :mod:`.monitor` (running sums and divergence checks, read back from the
device in batches), :mod:`.signals` (stop requests), :mod:`.progress` (the bar), :mod:`.rundir` (files),
:mod:`.report` (rows and outcome), :mod:`.resume`.

Exact resume. Every random draw is either a function of (seed, epoch) (the data order) or comes from the one
host generator of :mod:`minialex.backend` (initialisation, dropout, augmentation), whose state every
checkpoint stores with the weights, the optimiser's and the schedule's state and the run's progress.
Resuming restores all of it and skips the batches already done, so that a resumed run ends with the same
weights as an uninterrupted one: bit for bit on NumPy (on CuPy up to the non-determinism of its reductions).

Safe stops. A NaN or infinite loss, gradient or weight raises :class:`~minialex.errors.TrainingDivergedError`
naming the epoch, the step and the learning rate; nothing is written after it, ``last.safetensors`` keeps
the last good state (an epoch-0 checkpoint is written before the first step, so there always is one).
SIGINT and SIGTERM finish the step, write a checkpoint of that exact point and return with ``interrupted_by``
set. A file that cannot be written raises :class:`~minialex.errors.WriteError`; the files already written stay.

Several ranks (``config.parallel``, under ``mpiexec``): the same loop runs on every rank; where the ranks
differ or talk (the shards, the gradient sums, rank 0 alone writing, stopping together) is
:mod:`.parallel`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minialex import backend
from minialex.data.batches import epoch_batches, num_batches
from minialex.data.datasets import is_folder_path
from minialex.errors import ConfigError
from minialex.training import metrics, report
from minialex.training.build import build_parts
from minialex.training.config import TrainConfig
from minialex.training.data import RunData
from minialex.training.evaluation import (
    EvalResult,
    check_initial_loss,
    evaluate_checkpoint,
    evaluate_model,
    evenly_spaced,
)
from minialex.training.feed import BatchFeed
from minialex.training.monitor import Divergence, StepMonitor, first_non_finite
from minialex.training.parallel import GRACEFUL_SIGNAL, RunParallel
from minialex.training.progress import ProgressBar
from minialex.training.resume import load_for_resume
from minialex.training.rundir import BEST, LAST, RunDirectory, default_run_dir
from minialex.training.saved_run import SavedRun
from minialex.training.signals import StopRequests
from minialex.training.state import RunState


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
    rank: int = 0
    """This process's rank (``--parallel``): only rank 0 writes files and reports."""


class Trainer:
    """Train an AlexNet by the paper's recipe, with checkpoints, exact resume and safe stops.

    Parameters
    ----------
    config : TrainConfig (None: the defaults) for a new run; must be None with ``resume``
    resume : path of a checkpoint to continue, with the configuration saved in it
    overrides : with ``resume``, options to change: ``epochs``, ``data_dir``, ``out_dir`` (default: the
        checkpoint's directory), ``download``; any other option that differs raises ConfigError
    log : where one-line messages go (default ``print``); None silences them
    dataset : an already loaded :class:`minialex.data.Dataset` (default: ``load_dataset(config.dataset)``)
    on_step : called as ``on_step(trainer, epoch, step)`` after every step (tests stop runs or inject faults)
    progress : show a progress bar (None: only on a terminal, and never when ``TQDM_DISABLE`` is set)
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
        self.log, self.on_step, self.progress = log or (lambda message: None), on_step, progress
        self.stops = StopRequests()
        resumption = None
        if resume is not None:
            if config is not None:
                raise ConfigError("Trainer: give either a config (a new run) or resume= (its saved config), not both")
            resumption = load_for_resume(resume, dict(overrides or {}))
            config = resumption.config
        elif overrides:
            raise ConfigError("Trainer: overrides= applies to resume= only; put the options in the config")
        self.config = cfg = (config or TrainConfig()).validate()
        saved = (resumption.checkpoint.metadata, os.fspath(resume)) if resumption is not None else (None, "")
        self.parallel = RunParallel.start(cfg.parallel, cfg.batch_size, *saved)  # before any work
        with self.parallel.guard():
            self._build(cfg, resumption, dataset)
        label = Path(cfg.dataset).name if self.data.info.root else cfg.dataset  # a folder: its name
        default = Path(resume).resolve().parent if resume is not None else default_run_dir(cfg.model, label)
        path = Path(cfg.out_dir or default)
        resuming = resume is not None and path.resolve() == Path(resume).resolve().parent
        self.directory = RunDirectory(path, fresh=cfg.out_dir is None and resume is None, resuming=resuming)
        self.last_eval: EvalResult | None = None
        self.data_wait = 0.0
        """Seconds the last epoch's steps waited for their batches (see :mod:`minialex.training.feed`)."""
        self._saved_at = self.state.position

    def _build(self, cfg: TrainConfig, resumption: Any, dataset: Any) -> None:
        """The data, the parts and the progress (a resumed run's from its checkpoint), on every rank."""
        par = self.parallel
        if not par.is_root:
            self.log, self.progress = (lambda message: None), False
            self.stops.quiet = True
        if par.size > 1:
            self.stops.signals = (*self.stops.signals, GRACEFUL_SIGNAL)
        if dataset is None and is_folder_path(cfg.dataset):  # an image folder: found again from any directory
            cfg.dataset = os.path.abspath(os.path.expanduser(cfg.dataset))
        backend.seed(cfg.seed)
        self.data = par.root_first(lambda: RunData.load(cfg, dataset, log=self.log))
        if resumption is not None:
            resumption.check_data(self.data)  # before anything is built
        self.parts = build_parts(cfg, self.data, wrap=par.wrap)
        self.model, self.optimizer, self.scheduler = self.parts.model, self.parts.optimizer, self.parts.scheduler
        self.pipeline = self.parts.pipeline
        self.resumed = resumption is not None
        if resumption is None:
            self.state = RunState()
            par.seed_ranks(cfg.seed)
        else:
            par.adapt_checkpoint(resumption.checkpoint, self.model)
            self.state = resumption.restore(self.parts)
            par.after_restore(resumption.checkpoint, self.state)

    @property
    def run_dir(self) -> Path:
        return self.directory.path

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop after the current step, save a checkpoint, and return (as Ctrl-C does)."""
        self.stops.request(signum)

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        """Run (or continue) training to ``config.epochs``; returns the :class:`RunResult`."""
        with self.parallel.guard():
            result = self._fit()
        self.parallel.close()
        return result

    def _fit(self) -> RunResult:
        cfg, state = self.config, self.state
        try:
            with self.stops:  # from the start: a stop during the first checkpoint waits for it to be written
                if self.parallel.is_root:  # rank 0 writes every file of the run
                    self.directory.prepare(cfg.to_dict())
                stopped = self._train(cfg, state)
            return stopped or self._complete()  # the test split: the usual signal handling applies again
        finally:
            self.directory.release()

    def _train(self, cfg: TrainConfig, state: RunState) -> RunResult | None:
        """Train to ``cfg.epochs``; the result of a stopped run, or None when every epoch is done."""
        if self.parallel.is_root:
            if self.data.folder is not None:  # a photo folder: what was used, and every file skipped, by name
                metrics.write_json(self.run_dir / "dataset.json", self.data.folder)
            for line in report.start_messages(cfg, state, self.data, self.parts, self.run_dir, self.resumed):
                self.log(line)
            if self.resumed and (moved := self.directory.set_aside_unfinished_best(state.epochs_done)):
                self.log(moved)
        if state.global_step == 0:  # a new run (or one resumed before its first step)
            self.check_initial_loss()
            self._save(LAST)  # epoch 0: a good checkpoint exists before the first step
        for epoch in range(state.epochs_done + 1, cfg.epochs + 1):
            if self._stop_agreed() or not self._train_epoch(epoch):
                return self._stopped()
            self._end_epoch(epoch)
            if self._stop_agreed() and epoch < cfg.epochs:
                return self._stopped()
        return None

    def _stop_agreed(self) -> bool:
        """Whether a stop was requested (on any rank: every rank gets the same answer)."""
        self.stops.signal = self.parallel.agree_stop(self.stops.signal)
        return self.stops.signal is not None

    def _train_epoch(self, epoch: int) -> bool:
        """Train ``epoch`` from the step reached; False when a stop was requested before its end."""
        cfg, state, data = self.config, self.state, self.data
        n, done = len(data.train_labels), state.step_in_epoch
        steps, monitor = num_batches(n, cfg.batch_size), StepMonitor(state.partial)
        batches = epoch_batches(n, cfg.batch_size, seed=cfg.seed, epoch=epoch, start=done)
        batches = (self.parallel.shard(batch) for batch in batches)  # data parallelism: this rank's share
        self.model.train()
        feed = BatchFeed(data.train_images, data.train_labels, batches)
        with feed, ProgressBar(steps, done, f"epoch {epoch}/{cfg.epochs}", self.progress) as bar:
            for step, (images, labels) in enumerate(feed, start=done + 1):
                self._step(monitor, step, images, labels, min(cfg.batch_size, n - (step - 1) * cfg.batch_size))
                state.step_in_epoch, state.global_step = step, state.global_step + 1
                bar.advance()
                if monitor.due():
                    self._flush(monitor, epoch)
                    bar.show(state.partial)
                if self.on_step is not None:
                    self.on_step(self, epoch, step)
                if self._stop_agreed() and step < steps:
                    break
            self._flush(monitor, epoch, weights=True)  # before any checkpoint: no bad weights saved as good
        self.data_wait = feed.waited
        return state.step_in_epoch == steps

    def _step(self, monitor: StepMonitor, step: int, images: np.ndarray, labels: np.ndarray, total: int) -> None:
        """One SGD step on ``images`` (this rank's share of a batch of ``total``; all of it on one process)."""
        if len(labels) == 0:  # data parallelism: a last batch smaller than the rank count leaves this rank none
            self.parallel.backward(self.model, None, 0, total)
            self.optimizer.step()
            return
        x = self.pipeline.train(images)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught and named by the monitor
            logits = self.model.forward(x)
            loss = self.parts.loss.forward(logits, labels)  # host labels: no device round trip
            self.parallel.backward(self.model, self.parts.loss.backward(), len(labels), total)
            monitor.observe(step, self.state.global_step + 1, loss, logits, labels, self.model.grads)
            self.optimizer.step()

    def _flush(self, monitor: StepMonitor, epoch: int, weights: bool = False) -> None:
        problem = monitor.flush()
        bad = first_non_finite(self.model.params) if problem is None and weights else None
        if bad is not None:
            problem = Divergence(
                self.state.step_in_epoch, self.state.global_step, f"an update made {bad} NaN or infinite"
            )
        if problem is not None:
            raise problem.error(epoch, self.optimizer.lr, self.directory.last, self._saved_at)

    def _end_epoch(self, epoch: int) -> None:
        """Evaluate on the validation split, record the epoch, step the schedule, write records and checkpoints."""
        state, started = self.state, time.perf_counter()
        state.partial = self.parallel.global_totals(state.partial)  # data parallelism: every rank's shard
        self.last_eval = val = self.evaluate()
        state.finish_epoch(
            report.epoch_row(
                epoch, self.optimizer.lr, state.partial, val, time.perf_counter() - started, self.data_wait
            )
        )
        if self.scheduler is not None:
            self.scheduler.step(val.error)  # the lr it sets applies from the next epoch on, and is saved below
        improved = state.improves(epoch, val.accuracy)
        if self.parallel.is_root:
            self.directory.write_records(state.history, self._summary("running"))
        if improved:  # best first: killed between the two, the resumed run repeats this epoch and its best
            self._save(BEST)
        self._save(LAST)
        self.log(report.epoch_message(state.history[-1], self.config.epochs))

    def _stopped(self) -> RunResult:
        self.state.partial = self.parallel.global_totals(self.state.partial)
        path = self._save(LAST, interrupted=True)
        summary = self._summary("interrupted")
        if self.parallel.is_root:
            self.directory.write_records(self.state.history, summary)
        self._plots(None)
        return RunResult(self.run_dir, summary, self.history, self.stops.signal, path, self.parallel.rank)

    def _complete(self) -> RunResult:
        """Report the test split: the final model and best.safetensors (the same weights when best is last)."""
        state, test = self.state, (self.data.test_images, self.data.test_labels)
        final = self.evaluate(*test)
        cfg, root = self.config, self.parallel.is_root
        plotted = self._plotted_model()  # a collective when split: before rank 0 alone reads best.safetensors
        best = (
            final  # the other ranks write nothing: they need not read best.safetensors
            if state.best_epoch == state.epochs_done or not root
            else evaluate_checkpoint(self.directory.best, *test, cfg.ten_crop, cfg.evaluation_batch_size, self.log)
        )
        summary = self._summary("complete", final, best)
        if root:
            self.directory.write_records(state.history, summary)
        self._plots(final, plotted)
        return RunResult(self.run_dir, summary, self.history, None, self.directory.last, self.parallel.rank)

    # -- helpers ----------------------------------------------------------------------------------------------
    def evaluate(self, images: Any = None, labels: Any = None, ten_crop: bool | None = None) -> EvalResult:
        """Loss, top-1/top-5 accuracy and confusion matrix on ``images`` (default: the validation split)."""
        images = self.data.val_images if images is None else images
        labels = self.data.val_labels if labels is None else labels
        ten_crop = self.config.ten_crop if ten_crop is None else ten_crop
        return evaluate_model(self.model, self.pipeline, images, labels, self.config.evaluation_batch_size, ten_crop)

    def initial_loss(self, count: int = 500) -> float:
        """Mean loss on ``count`` evenly spaced training images (eval mode, no random draws)."""
        idx = evenly_spaced(len(self.data.train_labels), count)
        return self.evaluate(self.data.train_images[idx], self.data.train_labels[idx], ten_crop=False).loss

    def check_initial_loss(self) -> float:
        """Log the initial loss against ln(classes), warning when it is far off (see ``check_initial_loss``)."""
        loss = self.initial_loss()
        check_initial_loss(loss, len(self.data.classes), self.log)
        return loss

    def _save(self, name: str, interrupted: bool = False) -> Path:
        """Write checkpoint ``name`` (rank 0; under model parallelism every rank first gathers the weights)."""
        progress = dataclasses.replace(self.state, interrupted=interrupted)
        saved = SavedRun(self.config, self.data.info, progress, self.model.config)
        parts, metadata = self.parallel.checkpoint_parts(self.parts), saved.to_metadata()
        ranks = self.parallel.metadata()
        if ranks is not None:
            metadata["parallel"] = ranks
        path = self.directory.path / name
        if self.parallel.is_root:
            path = self.directory.save_checkpoint(name, parts, metadata, self.data.arrays)
        if name == LAST:
            self._saved_at = self.state.position
        return path

    def _summary(self, status: str, final: EvalResult | None = None, best: EvalResult | None = None) -> dict:
        run = {"config": self.config.to_dict(), "model": self.model.config, "parameters": self.model.num_params()}
        return report.summary(status, self.state, {**run, "dataset": self.data.info.to_dict()}, final, best)

    def _plotted_model(self) -> Any:
        """What the plots read (``conv1.weight``): the model, or under model parallelism its gathered conv1."""
        return self.parallel.full_params(self.model, ("conv1.weight",)) if self.state.history else self.model

    def _plots(self, test: EvalResult | None, model: Any = None) -> None:
        result, split = (test, "test") if test is not None else (self.last_eval, "validation")
        model = self._plotted_model() if model is None else model
        if self.parallel.is_root:
            self.directory.write_plots(self.state, model, self.config, self.data.classes, result, split)


def fit(config: TrainConfig | None = None, **kwargs: Any) -> RunResult:
    """``Trainer(config, **kwargs).fit()``."""
    return Trainer(config, **kwargs).fit()
