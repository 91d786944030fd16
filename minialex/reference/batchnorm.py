"""Batch normalisation with explicit loops, and its backward pass by the staged chain rule.

The layer (:mod:`minialex.layers.batchnorm`) computes dL/dx from the compact formula
``(γ·s/M)·(M·g − Σg − x̂·Σg·x̂)``. This reference reaches dL/dx the long way, one node of the computation
graph at a time (x → μ → x − μ → σ² → s → x̂ → y), so that the two agree only if the derivation is right::

    ∂L/∂x̂_i  = γ·g_i
    ∂L/∂σ²   = Σ_i ∂L/∂x̂_i · (x_i − μ) · (−½)(σ² + ε)^(−3/2)
    ∂L/∂μ    = Σ_i ∂L/∂x̂_i · (−s)  +  ∂L/∂σ² · Σ_i (−2)(x_i − μ)/M
    ∂L/∂x_i  = ∂L/∂x̂_i · s  +  ∂L/∂σ² · 2(x_i − μ)/M  +  ∂L/∂μ / M

Arrays are host NumPy, channels on axis 1: (N, C), (N, C, L) or (N, C, H, W). Sums are plain Python
loops over every value of a channel.
"""

from __future__ import annotations

import math

import numpy as np


def _channel_values(x: np.ndarray, c: int) -> list[tuple[int, ...]]:
    """Every index of ``x`` whose channel (axis 1) is ``c``."""
    return [index for index in np.ndindex(*x.shape) if index[1] == c]


def batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance (divided by M, the count of values per channel)."""
    channels = x.shape[1]
    mean, var = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        indices = _channel_values(x, c)
        total = 0.0
        for i in indices:
            total += float(x[i])
        mean[c] = total / len(indices)
        squares = 0.0
        for i in indices:
            squares += (float(x[i]) - mean[c]) ** 2
        var[c] = squares / len(indices)
    return mean, var


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, mean: np.ndarray, var: np.ndarray
) -> np.ndarray:
    """``y = γ·(x − μ)/√(σ² + ε) + β`` element by element, with the given per-channel μ and σ² (batch or running)."""
    y = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        c = index[1]
        y[index] = gamma[c] * (float(x[index]) - mean[c]) / math.sqrt(var[c] + eps) + beta[c]
    return y


def batchnorm_backward(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode gradients (dx, dγ, dβ) by the staged chain rule of the module docstring."""
    mean, var = batch_moments(x)
    channels = x.shape[1]
    dx = np.zeros(x.shape, dtype=np.float64)
    dgamma, dbeta = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        indices = _channel_values(x, c)
        m = len(indices)
        s = 1.0 / math.sqrt(var[c] + eps)
        dxhat = {i: gamma[c] * float(dy[i]) for i in indices}
        dvar = 0.0
        for i in indices:
            dvar += dxhat[i] * (float(x[i]) - mean[c]) * -0.5 * (var[c] + eps) ** -1.5
        dmean = 0.0
        for i in indices:
            dmean += -dxhat[i] * s + dvar * -2.0 * (float(x[i]) - mean[c]) / m
        for i in indices:
            dx[i] = dxhat[i] * s + dvar * 2.0 * (float(x[i]) - mean[c]) / m + dmean / m
            dgamma[c] += float(dy[i]) * (float(x[i]) - mean[c]) * s
            dbeta[c] += float(dy[i])
    return dx, dgamma, dbeta


def running_update(
    running_mean: np.ndarray, running_var: np.ndarray, x: np.ndarray, momentum: float, convention: str
) -> tuple[np.ndarray, np.ndarray]:
    """The running statistics after one training batch ``x``, by each convention's documented rule.

    * ``"pytorch"``: ``running ← (1 − momentum)·running + momentum·batch``, with the unbiased variance
      ``σ²·M/(M − 1)``;
    * ``"keras"``: ``running ← momentum·running + (1 − momentum)·batch``, with the biased variance.
    """
    mean, var = batch_moments(x)
    m = x.size // x.shape[1]
    if convention == "pytorch":
        keep, new, var = 1.0 - momentum, momentum, var * m / (m - 1)
    elif convention == "keras":
        keep, new = momentum, 1.0 - momentum
    else:
        raise ValueError(f"running_update: convention must be 'pytorch' or 'keras', got {convention!r}")
    return keep * running_mean + new * mean, keep * running_var + new * var
