"""Decoding one photograph: the paper's resize-and-crop checked against an independent NumPy computation,
every odd kind of image turned into RGB, and every bad file refused with a message naming it."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from photos import (
    bilinear_reference,
    jpeg_bytes,
    needs_photos,
    photo,
    png16_rgb,
    png_bomb,
    png_bytes,
    smooth_rgb,
)
from PIL import Image

from minialex.data import photo as photo_module
from minialex.data.photo import MAX_PIXELS, SIZE, ImageFileError, centre_box, decode


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the paper's geometry -------------------------------------------------------------------------------------
@needs_photos
@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "ihc.png"])
def test_png_photos_match_the_numpy_reference(name):
    path = photo(name)
    out = decode(path)
    assert out.shape == (3, SIZE, SIZE) and out.dtype == np.uint8 and out.flags.c_contiguous
    source = np.asarray(Image.open(path).convert("RGB"))
    height, width = source.shape[:2]
    side = min(width, height)  # the paper: shorter side to 256, then the central 256×256
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    expected = bilinear_reference(source, box, SIZE).transpose(2, 0, 1)
    diff = np.abs(out.astype(np.float64) - expected)
    # Pillow resamples in two 8-bit passes with fixed-point weights: each pass rounds once, so at most 1 level.
    assert diff.max() <= 1.0
    assert diff.mean() < 0.3


def test_centre_box_is_the_central_square_of_the_shorter_side():
    assert centre_box(400, 300) == (50.0, 0.0, 350.0, 300.0)
    assert centre_box(301, 600) == (0.0, 149.5, 301.0, 450.5)
    assert centre_box(256, 256) == (0.0, 0.0, 256.0, 256.0)


@pytest.mark.parametrize("width, height", [(768, 512), (512, 1000), (300, 256), (256, 256), (200, 120)])
def test_a_linear_ramp_lands_where_the_geometry_says(tmp_path, width, height):
    # value = column index / 4 (horizontal ramp): the triangle filter is symmetric, so away from the borders
    # output column j must show the ramp at the source coordinate of its centre, box_left + (j + ½)·s − ½.
    ramp = np.broadcast_to((np.arange(width) * 255 // (width - 1)).astype(np.uint8)[None, :, None], (height, width, 3))
    path = _write(tmp_path, "ramp.png", png_bytes(Image.fromarray(np.ascontiguousarray(ramp))))
    out = decode(path).astype(np.float64)
    side = min(width, height)
    left, scale = (width - side) / 2, side / SIZE
    j = np.arange(8, SIZE - 8)
    x = left + (j + 0.5) * scale - 0.5
    expected = 255 * x / (width - 1)  # the ramp before integer truncation is within 1 of the stored value
    np.testing.assert_allclose(out[0, 100, 8:-8], expected, atol=1.6)
    assert np.all(out[0] == out[0, :1])  # every row the same: no vertical shift
    np.testing.assert_array_equal(out[0], out[2])


@needs_photos
@pytest.mark.parametrize("name", ["rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"])
def test_jpeg_draft_decoding_stays_close_to_a_full_decode(name):
    # draft() lets libjpeg scale by 1/2, 1/4 or 1/8 while decoding; the result must still be the same photo.
    path = photo(name)
    out = decode(path).astype(np.float64)
    full = np.asarray(Image.open(path).convert("RGB"))
    expected = bilinear_reference(full, centre_box(full.shape[1], full.shape[0]), SIZE).transpose(2, 0, 1)
    diff = np.abs(out - expected)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16


def test_draft_really_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path, monkeypatch):
    path = _write(tmp_path, "big.jpg", jpeg_bytes(smooth_rgb(2048, 3072)))
    seen = []
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        seen.append(self.size)
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    decode(path)
    assert seen == [(384, 256)]  # 1/8 of 3072×2048: the shorter side is exactly 256


# -- every kind of image becomes RGB ---------------------------------------------------------------------------
def _flat(mode: str, value) -> Image.Image:
    return Image.new(mode, (300, 200), value)


@pytest.mark.parametrize(
    "name, data, rgb",
    [
        ("grey.png", png_bytes(_flat("L", 100)), (100, 100, 100)),
        ("grey-alpha.png", png_bytes(_flat("LA", (60, 0))), (60, 60, 60)),
        ("rgba.png", png_bytes(_flat("RGBA", (10, 20, 30, 0))), (10, 20, 30)),
        ("bilevel.png", png_bytes(_flat("1", 1)), (255, 255, 255)),
        ("grey.jpg", jpeg_bytes(_flat("L", 77), quality=100), (77, 77, 77)),
        ("cmyk.jpg", jpeg_bytes(_flat("CMYK", (0, 255, 255, 0)), quality=100), (255, 0, 0)),
    ],
)
def test_modes_are_converted_to_rgb(tmp_path, name, data, rgb):
    out = decode(_write(tmp_path, name, data))
    assert out.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(out.reshape(3, -1).mean(axis=1), rgb, atol=1.0)


def test_palette_images_with_transparency_use_their_colours(tmp_path):
    image = Image.new("P", (300, 200), 1)
    image.putpalette([0, 0, 0, 200, 40, 10] + [0] * 762)
    out = decode(_write(tmp_path, "palette.png", png_bytes(image, transparency=0)))
    np.testing.assert_array_equal(out.reshape(3, -1).min(axis=1), (200, 40, 10))
    np.testing.assert_array_equal(out.reshape(3, -1).max(axis=1), (200, 40, 10))


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.tile(np.array([0, 255, 256, 32768, 40000, 65535], dtype=np.uint16).repeat(50), (300, 1))
    image = Image.fromarray(values)
    assert image.mode.startswith("I")
    out = decode(_write(tmp_path, "grey16.png", png_bytes(image)))
    # The 300×300 source maps 1:1 onto 256 columns only approximately; compare the flat centres of the bands.
    centres = out[0, 128, [11, 53, 96, 139, 181, 224]]
    np.testing.assert_array_equal(centres, [0, 0, 1, 128, 156, 255])  # v >> 8; plain conversion would clip to 255
    np.testing.assert_array_equal(out[0], out[1])


def test_sixteen_bit_rgb_is_scaled_by_its_high_byte(tmp_path):
    values = np.empty((200, 300, 3), np.uint16)
    values[...] = (65535, 300, 32768)
    out = decode(_write(tmp_path, "rgb16.png", png16_rgb(values)))
    np.testing.assert_array_equal(out[:, 100, 100], (255, 1, 128))


def test_exif_orientation_is_applied(tmp_path):
    pixels = smooth_rgb(200, 320, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = decode(_write(tmp_path, "tagged.jpg", jpeg_bytes(pixels, quality=95, exif=exif)))
    upright = decode(_write(tmp_path, "upright.jpg", jpeg_bytes(np.rot90(pixels, -1).copy(), quality=95)))
    assert np.abs(rotated.astype(int) - upright).mean() < 2.0


# -- bad files ------------------------------------------------------------------------------------------------
def _refused(path, kind: str) -> ImageFileError:
    with pytest.raises(ImageFileError, match=kind) as info:
        decode(path)
    assert str(path) in str(info.value) and info.value.kind == kind
    return info.value


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes(smooth_rgb(400, 600))
    _refused(_write(tmp_path, "cut.jpg", data[: len(data) // 2]), "truncated or corrupt image")


def test_corrupt_png(tmp_path):
    data = bytearray(png_bytes(Image.fromarray(smooth_rgb(100, 100))))
    data[60:80] = b"\xff" * 20  # inside the compressed data
    _refused(_write(tmp_path, "broken.png", bytes(data)), "truncated or corrupt image")


@pytest.mark.parametrize("data", [b"", b"GIF89a this is no image", b"plain text, named like a photo\n" * 10])
def test_not_an_image(tmp_path, data):
    _refused(_write(tmp_path, "fake.jpg", data), "not an image")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # Pillow's own guard is set explicitly, to minialex's limit
    error = _refused(_write(tmp_path, "bomb.png", png_bomb(100_000, 100_000)), "image too large")
    assert "10000000000 pixels" in str(error)
    # Just above the limit (below Pillow's 2× refusal) is refused by minialex itself, with the sizes; Pillow
    # warns first, as it does for anything above its limit.
    with pytest.warns(Image.DecompressionBombWarning):
        error = _refused(_write(tmp_path, "large.png", png_bomb(8193, 8192)), "image too large")
    assert f"{MAX_PIXELS:,}" in str(error)


def test_missing_file_and_folder(tmp_path):
    _refused(tmp_path / "absent.jpg", "cannot be opened")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageFileError, match=r"folder\.jpg: (cannot be opened|not a regular file)"):
        decode(tmp_path / "folder.jpg")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file")  # opening it for reading would otherwise wait for a writer forever


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) can read a mode-000 file")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path, "secret.jpg", jpeg_bytes(smooth_rgb(50, 50)))
    path.chmod(0)
    _refused(path, "cannot be opened")


def test_permission_denied_is_named(tmp_path, monkeypatch):
    path = _write(tmp_path, "secret.jpg", jpeg_bytes(smooth_rgb(50, 50)))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(photo_module.os, "open", refuse)
    error = _refused(path, "cannot be opened")
    assert "permission denied" in str(error)


def test_float_images_are_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((50, 60), np.float32)).save(path)
    _refused(path, "unsupported image mode")
