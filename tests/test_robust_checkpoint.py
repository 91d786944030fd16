"""Hostile and careless checkpoints: wrong dtypes, non-finite weights, sizes that lie, deep JSON, long lists.

Each file here is crafted from a real training checkpoint with a *valid* checksum (recomputed after the
edit), so that what is tested is the check named, not the checksum.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_TRAIN, peak_mib
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from minialex.cli import main
from minialex.errors import CheckpointError
from minialex.models import alexnet
from minialex.training import checkpoint
from minialex.training.checkpoint import load_checkpoint

TINY = TINY_TRAIN


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests train a network: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """``last.safetensors`` of a one-epoch run on 64 digits."""
    out = tmp_path_factory.mktemp("robust") / "run"
    assert main(["train", *TINY, "--out-dir", str(out)]) == 0
    return out / "last.safetensors"


def _parts(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


def _write(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    """Save with a freshly computed, valid checksum."""
    meta = {k: v for k, v in meta.items() if k != "checksum"}
    meta["checksum"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minialex: error:"), err[:2000]
    assert len(lines[0]) < 1000, len(lines[0])
    return lines[0]


# -- dtypes and values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.float16, np.uint8])
def test_non_float_tensors_are_refused_in_the_file_the_cli_and_load_state_dict(good, tmp_path, capsys, dtype):
    tensors, meta = _parts(good)
    cast = {k: (v.astype(dtype) if k.startswith("model.") else v) for k, v in tensors.items()}
    bad = _write(tmp_path / "cast.safetensors", cast, meta)
    with pytest.raises(CheckpointError, match=r"dtype .*float32 \(F32\) or float64 \(F64\)"):
        load_checkpoint(bad)
    status, out, err = _cli(capsys, "evaluate", str(bad), "--limit-test", "8", "--json")
    assert status == 2 and out == "" and "dtype" in _one_line(err)
    model = alexnet("mini", num_classes=10, in_channels=1, image_size=28)
    before = model.state_dict()
    state = {k: v.astype(dtype) for k, v in before.items()}
    with pytest.raises(CheckpointError, match=r"has dtype .*expected float32 or float64"):
        model.load_state_dict(state)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())  # nothing changed


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_and_never_reach_json(good, tmp_path, capsys, value):
    tensors, meta = _parts(good)
    name = "model.fc5.weight" if "model.fc5.weight" in tensors else sorted(k for k in tensors if "weight" in k)[-1]
    tensors[name] = tensors[name].copy()
    tensors[name].flat[3] = value
    bad = _write(tmp_path / "nan.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(bad)
    status, out, err = _cli(capsys, "evaluate", str(bad), "--limit-test", "8", "--json")
    assert status == 2 and out == "" and "NaN or infinite" in _one_line(err)
    model = alexnet("mini", num_classes=10, in_channels=1, image_size=28)
    state = model.state_dict()
    state["conv1.weight"].flat[0] = value
    with pytest.raises(CheckpointError, match=r"conv1\.weight holds NaN or infinite"):
        model.load_state_dict(state)


def test_evaluate_json_is_valid_json_even_for_a_non_finite_figure(good, capsys, monkeypatch):
    from minialex.training import evaluation

    real = evaluation.evaluate_split

    def infinite_loss(*args, **kwargs):
        result, name, mapped = real(*args, **kwargs)
        result.loss = float("inf")
        return result, name, mapped

    monkeypatch.setattr(evaluation, "evaluate_split", infinite_loss)
    status, out, _ = _cli(capsys, "evaluate", str(good), "--limit-test", "8", "--json")
    assert status == 0
    assert json.loads(out)["test_loss"] is None  # not the invalid token NaN/Infinity


# -- sizes checked before anything is allocated ---------------------------------------------------------------


def _raw(header: dict, data: bytes = b"") -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + data


def _meta_only(good: Path) -> dict:
    _, meta = _parts(good)
    return meta



def test_a_sparse_file_declaring_gigabytes_is_refused_without_holding_them(good, tmp_path):
    """A 1.9 GB tensor in a file that is all holes: the checksum is computed in chunks from the file."""
    n = 475_000_000  # float32 elements: 1.9 GB
    header = {"__metadata__": _meta_only(good), "model.big": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}
    head = _raw(header)
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 4 * n)  # a sparse file: a few KB on the disk
    assert os.path.getsize(path) == len(head) + 4 * n

    def load():
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            load_checkpoint(path)

    assert peak_mib(load) < 64  # chunks of 16 MiB, never the 1.9 GB


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"dtype": "F32", "shape": [10**6], "data_offsets": [0, 16]}, "needs 4,000,000 bytes"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]}, "bad shape"),
        ({"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}, "bad shape"),
        ({"dtype": "F32", "shape": [1] * 20, "data_offsets": [0, 4]}, "bad shape"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [0]}, "bad data_offsets"),
        ({"dtype": "F32", "shape": [4], "data_offsets": ["0", "16"]}, "bad data_offsets"),
        ({"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}, "dtype 'I64'"),
        ("not an object", "bad header entry"),
    ],
)
def test_declared_sizes_are_checked_against_each_other_and_the_file(good, tmp_path, entry, fragment):
    header = {"__metadata__": _meta_only(good), "model.w": entry}
    path = tmp_path / "lies.safetensors"
    path.write_bytes(_raw(header, bytes(16)))
    with pytest.raises(CheckpointError, match=fragment) as info:
        load_checkpoint(path)
    assert len(str(info.value)) < 600


def test_overlapping_or_gapped_tensors_are_refused(good, tmp_path):
    meta = _meta_only(good)
    for offsets, fragment in (([[0, 16], [8, 24]], "overlaps"), ([[0, 16], [20, 36]], "unused")):
        header = {"__metadata__": meta}
        for i, (a, b) in enumerate(offsets):
            header[f"model.w{i}"] = {"dtype": "F32", "shape": [4], "data_offsets": [a, b]}
        path = tmp_path / "overlap.safetensors"
        path.write_bytes(_raw(header, bytes(offsets[-1][1])))
        with pytest.raises(CheckpointError, match=fragment):
            load_checkpoint(path)


def test_two_hundred_thousand_empty_tensors_give_a_short_message(good, tmp_path, capsys):
    header = {"__metadata__": _meta_only(good)}
    header.update({f"model.t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(200_000)})
    path = tmp_path / "many.safetensors"
    path.write_bytes(_raw(header))
    with pytest.raises(CheckpointError, match=r"declares 200,000 tensors") as info:
        load_checkpoint(path)
    assert len(str(info.value)) < 300
    status, _, err = _cli(capsys, "evaluate", str(path))
    assert status == 2 and "200,000 tensors" in _one_line(err)


def test_a_model_state_with_many_unexpected_tensors_is_reported_briefly(good, tmp_path, capsys):
    tensors, meta = _parts(good)
    tensors.update({f"model.extra{i}": np.zeros(0, np.float32) for i in range(5000)})
    path = _write(tmp_path / "extra.safetensors", tensors, meta)
    status, _, err = _cli(capsys, "evaluate", str(path), "--limit-test", "8")
    line = _one_line(err)
    assert status == 2 and "unexpected tensors" in line and "and 4,980 more" in line


@pytest.mark.parametrize(
    ("key", "edit", "fragment"),
    [
        ("model", {"num_classes": 3_000_000}, "num_classes"),
        ("model", {"image_size": 60_000}, "do not fit its model configuration"),
        ("model", {"widths": [4096, 4096, 4096, 65536]}, "do not fit its model configuration"),
        ("model", {"surprise": 1}, "cannot be built"),
        ("metadata.dataset", {"image_shape": [1, 30000, 30000]}, "image_shape"),
        ("metadata.dataset", {"image_shape": [100000, 28, 28]}, "image_shape"),
    ],
)
def test_metadata_claiming_huge_sizes_is_refused_before_anything_is_built(good, tmp_path, capsys, key, edit, fragment):
    tensors, meta = _parts(good)
    entry, _, sub = key.partition(".")
    value = json.loads(meta[entry])
    (value[sub] if sub else value).update(edit)
    meta[entry] = json.dumps(value)
    path = _write(tmp_path / "huge.safetensors", tensors, meta)
    for argv in (["evaluate", str(path), "--limit-test", "8"], ["predict", str(path), str(path)]):
        result = []

        def run(argv=argv, result=result):
            result.append(_cli(capsys, *argv))

        assert peak_mib(run) < 100
        status, _, err = result[0]
        assert status == 2 and fragment in _one_line(err), err


# -- JSON that is nested too deep, metadata of the wrong kinds -------------------------------------------------


def test_deeply_nested_json_is_one_line_in_the_header_and_in_an_entry(good, tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    blob = deep.encode()
    path = tmp_path / "deep-header.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(CheckpointError, match="nested more than"):
        load_checkpoint(path)
    tensors, meta = _parts(good)
    meta["metadata"] = json.dumps({"config": json.loads("[" * 60 + "]" * 60)})[:-1] + "}"
    meta["scheduler"] = deep
    path = _write(tmp_path / "deep-entry.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="metadata entry 'scheduler' is nested more than"):
        load_checkpoint(path)
    status, _, err = _cli(capsys, "train", "--resume", str(path))
    assert status == 2 and "nested" in _one_line(err)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("has_uint32",), 10**30),
        (("state", "inc"), -1),
        (("state", "state"), 1e308),
        (("uinteger",), -1),
    ],
)
def test_an_rng_state_out_of_range_is_one_line_on_resume(good, tmp_path, capsys, path, value):
    tensors, meta = _parts(good)
    state = json.loads(meta["rng_state"])
    target = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    meta["rng_state"] = json.dumps(state)
    bad = _write(tmp_path / "rng.safetensors", tensors, meta)
    status, _, err = _cli(capsys, "train", "--resume", str(bad), "--out-dir", str(tmp_path / "r"))
    assert status == 2 and "unusable RNG state" in _one_line(err)


def test_a_step_beyond_the_epoch_is_refused_on_resume(good, tmp_path, capsys):
    tensors, meta = _parts(good)
    record = json.loads(meta["metadata"])
    record["progress"]["step_in_epoch"] = record["progress"]["global_step"] = 10**6
    meta["metadata"] = json.dumps(record)
    bad = _write(tmp_path / "step.safetensors", tensors, meta)
    status, _, err = _cli(capsys, "train", "--resume", str(bad), "--epochs", "2", "--out-dir", str(tmp_path / "r"))
    assert status == 2 and "steps done in an epoch of" in _one_line(err)
