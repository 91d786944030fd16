"""im2col / col2im against naive loops, the adjoint identity, dtypes, views, and the conv built on them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import dev, host, rel_diff

from minialex import reference
from minialex.errors import LayerInputError
from minialex.layers import Conv2d, col2im, conv_output_size, im2col

# (x shape, kernel, stride, padding): non-square kernels and inputs, strides 1/2/4 incl. shapes they do not tile.
SHAPES = [
    ((1, 1, 4, 4), 1, 1, 0),
    ((2, 3, 5, 6), 3, 1, 0),
    ((2, 2, 6, 5), 3, 1, 1),
    ((1, 3, 7, 8), (3, 2), (2, 1), (1, 0)),
    ((2, 2, 9, 8), 3, 2, 0),  # (9 − 3) / 2 = 3 tiles; (8 − 3) / 2 = 2.5 does not: the last column is unused
    ((1, 2, 8, 8), 3, 2, 2),  # (8 + 4 − 3) / 2 = 4.5: the last padded row is never visited
    ((2, 1, 13, 15), 5, 4, 0),
    ((1, 2, 17, 16), 11, 4, 0),
    ((1, 1, 12, 10), (2, 5), (4, 3), (2, 1)),
    ((1, 2, 5, 5), 5, 1, 2),
]
IDS = [f"{'x'.join(map(str, s))}-k{k}-s{st}-p{p}".replace(" ", "") for s, k, st, p in SHAPES]


def _x(shape: tuple[int, ...], seed: int = 0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(("shape", "kernel", "stride", "padding"), SHAPES, ids=IDS)
def test_im2col_matches_naive_loops(shape, kernel, stride, padding):
    x = _x(shape)
    cols = im2col(dev(x), kernel, stride, padding)
    expected = reference.im2col(x, kernel, stride, padding)
    assert cols.shape == expected.shape
    np.testing.assert_array_equal(host(cols), expected)  # a pure copy: exact


@pytest.mark.parametrize(("shape", "kernel", "stride", "padding"), SHAPES, ids=IDS)
def test_col2im_matches_naive_scatter_add(shape, kernel, stride, padding):
    expected_cols_shape = reference.im2col(np.zeros(shape), kernel, stride, padding).shape
    cols = _x(expected_cols_shape, seed=1)
    dx = col2im(dev(cols), shape, kernel, stride, padding)
    assert dx.shape == shape
    # Overlapping windows add several floats per pixel, possibly in another order than the loop: 1e-14.
    assert rel_diff(dx, reference.col2im(cols, shape, kernel, stride, padding)) <= 1e-14


@pytest.mark.parametrize(("shape", "kernel", "stride", "padding"), SHAPES, ids=IDS)
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, stride, padding):
    """<col2im(C), X> == <C, im2col(X)> for all X, C: what makes dL/dx = col2im(dL/dcols) right."""
    x = dev(_x(shape, seed=2))
    cols_x = im2col(x, kernel, stride, padding)
    c = dev(_x(tuple(cols_x.shape), seed=3))
    lhs = float((col2im(c, shape, kernel, stride, padding) * x).sum())
    rhs = float((c * cols_x).sum())
    scale = float((abs(c) * abs(cols_x)).sum())  # the size of the terms being summed
    assert abs(lhs - rhs) <= 1e-12 * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x = dev(_x((2, 3, 6, 5), dtype=dtype))
    cols = im2col(x, 3, 2, 1)
    assert cols.dtype == dtype
    assert col2im(cols, (2, 3, 6, 5), 3, 2, 1).dtype == dtype


def test_im2col_output_is_c_contiguous():
    cols = im2col(dev(_x((2, 3, 6, 5))), (3, 2), 1, 1)
    assert cols.flags.c_contiguous


@pytest.mark.parametrize("view", ["transposed", "strided", "channel_major"])
def test_non_contiguous_input(view):
    shape = (2, 3, 7, 6)
    x = _x(shape)
    if view == "transposed":  # W and H swapped in memory
        xv = dev(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    elif view == "strided":  # every other column of a wider array
        big = np.zeros((2, 3, 7, 12))
        big[..., ::2] = x
        xv = dev(big)[..., ::2]
    else:  # the (C, N, H, W) memory layout that Conv2d's output has
        xv = dev(np.ascontiguousarray(x.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    assert not xv.flags.c_contiguous
    np.testing.assert_array_equal(host(im2col(xv, 3, 2, 1)), host(im2col(dev(x), 3, 2, 1)))
    # col2im of a non-contiguous column matrix (a transposed view) equals that of its contiguous copy.
    cols = _x((12, 3 * 3 * 3 * 1), seed=4)  # (N*OH*OW, C*KH*KW) for a 1x3x3x4 input under a 3x3 kernel, pad 1
    np.testing.assert_array_equal(
        host(col2im(dev(cols).T, (1, 3, 3, 4), 3, 1, 1)),
        host(col2im(dev(np.ascontiguousarray(cols.T)), (1, 3, 3, 4), 3, 1, 1)),
    )


def test_inputs_are_not_modified():
    x = _x((2, 3, 6, 5))
    xd = dev(x)
    cols = im2col(xd, 3, 1, 1)
    cols_copy = host(cols).copy()
    col2im(cols, x.shape, 3, 1, 1)
    np.testing.assert_array_equal(host(xd), x)
    np.testing.assert_array_equal(host(cols), cols_copy)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected"),
    [
        (224, 11, 4, 0, 54),
        (227, 11, 4, 0, 55),
        (224, 11, 4, 2, 55),
        (55, 3, 2, 0, 27),
        (13, 3, 1, 1, 13),
        (5, 5, 1, 0, 1),
    ],
)
def test_conv_output_size(size, kernel, stride, padding, expected):
    assert conv_output_size(size, kernel, stride, padding) == expected


def test_errors_name_the_function_and_the_shapes():
    with pytest.raises(LayerInputError, match=r"im2col: expected a 4-d input .*\(2, 3, 4\)"):
        im2col(dev(np.zeros((2, 3, 4))), 3)
    with pytest.raises(LayerInputError, match=r"im2col: kernel 5x5 is larger than the padded input 4x6"):
        im2col(dev(np.zeros((1, 1, 2, 4))), 5, 1, 1)
    with pytest.raises(LayerInputError, match=r"col2im: expected cols of shape \(9, 16\) .* got \(9, 15\)"):
        col2im(dev(np.zeros((9, 15))), (1, 1, 4, 4), 3, 1, 1)
    with pytest.raises(LayerInputError, match="kernel_size must be an int or a pair of ints"):
        im2col(dev(np.zeros((1, 1, 4, 4))), 2.5)


# -- the convolution built on im2col, against a direct loop ----------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "c_out", "kernel", "stride", "padding", "groups"),
    [
        ((2, 3, 7, 6), 4, 3, 1, 1, 1),
        ((1, 4, 9, 8), 6, (3, 2), (2, 1), (1, 0), 2),
        ((2, 4, 6, 6), 4, 1, 2, 0, 4),
        ((1, 2, 17, 18), 2, 11, 4, 2, 2),
    ],
)
def test_conv_forward_matches_direct_convolution(shape, c_out, kernel, stride, padding, groups):
    conv = Conv2d(shape[1], c_out, kernel, stride, padding, groups, dtype=np.float64)
    conv.params["bias"] = dev(np.linspace(-1.0, 1.0, c_out))
    x = _x(shape)
    y = conv.forward(dev(x))
    expected = reference.conv2d_forward(x, conv.params["weight"], conv.params["bias"], stride, padding, groups)
    assert y.shape == expected.shape
    assert rel_diff(y, expected) <= 1e-13


def test_conv1_on_224_pixels_does_not_need_tiling():
    """The paper's conv1 geometry on a 224-px input: 11x11/4 leaves 3 rows and columns unvisited; no assert fires."""
    conv = Conv2d(3, 2, 11, stride=4, dtype=np.float64)
    x = _x((1, 3, 224, 224))
    y = conv.forward(dev(x))
    assert y.shape == (1, 2, 54, 54)
    expected = reference.conv2d_forward(x, conv.params["weight"], None, 4, 0, 1)
    assert rel_diff(y, expected) <= 1e-13
