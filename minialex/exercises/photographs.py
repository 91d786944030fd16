"""Graders of notebook 9 (photographs): the RGB covariance of a training set and the PCA colour noise.

``rgb_covariance(images) -> C`` is compared with :class:`minialex.data.stats.PixelStats`' exact covariance;
``pca_colour_noise(x, eigvals, eigvecs, alpha) -> x + δ`` with the formula of the paper (§4.1),
δ_n = P (α_n ⊙ λ) for image n, P's columns the eigenvectors.

Both graders recognise the classic mistakes by computing each of them and comparing: for the covariance, the
uncentred second moment, ``np.cov``'s division by P − 1, a reshape that mixes images into channels, pixels
left in 0..255 units, and a mean of per-image covariances; for the noise, √λ in place of λ, the eigenvectors
taken as rows, one α for every image, and δ added to every pixel with its own α.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import Fail, as_array, close, grade, matches, unchanged
from minialex.gradcheck import rel_error

COVARIANCE_TOL = 1e-10
"""Float64 rounding of sums over at most a few thousand pixels: far below any of the mistakes."""


def covariance_variant(images: np.ndarray, mistake: str | None = None) -> np.ndarray:
    """The 3×3 covariance of the pixel colours of uint8 ``images`` (N, 3, H, W) in [0, 1] units, population
    normalisation; or one classic mistake: ``"uncentred"``, ``"P - 1"``, ``"mixed reshape"``, ``"0..255"``,
    ``"per image"``."""
    x = images.astype(np.float64) / (1.0 if mistake == "0..255" else 255.0)
    if mistake == "per image":
        return np.mean([covariance_variant(image[None]) for image in images], axis=0)
    pixels = x.reshape(3, -1) if mistake == "mixed reshape" else x.transpose(1, 0, 2, 3).reshape(3, -1)
    if mistake == "uncentred":
        return pixels @ pixels.T / pixels.shape[1]
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    return centred @ centred.T / (pixels.shape[1] - (1 if mistake == "P - 1" else 0))


COVARIANCE_HINTS = {
    "uncentred": " You computed the second moment E[x xᵀ]; subtract the mean colour first: E[(x − μ)(x − μ)ᵀ].",
    "P - 1": (
        " You divided by P − 1 (np.cov's default); the statistics here are of the whole training set, divided by P "
        "(np.cov(..., bias=True))."
    ),
    "mixed reshape": (
        " images.reshape(3, -1) on (N, 3, H, W) mixes images and channels; move the channel axis first: "
        "images.transpose(1, 0, 2, 3).reshape(3, -1)."
    ),
    "0..255": " The pixels are in 0..255 units; divide them by 255 first (the covariance is 255² times too large).",
    "per image": (
        " You averaged the covariance of each image; the paper's covariance is over all pixels of the training set "
        "together (it includes how the images' mean colours differ)."
    ),
}


def noise_variant(
    x: np.ndarray, eigvals: np.ndarray, eigvecs: np.ndarray, alpha: np.ndarray, mistake: str | None = None
) -> np.ndarray:
    """``x`` plus the paper's PCA colour shift δ_n = P (α_n ⊙ λ) per image, or one classic mistake: ``"sqrt"``
    (√λ), ``"rows"`` (eigenvectors as rows), ``"one alpha"`` (α of image 0 for all)."""
    lam = np.sqrt(eigvals) if mistake == "sqrt" else eigvals
    vecs = eigvecs.T if mistake == "rows" else eigvecs
    a = np.broadcast_to(alpha[:1], alpha.shape) if mistake == "one alpha" else alpha
    delta = (a * lam[None, :]) @ vecs.T  # (N, 3): row n is P (α_n ⊙ λ)
    return x + delta[:, :, None, None]


NOISE_HINTS = {
    "sqrt": " You used √λ; the paper's formula multiplies α_i by the eigenvalue λ_i itself.",
    "rows": " eigvecs[:, i] (a column) is the eigenvector of eigvals[i]; you used the rows.",
    "one alpha": " α is drawn once per image: image n gets its own α_n (alpha[n]), not alpha[0].",
}


def _test_images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """uint8 images whose channels are correlated (as in photographs) and whose mean colours differ."""
    base = rng.uniform(40, 200, (n, 1, 1, 1)) + rng.normal(0, 30, (n, 1, h, w))
    tint = rng.normal(0, 20, (n, 3, 1, 1))
    return np.clip(base + tint + rng.normal(0, 10, (n, 3, h, w)), 0, 255).astype(np.uint8)


def check_rgb_covariance(fn: Callable[..., Any]) -> None:
    """``fn(images) -> cov``: the 3×3 covariance of the RGB colours of every pixel of uint8 ``images``
    (N, 3, H, W), in [0, 1] units, divided by the number of pixels P."""
    from minialex.data.stats import PixelStats

    def body() -> str:
        rng = np.random.default_rng(13)
        worst = 0.0
        for n, h, w in [(4, 5, 7), (2, 8, 3), (6, 4, 4)]:
            images = _test_images(rng, n, h, w)
            before = images.copy()
            stats = PixelStats(3)
            stats.add(images)
            expected = stats.covariance()
            got = as_array(fn(images), f"the covariance of {n} images of {h}×{w}", (3, 3))
            unchanged(before, images, "images")
            if rel_error(got, expected) > COVARIANCE_TOL:
                hint = next(
                    (text for key, text in COVARIANCE_HINTS.items() if matches(got, covariance_variant(images, key))),
                    "",
                )
                close(got, expected, f"the covariance of {n} images of {h}×{w}", COVARIANCE_TOL, hint)
            worst = max(worst, rel_error(got, expected))
        return f"matches the exact covariance of minialex.data.stats for three sets of images (error {worst:.1e})"

    grade("rgb_covariance", body)


def check_pca_colour_noise(fn: Callable[..., Any]) -> None:
    """``fn(x, eigvals, eigvecs, alpha) -> x + δ``, δ_n = P (α_n ⊙ λ) added to every pixel of image n; x is a
    float (N, 3, H, W) batch, alpha (N, 3), eigvecs' columns the eigenvectors. ``x`` must not change."""

    def body() -> str:
        rng = np.random.default_rng(14)
        for n, h, w in [(3, 4, 5), (1, 2, 2), (5, 3, 3)]:
            x = rng.uniform(0, 1, (n, 3, h, w))
            eigvecs, _ = np.linalg.qr(rng.standard_normal((3, 3)))
            eigvals = np.sort(rng.uniform(0.001, 0.2, 3))[::-1]
            alpha = rng.normal(0, 0.1, (n, 3))
            before = x.copy(), eigvals.copy(), eigvecs.copy(), alpha.copy()
            where = f"a batch of {n} images of {h}×{w}"
            got = as_array(fn(x, eigvals, eigvecs, alpha), f"the result ({where})", x.shape)
            for old, new, what in zip(
                before, (x, eigvals, eigvecs, alpha), ("x", "eigvals", "eigvecs", "alpha"), strict=True
            ):
                unchanged(old, new, what)
            expected = noise_variant(x, eigvals, eigvecs, alpha)
            if not np.allclose(got - x, (got - x)[:, :, :1, :1], rtol=0, atol=1e-12):
                raise Fail(f"{where}: every pixel of an image must get the same shift δ_n (one α per image)")
            if rel_error(got, expected) > 1e-12:
                hint = next(
                    (
                        t
                        for key, t in NOISE_HINTS.items()
                        if matches(got, noise_variant(x, eigvals, eigvecs, alpha, key))
                    ),
                    "",
                )
                close(got, expected, where, 1e-12, hint)
        return "x + P (α_n ⊙ λ) per image, for three batches, inputs untouched"

    grade("pca_colour_noise", body)
