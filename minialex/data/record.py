"""The :class:`Dataset` record every loader returns, and the per-channel statistics stored in it.

Images stay ``uint8`` on the host, in (N, C, H, W) layout, until a batch is drawn; they are moved to the
backend, scaled to [0, 1] and normalised only then (:mod:`minialex.data.augment`). The record carries the
per-channel mean and standard deviation of the *training* split, in [0, 1] units, so that normalisation
never peeks at the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minialex.errors import DataError


def channel_stats(images: np.ndarray, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, in [0, 1] units.

    Computed exactly from a 256-bin histogram per channel, a chunk of images at a time, so that 50,000
    CIFAR images never need a float copy:

        mean_c = Σ_v v·h_c(v) / (255·n_c),   std_c = sqrt(Σ_v v²·h_c(v) / (255²·n_c) − mean_c²)

    Parameters
    ----------
    images : np.ndarray of uint8, shape (N, C, H, W)
    chunk : int
        Images per histogram pass (bounds the temporary memory).

    Returns
    -------
    (mean, std) : two tuples of C floats
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise DataError(
            f"channel_stats: expected non-empty uint8 images (N, C, H, W), got {images.dtype} {images.shape}"
        )
    channels = images.shape[1]
    hist = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk]
        for c in range(channels):
            hist[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    count = hist.sum(axis=1)
    mean = hist @ values / count
    var = np.maximum(hist @ values**2 / count - mean**2, 0.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))


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
