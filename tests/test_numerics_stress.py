"""Numerics under stress: non-finite inputs to LRN and max-pool, extreme logits, unsupported dtypes.

What each layer does with ±inf and NaN is documented in its docstring; these tests pin it down and
compare it with PyTorch, element for element (NaN where PyTorch has NaN, the same signed zeros).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from minialex.backend import asarray, to_numpy
from minialex.errors import LayerInputError
from minialex.layers import Conv2d, LocalResponseNorm, MaxPool2d, SoftmaxCrossEntropy


def _with_non_finite(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    x[0, 3, 0, 0] = np.inf
    x[0, 1, 1, 1] = np.nan
    x[-1, 5, 1, 0] = -np.inf
    return x


def _same_including_nan(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    finite = ~np.isnan(a)
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-12, atol=0)


def test_lrn_non_finite_inputs_match_pytorch(torch):
    """An inf channel becomes NaN (inf/inf) and its window neighbours 0 (finite/inf); NaN spreads over its window."""
    x = _with_non_finite((2, 7, 2, 2))
    layer = LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = to_numpy(layer.forward(asarray(x)))
    expected = torch.nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)(torch.tensor(x)).numpy()
    _same_including_nan(y, expected)
    assert np.isnan(y[0, 3, 0, 0]) and np.all(y[0, [1, 2, 4, 5], 0, 0] == 0)
    assert np.isnan(y[0, 0:4, 1, 1]).all() and np.isfinite(y[0, 4:, 1, 1]).all()
    # Pixels far from any non-finite value are untouched by them.
    assert np.isfinite(y[1, :, 0, 1]).all()


def test_max_pool_non_finite_inputs_match_pytorch(torch):
    """+inf wins its windows, −inf never wins against a finite value, NaN propagates and takes the gradient."""
    x = np.arange(49.0).reshape(1, 1, 7, 7)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 6, 6] = np.inf
    x[0, 0, 0, 6] = -np.inf
    x[0, 0, 4, 2] = np.nan
    x[0, 0, 4, 3] = np.nan  # two NaN in one window
    pool = MaxPool2d(3, 2)
    y = pool.forward(asarray(x))
    dy = np.random.default_rng(1).standard_normal(tuple(y.shape))
    dx = to_numpy(pool.backward(asarray(dy)))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 3, 2)
    ty.backward(torch.tensor(dy))
    _same_including_nan(to_numpy(y), ty.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=0)


def test_max_pool_padding_and_minus_infinity_give_pytorchs_forward(torch):
    x = np.full((1, 1, 3, 3), -np.inf)
    x[0, 0, 2, 2] = 1.0
    pool = MaxPool2d(3, 2, padding=1)
    y = to_numpy(pool.forward(asarray(x)))
    expected = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30])
def test_softmax_cross_entropy_stays_finite_for_extreme_logits(scale):
    logits = np.array([[scale, 0.0, -scale], [0.0, scale, 1.0]], dtype=np.float32)
    loss_layer = SoftmaxCrossEntropy()
    loss = float(loss_layer.forward(asarray(logits), np.array([2, 0])))
    grad = to_numpy(loss_layer.backward())
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert np.abs(grad.sum(axis=1)).max() < 1e-6  # each row of softmax − onehot sums to 0


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_unsupported_dtypes_are_rejected_naming_the_dtype(dtype):
    conv = Conv2d(1, 2, 3)
    with pytest.raises(LayerInputError, match=np.dtype(dtype).name):
        conv.forward(asarray(np.zeros((1, 1, 5, 5), dtype=dtype)))
