"""The data of one run: the three splits after the ``--limit-*`` subsets, and their description in checkpoints.

Subsets. ``limit_train``, ``limit_val`` and ``limit_test`` keep a seeded, sorted subset of a split
(:func:`split_subset`): the same images for the same seed whether the run is started, resumed, or its
checkpoint evaluated by ``minialex evaluate``. This module is the only place that cuts them. A subset of a
memory-mapped split (the decoded-image cache of a photo folder) stays on disk (:class:`RowSubset`): only the
rows a batch takes are read.

:class:`DataInfo` is what a checkpoint records about the data: enough for inference (class names, image
shape, the normalisation statistics of the training split, how an image file becomes an input) and for a
resumed run to check that it is given the same data it started on (for a photo folder: the cache's
fingerprint of every file). The mean image of a photo data set, an array, is stored beside it as the
checkpoint's ``data.mean_image`` tensor (:attr:`RunData.arrays`).
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
IMAGE_RULES = ("resize", "paper", "torchvision")
_SALT = {"train": 1, "test": 2, "val": 3}  # one independent subset draw per split
MAX_CHANNELS, MAX_IMAGE_SIDE = 64, 4096
"""The largest image a checkpoint may declare: (C, H, W) up to (64, 4096, 4096)."""


def subset_indices(n: int, limit: int | None, seed: int, split: str) -> np.ndarray | None:
    """Sorted indices of a seeded subset of ``limit`` of ``n`` items of ``split``; None when no limit applies."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng([seed, _SALT[split]]).permutation(n)[:limit])


class RowSubset:
    """The rows ``rows`` of an array (N, ...), read only when indexed: a subset of a memory-mapped split.

    Indexing with an int, a slice or an integer array selects among the subset's rows and returns a host
    ``np.ndarray`` holding just those (``subset[a:b]`` is ``array[rows[a:b]]``), so the subset of a
    decoded-image cache never has to fit in memory. ``len``, ``shape``, ``dtype`` and ``ndim`` are those of
    the subset; ``np.asarray(subset)`` reads it all.
    """

    def __init__(self, array: Any, rows: np.ndarray) -> None:
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), *array.shape[1:])
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.array[self.rows[key]])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.asarray(self.array[self.rows])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"RowSubset({len(self.rows)} of {len(self.array)} rows, {self.dtype} {self.shape[1:]})"


def split_subset(dataset: Any, split: str, limit: int | None, seed: int) -> tuple[Any, np.ndarray]:
    """``(images, labels)`` of ``dataset``'s ``split`` (``"train"``, ``"val"`` or ``"test"``), cut to ``limit``.

    The images of a subset are a copy, except for a memory-mapped split: a :class:`RowSubset` of it.
    """
    validate.choice(split, "split", SPLITS)
    images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
    idx = subset_indices(len(labels), limit, seed, split)
    if idx is None:
        return images, labels
    return (RowSubset(images, idx) if isinstance(images, np.memmap) else images[idx]), labels[idx]


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
    image_rule: str = "resize"
    """How ``predict`` turns an image file into an image of ``image_shape``: ``"resize"`` (convert to the
    channels, resize to H × W: digits, CIFAR), ``"paper"`` (shorter side to H, the central H × W crop: the
    rule of the decoded-image cache, the paper's §2) or ``"torchvision"`` (torchvision's ``Resize`` and
    ``CenterCrop``: a converted model); see :func:`minialex.data.photo.decode`."""
    mean_image: bool = False
    """The training split's mean image is subtracted pixel by pixel (the checkpoint's ``data.mean_image``)."""
    root: str = ""
    """The image folder, absolute ("" for a registered data set)."""
    fingerprint: str = ""
    """The decoded-image cache's hash of every file of the folder (path, label, size, modification time)."""
    skipped_files: int = 0
    """Files of the folder that could not be used (listed in the run directory's ``dataset.json``)."""
    folders: list[str] | None = None
    """The class folder names, where they differ from ``classes`` (a converted ImageNet model: WordNet ids)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def folder_names(self) -> list[str]:
        """The names of the class folders this model's outputs stand for (``folders``, else ``classes``)."""
        return list(self.folders) if self.folders is not None else list(self.classes)

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
        highs = (MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
        shape = [
            validate.integer(s, f"{what}.image_shape", low=1, high=h, error=CheckpointError)
            for s, h in zip(shape, highs, strict=True)
        ]
        for label, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or len(values) != shape[0]:
                raise CheckpointError(f"{what}.{label} must hold {shape[0]} numbers, got {values!r}")
        mean = [validate.number(m, f"{what}.mean", error=CheckpointError) for m in mean]
        std = [validate.number(s, f"{what}.std", low=0.0, low_open=True, error=CheckpointError) for s in std]
        counts = {k: validate.integer(v, f"{what}.{k}", low=0, error=CheckpointError) for k, v in counts.items()}
        if not isinstance(name, str) or not isinstance(where, str) or not isinstance(digest, str | None):
            raise CheckpointError(f"{what}.name, .source and .labels_sha256 must be text")
        photo = _photo_fields(data, what, len(classes))
        return cls(name, list(classes), mean, std, shape, **counts, source=where, labels_sha256=digest, **photo)

    def differences(self, other: DataInfo) -> list[str]:
        """``"field: self vs other"`` for every field but ``source`` that differs (statistics to 1e-9)."""
        out = []
        keys = ("name", "image_shape", "train_images", "val_images", "test_images", "mean", "std", "image_rule")
        for key in (*keys, "mean_image"):
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
        if self.fingerprint and other.fingerprint and self.fingerprint != other.fingerprint:
            changed = "files were added, removed or changed"
            out.append(f"files (fingerprint {self.fingerprint} vs {other.fingerprint}: {changed})")
        return out


def _photo_fields(data: dict, what: str, classes: int) -> dict[str, Any]:
    """The fields a checkpoint of an older minialex may lack, checked (with their defaults when absent)."""
    rule = validate.choice(data.get("image_rule", "resize"), f"{what}.image_rule", IMAGE_RULES, error=CheckpointError)
    mean_image = validate.flag(data.get("mean_image", False), f"{what}.mean_image", error=CheckpointError)
    root, fp = data.get("root", ""), data.get("fingerprint", "")
    if not isinstance(root, str) or not isinstance(fp, str):
        raise CheckpointError(f"{what}.root and .fingerprint must be text")
    skipped = validate.integer(data.get("skipped_files", 0), f"{what}.skipped_files", low=0, error=CheckpointError)
    folders = data.get("folders")
    if folders is not None and (
        not isinstance(folders, list) or len(folders) != classes or not all(isinstance(f, str) and f for f in folders)
    ):
        raise CheckpointError(f"{what}.folders must hold one non-empty name per class ({classes})")
    return {"image_rule": rule, "mean_image": mean_image, "root": root, "fingerprint": fp,
            "skipped_files": skipped, "folders": folders}  # fmt: skip


class RunData:
    """The splits a run trains, validates and reports on (uint8 host images, int64 labels), with their info.

    For a photo folder (:class:`~minialex.data.PhotoDataset`) it also keeps what the paper's pipeline needs
    and what the run directory records: the training split's mean image and RGB PCA (from the cache's index:
    no pass over the images), the data set's one-line summary and its files that were skipped.

    Parameters
    ----------
    dataset : a :class:`minialex.data.Dataset` (or anything with the same ``*_images``/``*_labels``,
        ``classes``, ``mean``, ``std`` and ``source`` attributes)
    config : the run's :class:`~minialex.training.TrainConfig` (its ``limit_*`` and ``seed``)
    """

    def __init__(self, dataset: Any, config: Any) -> None:
        self.name = str(config.dataset)
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
        self.mean = tuple(float(m) for m in dataset.mean)
        self.std = tuple(float(s) for s in dataset.std)
        self.mean_image: np.ndarray | None = getattr(dataset, "mean_image", None)
        self.pca: tuple[np.ndarray, np.ndarray] | None = getattr(dataset, "pca", None)
        self.summary: str | None = getattr(dataset, "summary", None)
        self.folder = _folder_record(dataset) if self.mean_image is not None else None
        self.info = DataInfo(
            name=self.name,
            classes=self.classes,
            mean=list(self.mean),
            std=list(self.std),
            image_shape=list(self.image_shape),
            train_images=len(self.train_labels),
            val_images=len(self.val_labels),
            test_images=len(self.test_labels),
            source=str(getattr(dataset, "source", "")),
            labels_sha256=labels_digest(self.train_labels, self.val_labels, self.test_labels),
            image_rule="paper" if self.mean_image is not None else "resize",
            mean_image=self.mean_image is not None and getattr(config, "mean", "image") == "image",
            root=str(getattr(dataset, "root", "")),
            fingerprint=str(getattr(dataset, "fingerprint", "")),
            skipped_files=len(getattr(dataset, "skipped", ())),
        )

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a checkpoint stores beside :attr:`info` for inference: the mean image, if subtracted."""
        return {"mean_image": np.asarray(self.mean_image, dtype=np.float64)} if self.info.mean_image else {}

    @classmethod
    def load(cls, config: Any, dataset: Any = None, log: Any = None) -> RunData:
        """The run's data from ``dataset``, or from :func:`minialex.data.load_dataset` when it is None
        (``log`` receives the progress lines of a photo folder's first decoding)."""
        if dataset is None:
            from minialex.data import load_dataset

            dataset = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download, log=log)
        return cls(dataset, config)


def _folder_record(dataset: Any) -> dict[str, Any]:
    """What the run directory's ``dataset.json`` says about a photo folder: where, which files, which skipped."""
    splits = {s: len(getattr(dataset, f"{s}_labels")) for s in SPLITS}
    return {
        "summary": dataset.summary,
        "root": dataset.root,
        "cache": dataset.cache,
        "fingerprint": dataset.fingerprint,
        "classes": list(dataset.classes),
        "images": splits,
        "source": dataset.source,
        "skipped": [{"file": f, "kind": k, "detail": d} for f, k, d in dataset.skipped],
        "ignored": list(dataset.ignored),
    }
