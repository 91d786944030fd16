"""Max-pooling as the definition states it: the largest pixel of every window, and who it was.

Shapes (as in :class:`minialex.layers.MaxPool2d`)::

    x (N, C, H, W)  ->  y (N, C, OH, OW),    OH = floor((H + 2·ph − KH) / sh) + 1

Forward. Window (a, b) covers rows a·sh − ph ... a·sh − ph + KH − 1 and the matching columns; padding takes
no part (it is never the maximum). Its pixels are visited in row-major order and a later one replaces the
current maximum only if it is *strictly* larger, so a tie goes to the first maximum (PyTorch's rule)::

    y[n, c, a, b] = x[n, c, r*, s*],   (r*, s*) = the first (r, s) of the window with the largest x

Backward. y[n, c, a, b] is a copy of one pixel, so dy[n, c, a, b] goes to that pixel and nowhere else. A
pixel that is the maximum of several overlapping windows receives the *sum* of their gradients::

    dx[n, c, r, s] = Σ_{(a, b) : (r*, s*)(a, b) = (r, s)} dy[n, c, a, b]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend
from minialex.errors import LayerInputError
from minialex.reference.convolution import IntPair, output_size, pair


def maxpool2d_forward(
    x: Any, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of every window and where it is.

    Parameters
    ----------
    x : (N, C, H, W)
    kernel_size, stride, padding : int or pair; ``stride=None`` means the kernel size

    Returns
    -------
    y : (N, C, OH, OW)
    winners : (N, C, OH, OW, 2) int64, the (row, column) in ``x`` of each window's first maximum
    """
    x = backend.to_numpy(x)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    n, c, h, w = x.shape
    oh = output_size(h, kh, sh, ph, "reference.maxpool2d_forward")
    ow = output_size(w, kw, sw, pw, "reference.maxpool2d_forward")
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    winners = np.empty((n, c, oh, ow, 2), dtype=np.int64)
    for ni in range(n):
        for ci in range(c):
            for a in range(oh):
                for b in range(ow):
                    best, where = -np.inf, None
                    for i in range(kh):
                        for j in range(kw):
                            r, s = a * sh + i - ph, b * sw + j - pw
                            if 0 <= r < h and 0 <= s < w and (where is None or x[ni, ci, r, s] > best):
                                best, where = x[ni, ci, r, s], (r, s)
                    if where is None:
                        raise LayerInputError(f"reference.maxpool2d_forward: window ({a}, {b}) holds only padding")
                    y[ni, ci, a, b], winners[ni, ci, a, b] = best, where
    return y, winners


def maxpool2d_backward(dy: Any, winners: Any, x_shape: tuple[int, int, int, int]) -> np.ndarray:
    """Each window's gradient added (``+=``, windows overlap) to its winner.

    Parameters
    ----------
    dy : (N, C, OH, OW)
    winners : (N, C, OH, OW, 2), as returned by :func:`maxpool2d_forward`
    x_shape : (N, C, H, W)

    Returns
    -------
    dx : ``x_shape``
    """
    dy, winners = backend.to_numpy(dy), backend.to_numpy(winners)
    if winners.shape != (*dy.shape, 2):
        raise LayerInputError(f"reference.maxpool2d_backward: winners {winners.shape} do not fit dy {dy.shape}")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n, c, oh, ow = dy.shape
    for ni in range(n):
        for ci in range(c):
            for a in range(oh):
                for b in range(ow):
                    r, s = winners[ni, ci, a, b]
                    dx[ni, ci, r, s] += dy[ni, ci, a, b]
    return dx
