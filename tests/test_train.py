"""The trainer: configuration checks, exact resume, divergence, interruption, write failures, metrics, plots.

Runs are tiny (a seeded subset of a few hundred embedded digits, a couple of epochs) so the whole file takes
seconds; real learning is checked in ``test_end_to_end.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import math
import os
import signal
import threading

import numpy as np
import pytest

from minialex import backend
from minialex.data import load_dataset
from minialex.errors import CheckpointError, ConfigError, TrainingDivergedError, WriteError
from minialex.layers import Linear
from minialex.training import Trainer, checkpoint
from minialex.training.config import TrainConfig
from minialex.training.evaluation import load_trained
from minialex.training.metrics import confusion_matrix, history_csv, topk_hits, write_json, write_text_atomic
from minialex.training.plots import filter_grid, plot_confusion_matrix, plot_curves, plot_filters, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def digits():
    """The embedded MNIST-5k split, loaded once for the module."""
    return load_dataset("mnist5k")


def small_config(tmp_path, name: str = "run", **overrides) -> TrainConfig:
    """Two epochs of 5 steps (160 images, batch 32), 100 validation and 100 test images."""
    options = {
        "epochs": 2,
        "batch_size": 32,
        "limit_train": 160,
        "limit_val": 100,
        "limit_test": 100,
        "eval_batch_size": 50,
        "schedule": "plateau",
        "patience": 0,
        "out_dir": str(tmp_path / name),
    }
    options.update(overrides)
    return TrainConfig(**options)


def trainer(config: TrainConfig, digits, **kwargs) -> Trainer:
    return Trainer(config, dataset=digits, log=None, progress=False, **kwargs)


def weights(model) -> dict[str, np.ndarray]:
    return model.state_dict()


def assert_equal_arrays(a: np.ndarray, b: np.ndarray, name: str) -> None:
    """Bit for bit on NumPy. CuPy does not promise bitwise-reproducible reductions between runs, so there the
    check is float32 round-off (a resume bug, e.g. a skipped or repeated batch, changes weights by ~1e-3)."""
    if backend.on_gpu:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=name)
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def assert_same_state(a: Trainer, b: Trainer) -> None:
    """Equal weights, velocities, learning rate and schedule (bit for bit on NumPy)."""
    wa, wb = weights(a.model), weights(b.model)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert_equal_arrays(wa[name], wb[name], name)
    for name, v in a.optimizer.velocity.items():
        assert_equal_arrays(backend.to_numpy(v), backend.to_numpy(b.optimizer.velocity[name]), name)
    assert a.optimizer.lr == b.optimizer.lr
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert backend.to_numpy(a.model.params["conv1.weight"]).dtype == np.float32


def comparable(history: list[dict]) -> list[dict]:
    """History rows without the wall-clock fields."""
    timing = {"train_seconds", "eval_seconds", "images_per_second", "data_wait_seconds"}
    return [{k: v for k, v in row.items() if k not in timing} for row in history]


# -- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("model", "vgg", "model must be one of"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("batch_size", 2.5, "batch_size must be an integer >= 1"),
        ("lr", 0.0, "lr must be a finite number > 0"),
        ("lr", float("nan"), "lr must be a finite number"),
        ("momentum", 1.0, "momentum must be a finite number in [0, 1)"),
        ("weight_decay", -1e-4, "weight_decay"),
        ("schedule", "cosine", "schedule must be one of plateau, step, none"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("init", "xavier", "init must be one of None, he, paper"),
        ("dtype", "float16", "dtype must be one of float32, float64"),
        ("limit_train", 0, "limit_train must be an integer >= 1"),
        ("limit_val", -5, "limit_val must be an integer >= 1"),
        ("lr_factor", 1.0, "lr_factor must be a finite number in (0, 1)"),
        ("patience", True, "patience must be an integer >= 0"),
        ("augment", "yes", "augment must be True or False"),
        ("out_dir", 5, "out_dir must be a path or None"),
    ],
)
def test_bad_config_is_rejected_naming_the_option(option, value, fragment):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{option: value}).validate()
    assert fragment in str(info.value)
    assert repr(value)[:3] in str(info.value) or str(value) in str(info.value)


def test_config_round_trips_and_rejects_unknown_keys():
    config = TrainConfig(epochs=3, lr=0.05, schedule="none")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown training options learning_rate"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 0.1})


# -- exact resume -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    """A two-epoch run that nothing stops: the reference for the resume tests."""
    run = trainer(small_config(tmp_path_factory.mktemp("ref")), digits)
    result = run.fit()
    assert result.interrupted_by is None
    run.result = result  # the reference's metrics.json, for the resumed runs to match
    return run


@pytest.mark.parametrize(
    ("stop_epoch", "stop_step"), [(1, 5), (1, 2), (2, 3)], ids=["epoch-end", "mid-epoch-1", "mid-epoch-2"]
)
def test_interrupted_then_resumed_run_equals_uninterrupted_bit_for_bit(
    digits, tmp_path, uninterrupted, stop_epoch, stop_step
):
    def stop(run: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (stop_epoch, stop_step):
            run.request_stop(signal.SIGINT)

    first = trainer(small_config(tmp_path), digits, on_step=stop)
    result = first.fit()
    assert result.interrupted_by == signal.SIGINT
    assert result.checkpoint == tmp_path / "run" / "last.safetensors"
    meta = checkpoint.load_checkpoint(result.checkpoint).metadata
    assert meta["progress"]["interrupted"] is True
    expected_done = stop_epoch if stop_step == 5 else stop_epoch - 1
    assert meta["progress"]["epochs_done"] == expected_done
    assert meta["progress"]["step_in_epoch"] == (0 if stop_step == 5 else stop_step)

    backend.seed(12345)  # the resumed run must not depend on the process's random state
    resumed = Trainer(resume=result.checkpoint, dataset=digits, log=None, progress=False)
    assert resumed.run_dir == tmp_path / "run"
    final = resumed.fit()
    assert final.interrupted_by is None
    assert_same_state(resumed, uninterrupted)
    if backend.on_gpu:
        for got, want in zip(comparable(final.history), comparable(uninterrupted.history), strict=True):
            assert got == pytest.approx(want, rel=1e-4)
    else:
        assert comparable(final.history) == comparable(uninterrupted.history)
    assert final.metrics["epochs"] == 2
    assert final.metrics["val_accuracy"] == pytest.approx(uninterrupted.history[-1]["val_accuracy"], abs=0.011)
    assert final.metrics["test_accuracy"] == pytest.approx(uninterrupted.result.metrics["test_accuracy"], abs=0.011)
    if not backend.on_gpu:
        assert final.metrics["val_accuracy"] == uninterrupted.history[-1]["val_accuracy"]
        outcome = [k for k in uninterrupted.result.metrics if k.startswith(("val_", "test_", "best_"))]
        assert {k: final.metrics[k] for k in outcome} == {k: uninterrupted.result.metrics[k] for k in outcome}


def test_resume_can_extend_epochs_but_not_change_the_recipe(digits, tmp_path, uninterrupted):
    run = trainer(small_config(tmp_path, epochs=1), digits)
    first = run.fit()
    with pytest.raises(ConfigError, match="cannot change lr when resuming"):
        Trainer(resume=first.checkpoint, overrides={"lr": 0.5}, dataset=digits, log=None)
    with pytest.raises(ConfigError, match="either a config"):
        Trainer(TrainConfig(), resume=first.checkpoint, dataset=digits, log=None)
    with pytest.raises(ConfigError, match=r"overrides= applies to resume= only"):
        Trainer(TrainConfig(), overrides={"epochs": 3}, dataset=digits, log=None)
    with pytest.raises(ConfigError, match="unknown training options learning_rate"):
        Trainer(resume=first.checkpoint, overrides={"learning_rate": 0.5}, dataset=digits, log=None)
    longer = Trainer(resume=first.checkpoint, overrides={"epochs": 2}, dataset=digits, log=None, progress=False)
    longer.fit()
    assert_same_state(longer, uninterrupted)
    lines: list[str] = []
    again = Trainer(resume=longer.run_dir / "last.safetensors", dataset=digits, log=lines.append, progress=False)
    assert again.fit().metrics["epochs"] == 2
    assert any("nothing to train" in line for line in lines)
    assert_same_state(again, uninterrupted)
    with pytest.raises(ConfigError, match=r"epochs 1 is fewer than the 2 epochs the run .* has already done"):
        Trainer(resume=longer.run_dir / "last.safetensors", overrides={"epochs": 1}, dataset=digits, log=None)


def test_resume_rejects_a_checkpoint_that_is_not_a_training_run(tmp_path, digits):
    run = trainer(small_config(tmp_path), digits)
    path = tmp_path / "bare.safetensors"
    checkpoint.save_checkpoint(path, run.model)
    with pytest.raises(CheckpointError, match="not a minialex training checkpoint"):
        Trainer(resume=path, dataset=digits, log=None)


# -- divergence -------------------------------------------------------------------------------------------


def test_huge_learning_rate_stops_with_a_clear_error_and_keeps_the_initial_checkpoint(digits, tmp_path):
    run = trainer(small_config(tmp_path, lr=1e6), digits)
    initial = weights(run.model)
    with pytest.raises(TrainingDivergedError) as info:
        run.fit()
    message = str(info.value)
    assert "epoch 1, step" in message and "learning rate 1e+06" in message and "lower the learning rate" in message
    saved = load_trained(tmp_path / "run" / "last.safetensors")
    for name, value in weights(saved.model).items():
        assert np.isfinite(value).all()
        np.testing.assert_array_equal(value, initial[name], err_msg=name)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_injected_nan_stops_and_last_checkpoint_holds_the_pre_divergence_weights(digits, tmp_path, where):
    """A NaN in epoch 2, step 3: last.safetensors must still be the one written after epoch 1."""
    run = trainer(small_config(tmp_path), digits)
    snapshot: dict[str, np.ndarray] = {}
    last = tmp_path / "run" / "last.safetensors"

    def take_snapshot(trainer_: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            snapshot.update({k: np.array(v) for k, v in checkpoint.load_checkpoint(last).model_state.items()})

    run.on_step = take_snapshot
    poisoned = {"done": False}

    def in_epoch_2_step_3() -> bool:
        return run.state.epochs_done == 1 and run.state.step_in_epoch == 2 and not poisoned["done"]

    if where == "loss":
        original = run.pipeline.train

        def train_batch(images):
            x = original(images)
            if in_epoch_2_step_3():
                poisoned["done"] = True
                x[0, 0, 0, 0] = np.nan
            return x

        run.pipeline.train = train_batch
    else:
        head = [layer for _, layer in run.model.named_layers() if isinstance(layer, Linear)][-1]
        original_backward = run.model.backward

        def backward(dy, need_input_grad=True):
            dx = original_backward(dy, need_input_grad=need_input_grad)
            if in_epoch_2_step_3():
                poisoned["done"] = True
                head.grads["weight"][0, 0] = np.inf
            return dx

        run.model.backward = backward
    with pytest.raises(TrainingDivergedError) as info:
        run.fit()
    message = str(info.value)
    assert "epoch 2, step 3" in message and "learning rate" in message and str(last) in message
    assert ("loss became nan" in message) if where == "loss" else ("gradient of" in message)
    reloaded = checkpoint.load_checkpoint(last)
    assert reloaded.metadata["progress"]["epochs_done"] == 1
    assert snapshot and reloaded.model_state.keys() == snapshot.keys()
    for name, value in reloaded.model_state.items():
        np.testing.assert_array_equal(value, snapshot[name], err_msg=name)
        assert np.isfinite(value).all()


# -- interruption, run directory, write failures ---------------------------------------------------------------


def test_sigterm_request_saves_and_reports_the_signal(digits, tmp_path):
    run = trainer(small_config(tmp_path), digits, on_step=lambda t, e, s: s == 2 and t.request_stop(signal.SIGTERM))
    result = run.fit()
    assert result.interrupted_by == signal.SIGTERM
    assert result.metrics["status"] == "interrupted"
    assert load_trained(result.checkpoint).model.num_params() == run.model.num_params()


def test_a_real_signal_is_handled_after_the_current_step(digits, tmp_path):
    """os.kill to ourselves inside a step: the handler only flags it, the step finishes, a checkpoint is saved."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed in the main thread")
    seen = []

    def send(run: Trainer, epoch: int, step: int) -> None:
        seen.append((epoch, step))
        if (epoch, step) == (1, 2):
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    result = trainer(small_config(tmp_path), digits, on_step=send).fit()
    assert result.interrupted_by == signal.SIGINT
    assert seen[-1] == (1, 2)  # stopped right after the step in which the signal came
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert checkpoint.load_checkpoint(result.checkpoint).metadata["progress"]["step_in_epoch"] == 2


def test_unwritable_run_directory_is_a_clear_config_error(digits, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = trainer(small_config(tmp_path, out_dir=str(blocker / "run")), digits)
    with pytest.raises(ConfigError, match=r"--out-dir .*a-file/run: the run directory cannot be created"):
        run.fit()


def test_full_disk_during_the_run_is_reported_and_the_previous_checkpoint_survives(digits, tmp_path, monkeypatch):
    last = tmp_path / "run" / "last.safetensors"
    state = {"full": False, "snapshot": None}

    def fill_disk(run: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 5):  # after epoch 2's last step, before its records and checkpoints
            state["snapshot"] = {k: np.array(v) for k, v in checkpoint.load_checkpoint(last).model_state.items()}
            state["full"] = True

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    run = trainer(small_config(tmp_path), digits, on_step=fill_disk)
    with pytest.raises(WriteError, match="No space left on device"):
        run.fit()
    monkeypatch.setattr(os, "replace", real_replace)
    reloaded = checkpoint.load_checkpoint(last)
    assert reloaded.metadata["progress"]["epochs_done"] == 1
    for name, value in reloaded.model_state.items():
        np.testing.assert_array_equal(value, state["snapshot"][name], err_msg=name)
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_write_text_atomic_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    write_json(path, {"a": 1, "nan": float("nan")})
    assert path.read_text() == '{\n  "a": 1,\n  "nan": null\n}\n'

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(WriteError, match=r"history.json: No space left on device .* unchanged"):
        write_text_atomic(path, "new")
    assert path.read_text().startswith('{\n  "a": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


# -- evaluation, logging ---------------------------------------------------------------------------------------


def test_initial_loss_is_printed_and_compared_with_ln_classes(digits, tmp_path):
    lines: list[str] = []
    run = Trainer(small_config(tmp_path, epochs=1), dataset=digits, log=lines.append, progress=False)
    run.fit()
    initial = [line for line in lines if line.startswith("initial loss")]
    assert len(initial) == 1 and "ln 10 = 2.3026" in initial[0]
    assert any(line.startswith("epoch 1/1: train loss") for line in lines)


def test_a_far_off_initial_loss_is_warned_about(digits, tmp_path):
    """Normalising with a 100x too small std scales the inputs up 100x: the classic bad-preprocessing start."""
    lines: list[str] = []
    bad = dataclasses.replace(digits, std=tuple(s / 100 for s in digits.std))
    run = Trainer(small_config(tmp_path, epochs=1), dataset=bad, log=lines.append, progress=False)
    loss = run.check_initial_loss()
    assert loss > 3 * math.log(10)
    assert any(line.startswith(f"WARNING: the initial loss {loss:.4f} is far from ln 10") for line in lines)


def test_evaluation_is_deterministic_draws_nothing_and_restores_train_mode(digits, tmp_path):
    run = trainer(small_config(tmp_path), digits)
    state = backend.get_rng_state()
    a = run.evaluate()
    b = run.evaluate()
    assert backend.get_rng_state() == state
    assert run.model.training
    assert (a.loss, a.accuracy, a.top5_accuracy) == (b.loss, b.accuracy, b.top5_accuracy)
    assert a.count == 100 and a.confusion.sum() == 100 and 0 <= a.accuracy <= a.top5_accuracy <= 1
    assert a.accuracy == np.trace(a.confusion) / 100
    views = run.pipeline.ten_crops(run.data.test_images[:4])
    assert len(views) == 5  # digits are not mirrored: four corners and the centre
    assert all(v.shape == (4, 1, 28, 28) for v in views)
    ten = run.evaluate(ten_crop=True)
    assert ten.count == 100 and math.isfinite(ten.loss)


# -- metrics and plots ---------------------------------------------------------------------------------------


def test_confusion_matrix_and_topk_against_hand_counts():
    labels = np.array([0, 1, 2, 2, 1])
    preds = np.array([0, 2, 2, 1, 1])
    np.testing.assert_array_equal(confusion_matrix(labels, preds, 3), [[1, 0, 0], [0, 1, 1], [0, 1, 1]])
    scores = backend.asarray(np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]))
    hits = topk_hits(scores, np.array([1, 1]), (1, 2, 5))
    assert backend.to_numpy(hits[1]).tolist() == [False, False]
    assert backend.to_numpy(hits[2]).tolist() == [True, True]
    assert backend.to_numpy(hits[5]).tolist() == [True, True]


def test_history_csv_has_one_row_per_epoch():
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "lr": 0.1}]
    parsed = list(csv.DictReader(io.StringIO(history_csv(rows))))
    assert parsed == [{"epoch": "1", "loss": "0.5", "lr": ""}, {"epoch": "2", "loss": "0.25", "lr": "0.1"}]


def test_filter_grid_normalises_each_filter_to_its_own_range():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3, 4, 4)) * np.array([1e-3, 1.0, 10.0, 0.1, 5.0])[:, None, None, None]
    w[3] = 7.0  # a constant filter becomes mid-grey
    grid = filter_grid(w, columns=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        tile = grid[1 + 5 * r : 5 + 5 * r, 1 + 5 * c : 5 + 5 * c]
        if i == 3:
            assert np.all(tile == 0.5)
        else:
            assert tile.min() == 0.0 and tile.max() == 1.0
    assert np.all(grid[0] == 1.0)  # white separators
    gray = filter_grid(rng.standard_normal((4, 1, 3, 3)))
    assert np.allclose(gray[..., 0], gray[..., 1])


def test_plots_save_png_files(tmp_path):
    history = [
        {
            "epoch": e,
            "lr": lr,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "train_accuracy": 0.5 + e / 10,
            "val_accuracy": 0.4 + e / 10,
        }
        for e, lr in [(1, 0.1), (2, 0.1), (3, 0.01)]
    ]
    figures = {
        "curves.png": plot_curves(history),
        "filters.png": plot_filters(np.random.default_rng(0).standard_normal((96, 3, 11, 11))),
        "confusion.png": plot_confusion_matrix(np.array([[5, 1], [0, 4]]), ["cat", "dog"], title="test"),
    }
    for name, fig in figures.items():
        save_figure(fig, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert "accuracy 9/10 = 90.00%" in figures["confusion.png"].axes[0].get_title()
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="C_out, C_in, KH, KW"):
        filter_grid(np.zeros((3, 3)))
