"""Parser for the *binary* version of CIFAR-10 (``cifar-10-binary.tar.gz``); no pickle anywhere.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html): the archive holds ``cifar-10-batches-bin/`` with
``data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin`` and ``batches.meta.txt`` (one class name per
line). Each batch file is 10,000 records of 1 + 3072 bytes::

    <label byte 0..9> <1024 red bytes> <1024 green bytes> <1024 blue bytes>    (each channel row-major 32×32)

so a file is exactly 30,730,000 bytes, and a record reshapes directly to (3, 32, 32).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minialex.data.fileio import read_bytes
from minialex.errors import DataError

RECORD_BYTES = 1 + 3 * 32 * 32
RECORDS_PER_BATCH = 10_000
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"
META_FILE = "batches.meta.txt"
FOLDER = "cifar-10-batches-bin"


def read_cifar_batch(
    path: str | os.PathLike, expected_records: int | None = RECORDS_PER_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file.

    Parameters
    ----------
    path : path-like
    expected_records : int or None
        Records the file must hold (10,000 in the official files); ``None`` accepts any positive count.

    Returns
    -------
    images : np.ndarray of uint8, shape (N, 3, 32, 32)
    labels : np.ndarray of int64, shape (N,)
    """
    source = os.fspath(path)
    data = read_bytes(path, gunzip=False)
    if len(data) % RECORD_BYTES:
        raise DataError(
            f"{source}: size {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records "
            "(truncated?); delete it and extract the archive again"
        )
    count = len(data) // RECORD_BYTES
    if expected_records is not None and count != expected_records:
        raise DataError(f"{source}: number of records: expected {expected_records}, got {count}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(count, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{source}: labels must lie in [0, 10), found {int(labels.max())}")
    return records[:, 1:].reshape(count, 3, 32, 32).copy(), labels


def read_cifar_meta(path: str | os.PathLike, num_classes: int = 10) -> list[str]:
    """Read ``batches.meta.txt``: ASCII class names, one a line (blank lines ignored)."""
    source = os.fspath(path)
    data = read_bytes(path, gunzip=False, max_bytes=1 << 16)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: expected ASCII class names, found a non-ASCII byte at {exc.start}") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != num_classes:
        raise DataError(f"{source}: expected {num_classes} class names, got {len(names)}")
    return names


def read_cifar_folder(
    folder: str | os.PathLike, records_per_batch: int | None = RECORDS_PER_BATCH
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read an extracted ``cifar-10-batches-bin`` folder.

    Returns
    -------
    train_images : uint8 (5·R, 3, 32, 32)
    train_labels : int64 (5·R,)
    test_images : uint8 (R, 3, 32, 32)
    test_labels : int64 (R,)
    classes : list of 10 str
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: expected the extracted CIFAR-10 folder {FOLDER}/, found none")
    parts = [read_cifar_batch(folder / name, records_per_batch) for name in TRAIN_BATCHES]
    test_images, test_labels = read_cifar_batch(folder / TEST_BATCH, records_per_batch)
    classes = read_cifar_meta(folder / META_FILE)
    train_images = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    return train_images, train_labels, test_images, test_labels, classes


def encode_cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Encode (N, 3, 32, 32) uint8 images and labels as binary records (used to write test files)."""
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    return np.concatenate([labels, images], axis=1).tobytes()
