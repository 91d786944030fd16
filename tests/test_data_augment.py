"""On-device preprocessing and augmentation: shapes, dtypes, exact crops and flips, PCA noise, determinism.

Every body runs on the selected backend (``MINIALEX_BACKEND=cupy`` runs it on a GPU); inputs are built on the
host and results brought back with :func:`helpers.host`.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from helpers import dev, host

import minialex
from minialex import backend
from minialex.data import (
    Augment,
    InputPipeline,
    center_crop,
    eval_transform,
    normalize,
    pca_lighting,
    random_crop,
    random_flip,
    resize,
    rgb_pca,
    ten_crop,
    to_device_float,
    train_transform,
)
from minialex.errors import ConfigError, DataError


def ramp(n: int = 4, c: int = 2, h: int = 6, w: int = 5) -> np.ndarray:
    """A hand-made float batch where every value is distinct: x[n, c, i, j] = 1000n + 100c + 10i + j."""
    grid = np.indices((n, c, h, w)).astype(np.float64)
    return 1000 * grid[0] + 100 * grid[1] + 10 * grid[2] + grid[3]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_device_float_scales_and_normalises(dtype):
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 2, 4, 4), dtype=np.uint8)
    x = to_device_float(batch, dtype=dtype)
    assert x.dtype == dtype and isinstance(x, backend.xp.ndarray)
    np.testing.assert_allclose(host(x), batch / 255.0, rtol=1e-6)
    mean, std = (0.5, 0.25), (0.2, 0.4)
    y = host(to_device_float(batch, mean, std, dtype=dtype))
    expected = (batch / 255.0 - np.array(mean).reshape(1, 2, 1, 1)) / np.array(std).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_to_device_float_rejects_bad_input():
    with pytest.raises(ConfigError, match="float32 or float64, got float16"):
        to_device_float(np.zeros((1, 1, 2, 2), np.uint8), dtype=np.float16)
    with pytest.raises(DataError, match="expected uint8"):
        to_device_float(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        to_device_float(np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="positive stds"):
        normalize(dev(np.zeros((1, 2, 2, 2))), (0, 0), (1, 0))


def _find_offset(crop: np.ndarray, padded: np.ndarray) -> tuple[int, int]:
    h, w = crop.shape[-2:]
    hits = [
        (r, s)
        for r in range(padded.shape[-2] - h + 1)
        for s in range(padded.shape[-1] - w + 1)
        if np.array_equal(padded[..., r : r + h, s : s + w], crop)
    ]
    assert len(hits) == 1, "every crop must be exactly one window of its own padded image"
    return hits[0]


@pytest.mark.parametrize("size, padding", [(6, 2), (4, 0), ((3, 5), 1)])
def test_random_crop_takes_one_window_per_image(size, padding):
    x = ramp() + 1  # + 1: no value equals the zero padding
    out = host(random_crop(dev(x), size, padding))
    h, w = (size, size) if np.isscalar(size) else size
    assert out.shape == (4, 2, h, w)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = {_find_offset(out[i], padded[i]) for i in range(len(x))}
    assert len(offsets) > 1  # the offsets differ between images


def test_random_crop_covers_every_offset_and_keeps_dtype():
    x = dev(np.ones((300, 1, 4, 4), np.float32))
    out = host(random_crop(x, 4, padding=1))
    assert out.dtype == np.float32
    # A ones image padded by one: the crop's zero row/column tells the offset; all 9 offsets must occur.
    tops = np.where(out[:, 0, 0, 1] == 0, 0, np.where(out[:, 0, 3, 1] == 0, 2, 1))
    lefts = np.where(out[:, 0, 1, 0] == 0, 0, np.where(out[:, 0, 1, 3] == 0, 2, 1))
    assert len(set(zip(tops.tolist(), lefts.tolist(), strict=True))) == 9


def test_window_gather_paths_agree():
    from minialex.data.augment import _gather_windows

    x = dev(ramp(n=5, c=3, h=7, w=6))
    top, left = dev(np.array([0, 3, 1, 2, 3])), dev(np.array([2, 0, 1, 2, 0]))
    view = host(_gather_windows(x, top, left, 4, 4, use_view=True))
    index = host(_gather_windows(x, top, left, 4, 4, use_view=False))
    np.testing.assert_array_equal(view, index)
    np.testing.assert_array_equal(view[1], ramp(n=5, c=3, h=7, w=6)[1, :, 3:7, 0:4])


def test_random_crop_rejects_impossible_sizes():
    with pytest.raises(ConfigError, match="does not fit"):
        random_crop(dev(ramp()), 9)


def test_random_flip_mirrors_some_images_exactly():
    x = ramp(n=40)
    out = host(random_flip(dev(x)))
    flipped = np.array([np.array_equal(out[i], x[i, :, :, ::-1]) for i in range(40)])
    kept = np.array([np.array_equal(out[i], x[i]) for i in range(40)])
    assert np.all(flipped ^ kept) and 5 < flipped.sum() < 35


def test_rgb_pca_matches_numpy_covariance():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(50, 3, 8, 8), dtype=np.uint8)
    images[:, 1] = images[:, 0] // 2 + images[:, 1] // 2  # correlate G with R
    eigvals, eigvecs = rgb_pca(images, chunk=7)
    pixels = images.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    cov = np.cov(pixels, bias=True)
    np.testing.assert_allclose(eigvecs @ np.diag(eigvals) @ eigvecs.T, cov, rtol=1e-10, atol=1e-14)
    assert np.all(np.diff(eigvals) <= 0)
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(3), atol=1e-12)


def _basis():
    eigvals = np.array([0.06, 0.01, 0.002])
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))
    return eigvals, q


def test_pca_lighting_adds_p_alpha_lambda_to_every_pixel():
    eigvals, eigvecs = _basis()
    minialex.seed(11)
    x = pca_lighting(dev(np.zeros((5, 3, 4, 4), np.float64)), eigvals, eigvecs, std=0.1)
    minialex.seed(11)
    alpha = host(backend.normal((5, 3), std=0.1, dtype=np.float64))
    expected = (alpha * eigvals) @ eigvecs.T  # row n: P (α_n ⊙ λ)
    out = host(x)
    np.testing.assert_allclose(out, np.broadcast_to(expected[:, :, None, None], out.shape), rtol=1e-12, atol=1e-15)


def test_pca_noise_has_the_paper_covariance():
    eigvals, eigvecs = _basis()
    n, std = 20000, 0.1
    delta = host(pca_lighting(dev(np.zeros((n, 3, 1, 1))), eigvals, eigvecs, std=std))[:, :, 0, 0]
    # Whitened, the noise must be N(0, σ² I): P^T δ / λ = α. Each covariance entry has standard error ≈ σ²·√(2/n).
    white = delta @ eigvecs / eigvals
    cov = white.T @ white / n
    assert np.abs(cov / std**2 - np.eye(3)).max() < 5 * np.sqrt(2 / n)
    # The noise itself lies along the eigenvectors with variance σ² λ_i².
    np.testing.assert_allclose(np.var(delta @ eigvecs, axis=0) / (std * eigvals) ** 2, 1.0, atol=5 * np.sqrt(2 / n))


def test_pca_lighting_on_normalised_images_scales_by_std():
    eigvals, eigvecs = _basis()
    minialex.seed(3)
    plain = host(pca_lighting(dev(np.zeros((2, 3, 1, 1))), eigvals, eigvecs))
    minialex.seed(3)
    scaled = host(pca_lighting(dev(np.zeros((2, 3, 1, 1))), eigvals, eigvecs, scale=(0.5, 0.25, 2.0)))
    np.testing.assert_allclose(scaled, plain / np.array([0.5, 0.25, 2.0]).reshape(1, 3, 1, 1), rtol=1e-12)


def test_resize_is_scipy_zoom_bilinear():
    x = np.random.default_rng(4).random((2, 3, 7, 5))
    for size in [(14, 10), (28, 11), (4, 3)]:
        expected = scipy.ndimage.zoom(x, (1, 1, size[0] / 7, size[1] / 5), order=1, mode="nearest")
        np.testing.assert_allclose(host(resize(dev(x), size)), expected, rtol=1e-12, atol=1e-14)
    out = resize(dev(np.full((2, 1, 28, 28), 0.5, np.float32)), 224)
    assert out.shape == (2, 1, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(host(out), 0.5, rtol=1e-6)


def test_resize_other_orders_use_ndimage():
    x = np.random.default_rng(5).random((1, 1, 6, 6))
    expected = scipy.ndimage.zoom(x, (1, 1, 2, 2), order=3, mode="nearest")
    np.testing.assert_allclose(host(resize(dev(x), 12, order=3)), expected, rtol=1e-10)


def test_center_and_ten_crop_views():
    x = ramp(n=2, c=1, h=6, w=5)
    crops = ten_crop(dev(x), (4, 3))
    assert len(crops) == 10 and all(c.shape == (2, 1, 4, 3) for c in crops)
    got = [host(c) for c in crops]
    np.testing.assert_array_equal(got[0], x[:, :, :4, :3])
    np.testing.assert_array_equal(got[1], x[:, :, :4, 2:])
    np.testing.assert_array_equal(got[2], x[:, :, 2:, :3])
    np.testing.assert_array_equal(got[3], x[:, :, 2:, 2:])
    np.testing.assert_array_equal(got[4], x[:, :, 1:5, 1:4])
    np.testing.assert_array_equal(got[4], host(center_crop(dev(x), (4, 3))))
    for plain, mirrored in zip(got[:5], got[5:], strict=True):
        np.testing.assert_array_equal(mirrored, plain[..., ::-1])


def test_train_transform_digits_defaults():
    batch = np.random.default_rng(6).integers(0, 256, size=(128, 1, 28, 28), dtype=np.uint8)
    augment = Augment.for_dataset("mnist5k")
    assert augment == Augment(crop=28, padding=2, flip=False, pca_std=0.0)
    minialex.seed(1)
    a = train_transform(batch, augment, (0.13,), (0.31,))
    minialex.seed(1)
    b = train_transform(batch, augment, (0.13,), (0.31,))
    c = train_transform(batch, augment, (0.13,), (0.31,))
    assert a.shape == (128, 1, 28, 28) and a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(host(a), host(b))
    assert not np.array_equal(host(a), host(c))
    # Padding is black (pixel 0) before normalisation.
    assert host(a).min() == pytest.approx((0 - 0.13) / 0.31, rel=1e-6)


def test_train_transform_cifar_and_d2l():
    batch = np.random.default_rng(7).integers(0, 256, size=(6, 3, 32, 32), dtype=np.uint8)
    augment = Augment.for_dataset("cifar10")
    assert augment.flip and augment.padding == 4 and augment.pca_std == 0.1
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    with pytest.raises(ConfigError, match="rgb_pca"):
        train_transform(batch, augment, mean, std)
    x = train_transform(batch, augment, mean, std, pca=rgb_pca(batch), dtype=np.float64)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float64
    digits = np.zeros((2, 1, 28, 28), np.uint8)
    y = train_transform(digits, Augment.for_dataset("fashion-mnist", resize=224), (0.0,), (1.0,))
    assert y.shape == (2, 1, 224, 224) and y.dtype == np.float32


def test_eval_transform_is_deterministic_and_supports_ten_crops():
    batch = np.random.default_rng(8).integers(0, 256, size=(3, 3, 36, 36), dtype=np.uint8)
    augment = Augment(crop=32, flip=True, pca_std=0.1)
    a = host(eval_transform(batch, augment, (0.5,) * 3, (0.25,) * 3))
    b = host(eval_transform(batch, augment, (0.5,) * 3, (0.25,) * 3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, (batch[:, :, 2:34, 2:34] / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)
    # The one ten-crop path: InputPipeline.ten_crops (images larger than the input are cropped, not padded).
    pipeline = InputPipeline("photos", (3, 36, 36), (3, 32, 32), (0.5,) * 3, (0.25,) * 3, False, np.float32)
    views = pipeline.ten_crops(batch)
    assert len(views) == 10 and all(v.shape == (3, 3, 32, 32) for v in views)
    np.testing.assert_allclose(host(views[4]), a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"crop": 0}, {"resize": -1}, {"padding": -2}, {"pca_std": -0.1}, {"pca_std": float("nan")}]
)
def test_augment_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError, match="Augment"):
        Augment(**kwargs)
    with pytest.raises(ConfigError, match="no defaults"):
        Augment.for_dataset("svhn")
