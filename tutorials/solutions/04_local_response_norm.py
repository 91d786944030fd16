"""Solutions to the exercises of tutorials/04_local_response_norm.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


def _window_sum(t, before, after):
    """out[:, i] = sum of t[:, j] for j in [i - before, i + after], clipped to the valid channels."""
    channels = t.shape[1]
    return np.stack(
        [t[:, max(0, i - before) : min(channels, i + after + 1)].sum(axis=1) for i in range(channels)], axis=1
    )


# Exercise 1
def lrn_forward(a, size, alpha, beta, k):
    """a (N, C, ...) -> b of the same shape: b_i = a_i / (k + alpha * sum of a_j**2 over the window)**beta."""
    s = k + alpha * _window_sum(a * a, size // 2, (size - 1) // 2)  # alpha times the plain sum (the paper's)
    return a * s**-beta


# Exercise 2
def lrn_backward(a, dy, size, alpha, beta, k):
    """a (N, C, ...) the forward input, dy = dL/db (same shape)  ->  dL/da."""
    s = k + alpha * _window_sum(a * a, size // 2, (size - 1) // 2)
    b = a * s**-beta
    t = dy * b / s  # g_i a_i s_i^(-beta-1)
    # {i : m in W(i)} is the mirrored window: (size - 1) // 2 channels before m, size // 2 after it
    u = _window_sum(t, (size - 1) // 2, size // 2)
    return dy * s**-beta - 2 * alpha * beta * a * u
