"""Writing ``.npy`` files a row at a time, durably: the container of the decoded-image cache.

A ``.npy`` file (NumPy's own format, read by ``np.load(path, mmap_mode="r", allow_pickle=False)``) is a
header followed by the raw C-order data. :class:`RowWriter` writes the header with a fixed length
(:data:`HEADER_BYTES`), appends rows as they come, and rewrites the header with the final shape at the end,
so the number of rows need not be known in advance (files that cannot be decoded are simply not appended).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from minialex.errors import DataError

HEADER_BYTES = 128
"""Every ``.npy`` written here has a header of exactly this length, so that it can be rewritten in place."""


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header for uint8 C-order data of ``shape``, padded to :data:`HEADER_BYTES`.

    The format: the magic ``\\x93NUMPY``, version bytes 1 0, the little-endian uint16 length of what follows,
    then a Python dict literal padded with spaces and ended by a newline (``numpy.lib.format``).
    """
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {tuple(int(s) for s in shape)!r}, }}"
    room = HEADER_BYTES - 10 - 1 - len(text)
    if room < 0:
        raise DataError(f"npy_header: shape {shape} does not fit a {HEADER_BYTES}-byte header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER_BYTES - 10) + text.encode("latin1") + b" " * room + b"\n"


class RowWriter:
    """Appends uint8 rows of ``row_shape`` to a new ``.npy`` file; the header gets the row count on :meth:`finish`.

    The rows are plain sequential writes (no memory map), so the writer's memory does not grow with the file;
    :meth:`finish` rewrites the fixed-length header and fsyncs the file.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...]) -> None:
        self.path, self.row_shape, self.rows = path, tuple(row_shape), 0
        self.handle = open(path, "wb")  # closed by finish() or abort()
        self.handle.write(npy_header((0, *self.row_shape)))

    def append(self, row: np.ndarray) -> None:
        """Write one C-contiguous uint8 row of ``row_shape``."""
        if row.dtype != np.uint8 or row.shape != self.row_shape or not row.flags.c_contiguous:
            raise DataError(
                f"{self.path}: expected a C-contiguous uint8 row {self.row_shape}, got {row.dtype} {row.shape}"
            )
        self.handle.write(memoryview(row).cast("B"))
        self.rows += 1

    def finish(self) -> None:
        """Write the final header, flush and fsync, close."""
        self.handle.seek(0)
        self.handle.write(npy_header((self.rows, *self.row_shape)))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self.handle.close()


def save_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (given a name, ``np.save`` would append ``.npy`` to it)."""
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open folders (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
