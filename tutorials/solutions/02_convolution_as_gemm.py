"""Solutions to the exercises of tutorials/02_convolution_as_gemm.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np

from minialex.layers import conv_output_size


# Exercise 1
def conv_forward_naive(x, w, b, stride=1, padding=0, groups=1):
    """x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), b (C_out,) -> y (N, C_out, OH, OW)."""
    n, _, h, wd = x.shape
    c_out, c_group, kh, kw = w.shape
    per_group = c_out // groups  # filters per group
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, c_out, oh, ow), dtype=x.dtype)
    for i in range(n):
        for o in range(c_out):
            c0 = (o // per_group) * c_group  # the first input channel of filter o's group
            for r in range(oh):
                for q in range(ow):
                    window = xpad[i, c0 : c0 + c_group, r * stride : r * stride + kh, q * stride : q * stride + kw]
                    y[i, o, r, q] = (window * w[o]).sum() + b[o]
    return y


# Exercise 2
def conv_backward_naive(x, w, dy, stride=1, padding=0, groups=1):
    """x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), dy (N, C_out, OH, OW) -> (dx, dw, db)."""
    n, _, h, wd = x.shape
    c_out, c_group, kh, kw = w.shape
    per_group = c_out // groups
    _, _, oh, ow = dy.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = dy.sum(axis=(0, 2, 3))  # the bias is added at every position of every image
    for i in range(n):
        for o in range(c_out):
            c0 = (o // per_group) * c_group
            for r in range(oh):
                for q in range(ow):
                    rows, cols = slice(r * stride, r * stride + kh), slice(q * stride, q * stride + kw)
                    dw[o] += dy[i, o, r, q] * xpad[i, c0 : c0 + c_group, rows, cols]  # each window votes
                    dxpad[i, c0 : c0 + c_group, rows, cols] += dy[i, o, r, q] * w[o]  # add: windows overlap
    return dxpad[:, :, padding : padding + h, padding : padding + wd], dw, db


# Exercise 3
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


# Exercise 4
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
