"""Solutions to the exercises of tutorials/01_chain_rule.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np


# Exercise 1
def linear_backward(x, weight, dy):
    """x (N, D), weight (M, D), dy = dL/dy (N, M)  ->  (dx (N, D), dweight (M, D), dbias (M,))."""
    dx = dy @ weight  # (N, M) @ (M, D)
    dweight = dy.T @ x  # (M, N) @ (N, D): a sum over the batch of outer products
    dbias = dy.sum(axis=0)  # the bias is added to every sample
    return dx, dweight, dbias


# Exercise 2
def softmax_ce_backward(logits, labels):
    """logits (N, K) float, labels (N,) ints in [0, K)  ->  dL/dlogits (N, K)."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # every exponent <= 0: no overflow
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), labels] -= 1.0  # p - onehot
    return p / n  # the loss is a mean over the batch
