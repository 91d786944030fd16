"""Moving batches to the device, normalising and augmenting them: one code path over ``xp`` (NumPy or CuPy).

The training pipeline of one batch (:func:`train_transform`), every step vectorised over the batch::

    uint8 (N, C, H, W) on the host
      -> device float in [0, 1]                      to_device_float
      -> bilinear resize (d2l variant: 28 -> 224)    resize
      -> random crop, after zero padding             random_crop     (pad-and-crop; or the paper's 227 of 256)
      -> random horizontal flip                      random_flip     (off for digits)
      -> PCA colour noise                            pca_lighting    (RGB; the paper's σ = 0.1)
      -> (x − mean_c) / std_c                        normalize

Evaluation (:func:`eval_transform`) resizes, takes the centre crop, or the paper's ten crops (:func:`ten_crop`).
Every random draw comes from :mod:`minialex.backend` (``host_rng`` for offsets and flips, ``normal`` for the
colour noise), so :func:`minialex.seed` reproduces an augmented epoch exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import ConfigError, DataError

FLOAT_DTYPES = (np.float32, np.float64)


def _float_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in FLOAT_DTYPES]:
        raise ConfigError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def _check_images(x: Any, where: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise DataError(f"{where}: expected a batch of images (N, C, H, W), got shape {getattr(x, 'shape', None)}")


def to_device_float(batch: np.ndarray, mean=None, std=None, dtype: Any = np.float32) -> Any:
    """Copy a uint8 batch to the backend as floats in [0, 1], normalised per channel when mean/std are given.

    Parameters
    ----------
    batch : np.ndarray of uint8, shape (N, C, H, W)
        Sent to the device as uint8 (4× less traffic than float32), converted there.
    mean, std : sequence of C floats, optional
        Per-channel statistics in [0, 1] units: ``x = (batch / 255 − mean_c) / std_c``.
    dtype : float32 (default) or float64

    Returns
    -------
    xp.ndarray of ``dtype``, shape (N, C, H, W), C-contiguous
    """
    dt = _float_dtype(dtype)
    _check_images(batch, "to_device_float")
    if np.dtype(batch.dtype) != np.uint8:
        raise DataError(f"to_device_float: expected uint8 images, got {batch.dtype}")
    x = backend.asarray(batch).astype(dt)
    x *= dt.type(1.0 / 255.0)
    if mean is not None or std is not None:
        x = normalize(x, mean, std)
    return x


def normalize(x: Any, mean, std) -> Any:
    """``(x − mean_c) / std_c`` per channel, in place (x must be a float array that may be overwritten).

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W)
    mean, std : sequence of C floats (std > 0)
    """
    _check_images(x, "normalize")
    xp = backend.xp
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],) or np.any(std <= 0):
        raise ConfigError(f"normalize: need {x.shape[1]} means and positive stds, got mean={mean} std={std}")
    x -= xp.asarray(mean.astype(x.dtype)).reshape(1, -1, 1, 1)
    x *= xp.asarray((1.0 / std).astype(x.dtype)).reshape(1, -1, 1, 1)
    return x


def random_crop(x: Any, size: int | tuple[int, int], padding: int = 0) -> Any:
    """A random ``size`` crop of each image, after zero-padding every side by ``padding``.

    Pad-and-crop (``padding`` > 0, ``size`` = the image size) shifts small images by up to ``padding`` pixels;
    with ``padding = 0`` and a smaller ``size`` it is the paper's random 224/227 crop out of 256. The offsets
    (one pair per image, uniform over all valid positions) are drawn from the host generator; the copy is one
    gather over a sliding-window view, no Python loop over the batch.

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W)
    size : int or (h, w)
    padding : int

    Returns
    -------
    xp.ndarray, shape (N, C, h, w), a new array of x's dtype
    """
    _check_images(x, "random_crop")
    xp = backend.xp
    h, w = (size, size) if np.isscalar(size) else size
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, height, width = x.shape
    if not (0 < h <= height and 0 < w <= width):
        raise ConfigError(f"random_crop: crop {h}×{w} does not fit padded images of {height}×{width}")
    rng = backend.host_rng()
    top = xp.asarray(rng.integers(0, height - h + 1, size=n))
    left = xp.asarray(rng.integers(0, width - w + 1, size=n))
    return _gather_windows(x, top, left, h, w)


def _gather_windows(x: Any, top: Any, left: Any, h: int, w: int, use_view: bool = True) -> Any:
    """out[i] = x[i, :, top_i : top_i + h, left_i : left_i + w], as one gather (no loop over the batch)."""
    xp = backend.xp
    n = x.shape[0]
    if use_view and hasattr(xp.lib.stride_tricks, "sliding_window_view"):
        # windows[i, c, r, s] is the h×w window whose top-left corner is (r, s); pick (top_i, left_i) per image.
        windows = xp.lib.stride_tricks.sliding_window_view(x, (h, w), axis=(2, 3))
        return windows[xp.arange(n), :, top, left]
    # Fallback (CuPy < 13): explicit row and column indices, broadcast to (N, C, h, w).
    rows = (top[:, None] + xp.arange(h))[:, None, :, None]
    cols = (left[:, None] + xp.arange(w))[:, None, None, :]
    return x[xp.arange(n)[:, None, None, None], xp.arange(x.shape[1])[None, :, None, None], rows, cols]


def random_flip(x: Any, p: float = 0.5) -> Any:
    """Mirror each image left-right with probability ``p`` (returns a new array).

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W)
    """
    _check_images(x, "random_flip")
    xp = backend.xp
    flip = xp.asarray(backend.host_rng().random(x.shape[0]) < p).reshape(-1, 1, 1, 1)
    return xp.where(flip, x[..., ::-1], x)


def rgb_pca(images: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the 3×3 covariance of the RGB values of all training pixels ([P] §4.1).

    Pixel values are taken in [0, 1] units; the covariance is accumulated in float64 a chunk at a time.

    Parameters
    ----------
    images : np.ndarray of uint8, shape (N, 3, H, W)

    Returns
    -------
    eigvals : np.ndarray (3,), descending
    eigvecs : np.ndarray (3, 3), column i is the unit eigenvector of eigvals[i]
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"rgb_pca: expected RGB images (N, 3, H, W), got {images.shape}")
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    count = 0
    for start in range(0, len(images), chunk):
        pixels = images[start : start + chunk].transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255.0
        total += pixels.sum(axis=1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    return np.maximum(eigvals[order], 0.0), eigvecs[:, order]


def pca_lighting(x: Any, eigvals, eigvecs, std: float = 0.1, scale=None) -> Any:
    """The paper's PCA colour augmentation, in place: add ``P (α ⊙ λ)`` to every pixel of an image.

    For each image, α ~ N(0, std²) (three draws, once per image); every pixel's RGB value gets

        δ = [p₁ p₂ p₃] [α₁λ₁, α₂λ₂, α₃λ₃]ᵀ

    with p_i, λ_i the eigenvectors and eigenvalues of :func:`rgb_pca`, so δ has covariance
    P diag(std² λ²) Pᵀ. The paper states this on its own pixel scale; here λ is in [0, 1] units, which makes the
    shift small (a fraction of a grey level to a few levels), as faithful to the text as a unit choice allows.

    Parameters
    ----------
    x : xp.ndarray, shape (N, 3, H, W)
    eigvals : (3,) ; eigvecs : (3, 3), columns are eigenvectors
    std : float
        σ of α (the paper: 0.1).
    scale : sequence of 3 floats, optional
        Divide δ by these (the channel stds) when ``x`` is already normalised.
    """
    _check_images(x, "pca_lighting")
    if x.shape[1] != 3:
        raise DataError(f"pca_lighting: expected RGB images (N, 3, H, W), got {x.shape}")
    xp = backend.xp
    alpha = backend.normal((x.shape[0], 3), std=std, dtype=x.dtype)
    lam = xp.asarray(np.asarray(eigvals, dtype=x.dtype).reshape(1, 3))
    vecs = xp.asarray(np.asarray(eigvecs, dtype=x.dtype))
    delta = (alpha * lam) @ vecs.T  # (N, 3): row n is P (α_n ⊙ λ)
    if scale is not None:
        delta /= xp.asarray(np.asarray(scale, dtype=x.dtype).reshape(1, 3))
    x += delta[:, :, None, None]
    return x


def _ndimage() -> Any:
    if backend.on_gpu:
        import cupyx.scipy.ndimage as ndimage
    else:
        import scipy.ndimage as ndimage
    return ndimage


def linear_interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of 1-D linear interpolation with the end points aligned.

    Output sample i sits at input coordinate t = i·(n_in − 1)/(n_out − 1) and takes
    (1 − f)·x[⌊t⌋] + f·x[⌊t⌋ + 1], f = t − ⌊t⌋: the sampling of ``scipy.ndimage.zoom(order=1)``.
    """
    t = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lo = np.minimum(np.floor(t).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = t - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    # One entry per row in each statement, so ``+=`` never meets a repeated index; at the last input sample
    # lo == hi and the second statement adds to the first.
    m[rows, lo] += 1.0 - frac
    m[rows, hi] += frac
    return m


def resize(x: Any, size: int | tuple[int, int], order: int = 1) -> Any:
    """Resize every image to ``size``, corners aligned; ``order=1`` is bilinear.

    Bilinear interpolation is separable, so it is two small matrix products per image,
    ``out = R · x · Cᵀ`` with R (h, H) and C (w, W) from :func:`linear_interpolation_matrix`: the same numbers
    as ``scipy.ndimage.zoom(x, order=1)`` (the tests check it) but ~30× faster on a CPU, because it runs in
    BLAS instead of a per-pixel spline loop. Other orders use ``scipy.ndimage.zoom`` on NumPy and
    ``cupyx.scipy.ndimage.zoom`` on CuPy (same API).

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W), float
    size : int or (h, w)
    order : int
        Spline order (1: bilinear).

    Returns
    -------
    xp.ndarray, shape (N, C, h, w), x's dtype
    """
    _check_images(x, "resize")
    xp = backend.xp
    h, w = (size, size) if np.isscalar(size) else size
    if h < 1 or w < 1:
        raise ConfigError(f"resize: expected a positive size, got {(h, w)}")
    if (h, w) == x.shape[2:]:
        return x
    if order == 1:
        n, c, height, width = x.shape
        rows = xp.asarray(linear_interpolation_matrix(height, h).astype(x.dtype))  # (h, H)
        cols = xp.asarray(linear_interpolation_matrix(width, w).T.astype(x.dtype))  # (W, w)
        # Two plain GEMMs (a stacked matmul over the batch is ~50× slower in NumPy): columns, then rows.
        t = (xp.ascontiguousarray(x).reshape(-1, width) @ cols).reshape(n * c, height, w)
        out = xp.tensordot(rows, t, axes=(1, 1))  # (h, N·C, w)
        return xp.ascontiguousarray(out.transpose(1, 0, 2)).reshape(n, c, h, w)
    factors = (1.0, 1.0, h / x.shape[2], w / x.shape[3])
    out = _ndimage().zoom(x, factors, order=order, mode="nearest")
    if out.shape[2:] != (h, w):  # zoom rounds the output size
        raise ConfigError(f"resize: zoom produced {out.shape[2:]} instead of {(h, w)}; use order=1")
    return out


def center_crop(x: Any, size: int | tuple[int, int]) -> Any:
    """The central ``size`` crop of every image (a view). x: (N, C, H, W) -> (N, C, h, w)."""
    _check_images(x, "center_crop")
    h, w = (size, size) if np.isscalar(size) else size
    height, width = x.shape[2:]
    if not (0 < h <= height and 0 < w <= width):
        raise ConfigError(f"center_crop: crop {h}×{w} does not fit images of {height}×{width}")
    top, left = (height - h) // 2, (width - w) // 2
    return x[:, :, top : top + h, left : left + w]


def ten_crop(x: Any, size: int | tuple[int, int]) -> tuple[Any, ...]:
    """The paper's test-time ten crops: four corners and the centre, then the same five mirrored ([P] §4.1).

    The network's softmax outputs over the ten are averaged.

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W)

    Returns
    -------
    tuple of 10 views, each (N, C, h, w): top-left, top-right, bottom-left, bottom-right, centre, then flipped.
    """
    _check_images(x, "ten_crop")
    h, w = (size, size) if np.isscalar(size) else size
    height, width = x.shape[2:]
    if not (0 < h <= height and 0 < w <= width):
        raise ConfigError(f"ten_crop: crop {h}×{w} does not fit images of {height}×{width}")
    crops = (
        x[:, :, :h, :w],
        x[:, :, :h, width - w :],
        x[:, :, height - h :, :w],
        x[:, :, height - h :, width - w :],
        center_crop(x, (h, w)),
    )
    return crops + tuple(c[..., ::-1] for c in crops)


@dataclass(frozen=True)
class Augment:
    """Which transforms apply to a batch.

    Attributes
    ----------
    resize : int, optional
        Resize images to ``resize × resize`` first (the d2l variant: 28 -> 224).
    crop : int, optional
        Random crop side for training, centre/ten crop side for evaluation (None: no crop).
    padding : int
        Zero padding on every side before the random crop (pad-and-crop for small images).
    flip : bool
        Random horizontal flips (p = 0.5) in training.
    pca_std : float
        σ of the PCA colour noise (0 disables; the paper: 0.1; RGB only).
    """

    resize: int | None = None
    crop: int | None = None
    padding: int = 0
    flip: bool = False
    pca_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"Augment.{name}: expected a positive integer or None, got {value!r}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ConfigError(f"Augment.padding: expected a non-negative integer, got {self.padding!r}")
        if not self.pca_std >= 0:
            raise ConfigError(f"Augment.pca_std: expected >= 0, got {self.pca_std!r}")

    @classmethod
    def none(cls) -> Augment:
        """No augmentation (evaluation, or a plain baseline)."""
        return cls()

    @classmethod
    def for_dataset(cls, name: str, resize: int | None = None) -> Augment:
        """Defaults per data set.

        ==================  ===================================================================
        digits (mnist*)     pad 2, random 28×28 crop, no flip (a mirrored 2 is not a 2)
        fashion-mnist       pad 2, random 28×28 crop, flips (clothes are mirror-symmetric)
        cifar10             pad 4, random 32×32 crop, flips, PCA colour noise σ = 0.1
        imagenet-like       the paper: random 227×227 of 256×256, flips, PCA σ = 0.1
        ==================  ===================================================================

        With ``resize`` (e.g. 224 for the d2l variant) the images are resized and not cropped.
        """
        key = name.strip().lower()
        if resize is not None:
            return cls(resize=resize, flip=key in ("fashion-mnist", "cifar10"))
        if key in ("mnist5k", "mnist"):
            return cls(crop=28, padding=2)
        if key == "fashion-mnist":
            return cls(crop=28, padding=2, flip=True)
        if key == "cifar10":
            return cls(crop=32, padding=4, flip=True, pca_std=0.1)
        if key == "imagenet":
            return cls(crop=227, flip=True, pca_std=0.1)
        raise ConfigError(f"Augment.for_dataset: no defaults for {name!r}")


def train_transform(
    batch: np.ndarray, augment: Augment, mean, std, pca: tuple[np.ndarray, np.ndarray] | None = None, dtype=np.float32
) -> Any:
    """Device float batch, augmented for training then normalised (see the module docstring for the order).

    Parameters
    ----------
    batch : np.ndarray of uint8, shape (N, C, H, W)
    augment : Augment
    mean, std : per-channel statistics in [0, 1] units (the train split's)
    pca : (eigvals, eigvecs) from :func:`rgb_pca`; required when ``augment.pca_std`` > 0 and C = 3
    dtype : float32 or float64

    Returns
    -------
    xp.ndarray of ``dtype``, shape (N, C, h, w)
    """
    x = to_device_float(batch, dtype=dtype)
    if augment.resize is not None:
        x = resize(x, augment.resize)
    if augment.crop is not None:
        x = random_crop(x, augment.crop, augment.padding)
    if augment.flip:
        x = random_flip(x)
    if augment.pca_std > 0 and x.shape[1] == 3:
        if pca is None:
            raise ConfigError("train_transform: pca_std > 0 needs the (eigvals, eigvecs) of rgb_pca(train_images)")
        x = backend.xp.ascontiguousarray(x)
        pca_lighting(x, pca[0], pca[1], augment.pca_std)
    return normalize(backend.xp.ascontiguousarray(x), mean, std)


def eval_transform(batch: np.ndarray, augment: Augment, mean, std, dtype=np.float32, tencrop: bool = False) -> Any:
    """Device float batch for evaluation: resize, centre crop (or ten crops), normalise; no randomness.

    Returns
    -------
    xp.ndarray (N, C, h, w), or with ``tencrop`` a tuple of 10 such arrays (see :func:`ten_crop`)
    """
    x = to_device_float(batch, mean, std, dtype=dtype)
    if augment.resize is not None:
        x = resize(x, augment.resize)
    crop = augment.crop if augment.crop is not None else x.shape[2]
    if tencrop:
        return tuple(backend.xp.ascontiguousarray(v) for v in ten_crop(x, crop))
    return backend.xp.ascontiguousarray(center_crop(x, crop))
