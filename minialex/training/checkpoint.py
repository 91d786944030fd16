"""Checkpoints: one safetensors file per checkpoint, written atomically, verified on load, never pickled.

File layout (safetensors: an 8-byte little-endian header size N, N bytes of JSON, then raw tensor bytes)::

    tensors         "model.<param>"            every model parameter and buffer
                                               e.g. "model.conv1.weight" (96, 3, 11, 11) F32
                    "optim.<group>.<param>"    every tensor group of the optimiser's state
                                               e.g. "optim.velocity.conv1.weight" (SGD); Adam: "optim.m.…", "optim.v.…"
                    "data.<name>"              arrays inference needs about the data, e.g. "data.mean_image"
                                               (3, 256, 256) of a photo data set
    __metadata__    text only; each value a JSON string:
        format            "minialex-checkpoint": the one format tag, checked by :func:`load_checkpoint` alone
        format_version    2
        minialex_version  the writer's version
        model             the model's config (``alexnet(**config)`` rebuilds it), or its class name
        optimizer         the optimiser's JSON scalars (SGD: lr, momentum, weight_decay, decay_biases, steps) or null
        optimizer_groups  the names of its tensor groups (SGD: ["velocity"]) or null
        scheduler         the schedule's state or null
        rng_state         :func:`minialex.backend.get_rng_state` when saved
        metadata          the caller's dict (a training run's: see :mod:`minialex.training.saved_run`)
        checksum          "sha256:<hex>" of every metadata entry above and every tensor (name, dtype, shape, bytes)

The optimiser state protocol: ``optimizer.state_dict()`` returns JSON-able scalars plus any number of tensor
groups, each a ``dict[param_name, np.ndarray]``; every dict value is a group. ``check_state_dict(state,
source)`` validates a state without changing anything, ``load_state_dict(state, source)`` restores it.

Format 1 (minialex 0.1.0) stored SGD's velocities as ``"optim.<param>"`` and had no ``optimizer_groups``;
such files still load, their optimiser tensors as the group ``"velocity"``.

Loading parses JSON and copies bytes; it never runs code (unlike pickle, on which PyTorch's ``.pt`` files
and NumPy's object arrays rely). Nothing in the file is trusted before it is checked (:mod:`.tensorfile`):
the header's sizes against the file, only float32/float64 tensors, the checksum computed from the file in
chunks before any tensor is allocated, and no NaN or infinite value in a loaded tensor. The checksum makes a
truncated or corrupted file an error instead of silently wrong weights.

The checksum is an unkeyed sha256: it detects accidental corruption, not tampering. Anyone who can edit a
checkpoint can recompute it; it is not a signature. Take checkpoints from sources you trust, as you would code.

Atomic writes. A crash, a full disk or a SIGKILL in the middle of writing never destroys the previous
checkpoint: the file is written through :func:`minialex.atomic.write_atomic` (a temporary, fsync, rename).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import minialex
from minialex import atomic, backend
from minialex.errors import CheckpointError
from minialex.training import tensorfile

FORMAT = "minialex-checkpoint"
FORMAT_VERSION = 2
MODEL_PREFIX, OPTIM_PREFIX, DATA_PREFIX = "model.", "optim.", "data."
_JSON_KEYS = ("format_version", "minialex_version", "model", "optimizer", "scheduler", "rng_state", "metadata")
_V1_GROUP = "velocity"  # format 1: the only optimiser tensors were SGD's velocities, named "optim.<param>"


@dataclass
class Checkpoint:
    """A loaded and verified checkpoint, all arrays host NumPy.

    Attributes
    ----------
    path : the file it was read from
    model_state : parameter name -> array (``"conv1.weight"``, ...), for ``model.load_state_dict``
    optimizer_state : ``optimizer.state_dict()`` form (JSON scalars and tensor groups, e.g. SGD's ``"velocity"``),
        or None
    scheduler_state : the schedule's ``state_dict()``, or None
    rng_state : the generator state at saving (see :func:`minialex.backend.set_rng_state`), or None
    model_config : the model's ``config`` (``alexnet(**model_config)`` rebuilds the architecture), or None
    metadata : the dict given to :func:`save_checkpoint`
    data : the ``data`` arrays given to :func:`save_checkpoint` (name -> array), e.g. ``"mean_image"``
    format_version, minialex_version : of the writer
    """

    path: str
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    model_config: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    minialex_version: str = ""

    epoch = property(lambda self: self.metadata.get("epoch"), doc='``metadata["epoch"]`` if given, else None.')
    step = property(lambda self: self.metadata.get("step"), doc='``metadata["step"]`` if given, else None.')


# ---------------------------------------------------------------------------------------------------------
# Saving


def _to_json(value: Any, what: str) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray) and obj.size <= 10_000:
            return obj.tolist()
        if isinstance(obj, (Path, os.PathLike)):
            return os.fspath(obj)
        if isinstance(obj, (tuple, set, frozenset)):
            return list(obj)
        raise TypeError(f"a {type(obj).__name__} is not JSON-serialisable")

    try:
        return json.dumps(value, default=default, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"save_checkpoint: the {what} cannot be stored as JSON ({exc})") from exc


def _entries_json(entries: dict[str, Any]) -> bytes:
    """The metadata entries as the checksum covers them."""
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


def _digest(entries: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the metadata entries and every tensor's name, dtype, shape and little-endian bytes."""
    h = hashlib.sha256(_entries_json(entries))
    for name in sorted(tensors):
        a = tensors[name]
        little = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"\0{name}\0{little.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(memoryview(np.ascontiguousarray(little)).cast("B"))
    return "sha256:" + h.hexdigest()


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(JSON scalars, tensor groups) of an optimiser's ``state_dict()``: every dict value is a tensor group."""
    scalars, groups = {}, {}
    for key, value in state.items():
        if not isinstance(value, dict):
            scalars[key] = value
        elif not isinstance(key, str) or not key.isidentifier():
            raise CheckpointError(f"save_checkpoint: optimizer tensor group {key!r} must be a plain word (no dots)")
        else:
            groups[key] = {str(k): np.asarray(backend.to_numpy(v)) for k, v in value.items()}
    return scalars, groups


def _write_safetensors(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write the file (a separate function so that tests can make it fail half-way)."""
    from safetensors.numpy import save_file

    save_file(tensors, path, metadata=metadata)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    metadata: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and optionally ``optimizer``, ``scheduler``, ``metadata``) to ``path``, atomically.

    Parameters
    ----------
    path : the checkpoint file (by convention ``*.safetensors``); its directory must exist
    model : a minialex model (``state_dict()``; its ``config`` is stored when it has one)
    optimizer : an optimiser following the state protocol (tensor groups as tensors, scalars as metadata)
    scheduler : a schedule with ``state_dict()``
    metadata : JSON-able dict of the caller's (epoch, step, configuration, history, ...)
    data : arrays about the data that inference needs (name -> array, stored as ``"data.<name>"``)

    Returns
    -------
    The path written. The RNG state (:func:`minialex.backend.get_rng_state`) is always saved.

    Raises
    ------
    CheckpointError
        if ``metadata`` or the optimiser's scalars are not JSON-able, or a tensor group's name is not a
        plain word.
    WriteError
        if the file cannot be written (full disk, no permission, missing directory); any previous file at
        ``path`` is then unchanged and no temporary file is left.
    """
    target = Path(path)
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"save_checkpoint: metadata must be a dict, got {type(metadata).__name__}")
    tensors = {MODEL_PREFIX + k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
    optim_meta, groups = None, None
    if optimizer is not None:
        optim_meta, group_tensors = _split_optimizer_state(optimizer.state_dict())
        groups = sorted(group_tensors)
        for group, arrays in group_tensors.items():
            tensors.update({f"{OPTIM_PREFIX}{group}.{k}": np.ascontiguousarray(v) for k, v in arrays.items()})
    for name, array in (data or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise CheckpointError(f"save_checkpoint: data array name {name!r} must be a plain word (no dots)")
        tensors[DATA_PREFIX + name] = np.ascontiguousarray(backend.to_numpy(array))
    model_config = getattr(model, "config", None) or {"class": type(model).__name__}
    entries = {
        "format": FORMAT,
        "format_version": _to_json(FORMAT_VERSION, "format version"),
        "minialex_version": _to_json(minialex.__version__, "version"),
        "model": _to_json(model_config, "model config"),
        "optimizer": _to_json(optim_meta, "optimizer state"),
        "optimizer_groups": _to_json(groups, "optimizer tensor groups"),
        "scheduler": _to_json(None if scheduler is None else scheduler.state_dict(), "scheduler state"),
        "rng_state": _to_json(backend.get_rng_state(), "RNG state"),
        "metadata": _to_json(metadata or {}, "metadata"),
    }
    entries["checksum"] = _digest(entries, tensors)

    atomic.write_atomic(target, lambda temp: _write_safetensors(temp, tensors, entries), "checkpoint")
    return target


# ---------------------------------------------------------------------------------------------------------
# Loading


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        naming the file and the problem: missing, a directory, empty or truncated, a bad header, not a
        minialex checkpoint, a newer format, or a checksum mismatch (corrupted bytes).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} is not a file")
    size = os.path.getsize(path)
    header, data_start = tensorfile.read_header(path, size)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a minialex checkpoint (no '{FORMAT}' metadata); torchvision weights load with "
            "minialex.models.load_torchvision_safetensors"
        )
    layout = tensorfile.read_layout(path, header, data_start, size)  # every size checked before any allocation
    entries = {k: v for k, v in meta.items() if k != "checksum"}
    checksum = meta.get("checksum")
    try:
        actual = tensorfile.stream_digest(path, _entries_json(entries), layout, data_start)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from exc
    if checksum != actual:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: checksum mismatch (stored {tensorfile.brief(checksum)}, computed "
            f"{actual}); use an earlier checkpoint"
        )
    tensors = tensorfile.read_tensors(path, layout, data_start)
    bad = next((name for name, a in tensors.items() if not np.isfinite(a).all()), None)
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path}: tensor {tensorfile.brief(bad)} holds NaN or infinite values; it was saved from a "
            "diverged run: use an earlier checkpoint"
        )
    values = {key: _json_entry(entries, key, path) for key in _JSON_KEYS}
    version = values["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this minialex ({minialex.__version__}) reads "
            f"versions 1 to {FORMAT_VERSION}: upgrade minialex"
        )
    data = {k[len(DATA_PREFIX) :]: tensors.pop(k) for k in [k for k in tensors if k.startswith(DATA_PREFIX)]}
    model_state, optimizer_state = _group_tensors(tensors, values["optimizer"], version, entries, path)
    model_config = values["model"] if isinstance(values["model"], dict) else None
    metadata = values["metadata"] if isinstance(values["metadata"], dict) else {}
    return Checkpoint(
        path=path,
        model_state=model_state,
        optimizer_state=optimizer_state,
        scheduler_state=values["scheduler"],
        rng_state=values["rng_state"],
        model_config=model_config,
        metadata=metadata,
        data=data,
        format_version=version,
        minialex_version=str(values["minialex_version"]),
    )


def _json_entry(entries: dict[str, str], key: str, path: str) -> Any:
    if key not in entries:
        raise CheckpointError(f"checkpoint {path} lacks the '{key}' metadata entry")
    if not isinstance(entries[key], str):
        raise CheckpointError(f"checkpoint {path}: metadata entry '{key}' is not text")
    return tensorfile.parse_json(entries[key], f"checkpoint {path}: metadata entry '{key}'")


def _group_tensors(
    tensors: dict[str, np.ndarray], scalars: Any, version: int, entries: dict[str, str], path: str
) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Sort the tensors into the model's state and the optimiser's state (its scalars and tensor groups)."""
    groups = [_V1_GROUP] if version == 1 else _json_entry(entries, "optimizer_groups", path)
    if scalars is None:
        groups = []
    elif not isinstance(scalars, dict):
        raise CheckpointError(f"checkpoint {path}: the optimizer entry is not a JSON object")
    if not isinstance(groups, list) or not all(isinstance(g, str) and g.isidentifier() for g in groups or []):
        raise CheckpointError(f"checkpoint {path}: optimizer_groups must be a list of names, got {groups!r}")
    model_state: dict[str, np.ndarray] = {}
    grouped: dict[str, dict[str, np.ndarray]] = {g: {} for g in groups}
    for name, array in tensors.items():
        if name.startswith(MODEL_PREFIX):
            model_state[name[len(MODEL_PREFIX) :]] = array
            continue
        rest = name[len(OPTIM_PREFIX) :] if name.startswith(OPTIM_PREFIX) else ""
        group, param = (_V1_GROUP, rest) if version == 1 else rest.partition(".")[::2]
        if scalars is None and rest:
            raise CheckpointError(f"checkpoint {path} holds optimizer tensors but no optimizer settings")
        if group not in grouped or not param:
            raise CheckpointError(f"checkpoint {path} holds an unexpected tensor {name!r}")
        grouped[group][param] = array
    return model_state, None if scalars is None else {**scalars, **grouped}


def restore(
    checkpoint: Checkpoint | str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    rng: bool = True,
) -> Checkpoint:
    """Load a checkpoint's state into ``model`` (and ``optimizer``, ``scheduler``), in place.

    Everything is checked before anything changes: a checkpoint of another architecture raises a
    :class:`CheckpointError` listing the missing, unexpected and mis-shaped tensors, and leaves the model,
    optimiser and schedule as they were. ``rng=True`` also restores the random generator, so that a resumed
    run draws the same dropout masks, crops and shuffles as an uninterrupted one.

    Returns the checkpoint (loaded from the path if a path was given).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    source = f"checkpoint {ckpt.path}"
    if optimizer is not None:
        if ckpt.optimizer_state is None:
            raise CheckpointError(f"{source} holds no optimizer state (it was saved without one)")
        optimizer.check_state_dict(ckpt.optimizer_state, source)
    if scheduler is not None:
        if ckpt.scheduler_state is None:
            raise CheckpointError(f"{source} holds no learning-rate schedule state (it was saved without one)")
        copy.copy(scheduler).load_state_dict(ckpt.scheduler_state, source)  # validates on a throwaway copy
    if rng and ckpt.rng_state is not None:
        _check_rng_state(ckpt.rng_state, source)
    try:
        model.load_state_dict(ckpt.model_state, source=source)
    except CheckpointError as exc:
        ours, theirs = getattr(model, "config", None), ckpt.model_config
        if ours and theirs and ours != theirs:
            raise CheckpointError(f"{exc} (the checkpoint's model is {theirs}; this model is {ours})") from exc
        raise
    if optimizer is not None:
        optimizer.load_state_dict(ckpt.optimizer_state, source)
    if scheduler is not None:
        scheduler.load_state_dict(ckpt.scheduler_state, source)
    if rng and ckpt.rng_state is not None:
        backend.set_rng_state(ckpt.rng_state)
    return ckpt


def _check_rng_state(state: Any, source: str) -> None:
    """Try the state on a throwaway generator of the same kind as minialex's."""
    trial = np.random.default_rng()
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != trial.bit_generator.state["bit_generator"]:
            kind = state.get("bit_generator") if isinstance(state, dict) else state
            raise ValueError(f"it is for {tensorfile.brief(kind)}")
        trial.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"{source}: unusable RNG state ({exc})") from exc
