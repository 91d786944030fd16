"""Every layer's backward against central differences in float64 (max relative error <= 1e-6 per array),
forward references for LRN and max-pool, and the exact max-pool tie rule.

Inputs are tie-free (distinct entries, away from 0), so no ReLU kink or max-pool tie lies within a
finite-difference step; the tie rule is tested separately and exactly below. Sizes are tiny: a check costs
two forwards per entry of every array.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    CONV_GRID,
    GRADCHECK_BOUND,
    LRN_GRID,
    POOL_GRID,
    ConvCase,
    dev,
    host,
    lrn_id,
    pool_id,
    rel_diff,
    tie_free,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import minialex
from minialex import reference
from minialex.gradcheck import check_layer, check_model, numerical_gradient, rel_error
from minialex.layers import (
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)


def assert_all_within(errors: dict[str, float], bound: float = GRADCHECK_BOUND) -> None:
    worst = {name: err for name, err in errors.items() if not err <= bound}
    assert not worst, f"relative errors above {bound}: {worst} (all: {errors})"


# -- convolution --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CONV_GRID, ids=[c.id for c in CONV_GRID])
def test_conv_gradients(case: ConvCase):
    conv = case.build()
    errors = check_layer(conv, tie_free((case.n, case.c_in, case.h, case.w), seed=1))
    assert set(errors) == {"x", *conv.params}
    assert_all_within(errors)


@settings(max_examples=25)
@given(
    n=st.integers(1, 2),
    groups=st.sampled_from([1, 2, 4]),
    per_group_in=st.integers(1, 2),
    per_group_out=st.integers(1, 2),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    sh=st.integers(1, 4),
    sw=st.integers(1, 4),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    extra_h=st.integers(0, 4),
    extra_w=st.integers(0, 4),
    bias=st.booleans(),
)
def test_conv_gradients_random_configurations(
    n, groups, per_group_in, per_group_out, kh, kw, sh, sw, ph, pw, extra_h, extra_w, bias
):
    minialex.seed(0)
    # The smallest input whose padded size still holds the kernel, plus a few rows and columns.
    h, w = max(1, kh - 2 * ph) + extra_h, max(1, kw - 2 * pw) + extra_w
    case = ConvCase(n, groups * per_group_in, groups * per_group_out, h, w, (kh, kw), (sh, sw), (ph, pw), groups, bias)
    conv = case.build()
    assert_all_within(check_layer(conv, tie_free((n, case.c_in, h, w), seed=2)))


# -- local response normalization --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LRN_GRID, ids=[lrn_id(c) for c in LRN_GRID])
def test_lrn_forward_matches_the_paper_formula(case):
    c, size, alpha, beta, k = case
    x = host(tie_free((2, c, 3, 2), seed=3, scale=2.0))
    y = LocalResponseNorm(size, alpha, beta, k).forward(dev(x))
    assert rel_diff(y, reference.lrn_forward(x, size, alpha, beta, k)) <= 1e-14


def test_lrn_window_of_the_paper_by_hand():
    """One pixel, 4 channels, n = 3, k = 0, alpha = 1, beta = 1: b_i = a_i / Σ_{|j−i|≤1} a_j²."""
    a = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    expected = np.array([1 / (1 + 4), 2 / (1 + 4 + 9), 3 / (4 + 9 + 16), 4 / (9 + 16)]).reshape(1, 4, 1, 1)
    y = LocalResponseNorm(3, alpha=1.0, beta=1.0, k=1e-300).forward(dev(a))
    assert rel_diff(y, expected) <= 1e-15


@pytest.mark.parametrize("case", LRN_GRID, ids=[lrn_id(c) for c in LRN_GRID])
def test_lrn_gradients(case):
    c, size, alpha, beta, k = case
    assert_all_within(check_layer(LocalResponseNorm(size, alpha, beta, k), tie_free((2, c, 3, 2), seed=4, scale=1.5)))


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3), (1, 6, 2, 2, 2)], ids=["2d", "3d", "5d"])
def test_lrn_gradients_other_ranks(shape):
    assert_all_within(check_layer(LocalResponseNorm(3, alpha=1.0), tie_free(shape, seed=5)))


@settings(max_examples=25)
@given(
    channels=st.integers(1, 9),
    size=st.integers(1, 8),
    alpha=st.floats(1e-3, 2.0),
    beta=st.floats(0.1, 2.0),
    k=st.floats(0.5, 3.0),
    n=st.integers(1, 2),
)
def test_lrn_gradients_random_configurations(channels, size, alpha, beta, k, n):
    x = tie_free((n, channels, 2, 3), seed=6, scale=1.5)
    layer = LocalResponseNorm(size, alpha, beta, k)
    assert rel_diff(layer.forward(x), reference.lrn_forward(host(x), size, alpha, beta, k)) <= 1e-13
    assert_all_within(check_layer(layer, x))


# -- max-pooling ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_maxpool_forward_and_backward_match_naive_loops(case):
    shape, k, s, p = case
    x = host(tie_free(shape, seed=7))
    dy_shape = MaxPool2d(k, s, p).output_shape(shape)
    dy = np.random.default_rng(8).standard_normal(dy_shape)
    pool = MaxPool2d(k, s, p)
    y = pool.forward(dev(x))
    y_ref, winners = reference.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(host(y), y_ref)
    assert rel_diff(pool.backward(dev(dy)), reference.maxpool2d_backward(dy, winners, shape)) <= 1e-15


@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_maxpool_channel_major_input_and_gradient_match_naive_loops(case):
    # After a convolution, x and dy are stored (C, N, H, W); the one-pass scatter walks that order.
    shape, k, s, p = case
    n, c = shape[:2]
    x = host(tie_free((c, n, *shape[2:]), seed=7)).transpose(1, 0, 2, 3)
    pool = MaxPool2d(k, s, p)
    dy_shape = pool.output_shape(shape)
    dy = np.random.default_rng(8).standard_normal((dy_shape[1], dy_shape[0], *dy_shape[2:])).transpose(1, 0, 2, 3)
    y = pool.forward(dev(x))
    _, winners = reference.maxpool2d_forward(x, k, s, p)
    dx = pool.backward(dev(dy))
    assert rel_diff(dx, reference.maxpool2d_backward(dy, winners, shape)) <= 1e-15
    assert host(y).shape == dy_shape and host(dx).shape == shape
    if n > 1:  # laid out like its input, channel-major
        assert dx.strides[1] > dx.strides[0] and y.strides[1] > y.strides[0]


@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_maxpool_gradients(case):
    shape, k, s, p = case
    assert_all_within(check_layer(MaxPool2d(k, s, p), tie_free(shape, seed=9)))


@settings(max_examples=25)
@given(
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    data=st.data(),
)
def test_maxpool_gradients_random_configurations(kh, kw, sh, sw, data):
    ph = data.draw(st.integers(0, kh // 2), label="ph")
    pw = data.draw(st.integers(0, kw // 2), label="pw")
    h = data.draw(st.integers(max(1, kh - 2 * ph), 7), label="h")
    w = data.draw(st.integers(max(1, kw - 2 * pw), 7), label="w")
    x = tie_free((1, 2, h, w), seed=10)
    pool = MaxPool2d((kh, kw), (sh, sw), (ph, pw))
    y_ref, _ = reference.maxpool2d_forward(host(x), (kh, kw), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(host(pool.forward(x)), y_ref)
    assert_all_within(check_layer(pool, x))


# -- the exact tie rule and the accumulation over overlapping windows ---------------------------------------------

DY = np.array([[1.0, 2.0], [4.0, 8.0]])  # powers of two: every sum of them identifies its terms


def _pool_dx(x: np.ndarray, k, s, p, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pool = MaxPool2d(k, s, p)
    y = pool.forward(dev(x[None, None]))
    return host(y)[0, 0], host(pool.backward(dev(dy[None, None])))[0, 0]


def test_tie_goes_to_the_first_maximum_in_non_overlapping_windows():
    x = np.array([[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]])
    y, dx = _pool_dx(x, 2, 2, 0, np.array([[3.0, 5.0]]))
    np.testing.assert_array_equal(y, [[1.0, 2.0]])
    np.testing.assert_array_equal(dx, [[3.0, 0.0, 5.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_tie_goes_to_the_first_maximum_in_row_major_order_and_overlaps_add():
    # Five equal maxima; windows of a 3x3/2 pool on 5x5 span rows/columns {0-2, 2-4}.
    x = np.zeros((5, 5))
    for r, c in [(0, 2), (2, 0), (2, 2), (2, 4), (4, 2)]:
        x[r, c] = 7.0
    y, dx = _pool_dx(x, 3, 2, 0, DY)
    np.testing.assert_array_equal(y, np.full((2, 2), 7.0))
    expected = np.zeros((5, 5))
    expected[0, 2] = 1.0 + 2.0  # first in windows (0,0) and (0,1)
    expected[2, 0] = 4.0  # first in window (1,0): (2,0) comes before (2,2) and (4,2)
    expected[2, 2] = 8.0  # first in window (1,1): before (2,4) and (4,2)
    np.testing.assert_array_equal(dx, expected)


def test_constant_input_routes_to_each_windows_top_left():
    _, dx = _pool_dx(np.full((5, 5), 3.0), 3, 2, 0, DY)
    expected = np.zeros((5, 5))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = DY.ravel()
    np.testing.assert_array_equal(dx, expected)


def test_padding_is_minus_infinity_not_zero():
    """All-negative input with padding: the max is a real pixel (−1), never the padding (0 or −inf)."""
    y, dx = _pool_dx(np.full((4, 4), -1.0), 3, 2, 1, DY)
    np.testing.assert_array_equal(y, np.full((2, 2), -1.0))
    expected = np.zeros((4, 4))
    # Each window's first *real* pixel in row-major order: (0,0), (0,1), (1,0), (1,1).
    expected[0, 0], expected[0, 1], expected[1, 0], expected[1, 1] = DY.ravel()
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize(("k", "s", "windows"), [(3, 2, 4), (3, 1, 9), (2, 1, 4)])
def test_a_pixel_that_wins_several_windows_gets_the_sum(k, s, windows):
    x = host(tie_free((5, 5), seed=11))
    x[2, 2] = 5.0  # the global maximum, inside every window that covers it
    out = (5 - k) // s + 1
    dy = 2.0 ** np.arange(out * out).reshape(out, out)
    _, dx = _pool_dx(x, k, s, 0, dy)
    covering = [(a, b) for a in range(out) for b in range(out) if a * s <= 2 < a * s + k and b * s <= 2 < b * s + k]
    assert len(covering) == windows
    assert dx[2, 2] == sum(dy[a, b] for a, b in covering)


TIE_CONFIGS = [((2, 3, 7, 7), 3, 2, 0), ((2, 2, 8, 6), 2, 2, 0), ((1, 3, 8, 7), 3, 2, 1), ((1, 2, 6, 7), 3, 1, 1)]


@pytest.mark.parametrize("case", TIE_CONFIGS, ids=[pool_id(c) for c in TIE_CONFIGS])
def test_tie_rule_on_tie_heavy_inputs_matches_naive_loops(case):
    shape, k, s, p = case
    rng = np.random.default_rng(12)
    x = rng.integers(0, 3, shape).astype(np.float64)  # three values: ties everywhere
    dy = 2.0 ** rng.integers(0, 20, MaxPool2d(k, s, p).output_shape(shape))
    pool = MaxPool2d(k, s, p)
    y_ref, winners = reference.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(host(pool.forward(dev(x))), y_ref)
    np.testing.assert_array_equal(host(pool.backward(dev(dy))), reference.maxpool2d_backward(dy, winners, shape))


@pytest.mark.parametrize("case", TIE_CONFIGS, ids=[pool_id(c) for c in TIE_CONFIGS])
def test_tie_rule_matches_torch(case, torch):
    shape, k, s, p = case
    rng = np.random.default_rng(13)
    x = rng.integers(0, 3, shape).astype(np.float64)
    pool = MaxPool2d(k, s, p)
    y = pool.forward(dev(x))
    dy = 2.0 ** rng.integers(0, 20, y.shape)
    dx = pool.backward(dev(dy))
    xt = torch.tensor(x, requires_grad=True)
    yt, indices = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(host(y), yt.detach().numpy())
    np.testing.assert_array_equal(host(dx), xt.grad.numpy())
    # torch's indices (flat h*W + w of the winner) agree with the naive first-maximum rule.
    _, winners = reference.maxpool2d_forward(x, k, s, p)
    np.testing.assert_array_equal(winners[..., 0] * shape[3] + winners[..., 1], indices.numpy())


def test_relu_derivative_at_zero_is_zero():
    relu = ReLU()
    relu.forward(dev(np.array([-1.0, 0.0, 2.0])))
    np.testing.assert_array_equal(host(relu.backward(dev(np.array([5.0, 5.0, 5.0])))), [0.0, 0.0, 5.0])


# -- the other layers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4, 5)])
def test_relu_gradients(shape):
    assert_all_within(check_layer(ReLU(), tie_free(shape, seed=14)))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_gradients_with_a_fixed_mask(p):
    x = tie_free((4, 3, 2, 2), seed=15)
    layer = Dropout(p)
    minialex.seed(16)
    y = host(layer.forward(x))
    assert 0 < (y == 0).sum() < y.size  # the mask really drops something and keeps something
    assert_all_within(check_layer(layer, x, seed=16))


def test_dropout_gradients_in_eval_mode():
    assert_all_within(check_layer(Dropout(0.5).eval(), tie_free((3, 4), seed=17)))


@pytest.mark.parametrize(("n", "d_in", "d_out", "bias"), [(1, 3, 2, True), (4, 5, 3, True), (3, 6, 4, False)])
def test_linear_gradients(n, d_in, d_out, bias):
    layer = Linear(d_in, d_out, bias=bias, dtype=np.float64)
    if bias:
        layer.params["bias"] = tie_free((d_out,), seed=18)
    errors = check_layer(layer, tie_free((n, d_in), seed=19))
    assert set(errors) == {"x", *layer.params}
    assert_all_within(errors)


def test_flatten_gradients():
    assert_all_within(check_layer(Flatten(), tie_free((2, 3, 2, 2), seed=20)))


@pytest.mark.parametrize(("n", "classes", "scale", "dloss"), [(1, 2, 1.0, 1.0), (4, 6, 3.0, 1.0), (5, 10, 10.0, 2.5)])
def test_softmax_cross_entropy_gradient(n, classes, scale, dloss):
    logits = tie_free((n, classes), seed=21, scale=scale)
    labels = dev(np.random.default_rng(22).integers(0, classes, n))
    loss_layer = SoftmaxCrossEntropy()
    loss_layer.forward(logits, labels)
    analytic = loss_layer.backward(dloss)
    numeric = numerical_gradient(lambda: dloss * float(loss_layer.forward(logits, labels)), logits)
    assert analytic.dtype == np.float64
    assert rel_error(analytic, numeric) <= GRADCHECK_BOUND


def test_softmax_cross_entropy_value_by_hand():
    # Two classes, logits (0, ln 3): p = (1/4, 3/4).
    logits = dev(np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]]))
    loss = SoftmaxCrossEntropy()
    value = float(loss.forward(logits, dev(np.array([0, 1]))))
    assert value == pytest.approx(-(np.log(0.25) + np.log(0.75)) / 2, rel=1e-15)
    np.testing.assert_allclose(host(loss.probs), [[0.25, 0.75], [0.25, 0.75]], rtol=1e-15)
    np.testing.assert_allclose(host(loss.backward()), [[-0.375, 0.375], [0.125, -0.125]], rtol=1e-14)


# -- a whole small network of every layer --------------------------------------------------------------------------


def _small_alexnet() -> Sequential:
    f64 = np.float64
    return Sequential(
        ("conv1", Conv2d(2, 4, (3, 3), stride=1, padding=1, dtype=f64)),
        ("relu1", ReLU()),
        ("norm1", LocalResponseNorm(3, alpha=1.0, beta=0.75, k=2.0)),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(4, 4, 3, padding=1, groups=2, dtype=f64)),
        ("relu2", ReLU()),
        ("norm2", LocalResponseNorm(4, alpha=0.5, beta=0.75, k=1.0)),
        ("pool2", MaxPool2d(3, 2, padding=1)),
        ("flatten", Flatten()),
        ("fc1", Linear(4 * 2 * 2, 6, dtype=f64)),
        ("relu3", ReLU()),
        ("drop", Dropout(0.5)),
        ("fc2", Linear(6, 5, dtype=f64)),
    )


def test_whole_small_network():
    model = _small_alexnet()
    for name, layer in model.named_layers():
        if "bias" in layer.params:  # non-zero biases, so that their gradients are exercised off the origin
            layer.params["bias"] = tie_free(layer.params["bias"].shape, seed=len(name), scale=0.1)
    x = tie_free((3, 2, 9, 9), seed=23, scale=2.0)
    labels = dev(np.array([0, 3, 4]))
    assert model.forward(x).shape == (3, 5)
    errors = check_model(model, SoftmaxCrossEntropy(), x, labels, seed=24)
    assert set(errors) == {"x", *model.params}
    assert_all_within(errors)
