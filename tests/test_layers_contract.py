"""The layer contract, one test body per rule, parametrised over every layer.

Rules: layers never write into ``x`` or ``dy``; accept non-contiguous inputs with the same result; keep
float32 as float32 and float64 as float64, gradients included; ``backward`` overwrites ``grads``; bad input
raises :class:`~minialex.errors.LayerInputError` (a ``ValueError``) naming the layer, the expected and the
actual value; ``output_shape`` and ``macs`` agree with what ``forward`` does and reject the same shapes. The
loss follows the same rules through its own protocol. Then Sequential's naming, modes and state dicts, and
Dropout's statistics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import dev, host, randn, rel_diff, tie_free

import minialex
from minialex import backend
from minialex.errors import CheckpointError, LayerInputError
from minialex.layers import (
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    LocalResponseNorm,
    Loss,
    MaxPool2d,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)

xp = backend.xp


def _small_net() -> Sequential:
    return Sequential(
        ("conv", Conv2d(2, 4, 3, padding=1, groups=2)),
        ("relu", ReLU()),
        ("norm", LocalResponseNorm(3, alpha=1.0)),
        ("pool", MaxPool2d(3, 2)),
        ("block", Sequential(Flatten(), Linear(4 * 4 * 4, 6))),
        ("drop", Dropout(0.5)),
        ("fc", Linear(6, 3)),
    )


@dataclass(frozen=True)
class Case:
    """A layer, the input shape it takes, and the names its errors carry (first and last child of a container)."""

    id: str
    build: Callable[[], Layer]
    shape: tuple[int, ...]
    first: str
    last: str
    is_loss: bool = False


CASES = [
    Case("conv", lambda: Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, groups=2), (2, 4, 7, 6), "Conv2d", "Conv2d"),
    Case("conv11s4", lambda: Conv2d(3, 2, 11, stride=4), (1, 3, 17, 16), "Conv2d", "Conv2d"),
    Case("winograd2", lambda: Conv2d(4, 6, 3, 1, 1, 2, algorithm="winograd2"), (2, 4, 7, 6), "Conv2d", "Conv2d"),
    Case("winograd4", lambda: Conv2d(2, 4, 3, padding=2, algorithm="winograd4"), (2, 2, 5, 7), "Conv2d", "Conv2d"),
    Case("relu", ReLU, (2, 3, 4, 5), "ReLU", "ReLU"),
    Case("lrn", lambda: LocalResponseNorm(4, alpha=1.0), (2, 7, 3, 4), "LocalResponseNorm", "LocalResponseNorm"),
    Case("maxpool", lambda: MaxPool2d(3, 2, 1), (2, 3, 7, 8), "MaxPool2d", "MaxPool2d"),
    Case("maxpool22", lambda: MaxPool2d(2, 2), (1, 2, 6, 5), "MaxPool2d", "MaxPool2d"),
    Case("dropout", lambda: Dropout(0.5), (2, 3, 4, 5), "Dropout", "Dropout"),
    Case("dropout_eval", lambda: Dropout(0.5).eval(), (3, 8), "Dropout", "Dropout"),
    Case("linear", lambda: Linear(6, 4), (3, 6), "Linear", "Linear"),
    Case("flatten", Flatten, (2, 3, 4, 5), "Flatten", "Flatten"),
    Case("softmax_ce", SoftmaxCrossEntropy, (5, 7), "SoftmaxCrossEntropy", "SoftmaxCrossEntropy", is_loss=True),
    Case("sequential", _small_net, (2, 2, 9, 9), "Conv2d 'conv'", "Linear 'fc'"),
]
IDS = [c.id for c in CASES]
LAYER_CASES = [c for c in CASES if not c.is_loss]
LABELS = np.array([0, 6, 3, 1, 2])


def make(case: Case, dtype: Any = np.float64) -> tuple[Layer, Any]:
    layer = case.build() if case.is_loss else case.build().astype(dtype)
    return layer, tie_free(case.shape, seed=1, dtype=dtype)


def params_of(layer: Any) -> dict[str, Any]:
    """A layer's parameters; a loss has none."""
    return {} if isinstance(layer, Loss) else layer.params


def grads_of(layer: Any) -> dict[str, Any]:
    """A layer's gradients; a loss has none."""
    return {} if isinstance(layer, Loss) else layer.grads


def forward(case: Case, layer: Layer, x: Any) -> Any:
    minialex.seed(5)  # the same dropout mask on every call
    if case.is_loss:
        return layer.forward(x, dev(LABELS[: x.shape[0]]))
    return layer.forward(x)


def backward(case: Case, layer: Layer, dy: Any) -> Any:
    return layer.backward() if case.is_loss else layer.backward(dy)


def run(case: Case, layer: Layer, x: Any, dy: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Forward and backward; returns copies of (y, dx, grads)."""
    y = forward(case, layer, x)
    if dy is None and not case.is_loss:
        dy = randn(tuple(y.shape), seed=2, dtype=y.dtype)
    dx = backward(case, layer, dy)
    return host(y).copy(), host(dx).copy(), {k: host(v).copy() for k, v in grads_of(layer).items()}


# -- inputs untouched, views welcome, dtypes kept --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_never_modify_x_or_dy(case):
    layer, x = make(case)
    x_before = host(x).copy()
    y = forward(case, layer, x)
    dy = None if case.is_loss else randn(tuple(y.shape), seed=3)
    dy_before = None if dy is None else host(dy).copy()
    backward(case, layer, dy)
    np.testing.assert_array_equal(host(x), x_before)
    if dy is not None:
        np.testing.assert_array_equal(host(dy), dy_before)


def _views(a: Any) -> dict[str, Any]:
    """Non-contiguous arrays equal to ``a``: transposed memory, every other element, reversed memory."""
    h = host(a)
    axes = list(range(h.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    wide = np.zeros((*h.shape[:-1], 2 * h.shape[-1]), dtype=h.dtype)
    wide[..., ::2] = h
    views = {
        "transposed": dev(np.ascontiguousarray(h.transpose(axes))).transpose(axes),
        "strided": dev(wide)[..., ::2],
        "reversed": dev(np.ascontiguousarray(h[..., ::-1]))[..., ::-1],
    }
    for name, v in views.items():
        assert not v.flags.c_contiguous, name
        np.testing.assert_array_equal(host(v), h)
    return views


@pytest.mark.parametrize("view", ["transposed", "strided", "reversed"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_contiguous_inputs_give_the_same_result(case, view):
    layer, x = make(case)
    y, dx, grads = run(case, layer, x)
    dy = None if case.is_loss else randn(y.shape, seed=2)
    y2, dx2, grads2 = run(case, layer, _views(x)[view], None if dy is None else _views(dy)[view])
    # The same arithmetic on the same numbers; only a BLAS call on another layout may round differently.
    assert rel_diff(y2, y) <= 1e-14
    assert rel_diff(dx2, dx) <= 1e-14
    for name in grads:
        assert rel_diff(grads2[name], grads[name]) <= 1e-14, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtype_in_is_dtype_out(case, dtype):
    layer, x = make(case, dtype)
    y = forward(case, layer, x)
    dx = backward(case, layer, None if case.is_loss else randn(tuple(y.shape), seed=4, dtype=dtype))
    assert y.dtype == dtype and dx.dtype == dtype
    params = params_of(layer)
    assert {k: v.dtype for k, v in params.items()} == dict.fromkeys(params, np.dtype(dtype))
    assert {k: v.dtype for k, v in grads_of(layer).items()} == dict.fromkeys(params, np.dtype(dtype))
    if case.is_loss:
        assert layer.probs.dtype == dtype


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_overwrites_grads(case):
    layer, x = make(case)
    _, dx1, grads1 = run(case, layer, x)
    _, dx2, grads2 = run(case, layer, x)  # a second pass must not accumulate into the first one's grads
    assert set(grads1) == set(params_of(layer))
    for name, g in grads1.items():
        assert g.shape == tuple(layer.params[name].shape)
        np.testing.assert_array_equal(grads2[name], g)
    np.testing.assert_array_equal(dx2, dx1)


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_train_and_eval_return_the_layer_and_set_the_flag(case):
    layer = case.build()
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True
    assert layer.train(False) is layer and layer.training is False


# -- bad input ----------------------------------------------------------------------------------------------------------


def raises(*fragments: str):
    """``pytest.raises(LayerInputError)`` whose message contains every fragment, literally."""
    return pytest.raises(LayerInputError, match="".join(f"(?=[\\s\\S]*{re.escape(f)})" for f in fragments))


def test_layer_input_error_is_a_value_error():
    assert issubclass(LayerInputError, ValueError)


@pytest.mark.parametrize("bad", ["int64", "int32", "uint8", "float16", "bool"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_float_and_half_inputs_are_rejected(case, bad):
    layer, x = make(case)
    with raises(case.first, "float32 or float64", bad):
        forward(case, layer, x.astype(bad))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_before_forward_is_rejected(case):
    layer, _ = make(case)
    with raises(case.last, "backward called before forward"):
        backward(case, layer, randn((2, 3), seed=0))


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_dy_of_the_wrong_shape_is_rejected(case):
    layer, x = make(case)
    y = forward(case, layer, x)
    bad = (*y.shape[:-1], y.shape[-1] + 1)
    with raises(case.last, "dy", str(tuple(y.shape)), str(bad)):
        layer.backward(randn(bad, seed=0))


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_dy_of_another_dtype_is_rejected(case):
    """A float32 dy after a float64 forward would silently turn the backward pass into float32."""
    layer, x = make(case)
    y = forward(case, layer, x)
    with raises(case.last, "float32", "float64"):
        layer.backward(randn(tuple(y.shape), seed=0, dtype=np.float32))


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("conv", "linear", "sequential")], ids=lambda c: c.id)
@pytest.mark.parametrize(("layer_dtype", "input_dtype"), [("float32", "float64"), ("float64", "float32")])
def test_parameter_and_input_dtype_mismatch_is_rejected(case, layer_dtype, input_dtype):
    layer, x = make(case, layer_dtype)
    with raises(case.first, f"input dtype {input_dtype}", f"dtype {layer_dtype}"):
        forward(case, layer, x.astype(input_dtype))


BAD_INPUTS = [
    # (id, layer, input shape, fragments the message must contain)
    ("conv-ndim", lambda: Conv2d(3, 4, 3), (3, 5, 5), ["Conv2d", "4-d input", "(3, 5, 5)"]),
    ("conv-channels", lambda: Conv2d(3, 4, 3), (1, 2, 5, 5), ["Conv2d", "expected 3 input channels, got 2"]),
    ("conv-kernel", lambda: Conv2d(3, 4, 5, padding=1), (1, 3, 2, 6), ["Conv2d", "kernel 5x5", "padded input 4x8"]),
    ("linear-ndim", lambda: Linear(4, 2), (2, 4, 1), ["Linear", "2-d input", "(2, 4, 1)"]),
    ("linear-features", lambda: Linear(4, 2), (3, 5), ["Linear", "expected 4 input features, got 5"]),
    ("pool-ndim", lambda: MaxPool2d(3, 2), (2, 5, 5), ["MaxPool2d", "4-d input", "(2, 5, 5)"]),
    ("pool-kernel", lambda: MaxPool2d(3, 2), (1, 1, 2, 5), ["MaxPool2d", "larger than the padded input", "2x5"]),
    ("lrn-ndim", lambda: LocalResponseNorm(), (5,), ["LocalResponseNorm", "(N, C, ...)", "(5,)"]),
    ("flatten-ndim", Flatten, (5,), ["Flatten", "(5,)"]),
    ("softmax-ndim", SoftmaxCrossEntropy, (2, 3, 4), ["SoftmaxCrossEntropy", "2-d input", "(2, 3, 4)"]),
    ("seq-channels", _small_net, (1, 3, 9, 9), ["Conv2d 'conv'", "expected 2 input channels, got 3"]),
    ("seq-nested", _small_net, (1, 2, 11, 11), ["Linear 'block.1'", "expected 64 input features, got 100"]),
]


@pytest.mark.parametrize(("build", "shape", "fragments"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_shapes_are_rejected(build, shape, fragments):
    layer = build()
    x = tie_free(shape, dtype=np.float32)
    with raises(*fragments):
        if isinstance(layer, SoftmaxCrossEntropy):
            layer.forward(x, dev(np.zeros(shape[0], dtype=np.int64)))
        else:
            layer.forward(x)


@pytest.mark.parametrize(
    ("labels", "fragments"),
    [
        (np.array([0, 1, 4, 2]), ["[0, 4)", "found 4"]),
        (np.array([0, -1, 3, 2]), ["[0, 4)", "found -1"]),
        (np.array([0.0, 1.0, 3.0, 2.0]), ["labels must be integers", "float64"]),
        (np.array([0, 1, 2]), ["labels of shape (4,)", "got (3,)"]),
        (np.array([[0, 1, 2, 3]]), ["labels of shape (4,)", "got (1, 4)"]),
        (None, ["needs the integer labels"]),
    ],
    ids=["too-large", "negative", "float", "too-few", "2d", "missing"],
)
def test_bad_labels_are_rejected(labels, fragments):
    logits = tie_free((4, 4), seed=0)
    with raises("SoftmaxCrossEntropy", *fragments):
        SoftmaxCrossEntropy().forward(logits, None if labels is None else dev(labels))


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (lambda: Conv2d(3, 4, 3, groups=2), ["Conv2d", "in_channels=3 is not divisible by groups=2"]),
        (lambda: Conv2d(4, 3, 3, groups=2), ["Conv2d", "out_channels=3 is not divisible by groups=2"]),
        (lambda: Conv2d(3, 4, 0), ["Conv2d", "kernel_size", "(0, 0)"]),
        (lambda: Conv2d(3, 4, 3, padding=-1), ["Conv2d", "padding=(-1, -1)"]),
        (lambda: Linear(0, 3), ["Linear", "in_features", "0"]),
        (lambda: MaxPool2d(3, 2, padding=2), ["MaxPool2d", "padding (2, 2)", "half the kernel (3, 3)"]),
        (lambda: LocalResponseNorm(0), ["LocalResponseNorm", "size", "0"]),
        (lambda: LocalResponseNorm(5, k=0.0), ["LocalResponseNorm", "k must be a finite number > 0", "got 0.0"]),
        (lambda: Dropout(1.0), ["Dropout", "[0, 1)", "1.0"]),
        (lambda: Conv2d(3, 4, 3).astype("float16"), ["Conv2d", "float32 or float64", "float16"]),
    ],
    ids=[
        "conv-groups-in",
        "conv-groups-out",
        "conv-kernel",
        "conv-padding",
        "linear",
        "pool-pad",
        "lrn-size",
        "lrn-k",
        "dropout",
        "astype",
    ],
)
def test_bad_hyper_parameters_are_rejected(build, fragments):
    with raises(*fragments):
        build()


# -- shapes and multiply-adds from shapes alone -----------------------------------------------------------------------


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_output_shape_is_the_shape_forward_returns(case):
    layer, x = make(case)
    expected = tuple(forward(case, layer, x).shape)
    assert layer.output_shape(case.shape) == expected
    assert layer.output_shape(list(case.shape)) == expected  # any sequence of ints
    assert isinstance(layer.macs(case.shape), int) and layer.macs(case.shape) >= 0


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_macs_grow_with_the_batch(case):
    """A forward pass over N images is N passes over one: its multiply-adds are linear in the batch."""
    layer, _ = make(case)
    one = (1, *case.shape[1:])
    assert layer.macs((5, *case.shape[1:])) == 5 * layer.macs(one)
    assert layer.output_shape((5, *case.shape[1:]))[1:] == layer.output_shape(one)[1:]


def test_macs_by_hand():
    # 2 images, conv 4 -> 6 channels in 2 groups, 3x2 kernel, 4x6 outputs: each output sums 4/2·3·2 = 12 products.
    conv = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, groups=2)
    assert conv.output_shape((2, 4, 7, 6)) == (2, 6, 4, 7)
    assert conv.macs((2, 4, 7, 6)) == 2 * 6 * 4 * 7 * 12
    assert Linear(6, 4).macs((3, 6)) == 3 * 6 * 4
    for layer in (ReLU(), LocalResponseNorm(), MaxPool2d(), Dropout(), Flatten()):
        assert layer.macs((2, 3, 9, 9)) == 0, layer
    assert Conv2d(3, 4, np.int64(3), stride=(np.int32(2), 1)).kernel_size == (3, 3)  # NumPy integers are integers
    net = _small_net()
    assert net.macs((2, 2, 9, 9)) == net["conv"].macs((2, 2, 9, 9)) + 2 * 64 * 6 + 2 * 6 * 3
    assert net.output_shape((2, 2, 9, 9)) == (2, 3)


@pytest.mark.parametrize(
    ("build", "shape", "fragments"),
    [b[1:] for b in BAD_INPUTS if b[0] != "softmax-ndim"],
    ids=[b[0] for b in BAD_INPUTS if b[0] != "softmax-ndim"],
)
def test_output_shape_rejects_what_forward_rejects(build, shape, fragments):
    layer = build()
    with raises(*fragments):
        layer.output_shape(shape)
    with raises(*fragments):
        layer.macs(shape)


@pytest.mark.parametrize(
    "bad", [(2, 3.5), (2, -1), "abc", None, (True, 3)], ids=["float", "negative", "str", "none", "bool"]
)
@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_output_shape_rejects_what_is_not_a_shape(case, bad):
    layer = case.build()
    with raises(layer.name, "a shape must be a tuple of non-negative ints", repr(bad)):
        layer.output_shape(bad)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_reads_what_forward_saved_in_one_place(case):
    """Every layer and the loss keep their backward cache in ``_saved``: None before a forward, then a tuple."""
    layer, x = make(case)
    leaves = [leaf for _, leaf in layer.named_layers()] if isinstance(layer, Sequential) else [layer]
    assert all(leaf._saved is None for leaf in leaves)
    forward(case, layer, x)
    assert all(isinstance(leaf._saved, tuple) for leaf in leaves)


# -- the loss protocol --------------------------------------------------------------------------------------------------


def test_the_loss_has_its_own_protocol():
    loss = SoftmaxCrossEntropy()
    assert isinstance(loss, Loss) and not isinstance(loss, Layer)
    logits = tie_free((4, 3), seed=2)
    labels = np.array([0, 2, 1, 2])
    value = loss(logits, labels)
    assert value.shape == () and value.dtype == np.float64
    assert float(value) == float(SoftmaxCrossEntropy().forward(logits, dev(labels)))
    dlogits = host(loss.backward())
    assert dlogits.shape == (4, 3)
    np.testing.assert_allclose(host(loss.backward(2.5)), 2.5 * dlogits, rtol=1e-15)
    np.testing.assert_allclose(host(loss.backward(dev(np.array(2.5)))), 2.5 * dlogits, rtol=1e-15)  # a 0-d array


@pytest.mark.parametrize(
    "labels",
    [[0, 2, 1, 2], np.array([0, 2, 1, 2], np.uint8), np.array([0, 2, 1, 2], np.int32), (0, 2, 1, 2)],
    ids=["list", "uint8", "int32", "tuple"],
)
def test_labels_of_any_integer_kind_from_the_host(labels):
    logits = tie_free((4, 3), seed=2)
    expected = float(SoftmaxCrossEntropy().forward(logits, dev(np.array([0, 2, 1, 2]))))
    assert float(SoftmaxCrossEntropy().forward(logits, labels)) == expected


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
def test_label_checks_are_the_same_on_the_host_and_the_device(on_device):
    logits = tie_free((4, 3), seed=2)

    def given(a: np.ndarray) -> Any:
        return dev(a) if on_device else a

    with raises("SoftmaxCrossEntropy", "[0, 3)", "found 3"):
        SoftmaxCrossEntropy().forward(logits, given(np.array([0, 3, 1, 2])))
    with raises("SoftmaxCrossEntropy", "[0, 3)", "found -2"):
        SoftmaxCrossEntropy().forward(logits, given(np.array([0, -2, 1, 2])))
    with raises("SoftmaxCrossEntropy", "labels must be integers", "bool"):
        SoftmaxCrossEntropy().forward(logits, given(np.array([True, False, True, True])))
    with raises("SoftmaxCrossEntropy", "labels of shape (4,)", "got (2, 2)"):
        SoftmaxCrossEntropy().forward(logits, given(np.zeros((2, 2), np.int64)))


@pytest.mark.parametrize("dloss", [np.nan, np.inf, "1.0", None], ids=["nan", "inf", "str", "none"])
def test_bad_dloss_is_rejected(dloss):
    loss = SoftmaxCrossEntropy()
    loss.forward(tie_free((2, 3), seed=1), np.array([0, 1]))
    with raises("SoftmaxCrossEntropy: dloss", "finite number"):
        loss.backward(dloss)


def test_empty_batch_is_rejected_by_the_loss():
    with raises("SoftmaxCrossEntropy", "the batch is empty"):
        SoftmaxCrossEntropy().forward(dev(np.zeros((0, 3))), np.zeros(0, np.int64))


@pytest.mark.gpu
def test_host_arrays_are_rejected_on_the_gpu_backend():
    with raises("ReLU", "numpy.ndarray", "asarray"):
        ReLU().forward(np.ones((2, 3)))


# -- Sequential -----------------------------------------------------------------------------------------------------


def test_sequential_parameter_names():
    model = Sequential(
        ("conv1", Conv2d(2, 4, 3)),
        ("relu1", ReLU()),
        ("block", Sequential(Linear(3, 2), ReLU(), Sequential(("inner", Linear(2, 2, bias=False))))),
        Linear(2, 2),
    )
    assert list(model.params) == [
        "conv1.weight",
        "conv1.bias",
        "block.0.weight",
        "block.0.bias",
        "block.2.inner.weight",
        "3.weight",
        "3.bias",
    ]
    assert list(model.grads) == []  # nothing until a backward pass
    assert [name for name, _ in model.named_layers()] == ["conv1", "relu1", "block.0", "block.1", "block.2.inner", "3"]
    assert model["block"][2]["inner"].name == "Linear 'block.2.inner'"
    assert model.params["block.0.weight"] is model["block"][0].params["weight"]  # views, not copies
    assert model.num_params() == 4 * 2 * 9 + 4 + 3 * 2 + 2 + 2 * 2 + 2 * 2 + 2
    assert len(model) == 4 and [type(layer).__name__ for layer in model] == ["Conv2d", "ReLU", "Sequential", "Linear"]


def test_sequential_grads_follow_the_same_names():
    model = _small_net().astype(np.float64)
    y = model.forward(tie_free((2, 2, 9, 9), seed=1))
    model.backward(randn(tuple(y.shape), seed=2))
    assert list(model.grads) == list(model.params)
    assert [k for k in model.params] == [
        "conv.weight",
        "conv.bias",
        "block.1.weight",
        "block.1.bias",
        "fc.weight",
        "fc.bias",
    ]


@pytest.mark.parametrize(
    ("children", "fragment"),
    [
        ([("a", ReLU()), ("a", ReLU())], "two children are named 'a'"),
        ([("a.b", ReLU())], "without '.'"),
        ([("", ReLU())], "without '.'"),
        ([("a", "not a layer")], "child 'a' is a str, not a Layer"),
    ],
    ids=["duplicate", "dot", "empty", "not-a-layer"],
)
def test_sequential_rejects_bad_children(children, fragment):
    with raises("Sequential", fragment):
        Sequential(*children)


def test_train_and_eval_propagate_to_nested_children():
    model = _small_net()
    assert model.eval() is model
    assert not model.training and all(not layer.training for _, layer in model.named_layers())
    assert not model["block"].training
    model.train()
    assert model.training and all(layer.training for _, layer in model.named_layers())
    assert model["block"].training


def test_state_dict_round_trip_is_in_place():
    source = _small_net()
    state = source.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    minialex.seed(1)
    target = _small_net()
    before = {name: value for name, value in target.params.items()}
    assert any(not np.array_equal(host(before[k]), state[k]) for k in state)
    target.load_state_dict(state)
    for name, value in target.params.items():
        assert value is before[name]  # the same arrays (an optimiser keeps references to them)
        np.testing.assert_array_equal(host(value), state[name])
    state["conv.weight"][...] = 0  # a state dict is a copy, not a view
    assert float(abs(source.params["conv.weight"]).max()) > 0


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    model = _small_net()
    state = model.state_dict()
    before = {k: v.copy() for k, v in state.items()}
    del state["fc.bias"]
    state["fc.extra"] = np.zeros(3, dtype=np.float32)
    state["conv.weight"] = np.zeros((4, 1, 3, 2), dtype=np.float32)
    state["block.1.weight"] = np.ones((6, 64), dtype=np.float32)  # well-shaped: must not be copied either
    with pytest.raises(CheckpointError) as info:
        model.load_state_dict(state, source="ckpt.safetensors")
    message = str(info.value)
    for fragment in (
        "ckpt.safetensors",
        "missing tensors: fc.bias",
        "unexpected tensors: fc.extra",
        "conv.weight: expected (4, 1, 3, 3), got (4, 1, 3, 2)",
    ):
        assert fragment in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_sequential_astype_casts_every_parameter():
    model = _small_net().astype("float64")
    assert {v.dtype for v in model.params.values()} == {np.dtype(np.float64)}


# -- Dropout -----------------------------------------------------------------------------------------------------


def test_dropout_eval_is_the_identity():
    x = tie_free((4, 5), seed=1)
    layer = Dropout(0.5).eval()
    np.testing.assert_array_equal(host(layer.forward(x)), host(x))
    dy = randn((4, 5), seed=2)
    np.testing.assert_array_equal(host(layer.backward(dy)), host(dy))


def test_dropout_with_p_zero_is_the_identity_in_training():
    x = tie_free((4, 5), seed=1)
    np.testing.assert_array_equal(host(Dropout(0.0).forward(x)), host(x))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_training_preserves_the_mean(p):
    """Each output is x·m with m = Bernoulli(1 − p)/(1 − p): E[m] = 1 and Var[m] = p/(1 − p).

    Over N = 200,000 ones the sample mean of m has standard deviation σ = sqrt(p / ((1 − p) N)) (0.0022 at
    p = 0.5, 0.0067 at p = 0.9); we allow 6σ, which a correct layer exceeds with probability ~2e-9 (and the seed
    is fixed anyway). The bound is still tight enough to fail the classic bugs: no rescaling (mean 1 − p, off by
    ≥ 45σ), scaling by 1/p instead of 1/(1 − p) (off by ≥ 1.1 at p = 0.2 and 0.9; p = 0.5 cannot tell those
    apart, hence three values of p), or dropping with probability 1 − p (mean unchanged but kept fraction wrong).
    """
    n = 200_000
    layer = Dropout(p)
    y = host(layer.forward(dev(np.ones((200, n // 200)))))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], 1.0 / (1.0 - p))  # every kept entry scaled by exactly 1/(1 − p)
    assert abs(y.mean() - 1.0) <= 6 * np.sqrt(p / ((1 - p) * n))
    assert abs(kept.mean() - (1 - p)) <= 6 * np.sqrt(p * (1 - p) / n)
    # Backward masks and scales with the same mask as the forward.
    np.testing.assert_array_equal(host(layer.backward(dev(np.ones(y.shape)))), y)


def test_dropout_mask_is_reproducible_from_the_seed_and_fresh_at_every_forward():
    x = tie_free((8, 16), seed=1)
    layer = Dropout(0.5)
    minialex.seed(3)
    a = host(layer.forward(x))
    b = host(layer.forward(x))
    minialex.seed(3)
    c = host(layer.forward(x))
    minialex.seed(4)
    d = host(layer.forward(x))
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)  # a new mask at every forward
    assert not np.array_equal(a, d)
