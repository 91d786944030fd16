"""Reading a data file into memory, with every way it can fail turned into a :class:`DataError`.

A missing path, a directory where a file was expected, an empty file, a broken or truncated gzip stream and
a decompression bomb all end in one clear message naming the file; nothing else escapes.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from minialex.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 256 * 2**20
"""Largest decompressed file accepted (256 MiB: MNIST's 47 MB images file fits five times over)."""


def read_bytes(path: str | os.PathLike, *, gunzip: bool = True, max_bytes: int = MAX_BYTES) -> bytes:
    """Return the content of ``path``, gunzipped when it starts with the gzip magic bytes.

    Parameters
    ----------
    path : path-like
    gunzip : bool
        Decompress files that start with ``1f 8b`` (decided by content, not by name).
    max_bytes : int
        Refuse files (after decompression) larger than this.

    Raises
    ------
    DataError
        Missing path, directory, empty file, unreadable file, broken gzip stream or file too large.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if gunzip and head == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read(max_bytes + 1)
            else:
                data = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}); delete it and download it again"
        ) from exc
    if len(data) > max_bytes:
        raise DataError(f"{path}: larger than the {max_bytes} bytes expected of any data file minialex reads")
    if not data:
        raise DataError(f"{path}: the file is empty; delete it and download it again")
    return data
