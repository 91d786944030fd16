"""Solutions to the exercises of tutorials/03_relu_pool_dropout.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


# Exercise 1
def relu_backward(x, dy):
    """x: the forward input, dy = dL/dy (same shape)  ->  dL/dx."""
    return dy * (x > 0)  # a new array; the boolean mask keeps dy's dtype


# Exercise 2
def maxpool_backward(x, dy, k, stride):
    """x (N, C, H, W) the forward input, dy (N, C, OH, OW)  ->  dx (N, C, H, W)."""
    n, c, oh, ow = dy.shape
    dx = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for r in range(oh):
                for q in range(ow):
                    window = x[b, ch, r * stride : r * stride + k, q * stride : q * stride + k]
                    i, j = np.unravel_index(np.argmax(window), window.shape)  # argmax returns the first maximum
                    dx[b, ch, r * stride + i, q * stride + j] += dy[b, ch, r, q]  # += : windows overlap
    return dx
