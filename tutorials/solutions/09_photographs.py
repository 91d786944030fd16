"""Solutions to the exercises of tutorials/09_photographs.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


# Exercise 1
def rgb_covariance(images):
    """uint8 images (N, 3, H, W) -> the 3x3 covariance of the RGB values of all their pixels, in [0, 1] units."""
    pixels = images.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255.0  # (3, P): channels first
    centred = pixels - pixels.mean(axis=1, keepdims=True)
    return centred @ centred.T / pixels.shape[1]  # divided by P (np.cov(..., bias=True) gives the same)


# Exercise 2
def pca_colour_noise(x, eigvals, eigvecs, alpha):
    """x (N, 3, H, W) float, eigvals (3,), eigvecs (3, 3) with eigenvectors as columns, alpha (N, 3) -> x + delta."""
    delta = (alpha * eigvals[None, :]) @ eigvecs.T  # row n: P (alpha_n * lambda) = sum_i alpha_ni lambda_i p_i
    return x + delta[:, :, None, None]  # the same shift for every pixel of image n
