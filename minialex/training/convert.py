"""``minialex convert``: torchvision's pretrained AlexNet as a minialex checkpoint for ``predict`` and ``evaluate``.

::

    minialex convert alexnet-owt-7be5be79.pth -o alexnet-imagenet.safetensors [--classes synsets.txt]
    minialex predict alexnet-imagenet.safetensors photo.jpg          # the top-5 ImageNet classes
    minialex evaluate alexnet-imagenet.safetensors --dataset ~/data/imagenette2-320

The weights file is read by :func:`minialex.models.pretrained.read_torchvision_weights` (safetensors, or a
``.pth`` through ``torch.load(weights_only=True)``); the class names come from ``--classes`` or torchvision
(:func:`minialex.models.pretrained.imagenet_classes`). The checkpoint written is a minialex training
checkpoint of the ``torchvision`` variant whose data record says how an image becomes its input, as
torchvision's own evaluation does it:

* ``image_rule = "torchvision"``, images of 3×256×256: a photo resized as torchvision's ``Resize(256)`` does
  and its central 256×256 square kept (:func:`minialex.data.photo.decode`), then the central 224×224 crop
  (the model's input): torchvision's ``Resize(256)`` and ``CenterCrop(224)``, pixel for pixel;
* per-channel standardisation with the ImageNet mean and std (:data:`~minialex.models.pretrained.IMAGENET_MEAN`,
  :data:`~minialex.models.pretrained.IMAGENET_STD`), no mean image.

It holds no optimiser state and no training history (``converted_from`` names the source file and its
sha256), so it can be evaluated and used for prediction but not resumed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from minialex import backend
from minialex.data.photo import SIZE
from minialex.errors import ConfigError
from minialex.models import alexnet
from minialex.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_values,
    imagenet_classes,
    load_torchvision_state,
    read_torchvision_weights,
    torchvision_classes,
)
from minialex.training import checkpoint
from minialex.training.config import TrainConfig
from minialex.training.data import DataInfo
from minialex.training.evaluation import load_trained
from minialex.training.saved_run import SavedRun
from minialex.training.state import RunState

DATASET = "imagenet"
"""The data set name a converted checkpoint records (``minialex evaluate`` needs ``--dataset FOLDER``)."""


def default_output(weights: str | os.PathLike) -> Path:
    """``<folder>/<stem>-minialex.safetensors`` beside the weights file."""
    path = Path(weights)
    return path.with_name(f"{path.stem}-minialex.safetensors")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_torchvision(
    weights: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    classes_file: str | os.PathLike | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Convert torchvision AlexNet weights into a minialex checkpoint; return its path.

    Parameters
    ----------
    weights : a torchvision AlexNet state dict, as safetensors or as a PyTorch ``.pth`` file
    output : the checkpoint to write (default :func:`default_output`); never the weights file itself
    classes_file : the class names, one per line (see :func:`~minialex.models.pretrained.imagenet_classes`);
        default: torchvision's list
    overwrite : replace an existing ``output`` (otherwise a :class:`~minialex.errors.ConfigError`)
    log : receives one line per step

    Everything is checked before the file is written (the tensors' names, shapes, dtypes and values, the
    number of class names); the file is written atomically, then read back and checked.
    """
    say = log or (lambda message: None)
    source = os.fspath(weights)
    target = Path(output) if output is not None else default_output(weights)
    if target.exists() and os.path.samefile(target, source):
        raise ConfigError(f"convert: the output {target} is the weights file itself; choose another with -o")
    if target.exists() and not overwrite:
        raise ConfigError(f"convert: {target} exists; remove it, choose another with -o, or give --force")
    state, kind = read_torchvision_weights(source)
    classes = torchvision_classes(state, source)
    check_values(state, source)  # before the model is built: a damaged file fails at once
    names, wnids, origin = imagenet_classes(classes, classes_file)
    say(
        f"read {len(state)} tensors ({kind}) from {source}: torchvision AlexNet, {classes} classes; names from {origin}"
    )
    rng = backend.get_rng_state()
    try:
        model = alexnet("torchvision", num_classes=classes)  # drawn, then overwritten: the caller's draws unchanged
    finally:
        backend.set_rng_state(rng)
    load_torchvision_state(model, state, source)
    info = DataInfo(
        name=DATASET,
        classes=names,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        image_shape=[3, SIZE, SIZE],
        train_images=0,
        val_images=0,
        test_images=0,
        source=f"torchvision AlexNet weights {Path(source).name}; class names from {origin}",
        image_rule="torchvision",
        folders=wnids,
    )
    converted = {"format": f"torchvision ({kind})", "file": Path(source).name, "sha256": file_sha256(source)}
    saved = SavedRun(TrainConfig(model="torchvision", dataset=DATASET).validate(), info, RunState(), model.config,
                     converted)  # fmt: skip
    checkpoint.save_checkpoint(target, model, metadata=saved.to_metadata())
    load_trained(target)  # read back: the file is complete and predict will accept it
    say(f"wrote {target}: predict with 'minialex predict {target} photo.jpg'")
    return target
