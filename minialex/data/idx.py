"""Parser for the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

The format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number, big-endian — two zero bytes, a type
byte (0x08 = unsigned byte, the only type these data sets use) and the number of dimensions — then one
4-byte big-endian size per dimension, then the data in C order::

    images  magic 0x00000803 (2051)   count, rows, cols   pixels from offset 16, 0 = background
    labels  magic 0x00000801 (2049)   count               labels from offset 8

Every check failure raises :class:`~minialex.errors.DataError` naming the file, the expected and the actual
value. No byte is trusted before it has been checked against the file size.
"""

from __future__ import annotations

import os

import numpy as np

from minialex.data.fileio import read_bytes
from minialex.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UBYTE = 0x08


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX byte string of unsigned bytes into an array of its declared shape.

    Parameters
    ----------
    data : bytes
        The decompressed file content.
    source : str
        The file name, for error messages.

    Returns
    -------
    np.ndarray of uint8, shape given by the header (a read-only view of ``data``).
    """
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header: expected at least 4 bytes, got {len(data)}")
    zero, dtype_code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0:
        raise DataError(
            f"{source}: not an IDX file: expected the magic number to start with 00 00, got {data[:4].hex()}"
        )
    if dtype_code != UBYTE:
        raise DataError(f"{source}: IDX type byte: expected 0x08 (unsigned byte), got 0x{dtype_code:02x}")
    if not 1 <= ndim <= 4:
        raise DataError(f"{source}: IDX number of dimensions: expected 1 to 4, got {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header: expected {header} bytes, got {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=object))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{source}: {what}: header dims {dims} need {expected} bytes, the file holds {len(data)}; "
            "delete it and download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_magic(data: bytes, magic: int, kind: str, source: str) -> None:
    actual = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if actual != magic:
        got = f"0x{actual:08x} ({actual})" if actual is not None else f"{len(data)} bytes"
        raise DataError(f"{source}: not an IDX {kind} file: expected magic 0x{magic:08x} ({magic}), got {got}")


def read_idx_images(
    path: str | os.PathLike, expected_count: int | None = None, image_size: tuple[int, int] = (28, 28)
) -> np.ndarray:
    """Read an IDX image file.

    Parameters
    ----------
    path : path-like
        ``*-images-idx3-ubyte`` (``.gz`` or not; decided by content).
    expected_count : int, optional
        The published number of images (60,000 train / 10,000 test); checked when given.
    image_size : (rows, cols)
        Expected image size.

    Returns
    -------
    np.ndarray of uint8, shape (N, 1, rows, cols)
    """
    data, source = read_bytes(path), os.fspath(path)
    _check_magic(data, IMAGES_MAGIC, "images", source)
    images = parse_idx(data, source)
    if images.shape[1:] != tuple(image_size):
        raise DataError(f"{source}: image size: expected {tuple(image_size)}, got {images.shape[1:]}")
    if expected_count is not None and images.shape[0] != expected_count:
        raise DataError(f"{source}: number of images: expected {expected_count}, got {images.shape[0]}")
    return images.reshape(images.shape[0], 1, *images.shape[1:]).copy()


def read_idx_labels(path: str | os.PathLike, expected_count: int | None = None, num_classes: int = 10) -> np.ndarray:
    """Read an IDX label file.

    Parameters
    ----------
    path : path-like
        ``*-labels-idx1-ubyte`` (``.gz`` or not).
    expected_count : int, optional
        The published number of labels; checked when given.
    num_classes : int
        Labels must lie in [0, num_classes).

    Returns
    -------
    np.ndarray of int64, shape (N,)
    """
    data, source = read_bytes(path), os.fspath(path)
    _check_magic(data, LABELS_MAGIC, "labels", source)
    labels = parse_idx(data, source)
    if expected_count is not None and labels.shape[0] != expected_count:
        raise DataError(f"{source}: number of labels: expected {expected_count}, got {labels.shape[0]}")
    if labels.size and labels.max() >= num_classes:
        raise DataError(f"{source}: labels must lie in [0, {num_classes}), found {int(labels.max())}")
    return labels.astype(np.int64)


def read_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    expected_count: int | None = None,
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files; their counts must agree.

    Returns
    -------
    images : np.ndarray of uint8, shape (N, 1, 28, 28)
    labels : np.ndarray of int64, shape (N,)
    """
    images = read_idx_images(images_path, expected_count)
    labels = read_idx_labels(labels_path, expected_count, num_classes)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{os.fspath(images_path)} holds {images.shape[0]} images but {os.fspath(labels_path)} holds "
            f"{labels.shape[0]} labels: expected equal counts"
        )
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the inverse of :func:`parse_idx`; used to write test files)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()
