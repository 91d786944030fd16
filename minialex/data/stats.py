"""Statistics of a training split, computed exactly: per-channel mean and std, the mean image, the RGB PCA.

Everything is accumulated in integers (:class:`PixelStats`), so the result is exact and independent of the
order in which images are added (the cache builder adds them from several threads) and of how they are
chunked. For the uint8 colour x ∈ {0..255}^C of every pixel of the split (P pixels per channel, N images):

* the sums s = Σ x and the C×C matrix Q = Σ x xᵀ, from which the per-channel mean and population std in
  [0, 1] units are mean_c = s_c / (255·P) and std_c = sqrt(Q_cc / (255²·P) − mean_c²), and the covariance
  of the pixel colours Cov = Q / (255²·P) − mean meanᵀ, whose eigen-decomposition drives the PCA colour
  noise (the paper, §4.1);
* the sum of every image, pixel by pixel: the mean image is that sum / (255·N) (the paper, §2, subtracts it).

A product of two uint8 values is at most 255² = 65,025, so it fits uint16 exactly; the products are summed
in uint64 and kept as Python integers, which never overflow.
"""

from __future__ import annotations

import threading

import numpy as np

from minialex.errors import DataError

_FOLD = 2**24
"""Images summed in a uint32 accumulator (255 · 2²⁴ < 2³²) before it is folded into the int64 total."""


class PixelStats:
    """Exact running statistics of uint8 images (N, C, H, W); add batches in any order, from any thread.

    Parameters
    ----------
    channels : int
    image_shape : (C, H, W), optional
        Also accumulate the per-pixel sum for :meth:`mean_image` (integer arrays of this shape).
    """

    def __init__(self, channels: int, image_shape: tuple[int, int, int] | None = None) -> None:
        self.channels = int(channels)
        self.count = 0  # images
        self.pixels = 0  # pixels per channel
        self.sums = [0] * self.channels  # Python ints: no overflow
        self.products = [[0] * self.channels for _ in range(self.channels)]
        self._image_total = None if image_shape is None else np.zeros(image_shape, dtype=np.int64)
        self._image_recent = None if image_shape is None else np.zeros(image_shape, dtype=np.uint32)  # faster adds
        self._recent = 0
        self._lock = threading.Lock()

    @staticmethod
    def partial(images: np.ndarray) -> tuple[list[int], list[list[int]]]:
        """The sums (C,) and the products (C, C) of a batch of uint8 images, as Python ints (no state)."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise DataError(
                f"PixelStats: expected non-empty uint8 images (N, C, H, W), got {images.dtype} {images.shape}"
            )
        c = images.shape[1]
        values = np.moveaxis(images, 1, 0).reshape(c, -1).astype(np.uint16)
        sums = [int(values[i].sum(dtype=np.uint64)) for i in range(c)]
        products = [[0] * c for _ in range(c)]
        for i in range(c):
            for j in range(i, c):
                products[i][j] = products[j][i] = int((values[i] * values[j]).sum(dtype=np.uint64))
        return sums, products

    def add(self, images: np.ndarray, partial: tuple[list[int], list[list[int]]] | None = None) -> None:
        """Add uint8 images (N, C, H, W); ``partial`` is :meth:`partial` of the same images if already computed."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise DataError(f"PixelStats: expected images with {self.channels} channels, got shape {images.shape}")
        if self._image_total is not None and images.shape[1:] != self._image_total.shape:
            raise DataError(f"PixelStats: image shape {images.shape[1:]} differs from {self._image_total.shape}")
        sums, products = partial if partial is not None else self.partial(images)
        with self._lock:
            self.count += images.shape[0]
            self.pixels += images.shape[0] * images.shape[2] * images.shape[3]
            for i in range(self.channels):
                self.sums[i] += sums[i]
                for j in range(self.channels):
                    self.products[i][j] += products[i][j]
            if self._image_recent is not None:
                if self._recent + images.shape[0] > _FOLD:
                    self._image_total += self._image_recent
                    self._image_recent[...] = 0
                    self._recent = 0
                for image in images:
                    np.add(self._image_recent, image, out=self._image_recent)
                self._recent += images.shape[0]

    def _need(self) -> None:
        if self.count == 0:
            raise DataError("PixelStats: no images were added")

    def _mean(self) -> np.ndarray:
        return np.array([s / (255.0 * self.pixels) for s in self.sums])

    def channel_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and population std in [0, 1] units (two tuples of C floats)."""
        self._need()
        mean = self._mean()
        second = np.array([self.products[c][c] / (255.0**2 * self.pixels) for c in range(self.channels)])
        std = np.sqrt(np.maximum(second - mean**2, 0.0))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def mean_image(self) -> np.ndarray:
        """The mean of the images added, pixel by pixel: float64 (C, H, W) in [0, 1] units."""
        self._need()
        if self._image_total is None:
            raise DataError("PixelStats: built without image_shape, so it has no mean image")
        return (self._image_total + self._image_recent) / (255.0 * self.count)

    def covariance(self) -> np.ndarray:
        """The C×C covariance of the pixel colours, in [0, 1] units (population normalisation)."""
        self._need()
        mean = self._mean()
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
