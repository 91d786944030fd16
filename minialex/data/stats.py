"""Statistics of a training split, computed exactly: per-channel mean and std, the mean image, the RGB PCA.

Everything is accumulated in integers (:class:`PixelStats`), so the result is exact and independent of the
order in which images are added (the cache builder adds them from several threads) and of how they are
chunked. For uint8 pixels v (c = channel, P = pixels per channel over the whole split):

* per-channel histograms h_c(v), from which mean_c = Σ_v v·h_c(v) / (255·P) and
  std_c = sqrt(Σ_v v²·h_c(v) / (255²·P) − mean_c²) (population std, [0, 1] units);
* the sum of every image, pixel by pixel: the mean image is that sum / (255·N) (the paper, §2, subtracts it);
* the C×C matrix S = Σ_pixels x xᵀ of raw values, from which the covariance of the pixel colours is
  Cov = S / (255²·P) − mean meanᵀ; its eigen-decomposition drives the PCA colour noise (the paper, §4.1).

Products of uint8 values are summed in float64 BLAS, chunk by chunk: every partial sum is an integer below
2⁵³, so float64 holds it exactly, and it is moved to Python integers after each chunk.
"""

from __future__ import annotations

import threading

import numpy as np

from minialex.errors import DataError

_EXACT = 2**53 // (255 * 255)
"""Most pixels per channel whose Σ x_i·x_j a float64 sum holds exactly."""


class PixelStats:
    """Exact running statistics of uint8 images (N, C, H, W); add batches in any order, from any thread.

    Parameters
    ----------
    channels : int
    image_shape : (C, H, W), optional
        Also accumulate the per-pixel sum for :meth:`mean_image` (an int64 array of this shape).
    """

    def __init__(self, channels: int, image_shape: tuple[int, int, int] | None = None) -> None:
        self.channels = int(channels)
        self.count = 0  # images
        self.pixels = 0  # pixels per channel
        self.hist = np.zeros((self.channels, 256), dtype=np.int64)
        self.products = [[0] * self.channels for _ in range(self.channels)]  # Python ints: no overflow
        self.image_sum = None if image_shape is None else np.zeros(image_shape, dtype=np.int64)
        self._lock = threading.Lock()

    @staticmethod
    def partial(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The histograms (C, 256) and the product matrix (C, C) of a chunk, as int64 (thread-safe, no state)."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise DataError(
                f"PixelStats: expected non-empty uint8 images (N, C, H, W), got {images.dtype} {images.shape}"
            )
        n, c = images.shape[:2]
        per_image = images.shape[2] * images.shape[3]
        step = max(1, _EXACT // per_image)
        hist = np.zeros((c, 256), dtype=np.int64)
        products = np.zeros((c, c), dtype=np.int64)
        for start in range(0, n, step):
            block = images[start : start + step]
            for ch in range(c):
                hist[ch] += np.bincount(block[:, ch].ravel(), minlength=256)
            values = block.transpose(1, 0, 2, 3).reshape(c, -1).astype(np.float64)
            products += np.rint(values @ values.T).astype(np.int64)
        return hist, products

    def add(self, images: np.ndarray, partial: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add uint8 images (N, C, H, W); ``partial`` is :meth:`partial` of the same images if already computed."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise DataError(f"PixelStats: expected images with {self.channels} channels, got shape {images.shape}")
        hist, products = partial if partial is not None else self.partial(images)
        with self._lock:
            self.count += images.shape[0]
            self.pixels += images.shape[0] * images.shape[2] * images.shape[3]
            self.hist += hist
            for i in range(self.channels):
                for j in range(self.channels):
                    self.products[i][j] += int(products[i, j])
            if self.image_sum is not None:
                if images.shape[1:] != self.image_sum.shape:
                    raise DataError(f"PixelStats: image shape {images.shape[1:]} differs from {self.image_sum.shape}")
                self.image_sum += images.sum(axis=0, dtype=np.int64)

    def _need(self) -> None:
        if self.count == 0:
            raise DataError("PixelStats: no images were added")

    def channel_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and population std in [0, 1] units (two tuples of C floats)."""
        self._need()
        values = np.arange(256, dtype=np.float64) / 255.0
        mean = self.hist @ values / self.pixels
        var = np.maximum(self.hist @ values**2 / self.pixels - mean**2, 0.0)
        return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))

    def mean_image(self) -> np.ndarray:
        """The mean of the images added, pixel by pixel: float64 (C, H, W) in [0, 1] units."""
        self._need()
        if self.image_sum is None:
            raise DataError("PixelStats: built without image_shape, so it has no mean image")
        return self.image_sum / (255.0 * self.count)

    def covariance(self) -> np.ndarray:
        """The C×C covariance of the pixel colours, in [0, 1] units (population normalisation)."""
        self._need()
        total = self.hist @ np.arange(256, dtype=np.float64)  # Σ x_c, exact below 2⁵³
        mean = total / (255.0 * self.pixels)
        second = np.array(self.products, dtype=np.float64) / (255.0**2 * self.pixels)
        return second - np.outer(mean, mean)

    def pca(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (C,), descending and clipped at 0, and unit eigenvectors (C, C), column i for value i."""
        eigvals, eigvecs = np.linalg.eigh(self.covariance())
        order = np.argsort(eigvals)[::-1]
        return np.maximum(eigvals[order], 0.0), eigvecs[:, order]


def _over_chunks(images: np.ndarray, chunk: int, what: str) -> PixelStats:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"{what}: expected non-empty uint8 images (N, C, H, W), got {images.dtype} {images.shape}")
    stats = PixelStats(images.shape[1])
    for start in range(0, images.shape[0], chunk):
        stats.add(np.ascontiguousarray(images[start : start + chunk]))
    return stats


def channel_stats(images: np.ndarray, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, in [0, 1] units.

    Parameters
    ----------
    images : np.ndarray of uint8, shape (N, C, H, W)
    chunk : int
        Images per pass (bounds the temporary memory; a float copy of the whole split is never made).

    Returns
    -------
    (mean, std) : two tuples of C floats
    """
    return _over_chunks(images, chunk, "channel_stats").channel_mean_std()


def rgb_pca(images: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the 3×3 covariance of the RGB values of all training pixels (the paper, §4.1).

    Pixel values are taken in [0, 1] units.

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
    return _over_chunks(images, chunk, "rgb_pca").pca()
