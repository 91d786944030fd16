"""torchvision's AlexNet weights (e.g. the ImageNet ``IMAGENET1K_V1`` ones): reading them, safely, into minialex.

torchvision names its parameters by module index; minialex by the paper's layer names::

    features.0   conv1      features.3   conv2      features.6   conv3
    features.8   conv4      features.10  conv5
    classifier.1 fc6        classifier.4 fc7        classifier.6 fc8

(the other indices are ReLU, MaxPool2d and Dropout, which have no parameters). The layouts agree
(weights (out, in, kh, kw) and (out, in)), so the arrays are copied as they are.

torchvision's ``avgpool`` is ``AdaptiveAvgPool2d((6, 6))``. At 224×224 input pool5 already gives 6×6, and
an adaptive average pool from 6×6 to 6×6 averages each 1×1 bin: the identity. That is why the
``torchvision`` variant requires 224×224 input and has no avgpool layer.

Files. :func:`read_torchvision_weights` reads a safetensors file (no PyTorch needed) or a PyTorch ``.pth``
file, the form torchvision downloads (``alexnet-owt-7be5be79.pth``). A ``.pth`` file is a pickle, which can
run code when it is loaded, so it is read only with ``torch.load(path, weights_only=True,
map_location="cpu")``, PyTorch's restricted unpickler that builds tensors and plain containers and
nothing else; PyTorch is needed for that alone. ``minialex convert`` (:mod:`minialex.training.convert`)
turns either into a minialex checkpoint that ``minialex predict`` and ``minialex evaluate`` read, with
the ImageNet class names (:func:`imagenet_classes`) and torchvision's preprocessing.

torchvision's preprocessing for these weights: resize the shorter side to 256 (bilinear, antialiased), take
the central 224×224 crop, scale to [0, 1], subtract :data:`IMAGENET_MEAN` and divide by :data:`IMAGENET_STD`
per channel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from minialex.errors import CheckpointError, ConfigError, DataError, mismatch_report

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""The per-channel mean torchvision's ImageNet models were trained with, [0, 1] units (RGB)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The per-channel standard deviation that goes with :data:`IMAGENET_MEAN`."""
WNID = re.compile(r"^(n\d{8})(?:\s+(.*))?$")
"""A line of the ImageNet synset list (``n01440764 tench, Tinca tinca``): a WordNet id, then the names."""

TORCHVISION_NAMES: dict[str, str] = {
    f"{tv}.{kind}": f"{ours}.{kind}"
    for tv, ours in (
        ("features.0", "conv1"),
        ("features.3", "conv2"),
        ("features.6", "conv3"),
        ("features.8", "conv4"),
        ("features.10", "conv5"),
        ("classifier.1", "fc6"),
        ("classifier.4", "fc7"),
        ("classifier.6", "fc8"),
    )
    for kind in ("weight", "bias")
}
"""torchvision's parameter name -> minialex's."""


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as NumPy arrays; a :class:`CheckpointError` naming the file if unreadable."""
    from safetensors.numpy import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file" + (" (it is a directory)" if os.path.isdir(path) else ""))
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def load_torchvision_safetensors(model: Any, path: str | os.PathLike) -> None:
    """Copy torchvision AlexNet weights from the safetensors file ``path`` into ``model`` (in place).

    ``model`` is ``alexnet("torchvision", num_classes=...)`` with as many classes as the file's fc8.
    Raises :class:`~minialex.errors.CheckpointError` naming the file and listing every missing, unexpected
    and mis-shaped tensor (by torchvision's name, with minialex's in brackets) before anything is copied.
    """
    load_torchvision_state(model, read_safetensors(path), os.fspath(path))


def load_torchvision_state(model: Any, state: dict[str, np.ndarray], source: str) -> None:
    """Copy a torchvision AlexNet state dict (name -> array) into ``model``; see :func:`load_torchvision_safetensors`.

    Everything is checked before anything is copied: the names and shapes, float dtypes, finite values.
    """
    params = model.params
    missing = [name for name in TORCHVISION_NAMES if name not in state]
    unexpected = sorted(name for name in state if name not in TORCHVISION_NAMES)
    misshaped = []
    for tv_name, ours in TORCHVISION_NAMES.items():
        if tv_name not in state:
            continue
        if ours not in params:
            missing.append(f"{ours} (in the model, for {tv_name})")
            continue
        expected, got = tuple(params[ours].shape), tuple(state[tv_name].shape)
        if expected != got:
            misshaped.append(f"{tv_name} [{ours}]: model has {expected}, file has {got}")
    report = mismatch_report(missing, unexpected, misshaped)
    if report:
        raise CheckpointError(
            f"{source} is not a torchvision AlexNet state dict for this model "
            f"(build it with alexnet('torchvision', num_classes=...)): {report}"
        )
    check_values(state, source)
    model.load_state_dict({ours: state[tv] for tv, ours in TORCHVISION_NAMES.items()}, source=source)


def check_values(state: dict[str, np.ndarray], source: str) -> None:
    """:class:`CheckpointError` unless every tensor of the torchvision names present is float and finite."""
    for tv_name in TORCHVISION_NAMES:
        array = state.get(tv_name)
        if array is None:
            continue
        if array.dtype.kind != "f":
            raise CheckpointError(f"{source}: {tv_name} has dtype {array.dtype}, expected a float type")
        if not np.isfinite(array).all():
            raise CheckpointError(f"{source}: {tv_name} holds NaN or infinite values: the weights are damaged")


def torchvision_classes(state: dict[str, np.ndarray], source: str) -> int:
    """The number of classes of a torchvision AlexNet state dict: the rows of ``classifier.6.weight`` (fc8)."""
    fc8 = state.get("classifier.6.weight")
    if fc8 is None or fc8.ndim != 2:
        raise CheckpointError(
            f"{source} is not a torchvision AlexNet state dict: it has no classifier.6.weight (fc8) matrix; "
            f"its tensors: {', '.join(sorted(state)[:8])}"
        )
    return int(fc8.shape[0])


# -- reading the files --------------------------------------------------------------------------------------------
def read_torchvision_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], str]:
    """A torchvision state dict from a safetensors or a PyTorch file, as NumPy arrays; and the format's name.

    The format is recognised by the file's first bytes, not its name: a safetensors header (an 8-byte
    length, then ``{``), else a PyTorch file (a zip archive, or the legacy pickle). A PyTorch file is read
    with ``torch.load(path, weights_only=True, map_location="cpu")`` only (:func:`read_pytorch_file`).
    A state dict saved from ``torch.nn.DataParallel`` (every name ``module.…``) is accepted.

    Raises
    ------
    CheckpointError
        A missing or unreadable file, or one that holds something else than tensors by name.
    ConfigError
        A PyTorch file, and PyTorch is not installed.
    """
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise CheckpointError(f"{where}: no such file" + (" (it is a directory)" if os.path.isdir(where) else ""))
    try:
        with open(where, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
    if len(head) == 9 and head[8:9] == b"{":
        state, kind = read_safetensors(where), "safetensors"
    else:
        state, kind = read_pytorch_file(where), "PyTorch"
    if state and all(name.startswith("module.") for name in state):
        state = {name[len("module.") :]: array for name, array in state.items()}
    return state, kind


def read_pytorch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state-dict file (``torch.save(model.state_dict(), path)``) as NumPy arrays.

    Read with ``torch.load(path, weights_only=True, map_location="cpu")``: PyTorch's restricted unpickler,
    which refuses any object but tensors and plain containers, so the file cannot run code. Half-precision
    tensors become float32.
    """
    where = os.fspath(path)
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"{where}: reading a PyTorch (.pth) file needs PyTorch, for this step only (pip install torch); "
            "or convert the file to safetensors where PyTorch is installed: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'alexnet.safetensors')"
        ) from None
    try:
        loaded = torch.load(where, weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError (refused object), RuntimeError (not a PyTorch file), EOFError
        first = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{where}: not a PyTorch weights file that torch.load(weights_only=True) accepts "
            f"({type(exc).__name__}: {first})"
        ) from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training script's checkpoint around the state dict
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(f"{where}: expected a state dict (tensors by name), got {type(loaded).__name__}")
    out = {}
    for name, tensor in loaded.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()  # float16, bfloat16: NumPy has no bfloat16
        out[str(name)] = tensor.numpy().copy()
    return out


# -- the class names ------------------------------------------------------------------------------------------------
def imagenet_classes(
    count: int, classes_file: str | os.PathLike | None = None
) -> tuple[list[str], list[str] | None, str]:
    """The names of a converted model's ``count`` classes, their WordNet ids where known, and their origin.

    From ``classes_file`` when one is given: UTF-8 text, one class per line in the model's output order,
    either a name (``tench``) or a line of the ImageNet synset list (``n01440764 tench, Tinca tinca``: the
    WordNet id, which is the class folder name of an ImageNet download, then the names, of which the first
    is kept). Otherwise from torchvision, when it is installed
    (``AlexNet_Weights.IMAGENET1K_V1.meta["categories"]``, for 1000 classes). minialex ships no list.

    Returns
    -------
    (names, wnids or None, a few words on where they came from)

    Raises
    ------
    DataError
        A file that cannot be read, with empty lines between names, or with another number of lines.
    ConfigError
        No file, and torchvision is not installed (or the model has not 1000 classes).
    """
    if classes_file is not None:
        return _read_classes_file(Path(classes_file), count)
    try:
        from torchvision.models import AlexNet_Weights
    except ImportError:
        raise ConfigError(
            "the ImageNet class names are needed: install torchvision (its AlexNet_Weights list them), or give "
            f"--classes FILE with {count} lines, one class name per line in the model's output order (or lines "
            "'n01440764 tench' of the ImageNet synset list); minialex ships no list"
        ) from None
    names = [str(n) for n in AlexNet_Weights.IMAGENET1K_V1.meta["categories"]]
    if len(names) != count:
        raise ConfigError(
            f"the weights have {count} classes, torchvision's ImageNet list {len(names)}: give --classes FILE "
            f"with {count} names"
        )
    return names, None, "torchvision AlexNet_Weights.IMAGENET1K_V1.meta['categories']"


def _read_classes_file(path: Path, count: int) -> tuple[list[str], list[str] | None, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(f"--classes {path}: cannot be read as UTF-8 text ({reason})") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    empty = [i + 1 for i, line in enumerate(lines) if not line]
    if empty:
        raise DataError(f"--classes {path}: line {empty[0]} is empty; expected one class name per line")
    if len(lines) != count:
        raise DataError(f"--classes {path}: {len(lines)} class names, but the weights have {count} classes")
    matches = [WNID.match(line) for line in lines]
    if not all(matches):
        return lines, None, f"--classes {path.name}"
    wnids = [m.group(1) for m in matches]
    names = [(m.group(2) or m.group(1)).split(",")[0].strip() or m.group(1) for m in matches]
    if len(set(wnids)) != len(wnids):
        duplicate = next(w for w in wnids if wnids.count(w) > 1)
        raise DataError(f"--classes {path}: the WordNet id {duplicate} appears twice")
    return names, wnids, f"--classes {path.name} (with WordNet ids)"
