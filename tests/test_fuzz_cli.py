"""Hypothesis drives the command line's parser and a checkpoint's metadata: only minialex's one-line errors escape.

Whatever the arguments or the metadata values, :func:`minialex.cli.main` must return a status (0, or 2 with
exactly one ``minialex: error:`` line on stderr) or exit through argparse (``--help``: 0; a usage error: 2 and
one line); any other exception, or a traceback, is a failure. Training itself is replaced by a stub once the
configuration is validated, so that an example never starts a real run.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from helpers import TINY_TRAIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import minialex.training
from minialex.cli import main
from minialex.training import checkpoint

TINY = TINY_TRAIN


class Reached(BaseException):
    """The stub trainer was built: the arguments were parsed and the configuration validated."""


class StubTrainer:
    def __init__(self, config=None, *, resume=None, overrides=None, **_):
        if resume is not None:
            raise Reached
        config.validate()
        raise Reached


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train a network: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


def call(argv: list[str]) -> tuple[int, str]:
    """(status, stderr) of ``main(argv)``; asserts the outcome is one of the allowed ones."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
        except Reached:
            status = 0
    text = err.getvalue()
    assert status in (0, 2), (argv, status, text[-2000:])
    assert "Traceback" not in text, (argv, text[-2000:])
    if status == 2:
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1 and ("error:" in lines[0]), (argv, text[-2000:])
        assert len(lines[0]) < 2000, (argv, len(lines[0]))
    return status, text


# -- the argument parser ---------------------------------------------------------------------------------------

HOSTILE = st.sampled_from(
    ["", "-1", "0", "1e309", "nan", "inf", "-inf", "1e-320", "99999999999999999999", "0x10", "1_000", " 3 ", "é", "\0",
     "--", "-", "../../etc/passwd", "/dev/zero", "/dev/full", "NUL", "a" * 300, "3.5", "true", "None"]
)  # fmt: skip
VALUES = st.one_of(HOSTILE, st.text(max_size=12), st.integers(-(10**20), 10**20).map(str), st.floats().map(str))
TRAIN_OPTIONS = ["--model", "--dataset", "--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay",
                 "--schedule", "--lr-factor", "--patience", "--max-reductions", "--step-size", "--seed", "--init",
                 "--eval-batch-size", "--out-dir", "--data-dir", "--resume", "--dtype", "--mean", "--limit-train"]  # fmt: skip
FLAGS = ["--no-augment", "--ten-crop", "--no-download", "--no-progress", "--json", "--invert", "--force", "--bogus"]
OTHER_OPTIONS = ["--split", "--batch-size", "--top", "--classes", "--in-channels", "--image-size", "--model",
                 "--dataset", "-o", "--limit-test"]  # fmt: skip


@st.composite
def argvs(draw) -> list[str]:
    command = draw(st.sampled_from(["train", "evaluate", "predict", "convert", "summary", "bogus", "--help"]))
    argv = [command]
    options = TRAIN_OPTIONS if command == "train" else OTHER_OPTIONS
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            argv.append(draw(st.sampled_from(FLAGS)))
        elif kind == 1:
            argv.append(draw(VALUES))  # a positional (checkpoint, image, weights) or a stray word
        else:
            argv += [draw(st.sampled_from(options)), draw(VALUES)]
    return argv


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_any_command_line_ends_in_a_status_or_one_line(argv, monkeypatch, tmp_path):
    monkeypatch.setattr(minialex.training, "Trainer", StubTrainer)
    monkeypatch.chdir(tmp_path)
    call(argv)


# -- a checkpoint's metadata -------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def checkpoint_parts(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", *TINY, "--out-dir", str(out)]) == 0
    path = out / "last.safetensors"
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    return out, load_file(str(path)), meta


def paths_of(value, prefix=()):
    """Every place in a JSON value (the history's epochs are left out: they are many and alike)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "history":
                yield from paths_of(v, (*prefix, k))
    elif isinstance(value, list) and len(value) <= 4:
        for i, v in enumerate(value):
            yield from paths_of(v, (*prefix, i))


def replaced(value, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


ENTRIES = ["model", "metadata", "optimizer", "optimizer_groups", "scheduler", "rng_state", "format_version"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_metadata_value_ends_in_a_status_or_one_line(checkpoint_parts, tmp_path, data):
    _, tensors, meta = checkpoint_parts
    entry = data.draw(st.sampled_from(ENTRIES), label="entry")
    value = json.loads(meta[entry])
    place = data.draw(st.sampled_from(list(paths_of(value))), label="place")
    new = data.draw(JSON, label="new value")
    edited = {k: v for k, v in meta.items() if k != "checksum"}
    edited[entry] = json.dumps(replaced(value, place, new))
    edited["checksum"] = checkpoint._digest(edited, tensors)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    path = run / "last.safetensors"
    save_file(tensors, str(path), metadata=edited)
    command = data.draw(st.sampled_from(["evaluate", "resume"]), label="command")
    if command == "evaluate":
        call(["evaluate", str(path), "--limit-test", "8", "--batch-size", "8"])
    else:
        call(["train", "--resume", str(path), "--epochs", "1", "--no-progress"])
