"""Reading a checkpoint's safetensors file without trusting it: every size is checked before anything is allocated.

A safetensors file is an 8-byte little-endian header size N, N bytes of JSON, then the raw tensor bytes::

    {"__metadata__": {"key": "text", ...},
     "<tensor name>": {"dtype": "F32", "shape": [96, 3, 11, 11], "data_offsets": [start, stop]}, ...}

The file may have been truncated, corrupted or written by someone hostile, so :func:`read_layout` checks,
from the header alone and against the file's real size:

* the header is a JSON object of at most :data:`MAX_HEADER_BYTES`, nested at most a few levels (a deeply
  nested one is an error, not a ``RecursionError``), with at most :data:`MAX_TENSORS` tensors;
* every tensor is float32 (``F32``) or float64 (``F64``), the only dtypes minialex writes: an integer,
  boolean or float16 tensor would otherwise be cast silently into the model;
* every shape is a short list of non-negative integers whose bytes (elements × item size) equal the span of
  its ``data_offsets``, and the spans tile the data area exactly, from 0 to the end of the file.

Then :func:`stream_digest` hashes the tensors straight from the file in chunks of :data:`CHUNK_BYTES`, so that
a file whose bytes do not match its checksum (a sparse file declaring gigabytes, a flipped bit) is refused
having read, but never held, its data; only a verified file is read into arrays (:func:`read_tensors`).

Error messages quote at most a few names and a bounded excerpt of any value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex.errors import CheckpointError

MAX_HEADER_BYTES = 100 * 2**20
"""safetensors' own limit; a larger size means a corrupt first 8 bytes."""
MAX_TENSORS = 10_000
"""Far more than any model minialex builds (AlexNet with an optimiser's state: under 100)."""
MAX_NDIM = 8
MAX_JSON_DEPTH = 64
"""JSON nested deeper than this (in the header or a metadata entry) is refused before it is parsed."""
CHUNK_BYTES = 16 * 2**20
DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile value must not make a huge message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text, outside strings (no recursion, C speed)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    marks = np.frombuffer(_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = np.isin(marks, (ord("["), ord("{"))).astype(np.int64) - np.isin(marks, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max()) if steps.size else 0


def parse_json(text: str | bytes, what: str) -> Any:
    """``json.loads`` that ends malformed or too deeply nested input as one CheckpointError naming ``what``."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep (corrupted or hostile)")
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{what} is not valid JSON ({brief(str(exc), 120)})") from None


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the file."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int
    """Offset of its first byte from the start of the data area."""
    stop: int


def read_header(path: str, size: int) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the number of bytes before the tensor data; CheckpointError if malformed."""
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated or never written")
    if size < 8:
        raise CheckpointError(f"checkpoint {path} is truncated: {size} bytes, less than the 8-byte header size")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"checkpoint {path} has a bad header: it claims {n:,} header bytes (corrupted)")
        if 8 + n > size:
            raise CheckpointError(
                f"checkpoint {path} is truncated: its header needs {8 + n:,} bytes, the file has {size:,}"
            )
        raw = f.read(n)
    header = parse_json(raw, f"checkpoint {path}: the header")
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} has a bad header: expected a JSON object")
    return header, 8 + n


def _entry(path: str, name: str, info: Any) -> TensorEntry:
    what = f"checkpoint {path}: tensor {brief(name)}"
    if not isinstance(info, dict):
        raise CheckpointError(f"{what} has a bad header entry {brief(info)}")
    dtype = info.get("dtype")
    if dtype not in DTYPES:
        raise CheckpointError(
            f"{what} has dtype {brief(dtype)}; minialex checkpoints hold float32 (F32) or float64 (F64) tensors only "
            "(an integer, boolean or float16 tensor would be cast silently)"
        )
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(type(s) is int and 0 <= s < 2**48 for s in shape)  # bool is not a size
    ):
        raise CheckpointError(f"{what} has a bad shape {brief(shape)}: expected at most {MAX_NDIM} sizes >= 0")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and o >= 0 for o in offsets):
        raise CheckpointError(f"{what} has bad data_offsets {brief(offsets)}: expected [start, stop]")
    start, stop = offsets
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if stop - start != nbytes:
        raise CheckpointError(
            f"{what}: its shape {shape} of {dtype} needs {nbytes:,} bytes, its data_offsets [{start}, {stop}] span "
            f"{stop - start:,} (corrupted)"
        )
    return TensorEntry(name, DTYPES[dtype], tuple(shape), start, stop)


def read_layout(path: str, header: dict[str, Any], data_start: int, size: int) -> list[TensorEntry]:
    """Every tensor's entry, checked against the others and against the file size (see the module docstring)."""
    names = [k for k in header if k != "__metadata__"]
    if len(names) > MAX_TENSORS:
        raise CheckpointError(
            f"checkpoint {path} declares {len(names):,} tensors; a minialex checkpoint holds at most {MAX_TENSORS:,}"
        )
    entries = sorted((_entry(path, name, header[name]) for name in names), key=lambda e: (e.start, e.stop))
    end = 0
    for entry in entries:
        if entry.start != end:
            gap = "overlaps the previous tensor" if entry.start < end else f"leaves {entry.start - end:,} bytes unused"
            raise CheckpointError(f"checkpoint {path}: tensor {brief(entry.name)} {gap} (corrupted)")
        end = entry.stop
    expected = data_start + end
    if size < expected:
        raise CheckpointError(f"checkpoint {path} is truncated: expected {expected:,} bytes, the file has {size:,}")
    if size > expected:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: {size - expected:,} bytes follow the last tensor ({expected:,} expected)"
        )
    return entries


def stream_digest(path: str, entries_json: bytes, layout: list[TensorEntry], data_start: int) -> str:
    """The checksum :func:`minialex.training.checkpoint.save_checkpoint` stores, computed from the file in chunks.

    ``entries_json`` is the JSON of the metadata entries as the checksum covers them; the tensors follow in
    name order, each as ``\\0name\\0dtype\\0[shape]\\0`` and its little-endian bytes (those of the file).
    """
    h = hashlib.sha256(entries_json)
    with open(path, "rb") as f:
        for entry in sorted(layout, key=lambda e: e.name):
            h.update(f"\0{entry.name}\0{entry.dtype.str}\0{list(entry.shape)}\0".encode())
            f.seek(data_start + entry.start)
            left = entry.stop - entry.start
            while left:
                chunk = f.read(min(left, CHUNK_BYTES))
                if not chunk:
                    raise CheckpointError(f"checkpoint {path} is truncated: it ended while being read")
                h.update(chunk)
                left -= len(chunk)
    return "sha256:" + h.hexdigest()


def read_tensors(path: str, layout: list[TensorEntry], data_start: int) -> dict[str, np.ndarray]:
    """Every tensor as a native-byte-order host array (call after the checksum has been verified)."""
    out = {}
    with open(path, "rb") as f:
        for entry in layout:
            f.seek(data_start + entry.start)
            array = np.empty(entry.shape, dtype=entry.dtype)
            if array.nbytes and f.readinto(array.reshape(-1).view(np.uint8)) != array.nbytes:
                raise CheckpointError(f"checkpoint {path} is truncated: it ended while being read")
            out[entry.name] = array.astype(entry.dtype.newbyteorder("="), copy=False)
    return out
