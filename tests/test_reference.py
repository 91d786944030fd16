"""The naive references (:mod:`minialex.reference`) checked on their own, then the fast layers against them.

A reference is only worth its name if it is right independently of the fast code: its backward passes are
checked against central differences of its own forward (float64, relative error <= 1e-6 per array) and
against PyTorch (float64, 1e-10); im2col/col2im against the adjoint identity. Then the fast layers' backward
passes, which the gradient checks already cover, are compared with the references output for output.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CONV_GRID, GRADCHECK_BOUND, LRN_GRID, POOL_GRID, TORCH_BOUND, ConvCase, dev, host, lrn_id, pool_id

from minialex import reference
from minialex.errors import LayerInputError
from minialex.gradcheck import numerical_gradient, rel_error
from minialex.layers import LocalResponseNorm, MaxPool2d

F64_TORCH = TORCH_BOUND[np.float64]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _numerical(loss, array: np.ndarray) -> np.ndarray:
    """Central differences of ``loss()`` with respect to the host array ``array`` (perturbed in place)."""
    return numerical_gradient(loss, array)


# -- the references against finite differences of their own forward --------------------------------------------

SMALL_CONVS = [
    ConvCase(2, 2, 4, 5, 6, kernel=3, stride=2, padding=1, groups=2),
    ConvCase(1, 3, 2, 7, 5, kernel=(3, 2), stride=(1, 2), padding=(0, 1)),
    ConvCase(1, 2, 2, 9, 9, kernel=5, stride=4, padding=2),
]


@pytest.mark.parametrize("case", SMALL_CONVS, ids=[c.id for c in SMALL_CONVS])
def test_reference_conv_backward_is_the_gradient_of_its_forward(case):
    rng = _rng(0)
    x = rng.standard_normal((case.n, case.c_in, case.h, case.w))
    weight = rng.standard_normal((case.c_out, case.c_in // case.groups, *case.kernel_pair))
    bias = rng.standard_normal(case.c_out)
    args = (case.stride, case.padding, case.groups)
    y = reference.conv2d_forward(x, weight, bias, *args)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = reference.conv2d_backward(dy, x, weight, *args)

    def loss() -> float:
        return float((reference.conv2d_forward(x, weight, bias, *args) * dy).sum())

    assert rel_error(dx, _numerical(loss, x)) <= GRADCHECK_BOUND
    assert rel_error(dw, _numerical(loss, weight)) <= GRADCHECK_BOUND
    assert rel_error(db, _numerical(loss, bias)) <= GRADCHECK_BOUND


@pytest.mark.parametrize("case", LRN_GRID[:4] + LRN_GRID[-2:], ids=[lrn_id(c) for c in LRN_GRID[:4] + LRN_GRID[-2:]])
def test_reference_lrn_backward_is_the_gradient_of_its_forward(case):
    c, size, alpha, beta, k = case
    x = _rng(1).standard_normal((2, c, 2, 2))
    dy = _rng(2).standard_normal(x.shape)
    dx = reference.lrn_backward(dy, x, size, alpha, beta, k)
    numeric = _numerical(lambda: float((reference.lrn_forward(x, size, alpha, beta, k) * dy).sum()), x)
    assert rel_error(dx, numeric) <= GRADCHECK_BOUND


def test_reference_maxpool_backward_routes_each_window_to_its_winner():
    x = np.array([[[[1.0, 5.0, 2.0], [4.0, 3.0, 0.0], [7.0, 6.0, 8.0]]]])
    y, winners = reference.maxpool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(y[0, 0], [[5.0, 5.0], [7.0, 8.0]])
    np.testing.assert_array_equal(winners[0, 0], [[[0, 1], [0, 1]], [[2, 0], [2, 2]]])
    dx = reference.maxpool2d_backward(np.array([[[[1.0, 2.0], [4.0, 8.0]]]]), winners, x.shape)
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0], [4.0, 0.0, 8.0]])  # 1 + 2 overlap


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"), [((2, 2, 5, 6), 3, 2, 1), ((1, 3, 7, 4), (3, 2), 1, (1, 0))]
)
def test_reference_col2im_is_the_adjoint_of_reference_im2col(shape, kernel, stride, padding):
    x = _rng(3).standard_normal(shape)
    cols_x = reference.im2col(x, kernel, stride, padding)
    c = _rng(4).standard_normal(cols_x.shape)
    lhs = float((reference.col2im(c, shape, kernel, stride, padding) * x).sum())
    rhs = float((c * cols_x).sum())
    assert abs(lhs - rhs) <= 1e-12 * float((abs(c) * abs(cols_x)).sum())


# -- the references against PyTorch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_GRID, ids=[c.id for c in CONV_GRID])
def test_reference_conv_matches_torch(case, torch):
    rng = _rng(5)
    x = rng.standard_normal((case.n, case.c_in, case.h, case.w))
    weight = rng.standard_normal((case.c_out, case.c_in // case.groups, *case.kernel_pair))
    bias = rng.standard_normal(case.c_out) if case.bias else None
    y = reference.conv2d_forward(x, weight, bias, case.stride, case.padding, case.groups)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = reference.conv2d_backward(dy, x, weight, case.stride, case.padding, case.groups)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, case.stride, case.padding, groups=case.groups)
    yt.backward(torch.tensor(dy))
    for ours, theirs in [(y, yt.detach()), (dx, xt.grad), (dw, wt.grad)] + ([(db, bt.grad)] if case.bias else []):
        theirs = theirs.numpy()
        assert np.abs(ours - theirs).max() <= F64_TORCH * np.abs(theirs).max()


@pytest.mark.parametrize("case", LRN_GRID, ids=[lrn_id(c) for c in LRN_GRID])
def test_reference_lrn_matches_torch(case, torch):
    c, size, alpha, beta, k = case
    x = _rng(6).standard_normal((2, c, 3, 2))
    dy = _rng(7).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)(xt)  # PyTorch divides alpha by size
    yt.backward(torch.tensor(dy))
    y, dx = reference.lrn_forward(x, size, alpha, beta, k), reference.lrn_backward(dy, x, size, alpha, beta, k)
    assert np.abs(y - yt.detach().numpy()).max() <= F64_TORCH * np.abs(y).max()
    assert np.abs(dx - xt.grad.numpy()).max() <= F64_TORCH * np.abs(dx).max()


@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_reference_maxpool_matches_torch_with_ties(case, torch):
    shape, k, s, p = case
    x = _rng(8).integers(0, 3, shape).astype(np.float64)  # ties everywhere
    y, winners = reference.maxpool2d_forward(x, k, s, p)
    dy = 2.0 ** _rng(9).integers(0, 20, y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, k, s, p)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(reference.maxpool2d_backward(dy, winners, shape), xt.grad.numpy())


# -- the fast layers' backward passes against the references ------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_GRID, ids=[c.id for c in CONV_GRID])
def test_conv2d_backward_matches_the_reference(case):
    layer = case.build()
    x = _rng(10).standard_normal((case.n, case.c_in, case.h, case.w))
    y = layer.forward(dev(x))
    dy = _rng(11).standard_normal(tuple(y.shape))
    dx = layer.backward(dev(dy))
    bias = layer.params.get("bias")
    weight = layer.params["weight"]
    expected_y = reference.conv2d_forward(x, weight, bias, case.stride, case.padding, case.groups)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, weight, case.stride, case.padding, case.groups)
    pairs = [(y, expected_y), (dx, ref_dx), (layer.grads["weight"], ref_dw)]
    if case.bias:
        pairs.append((layer.grads["bias"], ref_db))
    for ours, theirs in pairs:  # the same sums in another order (BLAS): agreement to rounding
        assert np.abs(host(ours) - theirs).max() <= 1e-13 * np.abs(theirs).max()


@pytest.mark.parametrize("case", LRN_GRID, ids=[lrn_id(c) for c in LRN_GRID])
def test_lrn_backward_matches_the_reference(case):
    c, size, alpha, beta, k = case
    x = _rng(12).standard_normal((2, c, 3, 2))
    dy = _rng(13).standard_normal(x.shape)
    layer = LocalResponseNorm(size, alpha, beta, k)
    layer.forward(dev(x))
    expected = reference.lrn_backward(dy, x, size, alpha, beta, k)
    assert np.abs(host(layer.backward(dev(dy))) - expected).max() <= 1e-13 * np.abs(expected).max()


@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_maxpool_matches_the_reference_with_ties(case):
    shape, k, s, p = case
    x = _rng(14).integers(0, 4, shape).astype(np.float64)
    pool = MaxPool2d(k, s, p)
    y_ref, winners = reference.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(host(pool.forward(dev(x))), y_ref)
    dy = 2.0 ** _rng(15).integers(0, 20, y_ref.shape)
    np.testing.assert_array_equal(host(pool.backward(dev(dy))), reference.maxpool2d_backward(dy, winners, shape))


# -- the references check what they are given ---------------------------------------------------------------------------


def test_reference_errors_name_the_function():
    with pytest.raises(LayerInputError, match=r"reference\.conv2d_forward: .*groups=2"):
        reference.conv2d_forward(np.zeros((1, 3, 4, 4)), np.zeros((2, 1, 3, 3)), groups=2)
    with pytest.raises(LayerInputError, match=r"reference\.conv2d_backward: expected dy of shape \(1, 2, 2, 2\)"):
        reference.conv2d_backward(np.zeros((1, 2, 3, 3)), np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 3, 3)))
    with pytest.raises(LayerInputError, match=r"reference\.im2col: kernel 5 is larger than the padded size 4"):
        reference.im2col(np.zeros((1, 1, 4, 4)), 5)
    with pytest.raises(LayerInputError, match=r"reference LRN: dy has shape"):
        reference.lrn_backward(np.zeros((1, 2)), np.zeros((1, 3)))


def test_references_keep_the_dtype():
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    assert reference.conv2d_forward(x, w).dtype == np.float32
    assert all(a.dtype == np.float32 for a in reference.conv2d_backward(np.ones((1, 2, 2, 2), np.float32), x, w))
    assert reference.lrn_forward(x).dtype == np.float32
    assert reference.lrn_backward(x, x).dtype == np.float32
    assert reference.maxpool2d_forward(x, 2)[0].dtype == np.float32
