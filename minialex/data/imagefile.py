"""One image file as a model's input of a given shape: what ``minialex predict`` does for digits and small images.

PNG and JPEG are read through :func:`minialex.data.photo.open_image` (regular files only, decompression bombs
refused, EXIF orientation applied, 16-bit greyscale scaled to 8 bits by v >> 8 rather than clipped), then
converted to the model's channels ("L" or "RGB") and resized bilinearly to H × W. A ``.npy`` array of shape
(H, W), (H, W, C) or (C, H, W), uint8, integers in [0, 255] or floats in [0, 1], is read with
``allow_pickle=False`` after its header is checked (at most :data:`~minialex.data.photo.MAX_PIXELS` pixels);
a ``.npz`` archive under a ``.npy`` name is refused by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from minialex.data import photo
from minialex.errors import DataError


def _read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, its header checked before its data is read."""
    try:
        with photo._open_regular_file(os.fspath(path)) as handle:
            if handle.read(6) != b"\x93NUMPY":
                handle.seek(0)
                kind = "a .npz archive (zip)" if handle.read(2) == b"PK" else "not a .npy file"
                raise DataError(f"{path}: {kind}; expected a NumPy .npy array saved with np.save")
            array = np.load(path, mmap_mode="r", allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as a .npy array ({exc})") from exc
    if array.ndim in (2, 3) and array.shape[0] * array.shape[1] * (array.shape[2] if array.ndim == 3 else 1) > (
        3 * photo.MAX_PIXELS
    ):
        raise DataError(
            f"{path}: an array of shape {array.shape} is far larger than an image (at most {photo.MAX_PIXELS:,} pixels)"
        )
    return np.asarray(array)


def _npy_image(path: Path) -> Image.Image:
    array = _read_npy(path)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3) or array.size == 0:
        raise DataError(f"{path}: expected an image array (H, W), (H, W, 3) or (C, H, W), got shape {array.shape}")
    if array.dtype.kind not in "fiub":
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DataError(f"{path}: the array holds NaN or infinite values")
        array = array * 255.0 if array.max() <= 1.0 else array
    return Image.fromarray(np.clip(np.rint(array.astype(np.float64)), 0, 255).astype(np.uint8))


def load_image(path: str | os.PathLike[str], shape: tuple[int, int, int], invert: bool = False) -> np.ndarray:
    """Read an image file as uint8 (C, H, W) of ``shape``: channels converted, resized bilinearly.

    ``invert`` returns 255 − pixel (dark digits on light paper, for a model trained on MNIST's white on black).
    Raises :class:`~minialex.errors.DataError` naming the file and the reason.
    """
    channels, height, width = shape
    path = Path(path)
    try:
        image = _npy_image(path) if path.suffix.lower() == ".npy" else photo.open_image(path)
    except photo.ImageFileError as exc:
        detail = f": {exc.detail}" if exc.detail else ""
        raise DataError(f"{path}: cannot be read as an image ({exc.kind}{detail})") from exc
    image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if pixels.shape[0] != channels:
        raise DataError(f"{path}: cannot convert to {channels} channels")
    return 255 - pixels if invert else pixels
