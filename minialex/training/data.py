"""The data of one run: the three splits after the ``--limit-*`` subsets, and their description in checkpoints.

Subsets. ``limit_train``, ``limit_val`` and ``limit_test`` keep a seeded, sorted subset of a split
(:func:`split_subset`): the same images for the same seed whether the run is started, resumed, or its
checkpoint evaluated by ``minialex evaluate``. This module is the only place that cuts them.

:class:`DataInfo` is what a checkpoint records about the data: enough for inference (class names, image
shape, the normalisation statistics of the training split) and for a resumed run to check that it is given
the same data it started on.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from minialex import validate
from minialex.errors import CheckpointError, ConfigError, DataError

SPLITS = ("train", "val", "test")
_SALT = {"train": 1, "test": 2, "val": 3}  # one independent subset draw per split


def subset_indices(n: int, limit: int | None, seed: int, split: str) -> np.ndarray | None:
    """Sorted indices of a seeded subset of ``limit`` of ``n`` items of ``split``; None when no limit applies."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng([seed, _SALT[split]]).permutation(n)[:limit])


def split_subset(dataset: Any, split: str, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of ``dataset``'s ``split`` (``"train"``, ``"val"`` or ``"test"``), cut to ``limit``."""
    validate.choice(split, "split", SPLITS)
    images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
    idx = subset_indices(len(labels), limit, seed, split)
    return (images, labels) if idx is None else (images[idx], labels[idx])


def labels_digest(*label_arrays: np.ndarray) -> str:
    """sha256 over the int64 little-endian bytes of each label array, with its length before it."""
    h = hashlib.sha256()
    for labels in label_arrays:
        h.update(len(labels).to_bytes(8, "little"))
        h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return h.hexdigest()


@dataclass
class DataInfo:
    """What a checkpoint records about the data set of its run."""

    name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    image_shape: list[int]
    """(C, H, W) of the stored images (the model may resize them)."""
    train_images: int
    val_images: int
    test_images: int
    """Images of each split the run uses (after the limits)."""
    source: str = ""
    labels_sha256: str | None = None
    """sha256 of the three splits' labels, in order (cheap for any size; None in checkpoint format 1)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DataInfo:
        """Check and rebuild :meth:`to_dict` output (``val_images`` may be absent: checkpoint format 1)."""
        what = f"{source}: dataset"
        if not isinstance(data, dict):
            raise CheckpointError(f"{what} must be a JSON object, got {type(data).__name__}")
        try:
            classes, shape = data["classes"], data["image_shape"]
            mean, std = data["mean"], data["std"]
            counts = {k: data.get(k, 0) for k in ("train_images", "val_images", "test_images")}
            name, where, digest = data["name"], data.get("source", ""), data.get("labels_sha256")
        except KeyError as exc:
            raise CheckpointError(f"{what} lacks {exc}") from None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise CheckpointError(f"{what}.classes must be a non-empty list of names")
        if not isinstance(shape, list) or len(shape) != 3:
            raise CheckpointError(f"{what}.image_shape must be [C, H, W], got {shape!r}")
        shape = [validate.integer(s, f"{what}.image_shape", low=1, error=CheckpointError) for s in shape]
        for label, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or len(values) != shape[0]:
                raise CheckpointError(f"{what}.{label} must hold {shape[0]} numbers, got {values!r}")
        mean = [validate.number(m, f"{what}.mean", error=CheckpointError) for m in mean]
        std = [validate.number(s, f"{what}.std", low=0.0, low_open=True, error=CheckpointError) for s in std]
        counts = {k: validate.integer(v, f"{what}.{k}", low=0, error=CheckpointError) for k, v in counts.items()}
        if not isinstance(name, str) or not isinstance(where, str) or not isinstance(digest, str | None):
            raise CheckpointError(f"{what}.name, .source and .labels_sha256 must be text")
        return cls(name, list(classes), mean, std, shape, **counts, source=where, labels_sha256=digest)

    def differences(self, other: DataInfo) -> list[str]:
        """``"field: self vs other"`` for every field but ``source`` that differs (statistics to 1e-9)."""
        out = []
        for key in ("name", "image_shape", "train_images", "val_images", "test_images", "mean", "std"):
            a, b = getattr(self, key), getattr(other, key)
            if key in ("mean", "std"):
                same = len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a, b, strict=True))
            else:
                same = a == b
            if not same:
                out.append(f"{key} {a} vs {b}")
        if self.classes != other.classes:
            out.append(f"class names ({len(self.classes)} vs {len(other.classes)} classes)")
        if None not in (self.labels_sha256, other.labels_sha256) and self.labels_sha256 != other.labels_sha256:
            out.append("labels (the splits hold other images)")
        return out


class RunData:
    """The splits a run trains, validates and reports on (uint8 host images, int64 labels), with their info.

    Parameters
    ----------
    dataset : a :class:`minialex.data.Dataset` (or anything with the same ``*_images``/``*_labels``,
        ``classes``, ``mean``, ``std`` and ``source`` attributes)
    config : the run's :class:`~minialex.training.TrainConfig` (its ``limit_*`` and ``seed``)
    """

    def __init__(self, dataset: Any, config: Any) -> None:
        self.classes = [str(c) for c in dataset.classes]
        self.train_images, self.train_labels = split_subset(dataset, "train", config.limit_train, config.seed)
        self.val_images, self.val_labels = split_subset(dataset, "val", config.limit_val, config.seed)
        self.test_images, self.test_labels = split_subset(dataset, "test", config.limit_test, config.seed)
        for split in SPLITS:
            if len(getattr(self, f"{split}_labels")) == 0:
                raise DataError(
                    f"dataset {config.dataset}: the {split} split is empty; a run needs training images, "
                    "validation images (for its decisions) and test images (for its report)"
                )
        self.image_shape = tuple(int(s) for s in dataset.train_images.shape[1:])
        if len(self.image_shape) != 3:
            raise ConfigError(
                f"dataset {config.dataset}: expected images (N, C, H, W), got {dataset.train_images.shape}"
            )
        self.info = DataInfo(
            name=config.dataset,
            classes=self.classes,
            mean=[float(m) for m in dataset.mean],
            std=[float(s) for s in dataset.std],
            image_shape=list(self.image_shape),
            train_images=len(self.train_labels),
            val_images=len(self.val_labels),
            test_images=len(self.test_labels),
            source=str(getattr(dataset, "source", "")),
            labels_sha256=labels_digest(self.train_labels, self.val_labels, self.test_labels),
        )

    @classmethod
    def load(cls, config: Any, dataset: Any = None) -> RunData:
        """The run's data from ``dataset``, or from :func:`minialex.data.load_dataset` when it is None."""
        if dataset is None:
            from minialex.data import load_dataset

            dataset = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
        return cls(dataset, config)
