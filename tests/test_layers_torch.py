"""Every layer against PyTorch CPU, the independent oracle, on identical weights and inputs.

Forward output and every gradient (input and parameters) must agree within 1e-10 relative in float64 and
1e-4 in float32, where relative means ``max|ours − torch| / max|torch|``. The grids are the ones the
finite-difference checks use (``tests/helpers.py``). Skipped, with the reason shown, without PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import CONV_GRID, LRN_GRID, POOL_GRID, TORCH_BOUND, ConvCase, dev, host, lrn_id, pool_id, randn, rel_diff
from helpers import tie_free as tie_free_dev

import minialex
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

pytest.importorskip(
    "torch", reason="PyTorch is not installed: it is the independent oracle (pip install 'minialex[torch]')"
)

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["float64", "float32"]


def tie_free(shape: tuple[int, ...], seed: int, dtype: Any, scale: float = 1.0) -> np.ndarray:
    return host(tie_free_dev(shape, seed=seed, scale=scale, dtype=dtype))


def leaf(torch, a: Any, grad: bool = True):
    """A torch tensor holding a copy of ``a`` (from either backend), tracking its gradient."""
    return torch.tensor(host(a), requires_grad=grad)


def assert_close(name: str, ours: Any, theirs: Any, dtype: Any) -> None:
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert host(ours).dtype == np.dtype(dtype), f"{name}: dtype {host(ours).dtype}, expected {np.dtype(dtype)}"
    err = rel_diff(ours, theirs)
    assert err <= TORCH_BOUND[dtype], f"{name}: relative difference {err:.3g} > {TORCH_BOUND[dtype]:g}"


def compare_layer(torch, layer, fn, x: np.ndarray, dtype: Any, params: dict[str, Any] | None = None) -> None:
    """Run ``layer`` and the torch function ``fn(x_t, **params_t)`` forward and backward on the same data."""
    xt = leaf(torch, x)
    params_t = {name: leaf(torch, value) for name, value in (params or {}).items()}
    y = layer.forward(dev(x))
    yt = fn(xt, **params_t)
    assert_close("forward", y, yt, dtype)
    dy = host(randn(tuple(y.shape), seed=99, dtype=dtype))
    dx = layer.backward(dev(dy))
    yt.backward(torch.tensor(dy))
    assert_close("dx", dx, xt.grad, dtype)
    for name, pt in params_t.items():
        assert_close(f"d{name}", layer.grads[name], pt.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CONV_GRID, ids=[c.id for c in CONV_GRID])
def test_conv(torch, case: ConvCase, dtype):
    conv = case.build(dtype)
    x = tie_free((case.n, case.c_in, case.h, case.w), seed=1, dtype=dtype)

    def fn(x, weight, bias=None):
        return torch.nn.functional.conv2d(x, weight, bias, case.stride, case.padding, groups=case.groups)

    compare_layer(torch, conv, fn, x, dtype, conv.params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", LRN_GRID, ids=[lrn_id(c) for c in LRN_GRID])
def test_lrn(torch, case, dtype):
    """PyTorch divides alpha by the window size: the paper's alpha is torch's alpha / size."""
    c, size, alpha, beta, k = case
    x = tie_free((2, c, 4, 3), seed=2, dtype=dtype, scale=2.0)
    reference = torch.nn.LocalResponseNorm(size, alpha=size * alpha, beta=beta, k=k)
    compare_layer(torch, LocalResponseNorm(size, alpha, beta, k), reference, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lrn_paper_constants_on_a_3d_input(torch, dtype):
    x = tie_free((2, 8, 5), seed=3, dtype=dtype, scale=30.0)  # large activations, so that the 1e-4 term matters
    compare_layer(torch, LocalResponseNorm(), torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", POOL_GRID, ids=[pool_id(c) for c in POOL_GRID])
def test_maxpool(torch, case, dtype):
    shape, k, s, p = case
    x = tie_free(shape, seed=4, dtype=dtype)
    compare_layer(torch, MaxPool2d(k, s, p), lambda x: torch.nn.functional.max_pool2d(x, k, s, p), x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_relu(torch, dtype):
    compare_layer(torch, ReLU(), torch.relu, tie_free((2, 3, 4, 5), seed=5, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_flatten(torch, dtype):
    compare_layer(torch, Flatten(), lambda x: torch.flatten(x, 1), tie_free((2, 3, 4, 5), seed=6, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear(torch, dtype, bias):
    layer = Linear(7, 5, bias=bias, dtype=dtype)
    if bias:
        layer.params["bias"] = randn((5,), seed=7, dtype=dtype)
    fn = lambda x, weight, bias=None: torch.nn.functional.linear(x, weight, bias)  # noqa: E731
    compare_layer(torch, layer, fn, tie_free((4, 7), seed=8, dtype=dtype), dtype, layer.params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout_eval_is_torch_eval(torch, dtype):
    reference = torch.nn.Dropout(0.5).eval()
    compare_layer(torch, Dropout(0.5).eval(), reference, tie_free((3, 8), seed=9, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout_train_is_inverted_dropout_with_its_mask(torch, dtype):
    """The mask is random, so take ours and apply it the way PyTorch does: x · keep / (1 − p)."""
    p = 0.3
    x = tie_free((6, 10), seed=10, dtype=dtype)  # no zeros, so y == 0 exactly where dropped
    layer = Dropout(p)
    keep = host(layer.forward(dev(x))) != 0
    assert 0 < keep.sum() < keep.size
    reference = lambda x: x * torch.tensor(keep, dtype=x.dtype) / (1 - p)  # noqa: E731
    layer2 = Dropout(p)
    minialex.seed(0)  # the same mask again
    compare_layer(torch, layer2, reference, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("n", "classes", "scale"), [(1, 2, 1.0), (5, 10, 4.0), (8, 1000, 10.0)])
def test_softmax_cross_entropy(torch, dtype, n, classes, scale):
    logits = tie_free((n, classes), seed=11, dtype=dtype, scale=scale)
    labels = np.random.default_rng(12).integers(0, classes, n)
    loss_layer = SoftmaxCrossEntropy()
    loss = loss_layer.forward(dev(logits), dev(labels))
    zt = leaf(torch, logits)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    assert_close("loss", loss, lt, dtype)
    assert_close("probs", loss_layer.probs, torch.softmax(zt, 1), dtype)
    assert_close("dlogits", loss_layer.backward(), zt.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_is_stable_for_huge_logits(torch, dtype):
    rng = np.random.default_rng(13)
    logits = (rng.choice([-1e4, 1e4], size=(6, 5)) + rng.uniform(-50, 50, (6, 5))).astype(dtype)
    logits[0] = 1e4  # a row of ties at the top
    logits[1] = -1e4  # a row of ties at the bottom
    labels = np.array([0, 1, 2, 3, 4, 0])
    loss_layer = SoftmaxCrossEntropy()
    loss = loss_layer.forward(dev(logits), dev(labels))
    grad = loss_layer.backward()
    assert np.isfinite(host(loss)).all() and np.isfinite(host(grad)).all()
    zt = leaf(torch, logits)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    assert lt.item() > 1e3  # some labels sit ~1e4 below their row's max: the loss is huge but finite
    assert_close("loss", loss, lt, dtype)
    assert_close("dlogits", grad, zt.grad, dtype)


# -- a whole AlexNet-shaped network -----------------------------------------------------------------------------------


def _alexnet_shaped(dtype: Any) -> Sequential:
    """The paper's layer sequence at toy width: 67-px input -> 16 -> pool 7 -> 7 -> pool 3 -> 3 -> pool 1."""
    model = Sequential(
        ("conv1", Conv2d(3, 8, 11, stride=4, padding=2, dtype=dtype)),
        ("relu1", ReLU()),
        ("norm1", LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)),
        ("pool1", MaxPool2d(3, 2)),
        ("conv2", Conv2d(8, 16, 5, padding=2, groups=2, dtype=dtype)),
        ("relu2", ReLU()),
        ("norm2", LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)),
        ("pool2", MaxPool2d(3, 2)),
        ("conv3", Conv2d(16, 24, 3, padding=1, dtype=dtype)),
        ("relu3", ReLU()),
        ("conv4", Conv2d(24, 24, 3, padding=1, groups=2, dtype=dtype)),
        ("relu4", ReLU()),
        ("conv5", Conv2d(24, 16, 3, padding=1, groups=2, dtype=dtype)),
        ("relu5", ReLU()),
        ("pool5", MaxPool2d(3, 2)),
        ("flatten", Flatten()),
        ("drop6", Dropout(0.5)),
        ("fc6", Linear(16, 32, dtype=dtype)),
        ("relu6", ReLU()),
        ("drop7", Dropout(0.5)),
        ("fc7", Linear(32, 32, dtype=dtype)),
        ("relu7", ReLU()),
        ("fc8", Linear(32, 10, dtype=dtype)),
    )
    for i, (name, value) in enumerate(model.params.items()):
        if name.endswith("bias"):  # slightly positive biases keep the ReLUs alive in a tiny network
            value[...] = dev(0.1 + 0.05 * np.random.default_rng(i).standard_normal(value.shape), dtype)
    return model.eval()


def _torch_alexnet(torch, params: dict[str, Any], x):
    F = torch.nn.functional
    p = params
    lrn1 = torch.nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)
    lrn2 = torch.nn.LocalResponseNorm(5, alpha=5 * 1e-2, beta=0.75, k=2.0)
    h = F.max_pool2d(lrn1(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], 4, 2))), 3, 2)
    h = F.max_pool2d(lrn2(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], 1, 2, groups=2))), 3, 2)
    h = F.relu(F.conv2d(h, p["conv3.weight"], p["conv3.bias"], 1, 1))
    h = F.relu(F.conv2d(h, p["conv4.weight"], p["conv4.bias"], 1, 1, groups=2))
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv5.weight"], p["conv5.bias"], 1, 1, groups=2)), 3, 2)
    h = F.dropout(torch.flatten(h, 1), 0.5, training=False)
    h = F.dropout(F.relu(F.linear(h, p["fc6.weight"], p["fc6.bias"])), 0.5, training=False)
    h = F.relu(F.linear(h, p["fc7.weight"], p["fc7.bias"]))
    return F.linear(h, p["fc8.weight"], p["fc8.bias"])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_alexnet_shaped_network(torch, dtype):
    model = _alexnet_shaped(dtype)
    x = host(randn((4, 3, 67, 67), seed=14, dtype=dtype))
    labels = np.array([0, 3, 7, 9])
    loss_layer = SoftmaxCrossEntropy()
    logits = model.forward(dev(x))
    loss = loss_layer.forward(logits, dev(labels))
    dx = model.backward(loss_layer.backward())

    params_t = {name: leaf(torch, value) for name, value in model.params.items()}
    xt = leaf(torch, x)
    logits_t = _torch_alexnet(torch, params_t, xt)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()

    assert_close("logits", logits, logits_t, dtype)
    assert_close("loss", loss, loss_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    grads = model.grads
    assert set(grads) == set(params_t)
    for name, pt in params_t.items():
        assert float(pt.grad.abs().max()) > 0, f"{name} gets no gradient: the test network is degenerate"
        assert_close(f"d{name}", grads[name], pt.grad, dtype)
