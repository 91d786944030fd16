"""Exact training-set statistics: the same numbers as NumPy in float64, bit for bit whatever the order, the
chunking or the threads that added the images."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from minialex.data import channel_stats, rgb_pca, stats
from minialex.data.stats import PixelStats
from minialex.errors import DataError


def _images(n: int = 40, seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 9, 7), dtype=np.uint8)
    images[:, 1] = images[:, 0] // 3 + images[:, 1] // 2  # correlated channels
    images[: n // 4] = 255  # extremes: the largest products
    return images


def _collect(images: np.ndarray, order, chunk: int) -> PixelStats:
    acc = PixelStats(3, images.shape[1:])
    shuffled = images[order]
    for start in range(0, len(shuffled), chunk):
        acc.add(shuffled[start : start + chunk])
    return acc


def test_statistics_equal_numpy_in_float64():
    images = _images()
    acc = _collect(images, np.arange(len(images)), 7)
    x = images.astype(np.float64) / 255.0
    mean, std = acc.channel_mean_std()
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(acc.mean_image(), x.mean(axis=0), rtol=1e-13)
    pixels = x.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(acc.covariance(), np.cov(pixels, bias=True), rtol=1e-10, atol=1e-15)
    eigvals, eigvecs = acc.pca()
    np.testing.assert_allclose(eigvecs @ np.diag(eigvals) @ eigvecs.T, np.cov(pixels, bias=True), rtol=1e-9, atol=1e-15)
    assert acc.count == 40 and acc.pixels == 40 * 63


def test_order_and_chunking_change_nothing_bit_for_bit():
    images = _images()
    reference = _collect(images, np.arange(len(images)), 40)
    for seed, chunk in [(1, 1), (2, 3), (3, 17)]:
        other = _collect(images, np.random.default_rng(seed).permutation(len(images)), chunk)
        assert other.channel_mean_std() == reference.channel_mean_std()
        np.testing.assert_array_equal(other.mean_image(), reference.mean_image())
        np.testing.assert_array_equal(other.covariance(), reference.covariance())


def test_threads_adding_at_once_give_the_same_result():
    images = _images(200)
    reference = _collect(images, np.arange(200), 1)
    acc = PixelStats(3, images.shape[1:])

    def add(rows):
        for i in rows:
            acc.add(images[i : i + 1], PixelStats.partial(images[i : i + 1]))

    threads = [threading.Thread(target=add, args=(range(k, 200, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert acc.count == 200 and acc.channel_mean_std() == reference.channel_mean_std()
    np.testing.assert_array_equal(acc.mean_image(), reference.mean_image())


def test_the_mean_image_survives_folding_its_narrow_accumulator(monkeypatch):
    monkeypatch.setattr(stats, "_FOLD", 3)  # fold the uint32 sum into the int64 total every 3 images
    images = _images(11)
    acc = _collect(images, np.arange(11), 2)
    np.testing.assert_allclose(acc.mean_image(), images.mean(axis=0) / 255.0, rtol=1e-13)


def test_the_public_helpers():
    images = _images()
    mean, std = channel_stats(images, chunk=5)
    assert mean == _collect(images, np.arange(40), 40).channel_mean_std()[0] and len(std) == 3
    grey = images[:, :1]
    assert len(channel_stats(grey)[0]) == 1
    eigvals, eigvecs = rgb_pca(images, chunk=3)
    assert eigvals.shape == (3,) and eigvecs.shape == (3, 3) and np.all(np.diff(eigvals) <= 0)


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="channel_stats: expected non-empty uint8 images"):
        channel_stats(np.zeros((0, 1, 2, 2), np.uint8))
    with pytest.raises(DataError, match="rgb_pca: expected RGB images"):
        rgb_pca(np.zeros((2, 1, 2, 2), np.uint8))
    with pytest.raises(DataError, match="rgb_pca: expected non-empty uint8"):
        rgb_pca(np.zeros((2, 3, 2, 2), np.float32))
    acc = PixelStats(3, (3, 2, 2))
    with pytest.raises(DataError, match="no images were added"):
        acc.channel_mean_std()
    with pytest.raises(DataError, match="expected images with 3 channels"):
        acc.add(np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"image shape \(3, 4, 4\) differs"):
        acc.add(np.zeros((1, 3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="without image_shape"):
        plain = PixelStats(3)
        plain.add(np.zeros((1, 3, 2, 2), np.uint8))
        plain.mean_image()
