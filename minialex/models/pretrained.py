"""Loading torchvision's AlexNet weights (e.g. the ImageNet ``IMAGENET1K_V1`` ones) saved as safetensors.

torchvision names its parameters by module index; minialex by the paper's layer names::

    features.0   conv1      features.3   conv2      features.6   conv3
    features.8   conv4      features.10  conv5
    classifier.1 fc6        classifier.4 fc7        classifier.6 fc8

(the other indices are ReLU, MaxPool2d and Dropout, which have no parameters). The layouts agree
(weights (out, in, kh, kw) and (out, in)), so the arrays are copied as they are.

torchvision's ``avgpool`` is ``AdaptiveAvgPool2d((6, 6))``. At 224×224 input pool5 already gives 6×6, and
an adaptive average pool from 6×6 to 6×6 averages each 1×1 bin: the identity. That is why the
``torchvision`` variant requires 224×224 input and has no avgpool layer.

Convert a torchvision checkpoint once, with PyTorch, to a file that loads without pickle::

    import torchvision, safetensors.torch
    model = torchvision.models.alexnet(weights="IMAGENET1K_V1")
    safetensors.torch.save_file(model.state_dict(), "alexnet-imagenet.safetensors")
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from minialex.errors import CheckpointError, mismatch_report

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
    state = read_safetensors(path)
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
            f"{os.fspath(path)} is not a torchvision AlexNet state dict for this model "
            f"(build it with alexnet('torchvision', num_classes=...)): {report}"
        )
    for tv_name in TORCHVISION_NAMES:
        array = state[tv_name]
        if array.dtype.kind != "f":
            raise CheckpointError(f"{os.fspath(path)}: {tv_name} has dtype {array.dtype}, expected a float type")
    model.load_state_dict({ours: state[tv] for tv, ours in TORCHVISION_NAMES.items()}, source=os.fspath(path))
