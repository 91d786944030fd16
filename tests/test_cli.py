"""The ``minialex`` command: help, one-line errors, summary, evaluate and predict on a tiny run's checkpoint,
resume rules, and real SIGINT/SIGTERM sent to a training subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import RUN_DIRECTORY_FILES

from minialex.cli import load_image, main
from minialex.data import load_dataset
from minialex.training import checkpoint

SUBCOMMANDS = ["train", "evaluate", "predict", "convert", "summary"]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


TINY = [
    *("--epochs", "1", "--limit-train", "96", "--limit-val", "40", "--limit-test", "50"),
    *("--batch-size", "32", "--no-progress"),
]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A one-epoch run on 96 digits, through the CLI; its run directory."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out-dir", str(out)]) == 0
    return out


# -- help and usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)], ids=["minialex", *SUBCOMMANDS])
def test_help_everywhere(capsys, command):
    status, out, err = run_main(capsys, *command, "--help")
    assert status == 0 and err == ""
    assert out.startswith("usage: minialex")
    if command == ["train"]:
        for option in ("--model", "--dataset", "--epochs", "--batch-size", "--lr", "--schedule", "--seed"):
            assert option in out
        for option in ("--out-dir", "--data-dir", "--resume", "--debug"):
            assert option in out
        assert "--limit-train" not in out  # hidden, for tests


def test_python_dash_m_runs_the_same_cli():
    done = subprocess.run(
        [sys.executable, "-m", "minialex", "--help"], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert done.returncode == 0 and "train" in done.stdout and "summary" in done.stdout


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["train", "--lr", "fast"], "expected a positive finite number, got 'fast'"),
        (["train", "--lr", "-1"], "expected a positive finite number, got '-1'"),
        (["train", "--model", "vgg"], "invalid choice: 'vgg'"),
        (["train", "--dataset", "imagenet"], "or an image folder (train/<class>/*.jpg), got 'imagenet'"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["evaluate"], "the following arguments are required: CHECKPOINT"),
        (["predict", "x.safetensors"], "the following arguments are required: IMAGE"),
        (["summary", "--classes", "many"], "expected a positive integer, got 'many'"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, fragment):
    status, out, err = run_main(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert err.startswith("minialex")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["evaluate", "missing.safetensors"], "missing.safetensors"),
        (["predict", "missing.safetensors", "x.png"], "missing.safetensors"),
        (["train", "--resume", "missing.safetensors"], "missing.safetensors"),
    ],
)
def test_minialex_errors_give_one_line_and_status_2(capsys, argv, fragment):
    status, _, err = run_main(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("minialex: error:") and fragment in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    status, _, err = run_main(capsys, "evaluate", "missing.safetensors", "--debug")
    assert status == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("minialex: error:")


def test_unwritable_out_dir_is_one_clear_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, err = run_main(capsys, "train", *TINY, "--out-dir", str(blocker / "run"))
    assert status == 2 and err.count("\n") == 1
    assert "--out-dir" in err and "cannot be created or written" in err


def test_a_diverged_run_exits_with_status_1(capsys, tmp_path):
    # 1e30 overflows float32 within two steps whatever the initial draw (1e6 merely might).
    status, _, err = run_main(capsys, "train", *TINY, "--lr", "1e30", "--out-dir", str(tmp_path / "run"))
    assert status == 1 and err.count("\n") == 1 and "training diverged:" in err and "Traceback" not in err
    assert "--lr 1e+29" in err  # the hint


def test_running_out_of_memory_is_one_line_and_status_1(capsys, monkeypatch):
    import minialex.models

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 512. GiB for an array")

    monkeypatch.setattr(minialex.models, "alexnet", too_big)
    status, _, err = run_main(capsys, "summary", "--model", "paper")
    assert status == 1 and err == (
        "minialex: error: out of memory (Unable to allocate 512. GiB for an array): try a smaller --batch-size "
        "or model\n"
    )


def test_help_documents_the_exit_statuses(capsys):
    status, out, _ = run_main(capsys, "--help")
    assert status == 0
    epilog = out[out.index("exit status:") :]
    for code, meaning in [("0", "success"), ("1", "diverged"), ("2", "bad arguments"), ("130", "SIGINT")]:
        assert any(line.split()[:1] == [code] and meaning in line for line in epilog.splitlines()), code
    assert "MINIALEX_BACKEND" in epilog and "MINIALEX_THREADS" in epilog


@pytest.mark.parametrize(
    ("variable", "value", "argv", "fragment"),
    [
        ("MINIALEX_BACKEND", "bogus", ["--help"], "MINIALEX_BACKEND='bogus' is not a known backend"),
        ("MINIALEX_BACKEND", "bogus", ["train", "--help"], "expected one of numpy, cupy, auto"),
        ("MINIALEX_BACKEND", "bogus", ["evaluate", "x.safetensors"], "MINIALEX_BACKEND='bogus'"),
        ("MINIALEX_THREADS", "many", ["summary"], "MINIALEX_THREADS must be an integer >= 1 (the number of threads), got 'many'"),
    ],
)
def test_a_bad_environment_is_one_line_and_status_2_in_every_subcommand(variable, value, argv, fragment):
    env = {**subprocess_env(), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "minialex", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("minialex: error: ") and fragment in done.stderr


def test_importing_the_package_imports_no_backend_until_it_is_used():
    code = (
        "import sys, minialex; "
        "assert 'minialex.backend' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules); "
        "minialex.seed(3); print(minialex.backend.name, 'seed' in dir(minialex))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "True"]


# -- summary --------------------------------------------------------------------------------------------------


def test_summary_of_the_paper_model(capsys):
    status, out, _ = run_main(capsys, "summary", "--model", "paper")
    assert status == 0
    assert "60,965,224" in out and "conv1" in out and "fc8" in out


# -- evaluate / predict / resume on a tiny run ---------------------------------------------------------------------


def test_tiny_run_directory(tiny_run):
    assert RUN_DIRECTORY_FILES <= {p.name for p in tiny_run.iterdir()}


def test_evaluate_matches_the_run_metrics(capsys, tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    status, out, err = run_main(capsys, "evaluate", str(tiny_run / "best.safetensors"), "--limit-test", "50", "--json")
    assert status == 0, err
    result = json.loads(out)
    # --limit-test on evaluate takes the same seeded subset of 50 test images as the run: the same figures.
    assert 0.0 <= result["test_accuracy"] <= result["test_top5_accuracy"] <= 1.0
    assert result["images"] == 50 and metrics["test_images"] == 50 and result["split"] == "test"
    assert (
        result["test_accuracy"] == metrics["test_accuracy"] == metrics["best_test_accuracy"]
    )  # one epoch: best = last
    assert result["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-5)  # another batch size
    status, out, _ = run_main(
        capsys, "evaluate", str(tiny_run / "best.safetensors"), "--split", "val", "--limit-val", "40", "--json"
    )
    val = json.loads(out)
    assert status == 0 and val["split"] == "val" and val["images"] == 40 and "test_accuracy" not in val
    assert val["val_accuracy"] == metrics["val_accuracy"] == metrics["best_val_accuracy"]
    status, out, _ = run_main(
        capsys, "evaluate", str(tiny_run / "last.safetensors"), "--ten-crop", "--limit-test", "100"
    )
    assert status == 0 and "ten crops" in out and "top-1 accuracy" in out and "(100 images" in out
    assert "test split" in out


def test_predict_png_npy_and_inverted(capsys, tiny_run, tmp_path):
    from PIL import Image

    digits = load_dataset("mnist5k")
    digit = digits.test_images[0, 0]
    png = tmp_path / "digit.png"
    Image.fromarray(255 - digit).resize((56, 56)).save(png)  # dark on light, twice the size
    npy = tmp_path / "digit.npy"
    np.save(npy, digit.astype(np.float32) / 255.0)
    status, out, err = run_main(capsys, "predict", str(tiny_run / "best.safetensors"), str(png), str(npy), "--invert")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{png}:" and lines[6] == f"{npy}:"
    ranks = [line for line in lines if line.strip()[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(ranks) == 10
    probs = [float(line.split()[-1].rstrip("%")) for line in ranks[:5]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01


def test_load_image_converts_layouts(tmp_path):
    rgb = np.zeros((3, 10, 12), dtype=np.uint8)
    rgb[0] = 255
    np.save(tmp_path / "chw.npy", rgb)
    assert load_image(tmp_path / "chw.npy", (3, 5, 6)).shape == (3, 5, 6)
    gray = load_image(tmp_path / "chw.npy", (1, 28, 28))
    assert gray.shape == (1, 28, 28) and gray.dtype == np.uint8 and 70 < gray.mean() < 85  # ITU-R 601: 0.299·255
    (tmp_path / "junk.png").write_bytes(b"not an image")
    from minialex.errors import DataError

    with pytest.raises(DataError, match=r"junk\.png: cannot be read as an image"):
        load_image(tmp_path / "junk.png", (1, 28, 28))
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError, match="expected an image array"):
        load_image(tmp_path / "bad.npy", (1, 28, 28))


def test_resume_rejects_a_changed_recipe_in_one_line(capsys, tiny_run):
    status, _, err = run_main(capsys, "train", "--resume", str(tiny_run / "last.safetensors"), "--lr", "0.5")
    assert status == 2 and err.count("\n") == 1 and "cannot change lr when resuming" in err


# -- real signals to a training subprocess -------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig, status):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "minialex", "train", "--epochs", "50", "--limit-train", "512", "--limit-test", "50"]
    proc = subprocess.Popen(
        [*argv, "--no-progress", "--out-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / "last.safetensors").exists():  # the epoch-0 checkpoint: training is about to start
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert (
        f"stopped by {sig.name}" in stderr
        and f"resume with: minialex train --resume {out / 'last.safetensors'}" in stderr
    )
    saved = checkpoint.load_checkpoint(out / "last.safetensors")
    assert saved.metadata["progress"]["interrupted"] is True
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
