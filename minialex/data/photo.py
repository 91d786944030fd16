"""Decoding one photograph into the paper's input: a 256×256 RGB uint8 image (the paper, §2).

"Given a rectangular image, we first rescaled the image such that the shorter side was of length 256, and
then cropped out the central 256×256 patch." :func:`decode` does exactly that, as one resampling: the central
square of the image, whose side is the image's shorter side s, is resized to 256×256 with Pillow's bilinear
filter (antialiased: when shrinking by a factor f its triangle kernel is f pixels wide), i.e. Pillow's
``resize((256, 256), BILINEAR, box=((W−s)/2, (H−s)/2, (W+s)/2, (H+s)/2))`` for a W×H image. Resizing only the box gives the same pixels as
resizing the whole image and cropping it, without resampling the part that is then thrown away.

Speed: a JPEG is decoded directly at a reduced scale (``Image.draft``: the decoder's DCT scaling by 1/2, 1/4
or 1/8, chosen so that the shorter side still has at least 256 pixels), so a 2000×1500 photo is never
decoded at full size, and with libjpeg's fast integer DCT and plain (not "fancy") chroma upsampling, the
speed-for-accuracy trade TensorFlow's ``decode_jpeg`` offers as ``dct_method`` and ``fancy_upscaling``: the
differences, well below a grey level on average, are then averaged away by the downscaling. Pillow
releases the GIL while decoding and resizing, so threads decode in parallel.

torchvision's rule (``rule="torchvision"``, what ``minialex predict`` applies for a model converted from
torchvision's weights): ``Resize(256)`` then the central crop, pixel for pixel as torchvision computes them
on a PIL image: the shorter side becomes 256 and the longer ``int(256 · long / short)`` (truncated), the
whole image is resized with Pillow's bilinear filter, and the crop starts at ``round((side − 256) / 2)``
(Python's rounding, half to even); the JPEG is decoded at full size with libjpeg's default (accurate) DCT,
as ``PIL.Image.open(...).convert("RGB")`` does. The central 224×224 crop of that 256×256 image is then
torchvision's ``CenterCrop(224)`` of the resized image exactly (the offsets differ by 16 in both rules).

Every kind of image is turned into 8-bit RGB: greyscale, palette, CMYK and YCbCr through Pillow's
conversions; an alpha channel is dropped (as torchvision's and Keras's loaders do); 16-bit greyscale is
scaled to 8 bits by v >> 8 (the mapping Pillow itself uses for 16-bit RGB), never clipped. EXIF orientation
tags are applied, so photographs from phones come out upright.

What cannot be decoded raises :class:`ImageFileError` (a :class:`~minialex.errors.DataError`) naming the file and the reason: a file
that cannot be opened or read, one that is not an image, a truncated or corrupt image, and an image whose
declared size exceeds :data:`MAX_PIXELS` (a "decompression bomb": a few kB that would decode to gigabytes),
which is refused before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from minialex.errors import DataError

SIZE = 256
"""Side of the cached images (the paper, §2)."""
EXTENSIONS = (".jpg", ".jpeg", ".png")
"""File names (case-insensitive) read as images in an image folder."""
RULES = ("paper", "torchvision")
"""The two ways :func:`decode` rescales and crops (see the module docstring)."""
MAX_PIXELS = 8192 * 8192
"""Largest declared image size accepted, in pixels (width × height)."""

# Pillow's own guard: it warns above MAX_IMAGE_PIXELS and refuses above twice that. minialex refuses above
# MAX_PIXELS itself, before decoding, with its own message; Pillow's limit is set to the same value so that
# its guard can never be the looser one.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageFileError(DataError):
    """One image file cannot be used; ``kind`` says why in a few words (for counts), the message in full."""

    def __init__(self, where: str, kind: str, detail: str = "") -> None:
        super().__init__(f"{where}: {kind}{': ' + detail if detail else ''}")
        self.kind = kind
        self.detail = detail


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION = 0x0112


def centre_box(width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the central square whose side is the shorter side, in pixel coordinates."""
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) greyscale image as 8-bit "L", scaled by v >> 8 (values clipped to 16 bits)."""
    values = np.asarray(image)
    values = np.clip(values.astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(values.astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image, where: str) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT:
        image = _eight_bit_grey(image)
    elif image.mode == "F":
        raise ImageFileError(where, "unsupported image mode", "floating-point (Pillow mode F); save it as 8-bit")
    return image.convert("RGB")


def _open_checked(handle, where: str) -> Image.Image:
    try:
        image = Image.open(handle)
    except UnidentifiedImageError as exc:
        raise ImageFileError(where, "not an image", "Pillow cannot identify it (JPEG or PNG expected)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageFileError(where, "image too large", f"a decompression bomb, refused by Pillow ({exc})") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageFileError(
            where,
            "image too large",
            f"declared {width}×{height} = {width * height:,} pixels, more than the limit of {MAX_PIXELS:,} "
            "(a decompression bomb, or a photo far larger than needed: shrink it first)",
        )
    return image


def _open_regular_file(where: str):
    """Open for reading, refusing anything but a regular file (a FIFO would block, a device never end)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for a regular file.
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        raise ImageFileError(where, "cannot be opened", reason) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageFileError(where, "not a regular file")
    return os.fdopen(fd, "rb")


def torchvision_resize_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's ``Resize(size)`` then ``CenterCrop(size)`` of a PIL image (see the module docstring)."""
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    top, left = round((new_height - size) / 2.0), round((new_width - size) / 2.0)  # half to even, as torchvision
    return resized.crop((left, top, left + size, top + size))


@contextlib.contextmanager
def _pillow_errors(where: str) -> Iterator[Any]:
    """The opened regular file ``where``; whatever Pillow raises while decoding it becomes an
    :class:`ImageFileError` naming the file (a decompression bomb, a damaged file), and the file is closed."""
    handle = _open_regular_file(where)
    try:
        yield handle
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageFileError(where, "image too large", f"a decompression bomb, refused by Pillow ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:  # Pillow on damaged files
        raise ImageFileError(where, "truncated or corrupt image", f"{type(exc).__name__}: {exc}") from exc
    finally:
        handle.close()


def decode(path: str | os.PathLike, size: int = SIZE, rule: str = "paper") -> np.ndarray:
    """The paper's preprocessing of one image file: shorter side to ``size``, central ``size``×``size`` crop.

    Parameters
    ----------
    path : path-like
        A JPEG or PNG file (any format Pillow reads is accepted; the content decides, not the name).
    size : int
        Side of the output (256 in the paper).
    rule : "paper" or "torchvision"
        "paper": one resampling of the central square, JPEGs decoded at a reduced scale where possible
        (the decoded-image cache); "torchvision": torchvision's ``Resize`` and ``CenterCrop`` exactly.

    Returns
    -------
    np.ndarray of uint8, shape (3, size, size), C-contiguous

    Raises
    ------
    ImageFileError (a DataError)
        Naming the file, with a ``kind``: "cannot be opened", "not a regular file", "not an image",
        "truncated or corrupt image", "image too large", "unsupported image mode".
    """
    if rule not in RULES:
        raise ValueError(f"decode: rule must be one of {', '.join(RULES)}, got {rule!r}")
    where = os.fspath(path)
    with _pillow_errors(where) as handle:
        image = _open_checked(handle, where)
        width, height = image.size
        if image.format in ("JPEG", "MPO") and rule == "paper":  # MPO: the multi-picture JPEGs of some cameras
            scale = size / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            if len(image.decoderconfig) == 2:  # (scale, draft): Pillow's JPEG decoder reads the second as
                image.decoderconfig = (image.decoderconfig[0], 1)  # "fast integer DCT, plain chroma upsampling"
        image.load()
        if "exif" in image.info and image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        image = _to_rgb(image, where)
        if rule == "paper":
            box = centre_box(*image.size)
            resized = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        else:
            resized = torchvision_resize_crop(image, size)
    pixels = np.asarray(resized)
    if pixels.shape != (size, size, 3) or pixels.dtype != np.uint8:
        raise ImageFileError(where, "unsupported image mode", f"decoded to {pixels.dtype} {pixels.shape}")
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def open_image(path: str | os.PathLike) -> Image.Image:
    """One image file decoded at full size, with the checks of :func:`decode`, upright, and 16-bit scaled.

    The same refusals as :func:`decode` (not a regular file, not an image, a decompression bomb, a damaged
    file: :class:`ImageFileError`), EXIF orientation applied, and 16-bit greyscale scaled to 8 bits by
    v >> 8, never clipped. Other modes are returned as decoded ("L", "RGB", "RGBA", "P", ...).
    """
    where = os.fspath(path)
    with _pillow_errors(where) as handle:
        image = _open_checked(handle, where)
        image.load()
        if "exif" in image.info and image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
        if image.mode in _SIXTEEN_BIT:
            return _eight_bit_grey(image)
        if image.mode == "F":
            raise ImageFileError(where, "unsupported image mode", "floating-point (Pillow mode F); save it as 8-bit")
        return image
