"""The per-batch operations of the input pipeline, on the device: one code path over ``xp`` (NumPy or CuPy).

Each function is one step, vectorised over the batch (no Python loop over images);
:mod:`minialex.data.pipeline` composes them into the training and evaluation transforms::

    standardize      uint8 -> float: (x / 255 − mean) / std, mean per channel or per pixel (the mean image)
    crop_flip_standardize   the crop, the mirror and standardize of every image in one pass
    to_device_float  host uint8 batch -> device float in [0, 1] (optionally standardised)
    normalize        (x − mean_c) / std_c on a float batch, in place
    draw_crops       random crop offsets, one pair per image, uniform over all positions
    crop_windows     the h×w window of each image at its own offset, as one gather
    random_crop      draw_crops + crop_windows, after optional zero padding
    draw_flips       which images to mirror; flip_where mirrors them
    random_flip      draw_flips + flip_where
    pca_lighting     the paper's PCA colour noise (§4.1), in place
    center_crop      the central crop (a view)
    ten_crop         the paper's ten test views: four corners and the centre, and their mirrors (§4.1)

(:func:`minialex.data.resize.resize` resizes a batch bilinearly: the d2l variant's 28 -> 224.)

Every random draw comes from :mod:`minialex.backend` (``host_rng`` for offsets and flips, ``normal`` for the
colour noise), so :func:`minialex.seed` reproduces an augmented epoch exactly. Crops and flips work on any
dtype: the pipeline applies them to the uint8 batch, before the conversion to float, where they move 4× fewer
bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import ConfigError, DataError

FLOAT_DTYPES = (np.float32, np.float64)


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype, if it is float32 or float64 (the two the pipeline produces)."""
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in FLOAT_DTYPES]:
        raise ConfigError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def _check_images(x: Any, where: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise DataError(f"{where}: expected a batch of images (N, C, H, W), got shape {getattr(x, 'shape', None)}")


def _per_channel(values, channels: int, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.shape != (channels,) or not np.all(np.isfinite(out)):
        raise ConfigError(f"{what}: need {channels} finite values, one per channel, got {values!r}")
    return out


def _affine(x: Any, mean, std, dtype: np.dtype, where: str) -> tuple[Any, Any]:
    """``(scale, shift)`` with ``(x / 255 − mean) / std = x·scale − shift``: scale (C, 1, 1), shift (C, 1, 1) or
    the mean image's shape (a per-pixel mean, e.g. (C, H, W) or (1, C, h, w)), both of ``dtype``."""
    _check_images(x, where)
    if np.dtype(x.dtype) != np.uint8:
        raise DataError(f"{where}: expected uint8 images, got {x.dtype}")
    xp = backend.xp
    channels = x.shape[1]
    std = _per_channel(std, channels, f"{where}: std")
    if np.any(std <= 0):
        raise ConfigError(f"{where}: std must be positive, got {tuple(std)}")
    scale = xp.asarray((1.0 / (255.0 * std)).astype(dtype)).reshape(-1, 1, 1)
    if isinstance(mean, (np.ndarray, xp.ndarray)) and np.ndim(mean) >= 3:
        shift = xp.asarray(mean, dtype=dtype) * xp.asarray((1.0 / std).astype(dtype)).reshape(-1, 1, 1)
    else:
        shift = xp.asarray((_per_channel(mean, channels, f"{where}: mean") / std).astype(dtype)).reshape(-1, 1, 1)
    return scale, shift


def standardize(x: Any, mean, std, dtype: Any = np.float32) -> Any:
    """``(x / 255 − mean) / std_c`` of a uint8 batch, as a new float array, computed as ``x·a_c − b``.

    Parameters
    ----------
    x : xp.ndarray of uint8, shape (N, C, h, w)
        Any layout (a crop view is fine).
    mean : sequence of C floats, or xp.ndarray broadcastable to (N, C, h, w)
        Per-channel means, or a per-pixel mean image (e.g. the training set's, cropped like ``x``), in
        [0, 1] units.
    std : sequence of C floats (> 0)
        Per-channel standard deviations in [0, 1] units (all 1: subtract the mean only).
    dtype : float32 (default) or float64

    Returns
    -------
    xp.ndarray of ``dtype``, shape (N, C, h, w), C-contiguous
    """
    dt = float_dtype(dtype)
    scale, shift = _affine(x, mean, std, dt, "standardize")
    out = backend.xp.multiply(x, scale, dtype=dt)
    out -= shift
    return out


def crop_flip_standardize(
    x: Any, top, left, flips, size: int | tuple[int, int], mean, std, dtype: Any = np.float32
) -> Any:
    """Crop, mirror and standardise every uint8 image of a batch into a new float batch.

    ``out[i] = mirror_i((x[i, :, t:t+h, l:l+w] / 255 − mean[:, t:t+h, l:l+w]) / std)`` with ``(t, l) =
    (top[i], left[i])``, mirrored left-right where ``flips[i]``; a per-channel ``mean`` is the same at every
    pixel. The per-pixel mean image is cropped and mirrored exactly like its image, so the result equals
    standardising the whole image first and cropping it afterwards.

    The work goes image by image, reading both the image's window and the mean image's window as views: the
    (C, H, W) mean image stays in the CPU's cache, where gathering the batch's N mean windows first would write
    and read N float copies of it (and cropping after standardising would convert pixels that are then
    thrown away). On a GPU each image is two small kernels.

    ``x`` is uint8 (N, C, H, W); ``top``, ``left`` (integers) and ``flips`` (bools) are host arrays (N,), e.g.
    from :func:`draw_crops` and :func:`draw_flips`; ``size`` is h or (h, w); ``mean`` is C floats or the
    uncropped (C, H, W) mean image; ``std`` and ``dtype`` are those of :func:`standardize`. Returns a new
    C-contiguous (N, C, h, w) array of ``dtype``.
    """
    dt = float_dtype(dtype)
    scale, shift = _affine(x, mean, std, dt, "crop_flip_standardize")
    per_pixel = shift.ndim == 3 and shift.shape[1:] != (1, 1)
    if per_pixel and shift.shape != x.shape[1:]:
        raise DataError(f"crop_flip_standardize: mean image {shift.shape} does not match images {x.shape[1:]}")
    n, channels, height, width = x.shape
    h, w = _crop_size(size)
    out = backend.xp.empty((n, channels, h, w), dtype=dt)
    for i in range(n):
        t, s = int(top[i]), int(left[i])
        if not (0 <= t <= height - h and 0 <= s <= width - w):
            raise ConfigError(f"crop_flip_standardize: a {h}×{w} crop at ({t}, {s}) leaves the {height}×{width} image")
        image = x[i, :, t : t + h, s : s + w]
        mean_window = shift[:, t : t + h, s : s + w] if per_pixel else shift
        if flips[i]:
            image = image[..., ::-1]
            mean_window = mean_window[..., ::-1] if per_pixel else mean_window
        backend.xp.multiply(image, scale, out=out[i])
        out[i] -= mean_window
    return out


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
    float_dtype(dtype)
    _check_images(batch, "to_device_float")
    if np.dtype(batch.dtype) != np.uint8:
        raise DataError(f"to_device_float: expected uint8 images, got {batch.dtype}")
    channels = batch.shape[1]
    mean = (0.0,) * channels if mean is None else mean
    std = (1.0,) * channels if std is None else std
    return standardize(backend.asarray(batch), mean, std, dtype)


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


def _crop_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def draw_crops(n: int, height: int, width: int, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Random offsets (top, left) of an h×w crop in each of ``n`` height×width images, uniform over all positions.

    Drawn from :func:`minialex.backend.host_rng`: the tops first, then the lefts (int64 host arrays (n,)).
    """
    h, w = _crop_size(size)
    if not (0 < h <= height and 0 < w <= width):
        raise ConfigError(f"random_crop: crop {h}×{w} does not fit padded images of {height}×{width}")
    rng = backend.host_rng()
    return rng.integers(0, height - h + 1, size=n), rng.integers(0, width - w + 1, size=n)


def crop_windows(x: Any, top, left, size: int | tuple[int, int]) -> Any:
    """``out[i] = x[i, :, top_i : top_i + h, left_i : left_i + w]``, as one gather (no loop over the batch).

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W), any dtype (a broadcast view, e.g. of a mean image, is fine)
    top, left : integer arrays (N,), host or device
    size : int or (h, w)

    Returns
    -------
    xp.ndarray, shape (N, C, h, w), a new array of x's dtype
    """
    _check_images(x, "crop_windows")
    xp = backend.xp
    h, w = _crop_size(size)
    return _gather_windows(x, xp.asarray(top), xp.asarray(left), h, w)


def random_crop(x: Any, size: int | tuple[int, int], padding: int = 0) -> Any:
    """A random ``size`` crop of each image, after zero-padding every side by ``padding``.

    Pad-and-crop (``padding`` > 0, ``size`` = the image size) shifts small images by up to ``padding`` pixels;
    with ``padding = 0`` and a smaller ``size`` it is the paper's random 224/227 crop out of 256. The offsets
    come from :func:`draw_crops`, the copy from :func:`crop_windows`.

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W), any dtype
    size : int or (h, w)
    padding : int

    Returns
    -------
    xp.ndarray, shape (N, C, h, w), a new array of x's dtype
    """
    _check_images(x, "random_crop")
    if padding:
        x = backend.xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top, left = draw_crops(x.shape[0], x.shape[2], x.shape[3], size)
    return crop_windows(x, top, left, size)


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


def draw_flips(n: int, p: float = 0.5) -> np.ndarray:
    """Which of ``n`` images to mirror, each with probability ``p`` (a bool host array, from ``host_rng``)."""
    return backend.host_rng().random(n) < p


def flip_where(x: Any, flags) -> Any:
    """Mirror left-right the images whose flag is set (returns a new array). x: (N, C, H, W), flags: (N,)."""
    _check_images(x, "flip_where")
    xp = backend.xp
    return xp.where(xp.asarray(flags).reshape(-1, 1, 1, 1), x[..., ::-1], x)


def random_flip(x: Any, p: float = 0.5) -> Any:
    """Mirror each image left-right with probability ``p`` (returns a new array).

    Parameters
    ----------
    x : xp.ndarray, shape (N, C, H, W)
    """
    _check_images(x, "random_flip")
    return flip_where(x, draw_flips(x.shape[0], p))


def pca_lighting(x: Any, eigvals, eigvecs, std: float = 0.1, scale=None) -> Any:
    """The paper's PCA colour augmentation, in place: add ``P (α ⊙ λ)`` to every pixel of an image.

    For each image, α ~ N(0, std²) (three draws, once per image); every pixel's RGB value gets

        δ = [p₁ p₂ p₃] [α₁λ₁, α₂λ₂, α₃λ₃]ᵀ

    with p_i, λ_i the eigenvectors and eigenvalues of :func:`~minialex.data.stats.rgb_pca`, so δ has covariance
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
    """The paper's test-time ten crops: four corners and the centre, then the same five mirrored (the paper, §4.1).

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
