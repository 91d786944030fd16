"""Test-only helpers for image folders: real photographs, and generated files of every odd kind.

The real photographs are the ones scikit-image ships (astronaut, coffee, chelsea, rocket, ...), read as files
from its package folder without importing scikit-image. Tests that need them skip, with the reason, where
scikit-image is not installed (``pip install 'minialex[test]'``).
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def skimage_data() -> Path | None:
    """The folder of scikit-image's bundled sample images, or None."""
    spec = importlib.util.find_spec("skimage")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root, "data")
        if (folder / "astronaut.png").is_file():
            return folder
    return None


SKIMAGE_REASON = (
    "scikit-image is not installed: its bundled photographs are the real test images (pip install scikit-image)"
)
needs_photos = pytest.mark.skipif(skimage_data() is None, reason=SKIMAGE_REASON)

# Real photographs (RGB) by class, as a small class folder; two of each kind at least.
PHOTO_CLASSES = {
    "animal": ["chelsea.png", "astronaut.png", "ihc.png"],
    "object": ["coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg"],
}


def photo(name: str) -> Path:
    folder = skimage_data()
    assert folder is not None, SKIMAGE_REASON
    return folder / name


def photo_folder(root: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """``root/<split>/<class>/<photo>`` for each split, every real photo of :data:`PHOTO_CLASSES` in each."""
    for split in splits:
        for cls, names in PHOTO_CLASSES.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy(photo(name), folder / name)
    return root


def jpeg_bytes(array: np.ndarray, quality: int = 90, **options) -> bytes:
    """An (H, W, 3) or (H, W) uint8 array (or a PIL image) encoded as JPEG."""
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16_rgb(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (colour type 2, bit depth 16) of an (H, W, 3) uint16 array, written by hand."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares a ``width``×``height`` greyscale image (its data would be huge; it has none)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image (H, W, 3) uint8: low frequencies only, so JPEG keeps it faithfully."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    out = np.zeros((height, width, 3))
    for c in range(3):
        a, b, p, q = rng.uniform(1, 4, size=4)
        out[..., c] = 127.5 + 100 * np.sin(a * x * np.pi + p) * np.cos(b * y * np.pi + q)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def generated_folder(
    root: Path, counts: dict[str, int], size: tuple[int, int] = (60, 80), split: str = "train"
) -> Path:
    """``root/<split>/<class>/<i>.jpg``: ``counts[class]`` small generated JPEGs per class."""
    for k, (cls, n) in enumerate(counts.items()):
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"{i:04d}.jpg").write_bytes(jpeg_bytes(smooth_rgb(*size, seed=1000 * k + i)))
    return root


def bilinear_reference(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Resample ``box`` of an (H, W, C) image to size×size with the antialiased bilinear (triangle) filter.

    Written from the definition, in float64 and without Pillow: output pixel i of an axis samples the source
    around c = box₀ + (i + ½)·s, s = (box₁ − box₀)/size, with weights tri((x + ½ − c)/max(s, 1)) over the
    source pixels x within max(s, 1) of c (tri(t) = max(0, 1 − |t|)), normalised to sum 1; the two axes are
    separable. Returns float64 (size, size, C).
    """

    def weights(n_in: int, lo: float, hi: float) -> np.ndarray:
        scale = (hi - lo) / size
        support = max(scale, 1.0)
        m = np.zeros((size, n_in))
        for i in range(size):
            centre = lo + (i + 0.5) * scale
            xs = np.arange(max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in))
            w = np.maximum(0.0, 1.0 - np.abs((xs + 0.5 - centre) / support))
            m[i, xs] = w / w.sum()
        return m

    cols = weights(image.shape[1], box[0], box[2])  # (size, W)
    rows = weights(image.shape[0], box[1], box[3])  # (size, H)
    vertical = np.tensordot(rows, image.astype(np.float64), axes=(1, 0))  # (size, W, C)
    return np.tensordot(vertical, cols, axes=(1, 1)).transpose(0, 2, 1)  # (size, size, C)
