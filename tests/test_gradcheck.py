"""The gradient checker itself: its error measure, its differences, and proof that it catches broken layers.

A checker that always passes proves nothing, so half of this file builds deliberately wrong backward passes
(the classic ones: an identity ReLU backward, a max-pool backward that assigns where it must add, an LRN
backward with an unmirrored window, a forgotten factor) and asserts that the check fails for each.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, dev, host, tie_free

from minialex import backend
from minialex.errors import LayerInputError
from minialex.gradcheck import check_layer, check_model, numerical_gradient, rel_error
from minialex.gradcheck import tie_free as gc_tie_free
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
from minialex.layers.lrn import channel_window_sum

xp = backend.xp

# -- rel_error -----------------------------------------------------------------------------------------------------


def test_rel_error_is_zero_for_equal_arrays():
    a = dev(np.array([1.0, -2.0, 3.0]))
    assert rel_error(a, a.copy()) == 0.0


def test_rel_error_is_worst_difference_over_the_array_scale():
    # max|a − n| = 0.5; max|a| + max|n| = 2 + 2.5
    assert rel_error(dev(np.array([1.0, 2.0])), dev(np.array([1.0, 2.5]))) == pytest.approx(0.5 / 4.5, rel=1e-15)


def test_rel_error_uses_the_array_scale_not_each_element():
    # A tiny entry that is 100 % wrong is harmless next to a large correct one (per-element errors would say 1.0).
    assert rel_error(dev(np.array([1e-9, 1.0])), dev(np.array([0.0, 1.0]))) == pytest.approx(1e-9 / 2.0)


def test_rel_error_floor_avoids_dividing_by_zero():
    assert rel_error(dev(np.zeros(3)), dev(np.zeros(3))) == 0.0
    assert rel_error(dev(np.array([1e-10])), dev(np.array([0.0]))) == pytest.approx(1e-10 / 1e-8)
    assert rel_error(dev(np.zeros((0, 3))), dev(np.zeros((0, 3)))) == 0.0


def test_rel_error_rejects_different_shapes():
    with pytest.raises(LayerInputError, match=r"shapes differ, \(3,\) vs \(1, 3\)"):
        rel_error(dev(np.zeros(3)), dev(np.zeros((1, 3))))


# -- numerical_gradient ------------------------------------------------------------------------------------------


def test_numerical_gradient_of_a_known_function():
    x = tie_free((3, 4), seed=1)
    before = host(x).copy()
    # f(x) = Σ sin(x) · x³ has ∂f/∂x = cos(x) x³ + 3 sin(x) x².
    grad = numerical_gradient(lambda: float((xp.sin(x) * x**3).sum()), x)
    xs = host(x)
    expected = np.cos(xs) * xs**3 + 3 * np.sin(xs) * xs**2
    assert grad.shape == x.shape and grad.dtype == np.float64
    # Central differences: truncation h²/6·|f'''| ≈ 1e-12, rounding ε|f|/h ≈ 1e-10.
    assert rel_error(grad, expected) <= 1e-9
    np.testing.assert_array_equal(host(x), before)  # every entry restored bit for bit


def test_numerical_gradient_rejects_float32():
    x = dev(np.ones(3, dtype=np.float32))
    with pytest.raises(LayerInputError, match=r"float64.*float32"):
        numerical_gradient(lambda: float(x.sum()), x)


def test_numerical_gradient_rejects_non_contiguous_arrays():
    x = dev(np.ones((3, 4))).T
    with pytest.raises(LayerInputError, match="C-contiguous"):
        numerical_gradient(lambda: float(x.sum()), x)


def test_tie_free_entries_are_distinct_and_away_from_zero():
    x = host(gc_tie_free((4, 5, 6), seed=3))
    assert x.dtype == np.float64 and x.shape == (4, 5, 6)
    values = np.sort(x.ravel())
    assert np.diff(values).min() > 1e-3  # far more than a finite-difference step (1e-6)
    assert np.abs(values).min() >= 1e-3
    assert values.min() >= -1.0 - 1e-2 and values.max() <= 1.0 + 1e-2
    np.testing.assert_array_equal(x, host(gc_tie_free((4, 5, 6), seed=3)))  # reproducible


# -- check_layer / check_model pass on correct layers and fail on broken ones ------------------------------------


class IdentityBackwardReLU(ReLU):
    """Forgets the mask: dL/dx = dL/dy."""

    def backward(self, dy, need_input_grad=True):
        return dy.copy()


class AssigningMaxPool(MaxPool2d):
    """Writes each offset's gradient with ``=`` instead of ``+=``: right only when windows do not overlap."""

    def backward(self, dy, need_input_grad=True):
        argmax, x_shape, _ = self._saved
        n, c, h, w = x_shape
        _, _, oh, ow = argmax.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        for o, (i, j) in enumerate(self._offsets()):
            region = dxpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
            region[...] = xp.where(argmax == o, dy, region)  # the bug: overwrites earlier windows' gradient
        return dxpad[:, :, ph : ph + h, pw : pw + w]


class UnmirroredLRN(LocalResponseNorm):
    """Sums the backward over W(m) instead of {i : m ∈ W(i)}: the same set for odd sizes, wrong for even ones."""

    def backward(self, dy, need_input_grad=True):
        x, scale, power = self._saved
        y = x * power  # the layer keeps x, s and s^(−beta), not its output
        u = channel_window_sum(dy * y / scale, self._before, self._after) * x * (2.0 * self.alpha * self.beta)
        return dy * power - u


class ForgetfulLRN(LocalResponseNorm):
    """Drops the factor 2 of d(a²)/da."""

    def backward(self, dy, need_input_grad=True):
        x, scale, power = self._saved
        y = x * power  # the layer keeps x, s and s^(−beta), not its output
        u = channel_window_sum(dy * y / scale, self._after, self._before) * x * (self.alpha * self.beta)
        return dy * power - u


class HalfBiasLinear(Linear):
    """A wrong parameter gradient (the input gradient is right)."""

    def backward(self, dy, need_input_grad=True):
        dx = super().backward(dy)
        self.grads["bias"] = self.grads["bias"] * 0.5
        return dx


def _worst(errors: dict[str, float]) -> float:
    return max(errors.values())


def test_check_layer_passes_a_correct_relu_and_fails_a_broken_one():
    x = tie_free((2, 3, 4), seed=1)
    assert _worst(check_layer(ReLU(), x)) <= GRADCHECK_BOUND
    assert check_layer(IdentityBackwardReLU(), x)["x"] > 0.1


def test_assigning_maxpool_is_caught_only_when_windows_overlap():
    """The trap in PERF-NOTES: ``=`` passes 2x2/2 and fails 3x3/2. Checking only 2x2/2 would miss it."""
    x = tie_free((2, 2, 7, 7), seed=2)
    assert check_layer(AssigningMaxPool(2, 2), x)["x"] <= GRADCHECK_BOUND
    assert check_layer(MaxPool2d(3, 2), x)["x"] <= GRADCHECK_BOUND
    # Some pixel must win two overlapping windows for the bug to show; make the max pixel sit on an overlap.
    x2 = host(x).copy()
    x2[:, :, 2, 2] = 10.0  # row/column 2 is shared by windows 0 and 1 of a 3x3/2 pool
    assert check_layer(AssigningMaxPool(3, 2), dev(x2))["x"] > 0.1


@pytest.mark.parametrize("size", [2, 4, 6])
def test_unmirrored_lrn_window_is_caught_for_even_sizes(size):
    x = tie_free((2, 7, 3, 2), seed=3)
    assert check_layer(LocalResponseNorm(size, alpha=1.0), x)["x"] <= GRADCHECK_BOUND
    assert check_layer(UnmirroredLRN(size, alpha=1.0), x)["x"] > 1e-3


def test_lrn_backward_bug_is_caught_with_a_large_alpha_only():
    """Why the grid uses alpha = 1: with the paper's alpha = 1e-4 the alpha term is ~1e-4 of the gradient,
    so even a factor-2 error in it stays below ~1e-4 and a lenient bound would let it through."""
    x = tie_free((2, 7, 3, 2), seed=4)
    big = check_layer(ForgetfulLRN(5, alpha=1.0), x)["x"]
    small = check_layer(ForgetfulLRN(5, alpha=1e-4), x)["x"]
    assert big > 1e-2
    assert GRADCHECK_BOUND < small < 1e-3  # still caught by the 1e-6 bound, but only just


def test_check_layer_reports_a_wrong_parameter_gradient():
    layer = HalfBiasLinear(4, 3, dtype=np.float64)
    errors = check_layer(layer, tie_free((5, 4), seed=5))
    assert errors["x"] <= GRADCHECK_BOUND and errors["weight"] <= GRADCHECK_BOUND
    assert errors["bias"] > 0.1


def test_check_layer_needs_the_seed_for_dropout():
    """Without re-seeding, every forward draws a new mask and the differences are garbage."""
    x = tie_free((4, 6), seed=6)
    assert check_layer(Dropout(0.5), x, seed=11)["x"] <= GRADCHECK_BOUND
    assert check_layer(Dropout(0.5), x)["x"] > 0.1


def test_check_layer_leaves_x_alone():
    x = tie_free((2, 3, 5, 5), seed=7)
    before = host(x).copy()
    check_layer(MaxPool2d(3, 2), x)
    np.testing.assert_array_equal(host(x), before)


def _small_model(broken_pool: bool) -> Sequential:
    pool = AssigningMaxPool(3, 2) if broken_pool else MaxPool2d(3, 2)
    return Sequential(
        ("conv", Conv2d(2, 3, 3, padding=1, dtype=np.float64)),
        ("relu", ReLU()),
        ("pool", pool),
        ("flatten", Flatten()),
        ("fc", Linear(3 * 3 * 3, 4, dtype=np.float64)),
    )


def test_check_model_passes_a_correct_network_and_catches_a_broken_layer_inside():
    x = tie_free((2, 2, 7, 7), seed=8)
    labels = dev(np.array([1, 3]))
    good = check_model(_small_model(False), SoftmaxCrossEntropy(), x, labels)
    assert set(good) == {"x", "conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    assert _worst(good) <= GRADCHECK_BOUND
    # With the broken pool, the gradient of every array before it (x, conv.*) is wrong.
    bad = check_model(_small_model(True), SoftmaxCrossEntropy(), x, labels)
    assert bad["fc.weight"] <= GRADCHECK_BOUND
    assert bad["x"] > 1e-3 and bad["conv.weight"] > 1e-3
