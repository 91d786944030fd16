"""A run end to end on a few hundred digits: the validation split decides, the test split reports; the epoch
order; few host-device read-backs; divergence caught late but named exactly; resume refuses other data.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from minialex import backend
from minialex.data import load_dataset
from minialex.data.batches import epoch_batches
from minialex.errors import ConfigError, DataError, TrainingDivergedError
from minialex.training import Trainer, checkpoint, monitor
from minialex.training.config import TrainConfig
from minialex.training.evaluation import evaluate_model, load_trained
from minialex.training.state import RunState


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k")


def config(tmp_path, **overrides) -> TrainConfig:
    options = {
        "epochs": 3,
        "batch_size": 32,
        "limit_train": 160,
        "limit_val": 60,
        "limit_test": 80,
        "eval_batch_size": 40,
        "schedule": "plateau",
        "patience": 0,
        "out_dir": str(tmp_path / "run"),
    }
    return TrainConfig(**{**options, **overrides})


def trainer(cfg: TrainConfig, digits, **kwargs) -> Trainer:
    return Trainer(cfg, dataset=digits, log=None, progress=False, **kwargs)


@pytest.fixture(scope="module")
def decided(digits, tmp_path_factory):
    """Three epochs whose validation scores of epochs 2 and 3 are forced to 0, so that best.safetensors is epoch 1:
    every evaluation, every schedule step and the result are recorded."""
    run = trainer(config(tmp_path_factory.mktemp("decided")), digits)
    calls, schedule_metrics = [], []
    evaluate, step = run.evaluate, run.scheduler.step

    def recording_evaluate(images=None, labels=None, ten_crop=None):
        result = evaluate(images, labels, ten_crop)
        split = "val" if images is None else "test" if labels is run.data.test_labels else "train"
        calls.append((split, run.state.epochs_done, run.state.step_in_epoch))
        if split == "val" and run.state.epochs_done >= 1:
            result = dataclasses.replace(result, accuracy=0.0)
        return result

    def recording_step(metric=None):
        schedule_metrics.append(metric)
        return step(metric)

    run.evaluate, run.scheduler.step = recording_evaluate, recording_step
    result = run.fit()
    return run, result, calls, schedule_metrics


def test_validation_decides_the_schedule_and_the_best_checkpoint(decided):
    run, result, _, schedule_metrics = decided
    history = result.history
    val = [row["val_accuracy"] for row in history]
    assert val[1:] == [0.0, 0.0] and val[0] > 0
    assert schedule_metrics == [1.0 - v for v in val]  # the plateau rule saw the validation error, epoch by epoch
    assert result.metrics["best_epoch"] == 1 and result.metrics["best_val_accuracy"] == val[0]
    best = checkpoint.load_checkpoint(run.run_dir / "best.safetensors")
    assert best.metadata["progress"]["epochs_done"] == 1
    assert [sorted(k for k in row if k.startswith(("val_", "test_"))) for row in history] == [
        ["val_accuracy", "val_error", "val_loss", "val_top5_accuracy", "val_top5_error"]
    ] * 3


def test_the_test_split_is_evaluated_once_at_the_end_and_only_reported(decided):
    run, result, calls, _ = decided
    assert [c for c in calls if c[0] == "test"] == [("test", 3, 0)]  # after the last epoch, never before
    assert [c[1] for c in calls if c[0] == "val"] == [0, 1, 2]  # one validation per epoch, before it closes
    assert calls[0][0] == "train"  # the initial-loss check
    m = result.metrics
    assert m["status"] == "complete" and m["test_images"] == 80 and m["val_images"] == 60
    test_images, test_labels = run.data.test_images, run.data.test_labels
    final = load_trained(run.run_dir / "last.safetensors").evaluate(test_images, test_labels, batch_size=40)
    best = load_trained(run.run_dir / "best.safetensors").evaluate(test_images, test_labels, batch_size=40)
    assert (m["test_accuracy"], m["test_top5_accuracy"], m["test_loss"]) == (
        final.accuracy,
        final.top5_accuracy,
        final.loss,
    )
    assert (m["best_test_accuracy"], m["best_test_loss"]) == (best.accuracy, best.loss)
    assert m["test_error"] == pytest.approx(1 - final.accuracy) and m["best_test_top5_error"] is not None
    on_disk = json.loads((run.run_dir / "metrics.json").read_text())
    assert on_disk["test_accuracy"] == m["test_accuracy"] and on_disk["best_test_accuracy"] == m["best_test_accuracy"]


def test_each_checkpoint_stores_the_run_state(decided):
    run, *_ = decided
    saved = checkpoint.load_checkpoint(run.run_dir / "last.safetensors").metadata["progress"]
    assert saved == run.state.to_dict() and RunState.from_dict(saved) == run.state
    assert saved["history"] == json.loads((run.run_dir / "history.json").read_text())


def test_the_trainer_visits_the_seeded_epoch_order_from_data_batches(digits, tmp_path):
    run = trainer(config(tmp_path, epochs=2, limit_train=100, augment=False), digits)
    seen = []
    original = run.pipeline.train
    run.pipeline.train = lambda images: seen.append(images.copy()) or original(images)
    run.fit()
    expected = [run.data.train_images[take] for epoch in (1, 2) for take in epoch_batches(100, 32, seed=0, epoch=epoch)]
    assert [len(x) for x in seen] == [32, 32, 32, 4] * 2
    for got, want in zip(seen, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_one_read_back_per_flush_and_sums_exact_as_if_read_every_step(digits, tmp_path, monkeypatch):
    """20 steps, a flush every 16: between the first and the last step, one read-back of the device rows."""
    monkeypatch.setattr(monitor, "FLUSH_SECONDS", math.inf)
    reads = {"n": 0}
    real = backend.to_numpy

    def counting(a):
        reads["n"] += 1
        return real(a)

    monkeypatch.setattr(backend, "to_numpy", counting)
    losses, marks = [], {}
    run = trainer(
        config(tmp_path, epochs=1, limit_train=640), digits, on_step=lambda t, e, s: marks.setdefault(s, reads["n"])
    )
    forward = run.parts.loss.forward

    def loss_forward(logits, labels):
        loss = forward(logits, labels)
        losses.append((float(real(loss)), len(labels)))  # what a per-step read would have seen
        return loss

    run.parts.loss.forward = loss_forward
    result = run.fit()
    assert marks[20] - marks[1] == 1  # the flush after step 16; nothing else reads the device during the steps
    expected = 0.0
    for loss, count in losses:
        expected += loss * count
    assert result.history[0]["train_loss"] == expected / 640  # bit for bit


def test_a_divergence_between_flushes_is_named_at_its_exact_step(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(monitor, "FLUSH_SECONDS", math.inf)
    steps = []
    run = trainer(config(tmp_path, epochs=1, limit_train=640), digits, on_step=lambda t, e, s: steps.append(s))
    original = run.pipeline.train  # 20 steps: flushes after steps 16 and 20

    def poison(images):
        x = original(images)
        if run.state.step_in_epoch == 2:  # the third step
            x[:] = np.nan
        return x

    run.pipeline.train = poison
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan at epoch 1, step 3 \(global step 3\)"):
        run.fit()
    assert steps == list(range(1, 16))  # found by the read-back after step 16, not by a read per step
    assert run.state.partial.seen == 64  # the two good steps were counted, nothing after them


def test_weights_made_non_finite_by_the_last_update_are_never_saved_as_good(digits, tmp_path):
    def break_weights(run: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (1, 5):
            run.model.params["conv1.weight"][0, 0, 0, 0] = np.inf

    run = trainer(config(tmp_path), digits, on_step=break_weights)
    initial = run.model.state_dict()
    with pytest.raises(TrainingDivergedError) as info:
        run.fit()
    message = str(info.value)
    assert "an update made conv1.weight NaN or infinite at epoch 1, step 5" in message and "(after epoch 0)" in message
    saved = checkpoint.load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert saved.metadata["progress"]["epochs_done"] == 0
    for name, value in saved.model_state.items():
        np.testing.assert_array_equal(value, initial[name], err_msg=name)
    assert not (tmp_path / "run" / "best.safetensors").exists() and not (tmp_path / "run" / "history.json").exists()


def test_resume_refuses_other_data_and_names_the_difference(digits, tmp_path):
    first = trainer(config(tmp_path, epochs=1), digits)
    first.fit()
    order = np.random.default_rng(1).permutation(len(digits.train_labels))
    shuffled = dataclasses.replace(
        digits, train_images=digits.train_images[order], train_labels=digits.train_labels[order]
    )
    with pytest.raises(ConfigError, match=r"was trained on other data .*labels \(the splits hold other images\)"):
        Trainer(resume=tmp_path / "run" / "last.safetensors", dataset=shuffled, log=None)
    fewer = dataclasses.replace(digits, val_images=digits.val_images[:50], val_labels=digits.val_labels[:50])
    with pytest.raises(ConfigError, match="val_images 60 vs 50"):
        Trainer(resume=tmp_path / "run" / "last.safetensors", dataset=fewer, log=None)


def test_an_interrupted_run_reports_no_test_figures(digits, tmp_path):
    run = trainer(config(tmp_path), digits, on_step=lambda t, e, s: (e, s) == (2, 2) and t.request_stop())
    result = run.fit()
    assert result.metrics["status"] == "interrupted" and result.metrics["epochs"] == 1
    assert result.metrics["test_accuracy"] is None and result.metrics["best_test_accuracy"] is None
    assert result.metrics["val_accuracy"] == result.history[0]["val_accuracy"]
    with pytest.raises(ConfigError, match=r"epochs 1 is fewer than the 2 epochs the run .* has already started"):
        Trainer(resume=result.checkpoint, overrides={"epochs": 1}, dataset=digits, log=None)


def test_loading_a_model_for_inference_changes_no_random_draw(decided):
    run, *_ = decided
    backend.seed(42)
    before = backend.get_rng_state()
    trained = load_trained(run.run_dir / "best.safetensors")
    assert backend.get_rng_state() == before
    assert trained.classes == run.data.classes and trained.image_shape == (1, 28, 28)
    assert trained.saved.progress.epochs_done == 1
    with pytest.raises(DataError, match=r"predict: expected uint8 images \(N, 1, 28, 28\), got shape \(2, 28, 28\)"):
        trained.predict(np.zeros((2, 28, 28), np.uint8))


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.array([0, -1, 2, 3]), "labels must lie in [0, 10) for a 10-class model, found -1"),
        (np.array([0, 1, 10, 3]), "found 10"),
        (np.array([0.0, 1.0, 2.0, 3.0]), "labels must be a 1-D integer array, got float64"),
        (np.array([[0, 1, 2, 3]]), "labels must be a 1-D integer array"),
        (np.array([0, 1, 2]), "4 images but 3 labels"),
    ],
)
def test_evaluation_rejects_bad_labels_before_indexing(decided, labels, fragment):
    run, *_ = decided
    with pytest.raises(DataError) as info:
        evaluate_model(run.model, run.pipeline, run.data.test_images[:4], labels, 2)
    assert fragment in str(info.value)
    with pytest.raises(DataError, match="no images to evaluate"):
        evaluate_model(run.model, run.pipeline, run.data.test_images[:0], np.zeros(0, np.int64), 2)


def test_an_empty_split_is_refused_before_anything_is_built(digits, tmp_path):
    empty = dataclasses.replace(digits, val_images=digits.val_images[:0], val_labels=digits.val_labels[:0])
    with pytest.raises(DataError, match=r"dataset mnist5k: the val split is empty; a run needs .* validation images"):
        trainer(config(tmp_path), empty)
