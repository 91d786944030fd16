"""Checkpoints: bit-exact round trips, atomic writes (even under SIGKILL), corruption detection, no pickle."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import minialex
from minialex import backend
from minialex.errors import CheckpointError, WriteError
from minialex.layers import Linear, Sequential
from minialex.models import alexnet
from minialex.optim import SGD, ReduceLROnPlateau, StepLR
from minialex.training import checkpoint
from minialex.training.checkpoint import Checkpoint, load_checkpoint, restore, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = {"widths": (4, 4, 8, 16), "image_size": 15, "num_classes": 3}


def _trained(seed: int = 0, **kwargs):
    """A small mini model, optimiser and schedule after two SGD steps (non-zero velocities, lr changed)."""
    minialex.seed(seed)
    model = alexnet("mini", **(SMALL | kwargs))
    opt = SGD(model, lr=0.05)
    sched = ReduceLROnPlateau(opt, patience=0)
    x = backend.asarray(np.random.default_rng(seed).standard_normal((4, *model.input_shape)).astype(np.float32))
    for _ in range(2):
        model.backward(model.forward(x) * 0.1)
        opt.step()
    sched.step(0.5)
    sched.step(0.6)  # reduces lr to 0.005
    return model, opt, sched


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


def test_round_trip_is_bit_exact(tmp_path):
    model, opt, sched = _trained()
    backend.host_rng().random(3)  # move the generator somewhere non-trivial
    rng_state = backend.get_rng_state()
    meta = {"epoch": 4, "step": 123, "config": {"lr": 0.05, "tags": ("a", "b")}, "acc": np.float32(0.75)}
    path = save_checkpoint(tmp_path / "last.safetensors", model, opt, sched, metadata=meta)
    assert path == tmp_path / "last.safetensors" and _temps(tmp_path) == []

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == str(path)
    assert (ckpt.epoch, ckpt.step) == (4, 123)
    assert ckpt.metadata == {"epoch": 4, "step": 123, "config": {"lr": 0.05, "tags": ["a", "b"]}, "acc": 0.75}
    assert ckpt.model_config == model.config and ckpt.minialex_version == minialex.__version__
    assert ckpt.rng_state == rng_state
    state = model.state_dict()
    assert set(ckpt.model_state) == set(state)
    for k, v in state.items():
        assert ckpt.model_state[k].dtype == v.dtype and np.array_equal(ckpt.model_state[k], v)
    for k, v in opt.state_dict()["velocity"].items():
        assert np.array_equal(ckpt.optimizer_state["velocity"][k], v) and np.any(v != 0)
    assert ckpt.optimizer_state["lr"] == opt.lr == pytest.approx(0.005)
    assert ckpt.scheduler_state == sched.state_dict()

    # restore into fresh objects: identical state, identical continuation
    backend.host_rng().random(5)
    fresh, fresh_opt, fresh_sched = _trained(seed=1)
    restore(ckpt, fresh, fresh_opt, fresh_sched)
    assert backend.get_rng_state() == rng_state
    assert all(np.array_equal(a, fresh.state_dict()[k]) for k, a in state.items())
    assert fresh_opt.state_dict()["lr"] == opt.lr and fresh_sched.state_dict() == sched.state_dict()
    for k, v in opt.velocity.items():
        assert np.array_equal(backend.to_numpy(v), backend.to_numpy(fresh_opt.velocity[k]))


def test_float64_round_trip_and_model_only(tmp_path):
    minialex.seed(2)
    model = alexnet("mini", dtype=np.float64, **SMALL)
    save_checkpoint(tmp_path / "m.safetensors", model)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.optimizer_state is None and ckpt.scheduler_state is None and ckpt.metadata == {}
    assert all(ckpt.model_state[k].dtype == np.float64 and np.array_equal(ckpt.model_state[k], v)
               for k, v in model.state_dict().items())  # fmt: skip
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        restore(ckpt, model, SGD(model))


def test_restore_from_a_path_and_step_lr(tmp_path):
    model, opt, _ = _trained()
    sched = StepLR(opt, step_size=3)
    sched.step()
    save_checkpoint(tmp_path / "c.safetensors", model, opt, sched)
    other_model, other_opt, _ = _trained(seed=5)
    other_sched = StepLR(other_opt, step_size=1)
    ckpt = restore(tmp_path / "c.safetensors", other_model, other_opt, other_sched)
    assert other_sched.state_dict() == sched.state_dict() and ckpt.scheduler_state["kind"] == "StepLR"


def test_overwrites_previous_checkpoint(tmp_path):
    path = tmp_path / "last.safetensors"
    model, opt, _ = _trained()
    save_checkpoint(path, model, opt, metadata={"epoch": 1})
    save_checkpoint(path, model, opt, metadata={"epoch": 2})
    assert load_checkpoint(path).epoch == 2 and _temps(tmp_path) == []


# -- atomicity ---------------------------------------------------------------------------------------------------


def _fail_half_way(path, tensors, metadata):
    """Stand-in writer: half a file, then the disk is full."""
    from safetensors.numpy import save

    data = save(tensors, metadata=metadata)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_failure_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    model, opt, sched = _trained()
    save_checkpoint(path, model, opt, sched, metadata={"epoch": 1})
    before = path.read_bytes()
    model.params["conv1.weight"][...] += 1

    monkeypatch.setattr(checkpoint, "_write_safetensors", _fail_half_way)
    with pytest.raises(WriteError, match=r"cannot write checkpoint .*last\.safetensors.*disk is full.*unchanged"):
        save_checkpoint(path, model, opt, sched, metadata={"epoch": 2})
    assert path.read_bytes() == before and load_checkpoint(path).epoch == 1
    assert _temps(tmp_path) == []


def test_failure_at_rename_and_interrupt_keep_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    model, opt, _ = _trained()
    save_checkpoint(path, model, opt, metadata={"epoch": 1})
    before = path.read_bytes()

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint.os, "replace", no_rename)
    with pytest.raises(WriteError, match="Permission denied"):
        save_checkpoint(path, model, opt, metadata={"epoch": 2})
    monkeypatch.undo()

    def interrupted(path_, tensors, metadata):
        Path(path_).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not swallowed, but still cleaned up
        save_checkpoint(path, model, opt, metadata={"epoch": 3})
    assert path.read_bytes() == before and _temps(tmp_path) == []


def test_unwritable_places(tmp_path):
    model, _, _ = _trained()
    with pytest.raises(WriteError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "no" / "such" / "dir" / "c.safetensors", model)
    with pytest.raises(WriteError, match="is a directory"):
        save_checkpoint(tmp_path, model)
    with pytest.raises(CheckpointError, match="metadata cannot be stored as JSON"):
        save_checkpoint(tmp_path / "c.safetensors", model, metadata={"f": lambda: 0})
    assert _temps(tmp_path) == [] and not (tmp_path / "c.safetensors").exists()


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    path = tmp_path / "last.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.safetensors.tmp-{int(dead.stdout)}-abcd1234"
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / ".other.safetensors.tmp-1-abcd1234"
    unrelated.write_bytes(b"x")
    model, _, _ = _trained()
    save_checkpoint(path, model)
    assert not stale.exists() and unrelated.exists()


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import minialex
    from minialex.training import checkpoint
    from minialex.models import alexnet
    from minialex.optim import SGD

    path, disk = sys.argv[1], sys.argv[2]
    if disk == "slow":
        # The real serializer's bytes, written in 256 KiB pieces with a pause after each, like a slow disk:
        # most kills then land in the middle of a write.
        from safetensors.numpy import save

        def slow_write(target, tensors, metadata):
            data = save(tensors, metadata=metadata)
            with open(target, "wb") as f:
                for start in range(0, len(data), 1 << 18):
                    f.write(data[start : start + (1 << 18)])
                    f.flush()
                    time.sleep(0.002)

        checkpoint._write_safetensors = slow_write
    minialex.seed(0)
    model = alexnet("mini", widths=(32, 64, 96, 2048))  # about 6 MB per checkpoint with the velocities
    opt = SGD(model)
    i = 0
    while True:
        for w in model.params.values():
            w[...] = i
        for v in opt.velocity.values():
            v[...] = -i
        checkpoint.save_checkpoint(path, model, opt, metadata={"i": i})
        if i == 0:
            print("ready", flush=True)
        i += 1
    """
)


@pytest.mark.parametrize(("disk", "kills"), [("real", 3), ("slow", 4)])
def test_sigkill_during_writes_always_leaves_a_loadable_checkpoint(tmp_path, disk, kills):
    """A real writer process, killed with SIGKILL at random moments while it rewrites the checkpoint in a loop.

    A writer that wrote straight into ``path`` fails this test (checked by hand: torn files at the first
    slow-disk kills); the atomic one never leaves anything but a complete, verified checkpoint.
    """
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "last.safetensors"
    rng = random.Random(20240607)
    seen, killed_mid_write = [], 0
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), disk], stdout=subprocess.PIPE, text=True, cwd=str(REPO)
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        killed_mid_write += bool(_temps(tmp_path))  # its temporary file is still there: it died writing
        ckpt = load_checkpoint(path)  # never torn
        i = ckpt.metadata["i"]
        seen.append(i)
        # every tensor comes from the same save: no mix of two writes
        assert all(np.all(a == i) for a in ckpt.model_state.values())
        assert all(np.all(a == -i) for a in ckpt.optimizer_state["velocity"].values())
    assert max(seen) > 0  # the kills landed while it was rewriting, not before its first save
    if disk == "slow":
        assert killed_mid_write > 0  # the dangerous moment was really hit (each kill: ~85 % likely)
    save_checkpoint(path, alexnet("mini", widths=(32, 64, 96, 2048)))  # sweeps the killed writers' temporaries
    assert _temps(tmp_path) == []


# -- corruption ---------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, sched, metadata={"epoch": 7})
    return path, path.read_bytes()


@pytest.mark.parametrize("keep", ["0", "5", "8", "header-10", "data/2", "all-1"])
def test_truncated_files_are_detected(saved, keep):
    path, data = saved
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    n = {"0": 0, "5": 5, "8": 8, "header-10": header_end - 10, "data/2": (header_end + len(data)) // 2}.get(keep)
    n = len(data) - 1 if keep == "all-1" else n
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"(truncated|empty).*|.*(truncated|empty)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_every_flipped_byte_is_detected(saved):
    """Flip one byte at 80 seeded places spread over the header and the data: each must be an error."""
    path, data = saved
    rng = np.random.default_rng(0)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    places = np.concatenate([rng.integers(0, header_end, 40), rng.integers(header_end, len(data), 40)])
    for place in places:
        for mask in (0x01, 0x80):
            corrupted = bytearray(data)
            corrupted[place] ^= mask
            path.write_bytes(bytes(corrupted))
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(path)
            assert str(path) in str(info.value), (place, mask)


def test_flipped_data_byte_reports_a_checksum_mismatch(saved):
    path, data = saved
    corrupted = bytearray(data)
    corrupted[-3] ^= 0x10
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CheckpointError, match="corrupted: checksum mismatch"):
        load_checkpoint(path)


def test_edited_metadata_is_detected(saved):
    """Changing a value in the header (same length, valid JSON) is caught by the checksum too."""
    path, data = saved
    edited = data.replace(b'\\"epoch\\":7', b'\\"epoch\\":8')
    assert edited != data
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_trailing_bytes_missing_files_and_other_safetensors(saved, tmp_path):
    path, data = saved
    path.write_bytes(data + b"\0\0")
    with pytest.raises(CheckpointError, match="bytes follow the last tensor"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(tmp_path)
    from safetensors.numpy import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"features.0.weight": np.zeros((2, 2), np.float32)}, str(plain))
    with pytest.raises(CheckpointError, match="not a minialex checkpoint"):
        load_checkpoint(plain)
    text = tmp_path / "notes.safetensors"
    text.write_text("this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"bad header|truncated"):
        load_checkpoint(text)


def test_newer_format_version_is_refused(tmp_path, monkeypatch):
    model, _, _ = _trained()
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 99)
    save_checkpoint(tmp_path / "future.safetensors", model)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"format version 99.*upgrade minialex"):
        load_checkpoint(tmp_path / "future.safetensors")


# -- another architecture ---------------------------------------------------------------------------------------


def test_checkpoint_of_another_architecture_lists_the_mismatches(tmp_path):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path / "mini.safetensors", model, opt, sched)
    ckpt = load_checkpoint(path)

    rgb = alexnet("mini", in_channels=3, **SMALL)  # 3 input channels, 32×32... here 15×15: same fc4 input
    before = rgb.state_dict()
    with pytest.raises(CheckpointError) as info:
        restore(ckpt, rgb)
    message = str(info.value)
    assert (
        str(path) in message and "mis-shaped tensors: conv1.weight: expected (4, 3, 5, 5), got (4, 1, 5, 5)" in message
    )
    assert "'in_channels': 3" in message  # names both architectures
    assert all(np.array_equal(before[k], v) for k, v in rgb.state_dict().items())  # nothing changed

    other = Sequential(("conv1", Linear(3, 4)), ("head", Linear(4, 2)))
    other_opt = SGD(other)
    velocity_before = {k: backend.to_numpy(v).copy() for k, v in other_opt.velocity.items()}
    with pytest.raises(CheckpointError) as info:
        restore(ckpt, other, other_opt)
    message = str(info.value)
    assert "missing velocities: conv1.bias, conv1.weight, head.bias, head.weight" not in message  # names overlap
    assert "missing velocities: head.bias, head.weight" in message
    assert "unexpected velocities: " in message and "fc4.weight" in message
    assert all(np.array_equal(velocity_before[k], backend.to_numpy(v)) for k, v in other_opt.velocity.items())
    with pytest.raises(CheckpointError, match=r"missing tensors: head\.bias, head\.weight \| unexpected tensors: "):
        restore(ckpt, other)


def test_scheduler_of_another_kind_changes_nothing(tmp_path):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, sched)
    fresh, fresh_opt, _ = _trained(seed=3)
    before = fresh.state_dict()
    with pytest.raises(CheckpointError, match="expected a StepLR state"):
        restore(path, fresh, fresh_opt, StepLR(fresh_opt, 2))
    assert all(np.array_equal(before[k], v) for k, v in fresh.state_dict().items())


# -- no pickle ----------------------------------------------------------------------------------------------------


def test_no_pickle_anywhere_in_the_package():
    """Nothing in minialex/ may unpickle: no pickle/dill/joblib import, every np.load refuses pickles, and the one
    torch.load (reading torchvision's .pth weights) is PyTorch's restricted weights_only=True loader."""
    forbidden = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|joblib|shelve)\b|allow_pickle\s*=\s*True|weights_only\s*=\s*False",
        re.M,
    )
    offenders = []
    for file in sorted((REPO / "minialex").rglob("*.py")):
        text = file.read_text(encoding="utf-8")
        offenders += [f"{file.relative_to(REPO)}: {m.group(0).strip()}" for m in forbidden.finditer(text)]
        for m in re.finditer(r"\b(np|numpy)\.load\(", text):
            call = text[m.end() : m.end() + 300].split("\n\n")[0]
            if "allow_pickle=False" not in call:
                offenders.append(f"{file.relative_to(REPO)}: np.load without allow_pickle=False")
        for m in re.finditer(r"\btorch\.load\(", text):
            call = text[m.end() : m.end() + 300].split("\n\n")[0].split(")")[0]
            if "weights_only=True" not in call:
                offenders.append(f"{file.relative_to(REPO)}: torch.load without weights_only=True")
    assert offenders == []


def test_header_is_plain_json_text(saved):
    _, data = saved
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    meta = header["__metadata__"]
    assert meta["format"] == "minialex-checkpoint" and meta["checksum"].startswith("sha256:")
    assert all(isinstance(v, str) for v in meta.values())
    assert {k for k in header if k != "__metadata__"} == {
        *(f"model.{k}" for k in _trained()[0].params),
        *(f"optim.velocity.{k}" for k in _trained()[0].params),
    }


# -- the optimiser state protocol: any number of tensor groups ------------------------------------------------------


class TwoMoments:
    """A stand-in for Adam: JSON scalars plus two tensor groups, "m" and "v", following the state protocol."""

    def __init__(self, model, fill: float = 0.0) -> None:
        self.model, self.lr, self.steps = model, 1e-3, 7
        self.m = {k: np.full(w.shape, fill, np.float32) for k, w in model.state_dict().items()}
        self.v = {k: np.full(w.shape, fill * 2, np.float32) for k, w in model.state_dict().items()}

    def state_dict(self):
        return {"lr": self.lr, "steps": self.steps, "m": dict(self.m), "v": dict(self.v)}

    def check_state_dict(self, state, source="optimizer state"):
        if set(state) != {"lr", "steps", "m", "v"} or set(state["m"]) != set(self.m):
            raise CheckpointError(f"{source}: not a TwoMoments state")

    def load_state_dict(self, state, source="optimizer state"):
        self.check_state_dict(state, source)
        self.lr, self.steps = state["lr"], state["steps"]
        self.m, self.v = dict(state["m"]), dict(state["v"])


def test_every_tensor_group_is_stored_as_optim_group_param_and_restored(tmp_path):
    model, _, _ = _trained()
    opt = TwoMoments(model, fill=0.5)
    path = save_checkpoint(tmp_path / "adam.safetensors", model, opt)
    header = json.loads(path.read_bytes()[8 : 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    names = {k for k in header if k != "__metadata__"}
    assert {n for n in names if n.startswith("optim.")} == {f"optim.{g}.{k}" for g in "mv" for k in model.params}
    assert json.loads(header["__metadata__"]["optimizer_groups"]) == ["m", "v"]
    assert json.loads(header["__metadata__"]["optimizer"]) == {"lr": 1e-3, "steps": 7}
    ckpt = load_checkpoint(path)
    assert set(ckpt.optimizer_state) == {"lr", "steps", "m", "v"}
    fresh = TwoMoments(model)
    restore(ckpt, model, fresh)
    assert fresh.steps == 7 and all(np.all(a == 0.5) for a in fresh.m.values()) and np.all(fresh.v["fc4.weight"] == 1)


def test_a_tensor_group_name_must_be_a_plain_word(tmp_path):
    model, _, _ = _trained()

    class Dotted(TwoMoments):
        def state_dict(self):
            return {"lr": 0.1, "m.x": dict(self.m)}

    with pytest.raises(CheckpointError, match=r"optimizer tensor group 'm\.x' must be a plain word"):
        save_checkpoint(tmp_path / "c.safetensors", model, Dotted(model))
    assert not (tmp_path / "c.safetensors").exists()


def _write_format_1(path: Path, model, opt, metadata: dict) -> None:
    """A checkpoint as minialex 0.1.0 wrote it: velocities as "optim.<param>", no optimizer_groups entry."""
    from safetensors.numpy import save_file

    state = opt.state_dict()
    velocity = state.pop("velocity")
    tensors = {f"model.{k}": np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    tensors |= {f"optim.{k}": np.ascontiguousarray(v) for k, v in velocity.items()}
    entries = {
        "format": "minialex-checkpoint",
        "format_version": "1",
        "minialex_version": json.dumps("0.1.0"),
        "model": json.dumps(model.config),
        "optimizer": json.dumps(state),
        "scheduler": "null",
        "rng_state": json.dumps(backend.get_rng_state()),
        "metadata": json.dumps(metadata),
    }
    entries["checksum"] = checkpoint._digest(entries, tensors)
    save_file(tensors, str(path), metadata=entries)


def test_format_1_checkpoints_still_load_with_their_velocities(tmp_path):
    model, opt, _ = _trained()
    path = tmp_path / "old.safetensors"
    _write_format_1(path, model, opt, {"epoch": 3})
    ckpt = load_checkpoint(path)
    assert ckpt.format_version == 1 and ckpt.epoch == 3 and ckpt.minialex_version == "0.1.0"
    assert set(ckpt.optimizer_state["velocity"]) == set(model.params)
    fresh, fresh_opt, _ = _trained(seed=4)
    restore(ckpt, fresh, fresh_opt)
    for k, v in opt.velocity.items():
        assert np.array_equal(backend.to_numpy(v), backend.to_numpy(fresh_opt.velocity[k]))


def test_a_training_checkpoint_of_format_1_evaluates_but_does_not_resume(tmp_path):
    """The layout minialex 0.1.0 gave a training run's metadata, written by hand."""
    from minialex.errors import CheckpointError as Error
    from minialex.training.config import TrainConfig
    from minialex.training.evaluation import load_trained

    model, opt, _ = _trained()
    dataset = {"name": "mnist5k", "classes": ["a", "b", "c"], "mean": [0.13], "std": [0.31], "image_shape": [1, 15, 15]}
    meta = {
        "format": "minialex-train-1",
        "config": TrainConfig(dataset="mnist5k").to_dict() | {"limit_val": None},
        "model": model.config,
        "dataset": dataset | {"train_images": 4000, "test_images": 1000, "source": "old"},
        "progress": {"epochs_done": 2, "step_in_epoch": 0},
        "history": [],
    }
    del meta["config"]["limit_val"]  # 0.1.0 had no --limit-val
    path = tmp_path / "old-run.safetensors"
    _write_format_1(path, model, opt, meta)
    trained = load_trained(path)
    assert trained.classes == ["a", "b", "c"] and trained.image_shape == (1, 15, 15)
    assert all(np.array_equal(trained.model.state_dict()[k], v) for k, v in model.state_dict().items())
    from minialex.training import Trainer

    with pytest.raises(Error, match=r"format 1 \(written by minialex 0.1.0.*not resumed; start a new run"):
        Trainer(resume=path, log=None)


def test_optimizer_groups_that_do_not_match_the_tensors_are_rejected(tmp_path):
    model, opt, _ = _trained()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__")
    tensors = load_checkpoint(path)
    from safetensors.numpy import save_file

    arrays = {f"model.{k}": v for k, v in tensors.model_state.items()}
    arrays |= {f"optim.velocity.{k}": v for k, v in tensors.optimizer_state["velocity"].items()}
    for groups, fragment in [("[]", "unexpected tensor 'optim.velocity."), ('"velocity"', "must be a list of names")]:
        entries = {k: v for k, v in meta.items() if k != "checksum"} | {"optimizer_groups": groups}
        entries["checksum"] = checkpoint._digest(entries, arrays)
        save_file(arrays, str(path), metadata=entries)
        with pytest.raises(CheckpointError, match=re.escape(fragment)):
            load_checkpoint(path)
