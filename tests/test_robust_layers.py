"""API misuse that would allocate gigabytes or fail deep inside NumPy: refused first, with the layer's name."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import peak_mib

from minialex.errors import LayerInputError
from minialex.layers import Conv2d, Linear, LocalResponseNorm, SoftmaxCrossEntropy
from minialex.layers.base import MAX_PARAMETER_ELEMENTS, check_elements, shapes_only
from minialex.models import alexnet


def refused(call, fragment: str) -> None:
    def run():
        with pytest.raises(LayerInputError, match=fragment):
            call()

    assert peak_mib(run) < 16  # refused before the big allocation, not by a MemoryError after trying


def test_a_huge_padding_stride_or_input_is_refused_before_allocating():
    x = np.zeros((1, 1, 8, 8), np.float32)
    refused(lambda: Conv2d(1, 4, 3, padding=10**6).forward(x), r"Conv2d: the padded input of shape \(1, 1, 2000008")
    refused(lambda: Conv2d(1, 4, 3, stride=10**9, padding=10**5).forward(x), "the padded input")
    wide = np.zeros((1, 1, 3, 3), np.float32)
    refused(lambda: Conv2d(1, 2**20, 1, padding=2**6).forward(wide), "the output of shape")
    assert Conv2d(1, 4, 3, padding=1).forward(x).shape == (1, 4, 8, 8)  # ordinary sizes still work


def test_a_huge_layer_is_refused_naming_its_shape():
    refused(lambda: Linear(10**6, 10**6), r"Linear: a parameter of shape \(1000000, 1000000\)")
    refused(lambda: Conv2d(10**5, 10**5, 3), r"Conv2d: a parameter of shape \(100000, 100000, 3, 3\)")
    assert math.prod((46341, 46341)) > MAX_PARAMETER_ELEMENTS
    with pytest.raises(LayerInputError, match="elements, more than the 10 allowed"):
        check_elements("thing", (11,), limit=10)


def test_shapes_only_builds_models_of_any_size_without_memory():
    def build():
        with shapes_only():
            model = alexnet("paper", num_classes=3_000_000)
        assert model.num_params() > 12 * 10**9
        assert model.output_shape((1, 3, 227, 227)) == (1, 3_000_000)

    assert peak_mib(build) < 16
    ordinary = alexnet("mini")  # outside the block, weights are real again
    assert ordinary.params["conv1.weight"].flags.writeable and ordinary.params["conv1.weight"].strides[0] > 0


def test_the_loss_rejects_an_upstream_gradient_of_the_wrong_shape_and_an_empty_batch():
    loss = SoftmaxCrossEntropy()
    loss.forward(np.zeros((4, 10), np.float32), np.zeros(4, np.int64))
    for dloss in (np.ones(3, np.float32), np.ones((4, 10), np.float32)):
        with pytest.raises(LayerInputError, match=r"dloss must be one number .* got an array of shape"):
            loss.backward(dloss)
    assert loss.backward(np.float32(2.0)).shape == (4, 10)
    with pytest.raises(LayerInputError, match="the batch is empty"):
        SoftmaxCrossEntropy().forward(np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    assert alexnet("mini").forward(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)  # as PyTorch: empty out


@pytest.mark.parametrize("name", ["alpha", "beta", "k"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_lrn_refuses_non_finite_hyper_parameters(name, value):
    with pytest.raises(LayerInputError, match=f"LocalResponseNorm: {name} must be a finite number"):
        LocalResponseNorm(**{name: value})


def test_an_absurd_thread_count_is_refused_naming_the_variable():
    from minialex._engine import parallel
    from minialex.errors import ConfigError

    with pytest.raises(ConfigError, match=r"MINIALEX_THREADS must be at most 1024 .*got 100000"):
        parallel.threads_from_environment("100000")
    assert parallel.threads_from_environment("1024") == 1024
