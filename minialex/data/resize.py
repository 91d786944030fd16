"""Resizing a batch of images on the device: bilinear, corners aligned, as two matrix products.

Used where the images are smaller than the model's input (the ``d2l`` variant's 28 -> 224, CIFAR's 32 ->
227 for ``paper``) or much larger (256×256 photographs for the small ``mini`` model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend
from minialex.data.augment import _check_images
from minialex.errors import ConfigError


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
    as ``scipy.ndimage.zoom(x, order=1)`` (the tests check it) but much faster on a CPU, because it runs in
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
        # Two plain GEMMs (NumPy's stacked matmul over the batch is far slower): columns, then rows.
        t = (xp.ascontiguousarray(x).reshape(-1, width) @ cols).reshape(n * c, height, w)
        out = xp.tensordot(rows, t, axes=(1, 1))  # (h, N·C, w)
        return xp.ascontiguousarray(out.transpose(1, 0, 2)).reshape(n, c, h, w)
    factors = (1.0, 1.0, h / x.shape[2], w / x.shape[3])
    out = _ndimage().zoom(x, factors, order=order, mode="nearest")
    if out.shape[2:] != (h, w):  # zoom rounds the output size
        raise ConfigError(f"resize: zoom produced {out.shape[2:]} instead of {(h, w)}; use order=1")
    return out
