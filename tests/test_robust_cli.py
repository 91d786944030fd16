"""The command line when its output goes away, cannot be encoded or cannot be written, and with odd image files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_TRAIN
from PIL import Image

from minialex.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_TRAIN


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train a network: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-robust") / "run"
    assert main(["train", *TINY, "--out-dir", str(out)]) == 0
    return out / "best.safetensors"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "TQDM_DISABLE": "1", **extra}


def minialex(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minialex", *argv], capture_output=True, timeout=300, **kwargs)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minialex: error:"), err[-3000:]
    return lines[0]


# -- output that goes away ------------------------------------------------------------------------------------


def test_piping_train_into_head_does_not_stop_the_run(tmp_path):
    """``minialex train | head -1``: the reader leaves after one line; the run finishes and writes everything."""
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "minialex", "train", *TINY, "--epochs", "2", "--out-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    first = child.stdout.readline()
    child.stdout.close()  # as head does after its line
    _, err = child.communicate(timeout=300)
    assert first.startswith(b"training mini AlexNet")
    assert child.returncode == 0, err.decode()[-3000:]
    assert b"Traceback" not in err and b"stdout lost" in err
    summary = json.loads((out / "metrics.json").read_text())
    assert (
        summary["status"] == "complete" and (out / "last.safetensors").exists() and (out / "best.safetensors").exists()
    )


def test_output_to_a_full_device_is_one_line():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "minialex", "summary"], stdout=full, stderr=subprocess.PIPE, env=env(), timeout=120
        )
    err = done.stderr.decode()
    assert done.returncode == 2 and "No space left on device" in one_line(err) and "stdout" in err


@pytest.mark.parametrize(
    ("argv", "escaped"), [(["summary"], "\\xd7"), (["train", "--help"], "\\u03b5"), (["--help"], "")]
)
def test_an_ascii_only_terminal_gets_escapes_not_a_traceback(argv, escaped):
    done = minialex(*argv, env=env(PYTHONIOENCODING="ascii"))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert escaped.encode() in done.stdout and b"Traceback" not in done.stderr


# -- summary of any size: shapes computed, nothing allocated ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["--model", "paper", "--classes", "3000000"], "3000000 classes"),
        (["--model", "paper", "--image-size", "100000"], "input 3×100000×100000"),
        (["--model", "mini", "--classes", "10", "--in-channels", "100000"], "input 100000×28×28"),
    ],
)
def test_summary_of_a_huge_model_allocates_no_weights(capsys, argv, shown):
    tracemalloc.start()
    try:
        status, out, err = run_main(capsys, "summary", *argv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0, err
    assert shown in out and peak < 64 * 2**20, peak  # the weights alone would take gigabytes


def test_a_huge_layer_is_refused_before_it_is_allocated():
    from minialex.errors import LayerInputError
    from minialex.layers import Conv2d, Linear

    with pytest.raises(LayerInputError, match=r"Linear: a parameter of shape \(1000000, 1000000\)"):
        Linear(10**6, 10**6)
    with pytest.raises(LayerInputError, match="Conv2d: a parameter of shape"):
        Conv2d(100_000, 100_000, 3)


# -- image files for predict -----------------------------------------------------------------------------------------


def test_a_16_bit_png_is_scaled_not_clipped(digits_checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(eight).save(tmp_path / "digit8.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "digit16.png")  # v · 257 >> 8 == v
    assert Image.open(tmp_path / "digit16.png").mode.startswith("I")
    s8, out8, _ = run_main(capsys, "predict", str(digits_checkpoint), str(tmp_path / "digit8.png"))
    s16, out16, _ = run_main(capsys, "predict", str(digits_checkpoint), str(tmp_path / "digit16.png"))
    assert s8 == s16 == 0
    assert out8.replace("digit8", "digitN") == out16.replace("digit16", "digitN")


def test_bad_image_files_are_one_line(digits_checkpoint, tmp_path, capsys):
    big = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(big)  # 400 M pixels in a few hundred kB
    np.savez(tmp_path / "arrays.npz", a=np.zeros((28, 28), np.uint8))
    (tmp_path / "arrays.npz").rename(tmp_path / "named.npy")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "text.npy").write_text("not an array")
    np.lib.format.open_memmap(tmp_path / "huge.npy", mode="w+", dtype=np.uint8, shape=(20_000, 20_000)).flush()
    cases = {
        "bomb.png": "image too large",
        "named.npy": "a .npz archive",
        "fifo.png": "not a regular file",
        "text.npy": "not a .npy file",
        "huge.npy": "far larger than an image",
    }
    for name, fragment in cases.items():
        status, out, err = run_main(capsys, "predict", str(digits_checkpoint), str(tmp_path / name))
        assert status == 2 and out == "" and fragment in one_line(err), (name, err)


def test_a_run_diverging_on_the_last_step_of_its_epoch_keeps_only_a_good_checkpoint(tmp_path):
    """One step per epoch (batch larger than the split): the divergence is in the last update of the epoch."""
    from minialex.training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    argv = ["train", "--lr", "1e300", "--epochs", "3", "--batch-size", "4000", "--limit-train", "256"]
    done = minialex(*argv, "--limit-val", "32", "--limit-test", "32", "--out-dir", str(out), "--no-progress", env=env())
    err = done.stderr.decode()
    line = one_line(err)  # no RuntimeWarning either
    assert done.returncode == 1 and "training diverged" in line and "epoch 1, step 1" in line
    assert f"{out / 'last.safetensors'} (after epoch 0), is kept" in line
    kept = load_checkpoint(out / "last.safetensors")  # loads: every weight finite
    assert kept.metadata["progress"]["epochs_done"] == 0 and not (out / "best.safetensors").exists()
