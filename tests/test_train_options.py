"""The trainer's model and optimiser options: --optimizer sgd|adam|adamw, --widths, --norm, padding to 32×32.

Exact resume with Adam and BatchNorm (the moments, the step count and the running statistics restored bit for
bit on NumPy), the Keras CIFAR-10 model on the embedded digits padded to 32×32 and on a tiny fake CIFAR-10
archive (no network), and the clear errors for a checkpoint that does not fit.
"""

from __future__ import annotations

import hashlib
import json
import signal

import numpy as np
import pytest
from helpers import cifar_archive

from minialex import backend
from minialex.cli import main
from minialex.data import datasets, load_dataset
from minialex.data.download import RemoteFile
from minialex.errors import CheckpointError, ConfigError
from minialex.optim import SGD, Adam, AdamW
from minialex.training import Trainer, checkpoint
from minialex.training.config import TrainConfig, parse_widths
from minialex.training.evaluation import load_trained
from minialex.training.padding import input_padding

SMALL_KERAS = [8, 16, 16, 16, 8, 32, 32]  # keras-cifar10's layers at a few channels: a step takes milliseconds


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k")


def small(tmp_path, name: str = "run", **overrides) -> TrainConfig:
    """Two epochs of 4 steps (128 images, batch 32), 64 validation and 64 test images."""
    options = {
        "epochs": 2, "batch_size": 32, "limit_train": 128, "limit_val": 64, "limit_test": 64, "eval_batch_size": 64,
        "schedule": "step", "step_size": 1, "out_dir": str(tmp_path / name),
    }  # fmt: skip
    return TrainConfig(**{**options, **overrides})


def trainer(cfg: TrainConfig, digits, **kwargs) -> Trainer:
    return Trainer(cfg, dataset=digits, log=None, progress=False, **kwargs)


def state_of(run: Trainer) -> dict[str, np.ndarray]:
    """Weights, running statistics and every optimiser tensor, as host arrays."""
    out = {f"model.{k}": v for k, v in run.model.state_dict().items()}
    for key, value in run.optimizer.state_dict().items():
        if isinstance(value, dict):
            out.update({f"optim.{key}.{name}": np.asarray(array) for name, array in value.items()})
    return out


# -- configuration ------------------------------------------------------------------------------------------


def test_each_optimiser_gets_its_own_defaults_recorded_in_the_config():
    assert (TrainConfig().lr, TrainConfig().weight_decay) == (0.02, 5e-4)
    assert (TrainConfig(optimizer="adam").lr, TrainConfig(optimizer="adam").weight_decay) == (1e-3, 0.0)
    assert (TrainConfig(optimizer="adamw").lr, TrainConfig(optimizer="adamw").weight_decay) == (1e-3, 0.01)
    assert TrainConfig(optimizer="adam", lr=0.01).validate().lr == 0.01
    config = TrainConfig(optimizer="adam", widths=[8, 8, 8], norm="batchnorm", norm_at="every").validate()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
        ({"norm": "group"}, "norm must be one of"),
        ({"norm_at": "every"}, "norm_at 'every' needs norm"),
        ({"widths": [8, 0]}, r"widths must be an integer in \[1, 65536\], got 0"),
        ({"widths": "8,8"}, "widths must be a list of 1 to 16 positive integers"),
        ({"pad": -1}, "pad must be an integer >= 0"),
        ({"optimizer": "adam", "momentum": 0.5}, "momentum applies to optimizer 'sgd' only"),
        ({"optimizer": "adamw", "momentum": 0.0}, "momentum applies to optimizer 'sgd' only"),
    ],
)
def test_bad_options_are_named(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**options).validate()


def test_parse_widths():
    assert parse_widths("64,192,384,384,256") == [64, 192, 384, 384, 256]
    with pytest.raises(ConfigError, match="separated by commas, got '64;192'"):
        parse_widths("64;192")


def test_the_trainer_builds_the_optimiser_and_model_the_config_names(digits, tmp_path):
    run = trainer(small(tmp_path, optimizer="adamw", widths=[8, 8, 8, 16], norm="batchnorm"), digits)
    assert type(run.optimizer) is AdamW and run.optimizer.lr == 1e-3 and run.optimizer.weight_decay == 0.01
    assert run.model.config["widths"] == [8, 8, 8, 16] and type(run.model["norm1"]).__name__ == "BatchNorm2d"
    assert type(trainer(small(tmp_path, "sgd"), digits).optimizer) is SGD
    assert run.config.pad == 0  # digits fit mini's 28×28 as they are


def test_input_padding_rule():
    assert input_padding((1, 28, 28), (1, 32, 32)) == 2
    assert input_padding((1, 28, 28), (1, 28, 28)) == 0
    assert input_padding((1, 28, 28), (1, 224, 224)) == 0  # far smaller: resized, not padded
    assert input_padding((1, 27, 27), (1, 32, 32)) == 0  # an odd margin cannot be centred


# -- exact resume with Adam and BatchNorm ------------------------------------------------------------------


@pytest.fixture(scope="module")
def adam_bn_reference(digits, tmp_path_factory):
    cfg = small(tmp_path_factory.mktemp("ref"), optimizer="adam", norm="batchnorm", widths=[8, 8, 16, 32])
    run = trainer(cfg, digits)
    run.result = run.fit()
    return run


@pytest.mark.parametrize(("stop_epoch", "stop_step"), [(1, 2), (2, 1)])
def test_adam_and_batchnorm_resume_bit_for_bit(digits, tmp_path, adam_bn_reference, stop_epoch, stop_step):
    def stop(run: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (stop_epoch, stop_step):
            run.request_stop(signal.SIGINT)

    cfg = small(tmp_path, optimizer="adam", norm="batchnorm", widths=[8, 8, 16, 32])
    first = trainer(cfg, digits, on_step=stop).fit()
    assert first.interrupted_by == signal.SIGINT
    ckpt = checkpoint.load_checkpoint(first.checkpoint)
    assert ckpt.metadata["config"]["optimizer"] == "adam" and ckpt.metadata["config"]["lr"] == 1e-3
    assert ckpt.optimizer_state["kind"] == "Adam" and ckpt.optimizer_state["step"] == 4 * (stop_epoch - 1) + stop_step
    assert {"norm1.running_mean", "norm2.running_var"} <= set(ckpt.model_state)
    assert "conv1.weight" in ckpt.optimizer_state["m"] and "norm1.weight" in ckpt.optimizer_state["v"]

    backend.seed(999)  # the resumed run must not depend on the process's random state
    resumed = Trainer(resume=first.checkpoint, dataset=digits, log=None, progress=False)
    assert type(resumed.optimizer) is Adam
    final = resumed.fit()
    reference = adam_bn_reference
    assert resumed.optimizer.steps == reference.optimizer.steps == 8
    got, want = state_of(resumed), state_of(reference)
    assert got.keys() == want.keys() and "model.norm1.running_var" in got and "optim.v.fc5.bias" in got
    for name in want:
        if backend.on_gpu:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    if not backend.on_gpu:
        assert final.metrics["val_accuracy"] == reference.result.metrics["val_accuracy"]


def test_resume_refuses_another_optimiser(digits, tmp_path, adam_bn_reference):
    last = adam_bn_reference.run_dir / "last.safetensors"
    with pytest.raises(ConfigError, match="cannot change optimizer"):
        Trainer(resume=last, overrides={"optimizer": "sgd"}, dataset=digits, log=None, progress=False)


def test_checkpoints_that_do_not_fit_are_clear_errors(adam_bn_reference, tmp_path):
    """Adam moments of the wrong shape, an SGD state for Adam, a model without its running statistics."""
    run = adam_bn_reference
    path = run.run_dir / "last.safetensors"
    ckpt = checkpoint.load_checkpoint(path)
    ckpt.optimizer_state["m"]["conv1.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match=r"does not fit this model: .*'m' tensors.*conv1\.weight"):
        checkpoint.restore(ckpt, run.model, run.optimizer, run.scheduler)

    ckpt = checkpoint.load_checkpoint(path)
    with pytest.raises(
        CheckpointError, match=r"expected an SGD state \(velocities\), got the state of a 'Adam' optimiser"
    ):
        checkpoint.restore(ckpt, run.model, SGD(run.model), rng=False)

    ckpt = checkpoint.load_checkpoint(path)
    del ckpt.model_state["norm1.running_mean"], ckpt.model_state["norm1.running_var"]
    with pytest.raises(CheckpointError, match=r"missing.*norm1\.running_mean"):
        checkpoint.restore(ckpt, run.model, rng=False)


# -- the Keras CIFAR-10 model --------------------------------------------------------------------------------


def test_keras_cifar10_trains_on_digits_padded_to_32(digits, tmp_path):
    run = trainer(small(tmp_path, model="keras-cifar10", optimizer="adam", widths=SMALL_KERAS, epochs=1), digits)
    assert run.model.input_shape == (1, 32, 32) and run.config.pad == 2
    assert run.pipeline.describe().startswith("zero padding 2 on each side, then 32×32 -> 32×32")
    images = run.data.train_images[:4]
    x = backend.to_numpy(run.pipeline.eval(images))
    assert x.shape == (4, 1, 32, 32)
    border = x[:, :, :2, :]  # the padded rows are black pixels, standardised like the image's own
    black = (0.0 - run.data.info.mean[0]) / run.data.info.std[0]
    np.testing.assert_allclose(border, black, rtol=1e-6)
    result = run.fit()
    assert json.loads((run.run_dir / "config.json").read_text())["pad"] == 2
    assert np.isfinite(result.metrics["test_accuracy"])
    trained = load_trained(run.run_dir / "best.safetensors")
    assert trained.model.input_shape == (1, 32, 32) and trained.pipeline.pad == 2
    assert backend.to_numpy(trained.pipeline.eval(images)).shape == (4, 1, 32, 32)


def test_cli_trains_keras_cifar10_on_cifar10_with_adam(tmp_path, monkeypatch, capsys):
    """``minialex train --model keras-cifar10 --dataset cifar10 --optimizer adam`` on a fake, already cached
    archive of 20 + 4 images (the full-size model, a few steps), then evaluate and resume refuse nothing."""
    archive = cifar_archive(per_batch=8)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    remote = RemoteFile("cifar-10-binary.tar.gz", hashlib.sha256(archive).hexdigest(), ("http://127.0.0.1:9/x",))
    monkeypatch.setitem(datasets.SOURCES, "cifar10", datasets.Source("cifar", (remote,), 40, 8))
    out = tmp_path / "run"
    argv = [
        "train", "--model", "keras-cifar10", "--dataset", "cifar10", "--optimizer", "adam", "--epochs", "1",
        "--batch-size", "8", "--data-dir", str(tmp_path), "--no-download", "--out-dir", str(out), "--no-progress",
        "--limit-train", "16", "--limit-val", "8", "--limit-test", "8",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["optimizer"], config["lr"], config["pad"]) == ("keras-cifar10", "adam", 1e-3, 0)
    ckpt = checkpoint.load_checkpoint(out / "last.safetensors")
    assert ckpt.model_config["variant"] == "keras-cifar10" and ckpt.optimizer_state["kind"] == "Adam"
    assert ckpt.model_state["norm2.running_var"].shape == (256,)
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.safetensors"), "--data-dir", str(tmp_path), "--no-download"]) == 0


def test_cli_train_options_reach_the_config(tmp_path, digits, capsys):
    out = tmp_path / "run"
    argv = [
        "train", "--optimizer", "adamw", "--lr", "0.002", "--widths", "8,8,8,16", "--norm", "none", "--epochs", "1",
        "--out-dir", str(out), "--no-progress", "--limit-train", "64", "--limit-val", "32", "--limit-test", "32",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("adamw", 0.002, 0.01)
    assert (config["widths"], config["norm"], config["norm_at"]) == ([8, 8, 8, 16], "none", None)
    assert "--widths" in main_usage_error(capsys, ["train", "--widths", "8,,8"])


def main_usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().err
