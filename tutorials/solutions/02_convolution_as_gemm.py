"""Solutions to the exercises of tutorials/02_convolution_as_gemm.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np

from minialex.layers import conv_output_size


# Exercise 1
def im2col_naive(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW); row (c, i, j), column (n, oh, ow)."""
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    column = 0
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                window = xpad[b, :, r * stride : r * stride + kh, q * stride : q * stride + kw]  # (C, kh, kw)
                cols[:, column] = window.ravel()  # C order: (c, i, j)
                column += 1
    return cols


# Exercise 2
def col2im_naive(cols, x_shape, kh, kw, stride=1, padding=0):
    """cols (C*kh*kw, N*OH*OW), x_shape (N, C, H, W) -> dx (N, C, H, W): scatter-add every column back."""
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    dpad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    column = 0
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                window = cols[:, column].reshape(c, kh, kw)
                dpad[b, :, r * stride : r * stride + kh, q * stride : q * stride + kw] += window  # add, never assign
                column += 1
    return dpad[:, :, padding : padding + h, padding : padding + w]
