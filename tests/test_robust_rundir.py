"""A run directory belongs to one run; a kill or a stop at the worst moment loses nothing and lies about nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minialex.cli import main
from minialex.data import load_dataset
from minialex.errors import ConfigError
from minialex.training import TrainConfig, Trainer, loop, rundir
from minialex.training.checkpoint import load_checkpoint
from minialex.training.rundir import BEST, LAST, LOCK, RunDirectory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train networks: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k")


def config(out_dir: Path | None, **overrides) -> TrainConfig:
    """Epochs of 2 steps of 32 images; every epoch improves on the last (plateau schedule, patience 0)."""
    options = {"epochs": 2, "batch_size": 32, "limit_train": 64, "limit_val": 40, "limit_test": 40}
    options.update(schedule="plateau", patience=0, out_dir=None if out_dir is None else str(out_dir))
    return TrainConfig(**{**options, **overrides})


def fit(cfg: TrainConfig | None, digits, **kwargs):
    return Trainer(cfg, dataset=digits, log=None, progress=False, **kwargs).fit()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- one directory, one run -------------------------------------------------------------------------------------


def test_a_directory_holding_a_run_is_refused_unless_resumed(digits, tmp_path, capsys):
    out = tmp_path / "run"
    first = fit(config(out, epochs=1), digits)
    before = {name: digest(out / name) for name in (LAST, BEST, "history.json", "metrics.json", "config.json")}
    with pytest.raises(ConfigError, match=r"already holds a run \(last\.safetensors, best\.safetensors\).*--resume"):
        fit(config(out, epochs=1, lr=0.01), digits)
    status = main(["train", "--epochs", "1", "--limit-train", "64", "--out-dir", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "already holds a run" in err
    assert {name: digest(out / name) for name in before} == before  # nothing was touched
    assert not (out / LOCK).exists()
    resumed = fit(None, digits, resume=first.checkpoint, overrides={"epochs": 2})  # resuming it is allowed
    assert resumed.history[-1]["epoch"] == 2 and not (out / LOCK).exists()


def test_a_directory_in_use_by_a_live_run_is_refused_and_a_dead_runs_lock_is_taken_over(digits, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(ConfigError, match=rf"in use by another run \(process {sleeper.pid}"):
            fit(config(out, epochs=1), digits)
        assert not (out / LAST).exists() and (out / LOCK).read_text().startswith(str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()
    (out / LOCK).write_text(f"{dead_pid()} {os.uname().nodename}\n")  # its process was killed: a stale lock
    result = fit(config(out, epochs=1), digits)
    assert (out / LAST).exists() and result.history and not (out / LOCK).exists()


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    first, second = RunDirectory(tmp_path / "run"), RunDirectory(tmp_path / "run")
    first.prepare({"a": 1})
    try:
        with pytest.raises(ConfigError, match=rf"in use by another run \(process {os.getpid()}"):
            second.prepare({"a": 2})
        assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"a": 1}
    finally:
        first.release()
    second.prepare({"a": 2})
    second.release()


def test_default_names_are_unique_even_in_the_same_second(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "default_run_dir", lambda model, dataset: Path("runs") / f"same-second-{model}")
    a = fit(config(None, epochs=1), digits)
    b = fit(config(None, epochs=1), digits)
    assert a.run_dir.name == "same-second-mini" and b.run_dir.name == "same-second-mini-2"
    assert (a.run_dir / LAST).exists() and (b.run_dir / LAST).exists()
    names = [RunDirectory(tmp_path / "runs" / "x", fresh=True) for _ in range(3)]
    for d in names:
        d.prepare({})
        d.release()
    assert [d.path.name for d in names] == ["x", "x-2", "x-3"]


# -- killed between best and last, stopped during the first checkpoint -------------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even the error handling of the run)."""


def test_killed_between_best_and_last_then_resumed_reports_a_best_that_exists(digits, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = RunDirectory.save_checkpoint
    written: list[tuple[str, int]] = []

    def save_then_die(self, name, parts, metadata, data=None):
        path = real(self, name, parts, metadata, data)
        epoch = metadata["progress"]["epochs_done"]
        written.append((name, epoch))
        if epoch == 2:
            raise Killed  # after the first checkpoint of epoch 2, before the other one
        return path

    monkeypatch.setattr(RunDirectory, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        fit(config(out, epochs=3), digits)
    monkeypatch.undo()
    assert written[-1] == (BEST, 2)  # best is written first ...
    assert load_checkpoint(out / LAST).metadata["progress"]["epochs_done"] == 1  # ... so last is still epoch 1
    (out / LOCK).write_text(f"{dead_pid()} {os.uname().nodename}\n")  # a SIGKILL leaves its lock behind
    stale = out / f".{BEST}.tmp-{dead_pid()}-0badcafe"
    stale.write_bytes(b"half a checkpoint")  # ... and the temporary it was writing
    result = fit(None, digits, resume=out / LAST)
    best_epoch = result.metrics["best_epoch"]
    assert (out / BEST).exists() and not stale.exists()
    assert load_checkpoint(out / "superseded-best-epoch2.safetensors").metadata["progress"]["epochs_done"] == 2
    assert load_checkpoint(out / BEST).metadata["progress"]["epochs_done"] == best_epoch


def test_sigterm_during_the_first_checkpoint_waits_for_it_then_stops(tmp_path):
    """A real SIGTERM, sent while the epoch-0 checkpoint is being written: it completes, the run stops cleanly."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from minialex.training import Trainer, TrainConfig, rundir
        real = rundir.RunDirectory.save_checkpoint
        def save(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the first write
            return real(self, *args, **kwargs)
        rundir.RunDirectory.save_checkpoint = save
        cfg = TrainConfig(epochs=1, batch_size=32, limit_train=64, limit_val=40, limit_test=40, out_dir={str(tmp_path / "run")!r})
        result = Trainer(cfg, log=None, progress=False).fit()
        print("interrupted_by", result.interrupted_by)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"interrupted_by {int(signal.SIGTERM)}" in done.stdout
    run = tmp_path / "run"
    assert load_checkpoint(run / LAST).metadata["progress"]["interrupted"] is True
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary, no lock left


def test_the_default_run_directory_helper_still_names_time_model_and_data():
    name = rundir.default_run_dir("mini", "mnist5k")
    assert name.parent == Path("runs") and name.name.endswith("-mini-mnist5k")
