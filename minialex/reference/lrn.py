"""Local response normalization (the paper, §3.3) as its formula states it, channel by channel.

For channel i of C at one pixel, with a = the input and the window W(i) of ``size`` = n channels::

    W(i) = [max(0, i − ⌊n/2⌋), min(C − 1, i + ⌊(n − 1)/2⌋)]      (symmetric for odd n; for even n the
    s_i  = k + alpha · Σ_{j ∈ W(i)} a_j²                          extra channel is before i, as in PyTorch)
    b_i  = a_i · s_i^(−beta)

Backward. b_i depends on a_m directly (m = i) and through s_i whenever m ∈ W(i)::

    ∂b_i/∂a_m = [i = m] · s_i^(−beta) − 2·alpha·beta · a_i · a_m · s_i^(−beta−1) · [m ∈ W(i)]
    dL/da_m   = Σ_i dL/db_i · ∂b_i/∂a_m

computed below literally, as a double loop over (i, m); every pixel and image at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import LayerInputError


def window(i: int, channels: int, size: int) -> range:
    """The channels W(i) whose squares normalise channel ``i``."""
    return range(max(0, i - size // 2), min(channels - 1, i + (size - 1) // 2) + 1)


def _scale(a: np.ndarray, size: int, alpha: float, k: float) -> np.ndarray:
    """s (same shape as a): s[:, i] = k + alpha · Σ_{j ∈ W(i)} a[:, j]²."""
    if a.ndim < 2:
        raise LayerInputError(f"reference LRN: expected an input (N, C, ...), got shape {a.shape}")
    s = np.empty_like(a)
    for i in range(a.shape[1]):
        s[:, i] = k + alpha * sum(a[:, j] ** 2 for j in window(i, a.shape[1], size))
    return s


def lrn_forward(x: Any, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> np.ndarray:
    """``b_i = a_i / (k + alpha · Σ_{j ∈ W(i)} a_j²)^beta`` over axis 1 of ``x`` (N, C, ...); same shape out.

    ``alpha`` multiplies the plain sum, as in the paper (PyTorch and Caffe divide it by ``size``).
    """
    a = backend.to_numpy(x)
    return a * _scale(a, size, alpha, k) ** -beta


def lrn_backward(
    dy: Any, x: Any, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> np.ndarray:
    """dL/dx of :func:`lrn_forward` at ``x`` for the upstream gradient ``dy`` (both (N, C, ...)), by the double sum."""
    a, g = backend.to_numpy(x), backend.to_numpy(dy)
    if g.shape != a.shape:
        raise LayerInputError(f"reference LRN: dy has shape {g.shape}, x has {a.shape}")
    s = _scale(a, size, alpha, k)
    channels = a.shape[1]
    dx = np.zeros_like(a)
    for i in range(channels):
        for m in range(channels):
            partial = (s[:, i] ** -beta) if i == m else np.zeros_like(a[:, i])
            if m in window(i, channels, size):
                partial = partial - 2 * alpha * beta * a[:, i] * a[:, m] * s[:, i] ** (-beta - 1)
            dx[:, m] += g[:, i] * partial
    return dx
