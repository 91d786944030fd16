"""The gradient checker's fast paths: device-resident values and stacked differences.

``numerical_gradient`` must give, on NumPy, exactly the numbers the one-``float()``-per-value loop gives,
so that the suite's bound keeps its meaning. ``numerical_gradient_stacked`` (many entries of ``x`` per
forward, used on a GPU) must give the same differences up to rounding, must be used only for layers that
treat samples independently, and must still catch broken layers. These tests run on the CPU and, with
``MINIALEX_BACKEND=cupy``, unchanged on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, ConvCase, dev, host, tie_free

from minialex import backend
from minialex.errors import LayerInputError
from minialex.gradcheck import (
    check_layer,
    check_model,
    numerical_gradient,
    numerical_gradient_stacked,
    rel_error,
    samples_independent,
)
from minialex.layers import (
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)

xp = backend.xp


def _reference_gradient(f, x, h=1e-6):
    """The checker as it was first written: one entry at a time, every value through ``float()``."""
    grad = np.zeros(x.shape)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    for i in range(x.size):
        old = float(flat_x[i])
        flat_x[i] = old + h
        plus = float(f())
        flat_x[i] = old - h
        minus = float(f())
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad


class Counting(Layer):
    """Wraps a layer and counts its forwards (how many evaluations a check costs)."""

    def __init__(self, inner: Layer) -> None:
        super().__init__()
        self.inner, self.forwards = inner, 0
        self.params, self.grads = inner.params, inner.grads

    def forward(self, x):
        self.forwards += 1
        return self.inner.forward(x)

    def backward(self, dy, need_input_grad=True):
        dx = self.inner.backward(dy, need_input_grad)
        self.grads = self.inner.grads
        return dx


class BatchCentering(Layer):
    """y = x − mean over the batch: a layer that mixes samples (like batch normalisation), dL/dx = dy − mean(dy)."""

    def forward(self, x):
        self._n = x.shape[0]
        return x - x.mean(axis=0, keepdims=True)

    def backward(self, dy, need_input_grad=True):
        return dy - dy.mean(axis=0, keepdims=True)


class MasklessReLU(ReLU):
    """A broken backward: forgets the mask."""

    def backward(self, dy, need_input_grad=True):
        return dy.copy()


def _layers():
    conv = ConvCase(2, 4, 4, 8, 7, kernel=3, stride=2, padding=1, groups=2).build()
    dropout = Dropout(0.5)
    dropout.eval()
    return [
        ("conv", conv, (2, 4, 8, 7)),
        ("relu", ReLU(), (2, 3, 4)),
        ("pool", MaxPool2d(3, 2), (2, 2, 7, 7)),
        ("lrn", LocalResponseNorm(4, alpha=1.0), (2, 7, 3, 2)),
        ("linear", Linear(5, 3, dtype=np.float64), (3, 5)),
        ("flatten", Flatten(), (2, 3, 2, 2)),
        ("dropout-eval", dropout, (4, 6)),
    ]


LAYERS = _layers()
LAYER_IDS = [name for name, _, _ in LAYERS]


# -- numerical_gradient: the same numbers as the float() loop, without a float() per value -----------------------


@pytest.mark.parametrize("returns", ["device scalar", "python float"])
def test_numerical_gradient_is_bit_for_bit_the_one_value_at_a_time_loop(returns):
    x_host = host(tie_free((3, 5), seed=11))
    x = dev(x_host.copy())

    def f_device():
        return (xp.sin(x) * x**3).sum()

    def f():
        return f_device() if returns == "device scalar" else float(f_device())

    ours = host(numerical_gradient(f, x))
    x_ref = x_host.copy()
    reference = _reference_gradient(lambda: float((np.sin(x_ref) * x_ref**3).sum()), x_ref)
    if backend.on_gpu:  # the GPU's sin may differ from NumPy's in the last bit: the differences agree to rounding
        assert rel_error(ours, reference) <= 1e-9
    else:
        np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(host(x), x_host)  # restored bit for bit


def test_numerical_gradient_of_a_layer_matches_the_reference_loop():
    layer = Linear(4, 3, dtype=np.float64)
    x = tie_free((2, 4), seed=3)
    dy = dev(np.random.default_rng(2).standard_normal((2, 3)))
    ours = host(numerical_gradient(lambda: (layer.forward(x) * dy).sum(), layer.params["weight"]))
    w = layer.params["weight"]
    reference = _reference_gradient(lambda: float((layer.forward(x) * dy).sum()), w)
    if backend.on_gpu:
        assert rel_error(ours, reference) <= 1e-12
    else:
        np.testing.assert_array_equal(ours, reference)


# -- numerical_gradient_stacked: the same differences, many per forward ------------------------------------------


@pytest.mark.parametrize(("name", "layer", "shape"), LAYERS, ids=LAYER_IDS)
def test_stacked_differences_agree_with_one_entry_at_a_time(name, layer, shape):
    x = tie_free(shape, seed=5)
    y = layer.forward(x)
    dy = dev(np.random.default_rng(4).standard_normal(y.shape))
    single = numerical_gradient(lambda: (layer.forward(x) * dy).sum(), x)

    def copy_losses(copies):
        k = copies.shape[0]
        out = layer.forward(copies.reshape(k * shape[0], *shape[1:]))
        return (out.reshape(k, *dy.shape) * dy).reshape(k, -1).sum(axis=1)

    before = host(x).copy()
    stacked = numerical_gradient_stacked(copy_losses, x)
    assert stacked.shape == x.shape and stacked.dtype == np.float64
    # Both are central differences with h = 1e-6; only the rounding of the sums may differ (ε·|L|/h ≈ 1e-10).
    assert rel_error(stacked, single) <= 1e-8
    np.testing.assert_array_equal(host(x), before)  # x is never touched


def test_stacked_differences_in_several_calls_equal_one_call():
    x = tie_free((2, 3, 4), seed=6)
    relu = ReLU()

    def copy_losses(copies):
        return relu.forward(copies).reshape(copies.shape[0], -1).sum(axis=1)

    calls = []

    def counted(copies):
        calls.append(copies.shape[0])
        return copy_losses(copies)

    whole = host(numerical_gradient_stacked(copy_losses, x))
    pieces = host(numerical_gradient_stacked(counted, x, max_coordinates=5))
    np.testing.assert_array_equal(pieces, whole)
    assert calls == [10] * 4 + [2 * (24 - 20)]  # 24 entries, 5 per call, two copies each
    by_bytes = host(numerical_gradient_stacked(copy_losses, x, max_bytes=2 * x.nbytes * 7))
    np.testing.assert_array_equal(by_bytes, whole)


def test_stacked_differences_need_one_value_per_copy():
    x = tie_free((2, 3), seed=7)
    with pytest.raises(LayerInputError, match=r"one value per copy, shape \(12,\), got \(\)"):
        numerical_gradient_stacked(lambda copies: copies.sum(), x)


def test_stacked_differences_reject_float32_and_non_contiguous_input():
    with pytest.raises(LayerInputError, match="float64"):
        numerical_gradient_stacked(lambda c: c.sum(axis=1), dev(np.ones((2, 3), np.float32)))
    with pytest.raises(LayerInputError, match="C-contiguous"):
        numerical_gradient_stacked(lambda c: c.sum(axis=(1, 2)), dev(np.ones((3, 2))).T)


# -- samples_independent: when stacking is allowed -------------------------------------------------------------


@pytest.mark.parametrize(("name", "layer", "shape"), LAYERS, ids=LAYER_IDS)
def test_layers_that_treat_samples_alone_are_recognised(name, layer, shape):
    assert samples_independent(layer.forward, tie_free(shape, seed=8))


def test_layers_that_mix_samples_are_recognised():
    x = tie_free((3, 4), seed=9)
    assert not samples_independent(BatchCentering().forward, x)

    def seeded_dropout(a):  # re-seeded, yet the mask of the doubled batch differs in its second half
        backend.seed(3)
        return Dropout(0.5).forward(a)

    assert not samples_independent(seeded_dropout, x)
    assert not samples_independent(lambda a: a * 2.0, dev(np.array(1.5)))  # no sample axis to stack on
    assert not samples_independent(lambda a: a.sum(axis=0, keepdims=True), x)  # the batch size changes the shape


def test_a_layer_that_rejects_another_batch_size_is_not_stacked():
    class FixedBatch(ReLU):
        def forward(self, x):
            if x.shape[0] != 3:
                raise LayerInputError(f"FixedBatch: expected 3 samples, got {x.shape[0]}")
            return super().forward(x)

    x = tie_free((3, 4), seed=17)
    assert not samples_independent(FixedBatch().forward, x)
    assert check_layer(FixedBatch(), x, stacked=True)["x"] <= GRADCHECK_BOUND


def test_the_probe_matters_stacking_a_mixing_layer_gives_wrong_differences():
    """Why stacking is guarded: for a layer that mixes samples, the stacked differences are simply wrong."""
    x = tie_free((3, 4), seed=10)
    layer = BatchCentering()
    dy = dev(np.random.default_rng(5).standard_normal((3, 4)))
    single = numerical_gradient(lambda: (layer.forward(x) * dy).sum(), x)

    def copy_losses(copies):
        out = layer.forward(copies.reshape(-1, 4)).reshape(copies.shape[0], 3, 4)
        return (out * dy).reshape(copies.shape[0], -1).sum(axis=1)

    assert rel_error(numerical_gradient_stacked(copy_losses, x), single) > 0.1
    # check_layer falls back to one entry at a time for it, and the (right) backward passes.
    assert check_layer(BatchCentering(), x, stacked=True)["x"] <= GRADCHECK_BOUND


# -- check_layer / check_model with stacked=True ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "layer", "shape"), LAYERS, ids=LAYER_IDS)
def test_check_layer_stacked_passes_correct_layers_with_a_few_forwards(name, layer, shape):
    x = tie_free(shape, seed=12)
    counting = Counting(layer)
    errors = check_layer(counting, x, stacked=True)
    assert max(errors.values()) <= GRADCHECK_BOUND, errors
    params = sum(int(v.size) for v in layer.params.values())
    # 1 forward for the analytic pass, 3 for the probe, 1 per stacked call, 2 per parameter entry.
    calls = -(-x.size // 256)
    assert counting.forwards == 1 + 3 + calls + 2 * params
    single = Counting(layer)
    check_layer(single, x, stacked=False)
    assert single.forwards == 1 + 2 * (x.size + params)


def test_check_layer_stacked_catches_a_broken_backward():
    x = tie_free((2, 3, 4), seed=13)
    assert check_layer(ReLU(), x, stacked=True)["x"] <= GRADCHECK_BOUND
    assert check_layer(MasklessReLU(), x, stacked=True)["x"] > 0.1


def test_check_layer_stacked_with_training_dropout_falls_back_and_passes():
    x = tie_free((4, 6), seed=14)
    counting = Counting(Dropout(0.5))
    assert check_layer(counting, x, seed=11, stacked=True)["x"] <= GRADCHECK_BOUND
    assert counting.forwards == 1 + 3 + 2 * x.size  # the probe said no: one entry at a time


def _small_network() -> Sequential:
    backend.seed(1)  # the same weights every time
    f64 = np.float64
    return Sequential(
        ("conv", Conv2d(2, 3, 3, padding=1, dtype=f64)),
        ("relu", ReLU()),
        ("norm", LocalResponseNorm(3, alpha=1.0)),
        ("pool", MaxPool2d(3, 2)),
        ("flatten", Flatten()),
        ("fc", Linear(3 * 3 * 3, 4, dtype=f64)),
    )


def test_check_model_stacked_agrees_with_one_entry_at_a_time():
    x = tie_free((2, 2, 7, 7), seed=15)
    labels = dev(np.array([1, 3]))
    stacked = check_model(_small_network(), SoftmaxCrossEntropy(), x, labels, stacked=True)
    single = check_model(_small_network(), SoftmaxCrossEntropy(), x, labels, stacked=False)
    assert set(stacked) == set(single) == {"x", "conv.weight", "conv.bias", "fc.weight", "fc.bias"}
    assert max(stacked.values()) <= GRADCHECK_BOUND and max(single.values()) <= GRADCHECK_BOUND
    assert abs(stacked["x"] - single["x"]) <= 1e-8
    for name in ("conv.weight", "conv.bias", "fc.weight", "fc.bias"):  # parameters: the very same path
        assert stacked[name] == single[name]


def test_default_stacks_on_a_gpu_only():
    x = tie_free((2, 3, 4), seed=16)
    counting = Counting(ReLU())
    check_layer(counting, x)
    if backend.on_gpu:
        assert counting.forwards == 1 + 3 + 1
    else:
        assert counting.forwards == 1 + 2 * x.size
