"""AlexNet on photographs, end to end: ``minialex train --dataset FOLDER`` on scikit-image's real photos, then
``minialex predict`` and ``minialex evaluate`` on its checkpoint; and the trainer's photo integration piece by
piece (the paper's pipeline from the cache's own statistics, the prefetcher and its measured wait, the data
set's identity and mean image in every checkpoint, skipped files named in the run directory).

The ``paper`` run is kept to seconds of compute on two cores: 8 training images in batches of 4, 4 validation
and 4 test images, one epoch. The cheaper tests train the ``mini`` model (3×32×32: the photos resized).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time

import numpy as np
import pytest
from photos import jpeg_bytes, needs_photos, photo, photo_folder, smooth_rgb

from minialex import backend
from minialex.cli import main
from minialex.data import load_dataset
from minialex.errors import CheckpointError, ConfigError, DataError
from minialex.training import TrainConfig, Trainer, checkpoint
from minialex.training.build import inference_parts
from minialex.training.data import DataInfo, RowSubset, RunData
from minialex.training.evaluation import class_mapping, load_trained
from minialex.training.feed import BatchFeed

pytestmark = needs_photos


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


def bad_files(root):
    """One truncated JPEG and one file that is no image, in the training split: skipped, counted, named."""
    animal = root / "train" / "animal"
    data = jpeg_bytes(smooth_rgb(300, 400))
    (animal / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (animal / "notes.png").write_bytes(b"these are not pixels\n" * 10)
    return {"train/animal/truncated.jpg", "train/animal/notes.png"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """scikit-image's photos as train/<class>/ and val/<class>/ (val/ is the reported test split), two bad files."""
    root = photo_folder(tmp_path_factory.mktemp("photos") / "set")
    bad_files(root)
    return root


def run_cli(capsys, *argv):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# -- the paper model: train one epoch, predict a JPEG and a PNG ------------------------------------------------


@pytest.mark.slow
def test_train_the_paper_model_on_photos_then_predict(folder, tmp_path, capsys):
    run = tmp_path / "run"
    status, out, err = run_cli(
        capsys, "train", "--model", "paper", "--dataset", folder, "--epochs", 1, "--batch-size", 4,
        "--limit-train", 8, "--limit-val", 4, "--limit-test", 4, "--out-dir", run, "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    dataset = load_dataset(folder)
    # The one-line summary, with the skipped files counted; the paper's pipeline; top-1 and top-5 error.
    assert f"{folder}: 2 classes" in out and "2 files skipped (1 not an image, 1 truncated or corrupt image)" in out
    assert "random 227×227 crops, flips, PCA colour noise σ = 0.1, minus the mean image" in out
    assert re.search(r"done: test top-1 .*\(top-1 error [\d.]+%, top-5 error [\d.]+%\).*centre crop", out)
    # The run directory names every skipped file, with the reason.
    record = json.loads((run / "dataset.json").read_text())
    assert {s["file"] for s in record["skipped"]} == {"train/animal/truncated.jpg", "train/animal/notes.png"}
    assert record["fingerprint"] == dataset.fingerprint and record["summary"] == dataset.summary
    # Every epoch records the time its steps waited for their batches.
    row = json.loads((run / "history.json").read_text())[0]
    assert 0.0 <= row["data_wait_seconds"] <= row["train_seconds"]
    # The checkpoint holds the class names, the data set's identity and its mean image, bit for bit.
    ckpt = checkpoint.load_checkpoint(run / "best.safetensors")
    info = ckpt.metadata["dataset"]
    assert info["classes"] == ["animal", "object"] and info["root"] == str(folder)
    assert info["fingerprint"] == dataset.fingerprint and info["skipped_files"] == 2
    assert info["image_rule"] == "paper" and info["mean_image"] is True
    np.testing.assert_array_equal(ckpt.data["mean_image"], dataset.mean_image)

    jpeg, png = photo("rocket.jpg"), photo("chelsea.png")
    status, out, err = run_cli(capsys, "predict", run / "best.safetensors", jpeg, png)
    assert status == 0, err
    printed = predictions(out)
    assert list(printed) == [str(jpeg), str(png)] and all(set(p) == {"animal", "object"} for p in printed.values())
    # The same probabilities, computed independently: decode, centre 227 crop minus the mean image's, / std.
    from minialex.data.photo import decode

    trained = load_trained(run / "best.safetensors")
    for path in (jpeg, png):
        image = decode(path).astype(np.float64) / 255.0
        x = (image - dataset.mean_image)[:, 14:241, 14:241] / np.asarray(dataset.std)[:, None, None]
        logits = backend.to_numpy(trained.model.forward(backend.asarray(x[None].astype(np.float32))))
        expected = softmax(logits.astype(np.float64))[0]
        for c, name in enumerate(dataset.classes):
            assert printed[str(path)][name] == pytest.approx(100 * expected[c], abs=0.006)  # printed to 0.01 %


def predictions(out):
    """``{image: {class: percent}}`` from predict's output (``path:`` then ``  1. name  12.34%`` lines)."""
    found, current = {}, None
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = found.setdefault(line[:-1], {})
        elif (m := re.match(r"\s+\d+\. (.+?)\s+([\d.]+)%$", line)) and current is not None:
            current[m.group(1)] = float(m.group(2))
    return found


# -- the mini model: cheap runs through every path ---------------------------------------------------------------


def mini_config(tmp_path, folder, **options):
    base = dict(model="mini", dataset=str(folder), epochs=1, batch_size=4, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **options})


def test_the_paper_pipeline_comes_from_the_cache_without_a_pass_over_the_images(folder, tmp_path, monkeypatch):
    import minialex.data.stats as stats

    def no_pass(*args, **kwargs):
        raise AssertionError("rgb_pca over the images: the cache already stores the eigen-pairs")

    monkeypatch.setattr(stats, "rgb_pca", no_pass)
    dataset = load_dataset(folder)
    trainer = Trainer(mini_config(tmp_path, folder, model="paper"), log=None)
    pipeline = trainer.pipeline
    assert pipeline.mode == "crop" and pipeline.train_augment.crop == 227 and pipeline.train_augment.flip
    assert pipeline.train_augment.pca_std == 0.1
    np.testing.assert_array_equal(pipeline.pca[0], dataset.pca[0])  # the eigen-pairs stored by the cache
    np.testing.assert_array_equal(pipeline.pca[1], dataset.pca[1])
    np.testing.assert_array_equal(backend.to_numpy(pipeline.mean_image), dataset.mean_image.astype(np.float32))
    torchvision = Trainer(mini_config(tmp_path, folder, model="torchvision"), log=None).pipeline
    assert torchvision.mode == "crop" and torchvision.train_augment.crop == 224


def test_a_subset_of_a_memory_mapped_split_stays_on_disk(folder):
    dataset = load_dataset(folder)
    data = RunData(dataset, TrainConfig(dataset=str(folder), limit_test=5))
    assert isinstance(data.test_images, RowSubset) and data.test_images.shape == (5, 3, 256, 256)
    rows = data.test_images.rows
    np.testing.assert_array_equal(data.test_images[1:3], dataset.test_images[rows[1:3]])
    np.testing.assert_array_equal(np.asarray(data.test_images), dataset.test_images[rows])
    np.testing.assert_array_equal(data.test_images[np.array([4, 0])], dataset.test_images[rows[[4, 0]]])
    assert data.test_labels.tolist() == dataset.test_labels[rows].tolist()
    assert isinstance(data.train_images, np.memmap)  # no limit: the memory map itself


def test_mini_on_photos_trains_evaluates_with_ten_crops_and_names_classes(folder, tmp_path, capsys):
    result = Trainer(mini_config(tmp_path, folder, ten_crop=True), log=None).fit()
    assert result.metrics["status"] == "complete" and result.metrics["ten_crop"] is True
    assert result.metrics["dataset"]["image_rule"] == "paper"
    best = result.run_dir / "best.safetensors"
    status, out, err = run_cli(capsys, "evaluate", best, "--ten-crop")
    assert status == 0, err
    assert re.search(r"test split \(8 images, ten crops\): top-1 error [\d.]+%, top-5 error 0.00%", out)
    status, out, _ = run_cli(capsys, "evaluate", best, "--json")
    figures = json.loads(out)
    assert figures["test_top5_error"] == 0.0 and figures["images"] == 8  # two classes: top-5 always right
    assert figures["test_error"] == pytest.approx(1 - figures["test_accuracy"])
    status, out, err = run_cli(capsys, "predict", best, photo("coffee.png"), "--ten-crop")
    assert status == 0, err
    assert re.search(r"1\. (animal|object) ", out) and re.search(r"2\. (animal|object) ", out)
    status, _, err = run_cli(capsys, "predict", best, photo("coffee.png"), "--invert")
    assert status == 2 and "--invert is for digit checkpoints" in err


def test_the_per_channel_mean_is_an_option(folder, tmp_path, capsys):
    run = tmp_path / "run"
    status, out, err = run_cli(
        capsys, "train", "--model", "mini", "--dataset", folder, "--mean", "channel", "--epochs", 1,
        "--batch-size", 4, "--out-dir", run, "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    assert "minus the channel means" in out and "minus the mean image" not in out
    ckpt = checkpoint.load_checkpoint(run / "last.safetensors")
    assert ckpt.metadata["dataset"]["mean_image"] is False and ckpt.data == {}
    trained = load_trained(run / "last.safetensors")
    assert trained.pipeline.mean_image is None and trained.image_rule == "paper"
    status, out, err = run_cli(capsys, "predict", run / "last.safetensors", photo("rocket.jpg"))
    assert status == 0 and "1. " in out, err


def test_evaluate_finds_a_moved_folder_with_dataset(folder, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved, ignore=shutil.ignore_patterns(".minialex-cache"))
    result = Trainer(mini_config(tmp_path, moved), log=None).fit()
    shutil.rmtree(moved / "train" / "object")
    status, _, err = run_cli(capsys, "evaluate", result.run_dir / "best.safetensors")
    assert status == 2 and "object" in err  # the folder no longer holds the model's classes
    status, out, err = run_cli(capsys, "evaluate", result.run_dir / "best.safetensors", "--dataset", folder)
    assert status == 0, err
    assert f"mini on {folder}, test split (8 images, centre crop)" in out


def test_resuming_on_changed_files_is_refused(folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".minialex-cache"))
    trainer = Trainer(mini_config(tmp_path, copy, epochs=2), log=None)
    trainer.on_step = lambda t, epoch, step: t.request_stop() if step == 1 else None
    result = trainer.fit()
    assert result.interrupted_by is not None
    shutil.copy(photo("coffee.png"), copy / "train" / "object" / "coffee-2.png")  # one more file
    with pytest.raises(ConfigError, match=r"files \(fingerprint \w+ vs \w+: files were added, removed or changed\)"):
        Trainer(resume=result.checkpoint, log=None)


def test_train_dataset_accepts_a_folder_and_refuses_a_missing_one(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", "--dataset", tmp_path / "absent")
    assert status == 2 and "or an image folder (train/<class>/*.jpg)" in err and "(no such folder)" in err
    (tmp_path / "empty").mkdir()
    status, _, err = run_cli(capsys, "train", "--dataset", tmp_path / "empty", "--out-dir", tmp_path / "r")
    assert status == 2 and "expected a train/ folder" in err and err.count("\n") == 1


def test_a_relative_folder_is_recorded_absolute(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(folder.parent)
    trainer = Trainer(mini_config(tmp_path, folder.name), log=None)
    assert trainer.config.dataset == str(folder) and trainer.data.info.root == str(folder)


def test_default_run_directory_is_named_after_the_folder(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(mini_config(tmp_path, folder, out_dir=None), log=None)
    assert trainer.run_dir.parent.name == "runs" and trainer.run_dir.name.endswith("-mini-set")


# -- what a checkpoint records about the data -------------------------------------------------------------------


def test_data_info_round_trips_and_reads_older_records():
    info = DataInfo("f", ["a", "b"], [0.5] * 3, [0.2] * 3, [3, 256, 256], 4, 1, 2, image_rule="paper",
                    mean_image=True, root="/x", fingerprint="abc", skipped_files=3, folders=["n1", "n2"])  # fmt: skip
    assert DataInfo.from_dict(info.to_dict(), "ckpt") == info
    old = {k: v for k, v in info.to_dict().items() if k not in ("image_rule", "mean_image", "root", "fingerprint",
                                                                  "skipped_files", "folders")}  # fmt: skip
    back = DataInfo.from_dict(old, "ckpt")
    assert (back.image_rule, back.mean_image, back.root, back.fingerprint, back.folders) == (
        "resize",
        False,
        "",
        "",
        None,
    )
    for key, value, fragment in (
        ("image_rule", "fisheye", "image_rule must be one of"),
        ("mean_image", "yes", "mean_image"),
        ("folders", ["n1"], "folders must hold one non-empty name per class (2)"),
        ("skipped_files", -1, "skipped_files"),
    ):
        with pytest.raises(CheckpointError, match=re.escape(fragment)):
            DataInfo.from_dict({**info.to_dict(), key: value}, "ckpt")


def test_a_mean_image_model_needs_its_mean_image(folder):
    dataset = load_dataset(folder)
    data = RunData(dataset, TrainConfig(dataset=str(folder)))
    config = {"variant": "mini", "num_classes": 2, "in_channels": 3}
    with pytest.raises(CheckpointError, match=r"needs a float data.mean_image of shape \(3, 256, 256\); it holds none"):
        inference_parts(TrainConfig(dataset=str(folder)), data.info, config, {})
    with pytest.raises(CheckpointError, match="it holds float64"):
        inference_parts(TrainConfig(dataset=str(folder)), data.info, config, {"mean_image": np.zeros((3, 8, 8))})
    _, pipeline = inference_parts(TrainConfig(dataset=str(folder)), data.info, config, data.arrays)
    assert pipeline.mean_image is not None


def test_checkpoint_data_arrays_round_trip(tmp_path):
    from minialex.models import alexnet

    model = alexnet("mini")
    mean_image = np.random.default_rng(0).random((3, 4, 4))
    path = checkpoint.save_checkpoint(tmp_path / "c.safetensors", model, data={"mean_image": mean_image})
    loaded = checkpoint.load_checkpoint(path)
    np.testing.assert_array_equal(loaded.data["mean_image"], mean_image)
    assert loaded.data["mean_image"].dtype == np.float64 and "mean_image" not in loaded.model_state
    assert checkpoint.load_checkpoint(checkpoint.save_checkpoint(tmp_path / "d.safetensors", model)).data == {}
    with pytest.raises(CheckpointError, match="must be a plain word"):
        checkpoint.save_checkpoint(tmp_path / "e.safetensors", model, data={"mean.image": mean_image})


def test_class_mapping_by_folder_names_and_class_names():
    info = DataInfo("imagenet", ["tench", "goldfish", "shark"], [0.5] * 3, [0.2] * 3, [3, 256, 256], 0, 0, 0,
                    folders=["n01440764", "n01443537", "n01484850"])  # fmt: skip
    assert class_mapping(info, ["tench", "goldfish", "shark"], "x") is None
    assert class_mapping(info, ["n01440764", "n01443537", "n01484850"], "x") is None
    assert class_mapping(info, ["n01484850", "n01440764"], "x").tolist() == [2, 0]
    assert class_mapping(info, ["goldfish"], "x").tolist() == [1]
    with pytest.raises(DataError, match=r"the data set's classes n0000000, cat are not among the model's 3 classes"):
        class_mapping(info, ["n0000000", "tench", "cat"], "x")


# -- the prefetcher in the loop ---------------------------------------------------------------------------------


class SlowRows:
    """uint8 rows whose reads are recorded (and optionally slow), to watch the feed read ahead."""

    def __init__(self, n, delay=0.0):
        self.data = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 2, 2), np.uint8)
        self.shape, self.dtype, self.delay = self.data.shape, self.data.dtype, delay
        self.read = []
        self.lock = threading.Lock()
        self.more = threading.Condition(self.lock)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, rows):
        time.sleep(self.delay)
        with self.more:
            self.read.append(int(np.asarray(rows)[0]))
            self.more.notify_all()
        return self.data[rows]


def test_the_feed_reads_the_next_batches_while_the_step_runs():
    images = SlowRows(40)
    batches = [np.arange(4 * b, 4 * b + 4) for b in range(10)]
    with BatchFeed(images, np.arange(40), iter(batches), ahead=3) as feed:
        first, labels = next(feed)
        # While the consumer holds batch 0, batches 1..3 are read (bounded wait: no hang if they never are).
        with images.more:
            assert images.more.wait_for(lambda: {4, 8, 12} <= set(images.read), timeout=30)
            assert not {16} & set(images.read)  # never more than `ahead` beyond the one in use
        rest = list(feed)
    assert first[:, 0, 0, 0].tolist() == labels.tolist() == [0, 1, 2, 3]
    assert [b[1][0] for b in rest] == [4 * b for b in range(1, 10)]  # in order, whatever the threads did
    assert feed.delivered == 10 and feed.waited >= 0.0


def test_the_feed_measures_the_time_the_step_waits():
    images = SlowRows(8, delay=0.2)
    with BatchFeed(images, np.arange(8), [np.arange(0, 4), np.arange(4, 8)], ahead=1) as feed:
        list(feed)
    assert feed.waited >= 0.2  # at least the first batch, which nothing can read ahead of time


def test_a_failing_read_stops_the_epoch_with_its_error():
    class Broken(SlowRows):
        def __getitem__(self, rows):
            if int(np.asarray(rows)[0]) == 4:
                raise DataError("cache row 4: input/output error")
            return super().__getitem__(rows)

    with BatchFeed(Broken(12), np.arange(12), [np.arange(0, 4), np.arange(4, 8), np.arange(8, 12)]) as feed:
        assert next(feed)[1].tolist() == [0, 1, 2, 3]
        with pytest.raises(DataError, match="cache row 4"):
            next(feed)
