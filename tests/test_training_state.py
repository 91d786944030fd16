"""What a checkpoint restores, described once: the run state, the data description and the option rules.

Every field read back from a checkpoint is checked; a bad one is a CheckpointError naming it, never a run
started from nonsense or a KeyError.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from minialex.errors import CheckpointError, ConfigError
from minialex.models import alexnet
from minialex.training.config import RULES, Rule, TrainConfig
from minialex.training.data import DataInfo, labels_digest, split_subset, subset_indices
from minialex.training.saved_run import SavedRun, check_model_config
from minialex.training.state import EpochTotals, RunState


def a_state() -> RunState:
    """A run two epochs in, three steps into the third, with a best epoch and a history."""
    state = RunState()
    for epoch in (1, 2):
        state.partial.add(loss=2.0 / epoch, correct=20 * epoch, count=32)
        state.partial.seconds = 1.5
        state.finish_epoch({"epoch": epoch, "lr": 0.01, "train_loss": 2.0 / epoch, "val_accuracy": 0.5 + epoch / 10})
        state.improves(epoch, 0.5 + epoch / 10)
    state.partial.add(loss=0.75, correct=30, count=32)
    state.step_in_epoch, state.global_step = 3, 13
    return state


def test_run_state_round_trips_through_json():
    state = a_state()
    data = json.loads(json.dumps(state.to_dict()))
    back = RunState.from_dict(data, "ckpt")
    assert back == state
    assert back.partial == EpochTotals(loss_sum=24.0, correct=30, seen=32, seconds=0.0)
    assert (back.best_epoch, back.best_val_accuracy) == (2, 0.7)
    assert back.position == "epoch 3, step 3" and RunState().position == "after epoch 0"
    assert back.images_per_second == pytest.approx(64 / 3.0)


def test_finish_epoch_folds_the_partial_sums_in_and_resets_them():
    state = RunState()
    state.partial.add(1.0, 3, 4)
    state.partial.add(0.5, 1, 2)
    assert state.partial.loss == pytest.approx(5.0 / 6) and state.partial.accuracy == pytest.approx(4 / 6)
    state.partial.seconds = 2.0
    state.finish_epoch({"epoch": 1})
    assert (state.epochs_done, state.step_in_epoch, state.train_images_seen, state.train_seconds) == (1, 0, 6, 2.0)
    assert state.partial == EpochTotals()


def test_best_is_the_first_epoch_with_the_highest_validation_accuracy():
    state = RunState()
    assert [state.improves(e, acc) for e, acc in enumerate([0.5, 0.7, 0.7, 0.6, 0.8], 1)] == [
        True,
        True,
        False,  # a tie keeps the earlier epoch
        False,
        True,
    ]
    assert (state.best_epoch, state.best_val_accuracy) == (5, 0.8)


def _broken(edit):
    data = a_state().to_dict()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.pop("history"), "progress fields differ (missing ['history']"),
        (lambda d: d.update(extra=1), "unexpected ['extra']"),
        (lambda d: d.update(epochs_done=-1), "progress.epochs_done must be an integer >= 0, got -1"),
        (lambda d: d.update(epochs_done=True), "progress.epochs_done must be an integer"),
        (lambda d: d.update(step_in_epoch=2.5), "progress.step_in_epoch must be an integer"),
        (lambda d: d.update(global_step=1), "progress.global_step 1 < step_in_epoch"),
        (lambda d: d.update(best_epoch=3), "progress.best_epoch must be an integer in [0, 2], got 3"),
        (lambda d: d.update(best_val_accuracy=1.5), "progress.best_val_accuracy must be a finite number in [0, 1]"),
        (lambda d: d.update(best_val_accuracy=None), "best_epoch and best_val_accuracy disagree"),
        (lambda d: d.update(train_seconds=float("nan")), "progress.train_seconds must be a finite number"),
        (lambda d: d.update(interrupted="no"), "progress.interrupted must be True or False"),
        (lambda d: d["partial"].pop("seen"), "progress.partial must hold loss_sum, correct, seen and seconds"),
        (lambda d: d["partial"].update(correct=99), "progress.partial.correct must be an integer in [0, 32], got 99"),
        (lambda d: d["partial"].update(loss_sum=-1.0), "progress.partial.loss_sum must be a finite number >= 0"),
        (lambda d: d["history"].pop(), "one row per finished epoch (2), got 1 rows"),
        (lambda d: d["history"].reverse(), "history row 1 is not the row of epoch 1"),
        (lambda d: d["history"][0].update(train_loss=float("inf")), "history row 1: train_loss = inf is not a number"),
        (lambda d: d["history"][1].update(lr=[0.1]), "history row 2: lr = [0.1] is not a number"),
    ],
)
def test_every_bad_progress_field_is_named(edit, fragment):
    with pytest.raises(CheckpointError) as info:
        RunState.from_dict(_broken(edit), "checkpoint c.safetensors")
    assert "checkpoint c.safetensors" in str(info.value) and fragment in str(info.value)


def test_progress_that_is_not_an_object_is_rejected():
    with pytest.raises(CheckpointError, match="progress must be a JSON object, got list"):
        RunState.from_dict([], "ckpt")


# -- the data description --------------------------------------------------------------------------------------


def an_info(**changes) -> dict:
    info = {
        "name": "digits",
        "classes": ["0", "1", "2"],
        "mean": [0.13],
        "std": [0.31],
        "image_shape": [1, 28, 28],
        "train_images": 30,
        "val_images": 5,
        "test_images": 10,
        "source": "here",
        "labels_sha256": "ab" * 32,
    }
    return {**info, **changes}


def test_data_info_round_trips_and_format_1_lacks_the_new_fields():
    info = DataInfo.from_dict(an_info(), "ckpt")
    assert DataInfo.from_dict(json.loads(json.dumps(info.to_dict())), "ckpt") == info
    old = an_info()
    del old["val_images"], old["labels_sha256"]
    v1 = DataInfo.from_dict(old, "ckpt")
    assert v1.val_images == 0 and v1.labels_sha256 is None


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"classes": []}, "dataset.classes must be a non-empty list of names"),
        ({"classes": [0, 1]}, "dataset.classes must be a non-empty list of names"),
        ({"image_shape": [1, 28]}, "dataset.image_shape must be [C, H, W]"),
        ({"image_shape": [1, 0, 28]}, "dataset.image_shape must be an integer in [1, 4096], got 0"),
        ({"mean": [0.1, 0.2]}, "dataset.mean must hold 1 numbers"),
        ({"std": [0.0]}, "dataset.std must be a finite number > 0, got 0.0"),
        ({"train_images": -3}, "dataset.train_images must be an integer >= 0"),
        ({"name": 7}, "dataset.name, .source and .labels_sha256 must be text"),
    ],
)
def test_bad_data_info_is_named(changes, fragment):
    with pytest.raises(CheckpointError) as info:
        DataInfo.from_dict(an_info(**changes), "ckpt")
    assert fragment in str(info.value)
    with pytest.raises(CheckpointError, match="dataset lacks 'classes'"):
        DataInfo.from_dict({k: v for k, v in an_info().items() if k != "classes"}, "ckpt")


def test_data_differences_name_each_field():
    a = DataInfo.from_dict(an_info(), "a")
    assert a.differences(copy.deepcopy(a)) == []
    b = DataInfo.from_dict(an_info(train_images=31, mean=[0.14], classes=["0", "1", "x"], labels_sha256="cd" * 32), "b")
    assert a.differences(b) == [
        "train_images 30 vs 31",
        "mean [0.13] vs [0.14]",
        "class names (3 vs 3 classes)",
        "labels (the splits hold other images)",
    ]
    unknown = DataInfo.from_dict(an_info(labels_sha256=None), "c")
    assert a.differences(unknown) == []  # format 1 recorded no labels digest: nothing to compare


def test_subsets_are_seeded_sorted_and_the_same_for_every_caller():
    class Data:
        train_images = np.arange(100 * 4, dtype=np.uint8).reshape(100, 1, 2, 2)
        train_labels = np.arange(100, dtype=np.int64) % 10

    assert subset_indices(100, None, 0, "train") is None and subset_indices(100, 100, 0, "train") is None
    idx = subset_indices(100, 20, 7, "train")
    assert len(idx) == 20 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, subset_indices(100, 20, 7, "train"))
    assert not np.array_equal(idx, subset_indices(100, 20, 8, "train"))
    assert not np.array_equal(idx, subset_indices(100, 20, 7, "test"))  # each split draws its own subset
    images, labels = split_subset(Data(), "train", 20, 7)
    np.testing.assert_array_equal(labels, Data.train_labels[idx])
    np.testing.assert_array_equal(images, Data.train_images[idx])
    with pytest.raises(ConfigError, match="split must be one of train, val, test"):
        split_subset(Data(), "dev", 3, 0)


def test_labels_digest_sees_order_and_split_boundaries():
    a, b = np.array([1, 2, 3]), np.array([4])
    assert labels_digest(a, b) == labels_digest(a.copy(), b.astype(np.int32))
    assert labels_digest(a, b) != labels_digest(a[::-1], b)
    assert labels_digest(a, b) != labels_digest(np.array([1, 2]), np.array([3, 4]))


# -- the model configuration and the saved run --------------------------------------------------------------------


def test_model_config_is_checked_before_anything_is_built():
    info = DataInfo.from_dict(an_info(), "ckpt")
    good = {"variant": "mini", "num_classes": 3, "in_channels": 1, "image_size": 28, "init": "he", "dtype": "float32"}
    assert check_model_config({**good, "widths": [4, 4, 8, 16]}, info, "ckpt")["widths"] == [4, 4, 8, 16]
    bad = [
        ({**good, "variant": "vgg"}, "model.variant must be one of"),
        ({**good, "image_size": 10**9}, "model.image_size must be an integer in [1, 65536]"),
        ({**good, "dtype": "float16"}, "model.dtype must be one of float32, float64"),
        ({**good, "widths": "4,4"}, "model.widths must be a list of 1 to 16 integers"),
        ({**good, "num_classes": 5}, "the model has 5 classes and 1 input channels, its data set 3 classes"),
        ({"num_classes": 3}, "the model entry is not an AlexNet configuration"),
        (None, "the model entry is not an AlexNet configuration"),
    ]
    for config, fragment in bad:
        with pytest.raises(CheckpointError) as exc:
            check_model_config(config, info, "ckpt")
        assert fragment in str(exc.value), config


class FakeCheckpoint:
    def __init__(self, metadata, model_config, version=2, path="c.safetensors"):
        self.metadata, self.model_config, self.format_version = metadata, model_config, version
        self.path, self.minialex_version = path, "0.1.0"
        self.model_state = alexnet(**model_config).state_dict()  # the tensors must fit the model config


def test_saved_run_round_trips_and_checks_each_part():
    config = TrainConfig(epochs=3, limit_train=30)
    info = DataInfo.from_dict(an_info(), "x")
    model = {"variant": "mini", "num_classes": 3, "in_channels": 1}
    saved = SavedRun(config, info, a_state(), model)
    meta = json.loads(json.dumps(saved.to_metadata()))
    back = SavedRun.from_checkpoint(FakeCheckpoint(meta, model), resumable=True)
    assert (back.config, back.dataset, back.progress, back.model_config) == (config, info, saved.progress, model)

    with pytest.raises(CheckpointError, match=r"c\.safetensors is not a minialex training checkpoint"):
        SavedRun.from_checkpoint(FakeCheckpoint({"epoch": 3}, model))
    future = {**meta, "config": {**meta["config"], "label_smoothing": 0.1}}
    with pytest.raises(CheckpointError, match=r"unknown training options label_smoothing \(written by minialex 0.1"):
        SavedRun.from_checkpoint(FakeCheckpoint(future, model))
    with pytest.raises(CheckpointError, match="lr must be a finite number > 0"):
        SavedRun.from_checkpoint(FakeCheckpoint({**meta, "config": {**meta["config"], "lr": -1}}, model))
    with pytest.raises(CheckpointError, match="progress must be a JSON object"):
        SavedRun.from_checkpoint(FakeCheckpoint({**meta, "progress": None}, model))
    old = FakeCheckpoint({"config": meta["config"], "dataset": meta["dataset"], "progress": {}}, model, version=1)
    assert SavedRun.from_checkpoint(old).progress is None  # format 1: can be evaluated
    with pytest.raises(CheckpointError, match=r"checkpoint format 1 .* can be evaluated .* but not resumed"):
        SavedRun.from_checkpoint(old, resumable=True)


# -- the option rules (shared with the command line) -------------------------------------------------------------


def test_rules_check_and_describe_their_bounds():
    assert RULES["epochs"].check(np.int64(3), "epochs") == 3 and type(RULES["epochs"].check(np.int64(3), "e")) is int
    assert RULES["limit_val"].check(None, "limit_val") is None
    assert RULES["lr"].check(np.float32(0.5), "lr") == 0.5
    descriptions = {name: rule.describe() for name, rule in RULES.items()}
    assert descriptions["epochs"] == "a positive integer"
    assert descriptions["seed"] == "a non-negative integer"
    assert descriptions["lr"] == "a positive finite number"
    assert descriptions["weight_decay"] == "a finite number >= 0"
    assert descriptions["momentum"] == "a finite number in [0, 1)"
    assert descriptions["lr_factor"] == "a finite number in (0, 1)"
    assert Rule(int, low=2).describe() == "an integer >= 2" and Rule(float).describe() == "a finite number"
    for name, rule in RULES.items():  # every rule rejects what it describes as out of bounds
        with pytest.raises(ConfigError, match=name):
            rule.check(-1 if rule.low is not None else math.inf, name)


def test_config_validation_normalises_values_so_that_they_are_json():
    config = TrainConfig(epochs=np.int64(2), lr=np.float32(0.25), out_dir=Path("runs/x"), seed=np.uint8(3)).validate()
    assert config.to_dict()["out_dir"] == "runs/x" and type(config.epochs) is int and type(config.seed) is int
    json.dumps(config.to_dict())
    assert config.evaluation_batch_size == config.batch_size == 64
    assert TrainConfig(eval_batch_size=500).evaluation_batch_size == 500
    with pytest.raises(ConfigError, match="checkpoint x: the training configuration must be a JSON object"):
        TrainConfig.from_dict([1, 2], source="checkpoint x")
    with pytest.raises(ConfigError, match="dataset must be a data set's name"):
        TrainConfig(dataset="").validate()
