"""Solutions to the exercises of tutorials/08_batchnorm.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


# Exercise
def batchnorm_backward(x, gamma, dy, eps):
    """x (N, C, H, W), gamma (C,), dy = dL/dy (N, C, H, W)  ->  (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    axes = (0, 2, 3)
    m = x.shape[0] * x.shape[2] * x.shape[3]  # values per channel
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)  # the biased variance, divided by M
    s = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * s
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * xhat).sum(axis=axes, keepdims=True)
    # (gamma s / M)(M g - sum g - xhat sum g xhat)
    dx = gamma.reshape(1, -1, 1, 1) * s * (dy - dbeta / m - xhat * dgamma / m)
    return dx, dgamma.ravel(), dbeta.ravel()
