"""The :class:`Dataset` record every loader returns, and :class:`PhotoDataset`, the record of an image folder.

Images stay ``uint8`` on the host, in (N, C, H, W) layout, until a batch is drawn; they are moved to the
backend, scaled to [0, 1] and normalised only then (:mod:`minialex.data.augment`). The record carries the
per-channel mean and standard deviation of the *training* split, in [0, 1] units
(:func:`minialex.data.stats.channel_stats`), so that normalisation never peeks at the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minialex.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """A labelled image data set split into train, validation and test, images as uint8 on the host.

    The validation split takes the decisions of a run (schedule, best checkpoint); the test split is only
    reported (see :mod:`minialex.data.splits`).

    Attributes
    ----------
    name : str
        The registry name (``"mnist5k"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``).
    train_images, val_images, test_images : np.ndarray of uint8, shape (N, C, H, W)
    train_labels, val_labels, test_labels : np.ndarray of int64, shape (N,), values in [0, len(classes))
    classes : list of str
        Class names, index = label.
    mean, std : tuple of C floats
        Per-channel statistics of the training images in [0, 1] units (see :func:`channel_stats`).
    source : str
        Where the data came from and how it was split (one line, for logs and run directories).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = field(default="")

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DataError(
                    f"dataset {self.name}: {split}_images must be uint8 (N, C, H, W), got {x.dtype} {x.shape}"
                )
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise DataError(
                    f"dataset {self.name}: {split}_labels must be int64 of shape ({x.shape[0]},), got {y.dtype} {y.shape}"
                )
            if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
                raise DataError(
                    f"dataset {self.name}: {split}_labels must lie in [0, {len(self.classes)}), "
                    f"got [{y.min()}, {y.max()}]"
                )
        for split in ("val", "test"):
            other = getattr(self, f"{split}_images").shape[1:]
            if self.train_images.shape[1:] != other:
                raise DataError(
                    f"dataset {self.name}: train images {self.train_images.shape[1:]} and {split} images {other} "
                    "differ in shape"
                )
        channels = self.train_images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(
                f"dataset {self.name}: mean/std need {channels} values, got {len(self.mean)}/{len(self.std)}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.train_images.shape}, val={self.val_images.shape}, "
            f"test={self.test_images.shape}, "
            f"classes={self.num_classes}, mean={tuple(round(m, 4) for m in self.mean)}, "
            f"std={tuple(round(s, 4) for s in self.std)})"
        )


@dataclass(frozen=True, repr=False)
class PhotoDataset(Dataset):
    """A data set read from an image folder (:func:`minialex.data.load_dataset` of a path).

    Its images are memory-mapped, read-only uint8 (N, 3, 256, 256) arrays of the decoded-image cache
    (:mod:`minialex.data.imagecache`): rows are read from disk when a batch needs them. The extra fields are
    what the paper's pipeline needs beyond :class:`Dataset`'s.

    Attributes
    ----------
    root : str
        The image folder, absolute.
    mean_image : np.ndarray of float64, shape (3, 256, 256)
        The training split's mean image in [0, 1] units (the paper, §2, subtracts it pixel by pixel).
    pca : (eigvals (3,), eigvecs (3, 3))
        Eigen-decomposition of the training pixels' RGB covariance, eigenvalues descending (the paper, §4.1).
    files : dict split -> tuple of str
        For "train", "val" and "test", the file of every row, relative to ``root``.
    skipped : tuple of :class:`~minialex.data.folder.SkippedFile`
        ``(file, kind, detail)`` of every file found but not used (undecodable, a broken link, ...), ``file``
        relative to ``root``.
    ignored : tuple of str
        Files with another extension than .jpg, .jpeg or .png, and files outside any class folder.
    cache : str
        The cache folder the arrays are mapped from.
    fingerprint : str
        The cache's hash of the listing (every file's path, label, size and modification time): the data
        set's identity, which a checkpoint records.
    """

    root: str = ""
    mean_image: np.ndarray | None = None
    pca: tuple[np.ndarray, np.ndarray] | None = None
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skipped: tuple[tuple[str, str, str], ...] = ()
    ignored: tuple[str, ...] = ()
    cache: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        shape = self.image_shape
        if self.mean_image is None or self.mean_image.shape != shape:
            got = None if self.mean_image is None else self.mean_image.shape
            raise DataError(f"dataset {self.name}: mean_image must have the images' shape {shape}, got {got}")
        if self.pca is None or np.shape(self.pca[0]) != (3,) or np.shape(self.pca[1]) != (3, 3):
            raise DataError(f"dataset {self.name}: pca must be (eigvals (3,), eigvecs (3, 3))")
        for split in ("train", "val", "test"):
            rows = len(getattr(self, f"{split}_labels"))
            if len(self.files.get(split, ())) != rows:
                raise DataError(
                    f"dataset {self.name}: {split} has {rows} images but {len(self.files.get(split, ()))} files"
                )

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", root={self.root!r}, skipped={len(self.skipped)})"

    @property
    def summary(self) -> str:
        """One line: the split sizes, and how many files were skipped or ignored (listed in :attr:`skipped`)."""
        counts = ", ".join(f"{len(getattr(self, f'{s}_labels')):,} {s}" for s in ("train", "val", "test"))
        line = f"{self.root}: {self.num_classes} classes, {counts}"
        if self.skipped:
            reasons: dict[str, int] = {}
            for _, kind, _ in self.skipped:
                reasons[kind] = reasons.get(kind, 0) + 1
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
            line += f"; {len(self.skipped)} file{'s' if len(self.skipped) > 1 else ''} skipped ({kinds})"
        if self.ignored:
            line += f"; {len(self.ignored)} other file{'s' if len(self.ignored) > 1 else ''} ignored"
        return line
