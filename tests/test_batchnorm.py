"""BatchNorm1d and BatchNorm2d: the loop reference, finite differences, PyTorch, the classic mistakes, the contract.

* Against :mod:`minialex.reference.batchnorm` (loops, backward by the staged chain rule): forward, dx, dγ, dβ
  and the running statistics of both conventions, float64, relative difference <= 1e-12.
* Finite differences in float64 (relative error <= 1e-6 per array) in training mode, where dx has to carry
  the gradient through the batch mean and variance, and in evaluation mode.
* PyTorch on the same weights over several training steps (forward, dx, dγ, dβ, running statistics), then in
  evaluation mode: 1e-10 in float64, 1e-4 in float32. Keras's convention is PyTorch's with momentum 1 − 0.99
  and eps 1e-3, except its biased running variance, which is checked against the documented rule instead.
* The three classic mistakes, each planted in a second, plain implementation: the same checks pass on the
  plain one and fail on each broken one.
* The layer contract (inputs untouched, views, dtypes, overwritten grads, clear errors), state dicts,
  checkpoints and optimisers (which never touch the running statistics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, TORCH_BOUND, dev, host, randn, rel_diff

import minialex
from minialex import backend
from minialex.errors import CheckpointError, LayerInputError
from minialex.gradcheck import check_layer, check_model
from minialex.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
)
from minialex.optim import SGD
from minialex.reference import batchnorm as reference

xp = backend.xp
REFERENCE_BOUND = 1e-12


@dataclass(frozen=True)
class Case:
    id: str
    cls: type
    shape: tuple[int, ...]


CASES = [
    Case("2d", BatchNorm2d, (3, 4, 3, 5)),  # M = 45 values per channel
    Case("2d-tiny", BatchNorm2d, (2, 3, 1, 2)),  # M = 4: the 1/M terms are large
    Case("1d", BatchNorm1d, (6, 5)),  # M = 6
    Case("1d-seq", BatchNorm1d, (3, 4, 5)),  # (N, C, L): M = 15
    Case("1d-three", BatchNorm1d, (3, 3)),  # M = 3
]
IDS = [c.id for c in CASES]
CONVENTIONS = ["pytorch", "keras"]


def make(case: Case, dtype: Any = np.float64, **kwargs: Any) -> Layer:
    """The layer with γ and β away from 1 and 0, so that every term of the backward pass is visible."""
    layer = case.cls(case.shape[1], dtype=dtype, **kwargs)
    if "weight" in layer.params:
        c = case.shape[1]
        layer.params["weight"][...] = dev(np.linspace(0.5, 2.0, c) * (-1.0) ** np.arange(c), dtype)
        layer.params["bias"][...] = dev(np.linspace(-0.3, 0.4, c), dtype)
    return layer


def batch(shape: tuple[int, ...], seed: int, dtype: Any = np.float64) -> Any:
    """Inputs with a mean and a spread that differ per channel (as real activations do)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    scale = np.linspace(0.5, 3.0, c).reshape((1, c) + (1,) * (len(shape) - 2))
    offset = np.linspace(-1.0, 2.0, c).reshape(scale.shape)
    return dev((rng.standard_normal(shape) * scale + offset).astype(dtype))


def params(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(γ, β) on the host; (1, 0) without affine parameters."""
    c = layer.num_features
    if "weight" not in layer.params:
        return np.ones(c), np.zeros(c)
    return host(layer.params["weight"]).astype(np.float64), host(layer.params["bias"]).astype(np.float64)


def raises(*fragments: str, error: type[Exception] = LayerInputError):
    """``pytest.raises(error)`` whose message contains every fragment, literally."""
    return pytest.raises(error, match="".join(f"(?=[\\s\\S]*{re.escape(f)})" for f in fragments))


# -- against the loop reference -------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_training_forward_and_backward_match_the_loop_reference(case, affine):
    layer = make(case, affine=affine)
    x, dy = batch(case.shape, seed=1), randn(case.shape, seed=2)
    y = layer.forward(x)
    dx = layer.backward(dy)
    gamma, beta = params(layer)
    mean, var = reference.batch_moments(host(x))
    assert rel_diff(y, reference.batchnorm_forward(host(x), gamma, beta, layer.eps, mean, var)) <= REFERENCE_BOUND
    dx_ref, dgamma_ref, dbeta_ref = reference.batchnorm_backward(host(dy), host(x), gamma, layer.eps)
    assert rel_diff(dx, dx_ref) <= REFERENCE_BOUND
    if affine:
        assert rel_diff(layer.grads["weight"], dgamma_ref) <= REFERENCE_BOUND
        assert rel_diff(layer.grads["bias"], dbeta_ref) <= REFERENCE_BOUND
    else:
        assert layer.params == {} and layer.grads == {}


@pytest.mark.parametrize("momentum", [None, 0.0, 0.5, 1.0], ids=["default", "0", "0.5", "1"])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_running_statistics_follow_each_conventions_rule(case, convention, momentum):
    layer = make(case, convention=convention, momentum=momentum)
    expected_momentum = {"pytorch": 0.1, "keras": 0.99}[convention] if momentum is None else momentum
    assert layer.momentum == expected_momentum
    running_mean, running_var = np.zeros(case.shape[1]), np.ones(case.shape[1])
    for step in range(4):
        x = batch(case.shape, seed=10 + step)
        layer.forward(x)
        running_mean, running_var = reference.running_update(
            running_mean, running_var, host(x), expected_momentum, convention
        )
        assert rel_diff(layer.buffers["running_mean"], running_mean) <= REFERENCE_BOUND, step
        assert rel_diff(layer.buffers["running_var"], running_var) <= REFERENCE_BOUND, step


def test_the_two_conventions_differ_where_documented():
    """Keras's 0.99 keeps 99 % of the old value; PyTorch's 0.1 keeps 90 % and stores the unbiased variance."""
    x = dev(np.array([[1.0], [3.0]]))  # one feature: mean 2, biased variance 1, unbiased 2
    torch_style, keras_style = BatchNorm1d(1, dtype=np.float64), BatchNorm1d(1, convention="keras", dtype=np.float64)
    assert (torch_style.eps, keras_style.eps) == (1e-5, 1e-3)
    torch_style.forward(x)
    keras_style.forward(x)
    assert float(torch_style.buffers["running_mean"][0]) == pytest.approx(0.1 * 2.0, abs=1e-15)
    assert float(torch_style.buffers["running_var"][0]) == pytest.approx(0.9 * 1.0 + 0.1 * 2.0, abs=1e-15)
    assert float(keras_style.buffers["running_mean"][0]) == pytest.approx(0.01 * 2.0, abs=1e-15)
    assert float(keras_style.buffers["running_var"][0]) == pytest.approx(0.99 * 1.0 + 0.01 * 1.0, abs=1e-15)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_evaluation_mode_uses_the_running_statistics(case):
    layer = make(case)
    for step in range(3):
        layer.forward(batch(case.shape, seed=20 + step))
    running = {k: host(v).copy() for k, v in layer.buffers.items()}
    layer.eval()
    x, dy = batch(case.shape, seed=30), randn(case.shape, seed=31)
    y = layer.forward(x)
    dx = layer.backward(dy)
    gamma, beta = params(layer)
    mean, var = running["running_mean"], running["running_var"]
    assert rel_diff(y, reference.batchnorm_forward(host(x), gamma, beta, layer.eps, mean, var)) <= REFERENCE_BOUND
    s = (gamma / np.sqrt(var + layer.eps)).reshape((1, -1) + (1,) * (len(case.shape) - 2))
    assert rel_diff(dx, host(dy) * s) <= REFERENCE_BOUND  # μ and σ² are constants: dx = γ·s_run·dy
    xhat = (host(x) - mean.reshape(s.shape)) / np.sqrt(var.reshape(s.shape) + layer.eps)
    axes = tuple(i for i in range(len(case.shape)) if i != 1)
    assert rel_diff(layer.grads["weight"], (host(dy) * xhat).sum(axis=axes)) <= REFERENCE_BOUND
    assert rel_diff(layer.grads["bias"], host(dy).sum(axis=axes)) <= REFERENCE_BOUND
    for key, value in running.items():  # evaluation never moves them
        np.testing.assert_array_equal(host(layer.buffers[key]), value)


def test_only_training_mode_mixes_the_images_of_a_batch():
    layer = make(CASES[0])
    x = batch(CASES[0].shape, seed=3)
    layer.forward(x)
    layer.eval()
    alone, together = host(layer.forward(x[:1])), host(layer.forward(x))[:1]
    assert rel_diff(alone, together) <= 1e-15
    layer.train()
    assert rel_diff(host(layer.forward(x[:2]))[:1], host(layer.forward(x))[:1]) > 1e-3


# -- finite differences -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_training_mode(case, convention):
    """dx too: every output depends on every input of its channel through μ and σ²."""
    errors = check_layer(make(case, convention=convention), batch(case.shape, seed=4), randn(case.shape, seed=5))
    assert set(errors) == {"x", "weight", "bias"}
    for name, err in errors.items():
        assert err <= GRADCHECK_BOUND, f"{name}: {err:.3g}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck_evaluation_mode(case):
    layer = make(case)
    layer.forward(batch(case.shape, seed=6))  # running statistics away from (0, 1)
    errors = check_layer(layer.eval(), batch(case.shape, seed=7), randn(case.shape, seed=8))
    for name, err in errors.items():
        assert err <= GRADCHECK_BOUND, f"{name}: {err:.3g}"


def test_gradcheck_through_a_network_with_both_layers():
    """conv → BatchNorm2d → ReLU → flatten → linear → BatchNorm1d → softmax cross-entropy: every parameter, dx.

    The conv and linear layers have no bias: a bias before BatchNorm is subtracted again with the batch
    mean, so its gradient is exactly 0 (see the next test) and a relative check of it would compare noise.
    For the same reason the ReLU is needed: without it bn2's β would only shift fc's outputs, which bn1
    removes. (The seed keeps every ReLU input far from 0 compared with the finite-difference step.)
    """
    minialex.seed(3)
    model = Sequential(
        ("conv", Conv2d(2, 3, 3, padding=1, bias=False)),
        ("bn2", BatchNorm2d(3)),
        ("relu", ReLU()),
        ("flat", Flatten()),
        ("fc", Linear(3 * 4 * 4, 5, bias=False)),
        ("bn1", BatchNorm1d(5)),
    ).astype(np.float64)
    labels = dev(np.array([0, 4, 2, 1]))
    errors = check_model(model, SoftmaxCrossEntropy(), batch((4, 2, 4, 4), seed=9), labels)
    assert set(errors) == {"x", "conv.weight", "bn2.weight", "bn2.bias", "fc.weight", "bn1.weight", "bn1.bias"}
    for name, err in errors.items():
        assert err <= GRADCHECK_BOUND, f"{name}: {err:.3g}"


def test_a_bias_just_before_batchnorm_gets_no_gradient():
    """Σ_i ∂L/∂x_i = (γ·s/M)(M·Σg − M·Σg − Σx̂·dγ) = 0, since Σ x̂ = 0: shifting a channel changes nothing."""
    minialex.seed(4)
    model = Sequential(("conv", Conv2d(2, 3, 3, padding=1)), ("bn", BatchNorm2d(3))).astype(np.float64)
    model.forward(batch((4, 2, 4, 4), seed=10))
    model.backward(randn((4, 3, 4, 4), seed=11))
    scale = np.abs(host(model.grads["conv.weight"])).max()
    assert np.abs(host(model.grads["conv.bias"])).max() <= 1e-13 * scale


# -- PyTorch --------------------------------------------------------------------------------------------------------


def torch_twin(torch, layer: Any, ndim: int, dtype: Any) -> Any:
    """``torch.nn.BatchNorm1d/2d`` with the layer's weights; Keras's momentum m is PyTorch's 1 − m."""
    momentum = layer.momentum if layer.convention == "pytorch" else 1.0 - layer.momentum
    cls = torch.nn.BatchNorm2d if ndim == 4 else torch.nn.BatchNorm1d
    twin = cls(layer.num_features, eps=layer.eps, momentum=momentum, affine="weight" in layer.params)
    twin = twin.to(torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
    with torch.no_grad():
        if "weight" in layer.params:
            twin.weight.copy_(torch.tensor(host(layer.params["weight"])))
            twin.bias.copy_(torch.tensor(host(layer.params["bias"])))
    return twin


def torch_errors(torch, layer: Any, shape: tuple[int, ...], dtype: Any, steps: int = 4) -> dict[str, float]:
    """Train ``layer`` and its torch twin side by side, then evaluate both; the worst relative difference of each.

    Every training step is forward, backward and a gradient step on γ and β (each framework with its own
    gradients), so that the running statistics see several batches and weights. Keras's running variance
    (biased) has no torch equivalent: it is compared with the documented rule, and copied into the twin
    before the evaluation-mode comparison.
    """
    twin = torch_twin(torch, layer, len(shape), dtype)
    errors: dict[str, float] = {}

    def note(key: str, ours: Any, theirs: Any) -> None:
        theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
        errors[key] = max(errors.get(key, 0.0), rel_diff(ours, theirs))

    def forward_backward(x: np.ndarray, dy: np.ndarray, prefix: str) -> None:
        xt = torch.tensor(x, requires_grad=True)
        yt = twin(xt)
        note(prefix + "y", layer.forward(dev(x)), yt)
        note(prefix + "dx", layer.backward(dev(dy)), (yt.backward(torch.tensor(dy)), xt.grad)[1])
        if "weight" in layer.params:
            note(prefix + "dweight", layer.grads["weight"], twin.weight.grad)
            note(prefix + "dbias", layer.grads["bias"], twin.bias.grad)

    running_var = np.ones(layer.num_features)
    for step in range(steps):
        x, dy = host(batch(shape, seed=40 + step, dtype=dtype)), host(randn(shape, seed=50 + step, dtype=dtype))
        forward_backward(x, dy, "")
        note("running_mean", layer.buffers["running_mean"], twin.running_mean)
        if layer.convention == "pytorch":
            note("running_var", layer.buffers["running_var"], twin.running_var)
        else:
            _, running_var = reference.running_update(running_var, running_var, x, layer.momentum, "keras")
            note("running_var", layer.buffers["running_var"], running_var)
        if "weight" in layer.params:
            with torch.no_grad():
                for key, tensor in (("weight", twin.weight), ("bias", twin.bias)):
                    layer.params[key] -= layer.params[key].dtype.type(0.1) * layer.grads[key]
                    tensor -= 0.1 * tensor.grad
                    tensor.grad = None
    if layer.convention != "pytorch":
        with torch.no_grad():
            twin.running_var.copy_(torch.tensor(host(layer.buffers["running_var"])))
    layer.eval()
    twin.eval()
    x, dy = host(batch(shape, seed=60, dtype=dtype)), host(randn(shape, seed=61, dtype=dtype))
    forward_backward(x, dy, "eval_")
    return errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch_over_training_steps_and_in_evaluation(torch, case, convention, dtype):
    errors = torch_errors(torch, make(case, dtype, convention=convention), case.shape, dtype)
    expected = {"y", "dx", "dweight", "dbias", "running_mean", "running_var"}
    assert set(errors) == expected | {f"eval_{k}" for k in ("y", "dx", "dweight", "dbias")}
    for key, err in errors.items():
        assert err <= TORCH_BOUND[dtype], f"{key}: relative difference {err:.3g} > {TORCH_BOUND[dtype]:g}"


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=[CASES[0].id, CASES[2].id])
def test_matches_torch_without_affine_parameters(torch, case):
    errors = torch_errors(torch, make(case, affine=False), case.shape, np.float64)
    for key, err in errors.items():
        assert err <= TORCH_BOUND[np.float64], f"{key}: {err:.3g}"


# -- the classic mistakes: the checks above must catch each of them ----------------------------------------------------


class PlainBatchNorm2d(Layer):
    """A second, whole-array BatchNorm2d (PyTorch's convention) in which one classic mistake can be planted.

    ``mistake`` is None (the control: it must pass every check), ``"no-mean-term"`` (dx without the
    ``−Σg`` term that comes through μ), ``"running-in-training"`` (normalising training batches with the
    running statistics) or ``"n-minus-1"`` (normalising with the unbiased variance).
    """

    convention, eps, momentum = "pytorch", 1e-5, 0.1

    def __init__(self, num_features: int, mistake: str | None = None) -> None:
        super().__init__()
        self.num_features, self.mistake = num_features, mistake
        self.params = {"weight": xp.ones(num_features), "bias": xp.zeros(num_features)}
        self.buffers = {"running_mean": xp.zeros(num_features), "running_var": xp.ones(num_features)}

    def forward(self, x: Any) -> Any:
        count = x.size // x.shape[1]
        per_channel = (1, -1, 1, 1)
        if self.training:
            mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            if self.mistake == "n-minus-1":
                var = var * count / (count - 1)
            if self.mistake == "running-in-training":
                mean, var = self.buffers["running_mean"].copy(), self.buffers["running_var"].copy()
            self.buffers["running_mean"] *= 0.9
            self.buffers["running_mean"] += 0.1 * x.mean(axis=(0, 2, 3))
            self.buffers["running_var"] *= 0.9
            self.buffers["running_var"] += 0.1 * x.var(axis=(0, 2, 3)) * count / (count - 1)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.s = (1.0 / xp.sqrt(var + self.eps)).reshape(per_channel)
        self.xhat = (x - mean.reshape(per_channel)) * self.s
        self.was_training = self.training
        return self.params["weight"].reshape(per_channel) * self.xhat + self.params["bias"].reshape(per_channel)

    def backward(self, dy: Any, need_input_grad: bool = True) -> Any:
        count = dy.size // dy.shape[1]
        dbeta, dgamma = dy.sum(axis=(0, 2, 3)), (dy * self.xhat).sum(axis=(0, 2, 3))
        self.grads = {"weight": dgamma, "bias": dbeta}
        scale = self.params["weight"].reshape(1, -1, 1, 1) * self.s
        if not self.was_training:
            return scale * dy
        mean_term = 0.0 if self.mistake == "no-mean-term" else dbeta.reshape(1, -1, 1, 1)
        return scale / count * (count * dy - mean_term - self.xhat * dgamma.reshape(1, -1, 1, 1))


def all_checks(torch, layer: Any) -> dict[str, float]:
    """The finite-difference and PyTorch checks of this file, as worst relative errors by name."""
    shape = (3, 4, 3, 5)
    minialex.seed(0)
    layer.params["weight"][...] = dev(np.array([0.5, -1.0, 1.5, 2.0]))
    layer.params["bias"][...] = dev(np.array([0.1, -0.2, 0.3, 0.0]))
    errors = {f"gradcheck_{k}": v for k, v in check_layer(layer, batch(shape, seed=4), randn(shape, seed=5)).items()}
    for key in ("running_mean", "running_var"):
        layer.buffers[key][...] = 0.0 if key == "running_mean" else 1.0
    return {**errors, **{f"torch_{k}": v for k, v in torch_errors(torch, layer, shape, np.float64).items()}}


def test_the_checks_pass_on_a_second_correct_implementation(torch):
    """The control: the broken versions below fail because of their mistake, not because of the test double."""
    errors = all_checks(torch, PlainBatchNorm2d(4))
    assert max(errors.values()) <= GRADCHECK_BOUND, errors
    assert max(v for k, v in errors.items() if k.startswith("torch_")) <= TORCH_BOUND[np.float64], errors


@pytest.mark.parametrize(
    ("mistake", "caught_by"),
    [
        ("no-mean-term", ["gradcheck_x", "torch_dx"]),
        ("running-in-training", ["gradcheck_x", "torch_y", "torch_dx"]),
        ("n-minus-1", ["gradcheck_x", "torch_y", "torch_dx"]),
    ],
)
def test_each_classic_mistake_fails_the_checks(torch, mistake, caught_by):
    errors = all_checks(torch, PlainBatchNorm2d(4, mistake))
    for key in caught_by:  # by orders of magnitude, not by a hair
        bound = GRADCHECK_BOUND if key.startswith("gradcheck") else TORCH_BOUND[np.float64]
        assert errors[key] > 1e3 * bound, f"{mistake}: {key} = {errors[key]:.3g} should fail"
    if mistake == "no-mean-term":  # the forward pass is right: only the gradient checks can see this one
        assert errors["torch_y"] <= TORCH_BOUND[np.float64]


def test_two_values_per_channel_normalise_to_plus_minus_one():
    """M = 2 is accepted, and degenerate: x̂ = ±a with a = √(σ²/(σ² + ε)) whatever x is, so y = β ± γ·a and
    dx_1 = −dx_2 = (γ·s/2)(g_1 − g_2)·ε/(σ² + ε), of order ε: the gradient all but vanishes."""
    layer = make(Case("1d-two", BatchNorm1d, (2, 3)))
    x = np.array([[0.0, 1.0, -2.0], [2.0, 1.5, 2.0]])  # σ² = 1, 1/16, 4
    g = np.array([[0.3, -1.2, 0.7], [-0.4, 0.5, 1.1]])
    gamma, beta = params(layer)
    var, eps = np.array([1.0, 1 / 16, 4.0]), layer.eps
    a = np.sqrt(var / (var + eps)) * np.sign(x[1] - x[0])
    y = host(layer.forward(dev(x)))
    np.testing.assert_allclose(y, np.stack([beta - gamma * a, beta + gamma * a]), rtol=1e-14)
    dx1 = gamma / np.sqrt(var + eps) / 2 * (g[0] - g[1]) * eps / (var + eps)
    np.testing.assert_allclose(host(layer.backward(dev(g))), np.stack([dx1, -dx1]), rtol=1e-9)


# -- numerics ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_float32_is_accurate_for_activations_far_from_zero(training):
    """A mean of 1000 next to a spread of 1: float32 stays within 1e-4 of float64 on the same inputs.

    Training mode: the two-pass variance (the one-pass E[x²] − μ² would lose everything here: 1e6 − 1e6 in
    float32 carries an error near 0.1). Evaluation mode: x·(γs) + (β − μγs) rounds at about ε·|μ|/σ, the
    size of the float32 input's own representation error.
    """
    shape = (16, 4, 10, 10)
    x32 = (host(randn(shape, seed=12)) + 1000.0).astype(np.float32)
    dy32 = host(randn(shape, seed=13, dtype=np.float32))
    results = {}
    for dtype in (np.float32, np.float64):
        layer = BatchNorm2d(4, momentum=1.0, dtype=dtype)  # momentum 1: the running statistics are the batch's
        layer.forward(dev(x32.astype(dtype)))
        layer.train(training)
        y = layer.forward(dev(x32.astype(dtype)))
        results[dtype] = (host(y), host(layer.backward(dev(dy32.astype(dtype)))), host(layer.buffers["running_var"]))
    for ours, exact in zip(results[np.float32], results[np.float64], strict=True):
        assert ours.dtype == np.float32
        assert rel_diff(ours, exact) <= 1e-4


def test_a_constant_channel_gives_beta_and_finite_gradients():
    layer = make(CASES[0])
    x = host(batch(CASES[0].shape, seed=14))
    x[:, 1] = 7.0  # zero variance: s = 1/√ε, x̂ = 0
    y = host(layer.forward(dev(x)))
    dx = host(layer.backward(randn(CASES[0].shape, seed=15)))
    np.testing.assert_array_equal(y[:, 1], np.full_like(y[:, 1], float(layer.params["bias"][1])))
    assert np.isfinite(dx).all() and np.isfinite(host(layer.grads["weight"])).all()


def test_non_finite_input_makes_its_channel_nan_as_in_torch(torch):
    x = host(batch(CASES[0].shape, seed=16))
    x[0, 2, 0, 0] = np.nan
    ours = host(make(CASES[0]).forward(dev(x)))
    theirs = torch.nn.BatchNorm2d(4).double()(torch.tensor(x)).detach().numpy()
    assert np.isnan(ours[:, 2]).all() and np.isnan(theirs[:, 2]).all()
    assert np.isfinite(ours[:, [0, 1, 3]]).all()


# -- the layer contract ---------------------------------------------------------------------------------------------


def run(layer: Layer, x: Any, dy: Any) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    y = host(layer.forward(x)).copy()
    dx = host(layer.backward(dy)).copy()
    return y, dx, {k: host(v).copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_never_modify_x_or_dy(case, training):
    layer = make(case).train(training)
    x, dy = batch(case.shape, seed=17), randn(case.shape, seed=18)
    before = host(x).copy(), host(dy).copy()
    run(layer, x, dy)
    np.testing.assert_array_equal(host(x), before[0])
    np.testing.assert_array_equal(host(dy), before[1])


def views(a: Any) -> dict[str, Any]:
    """Non-contiguous arrays equal to ``a``: first and last axes in swapped memory, every other element, reversed."""
    h = host(a)
    axes = list(range(h.ndim))
    axes[0], axes[-1] = axes[-1], axes[0]
    wide = np.zeros((*h.shape[:-1], 2 * h.shape[-1]), dtype=h.dtype)
    wide[..., ::2] = h
    found = {
        "transposed": dev(np.ascontiguousarray(h.transpose(axes))).transpose(axes),
        "strided": dev(wide)[..., ::2],
        "reversed": dev(np.ascontiguousarray(h[..., ::-1]))[..., ::-1],
    }
    for v in found.values():
        assert not v.flags.c_contiguous
        np.testing.assert_array_equal(host(v), h)
    return found


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("view", ["transposed", "strided", "reversed"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_contiguous_inputs_give_the_same_result(case, view, training):
    x, dy = batch(case.shape, seed=19), randn(case.shape, seed=20)
    expected = run(make(case).train(training), x, dy)
    got = run(make(case).train(training), views(x)[view], views(dy)[view])
    assert rel_diff(got[0], expected[0]) <= 1e-14  # only the order of a sum may differ
    assert rel_diff(got[1], expected[1]) <= 1e-14
    for name in expected[2]:
        assert rel_diff(got[2][name], expected[2][name]) <= 1e-14, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtype_in_is_dtype_out(case, dtype):
    layer = make(case, dtype)
    y = layer.forward(batch(case.shape, seed=21, dtype=dtype))
    dx = layer.backward(randn(case.shape, seed=22, dtype=dtype))
    assert y.dtype == dtype and dx.dtype == dtype and tuple(y.shape) == case.shape
    for group in (layer.params, layer.grads, layer.buffers):
        assert {k: v.dtype for k, v in group.items()} == dict.fromkeys(group, np.dtype(dtype))


def test_astype_casts_parameters_and_buffers():
    layer = BatchNorm2d(3).astype(np.float64)
    assert all(v.dtype == np.float64 for v in (*layer.params.values(), *layer.buffers.values()))
    layer.forward(batch((2, 3, 2, 2), seed=23))  # a float64 input is accepted after the cast


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_overwrites_grads_and_can_skip_dx(case):
    layer = make(case)
    x, dy = batch(case.shape, seed=24), randn(case.shape, seed=25)
    first = run(layer, x, dy)
    second = run(layer, x, dy)  # a second pass must not accumulate into the first one's grads
    np.testing.assert_array_equal(second[1], first[1])
    for name, g in first[2].items():
        np.testing.assert_array_equal(second[2][name], g)
    layer.forward(x)
    assert layer.backward(dy, need_input_grad=False) is None
    for name, g in first[2].items():
        np.testing.assert_array_equal(host(layer.grads[name]), g)


def test_train_and_eval_return_the_layer_and_set_the_flag():
    layer = BatchNorm1d(3)
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True


def test_backward_follows_the_mode_of_the_forward_pass():
    """Switching to eval between forward and backward must not mix the two formulas."""
    case = CASES[0]
    x, dy = batch(case.shape, seed=26), randn(case.shape, seed=27)
    expected = run(make(case), x, dy)
    layer = make(case)
    y = host(layer.forward(x))
    layer.eval()
    assert rel_diff(y, expected[0]) == 0.0
    assert rel_diff(layer.backward(dy), expected[1]) == 0.0


def test_repr_names_the_settings():
    assert repr(BatchNorm2d(96)) == "BatchNorm2d(96, eps=1e-05, momentum=0.1)"
    assert repr(BatchNorm1d(8, convention="keras", affine=False)) == (
        "BatchNorm1d(8, eps=0.001, momentum=0.99, convention='keras', affine=False)"
    )


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape"),
    [(BatchNorm1d(4), (1, 4)), (BatchNorm2d(3), (1, 3, 1, 1)), (BatchNorm1d(2), (1, 2, 1)), (BatchNorm1d(4), (0, 4))],
    ids=["1d", "2d", "1d-seq", "empty"],
)
def test_one_value_per_channel_in_training_is_a_clear_error(layer, shape):
    x = dev(np.ones(shape, dtype=np.float32))
    count = int(np.prod(shape)) // shape[1]
    with raises(layer.name, "training mode needs at least 2 values per channel", f"got {count}", str(shape), ".eval()"):
        layer.forward(x)
    np.testing.assert_array_equal(host(layer.buffers["running_mean"]), 0.0)  # nothing was updated
    assert tuple(layer.eval().forward(x).shape) == shape  # the running statistics need no batch


@pytest.mark.parametrize(
    ("layer", "shape", "fragments"),
    [
        (BatchNorm2d(3), (2, 3, 4), ["BatchNorm2d", "4-d input", "(N, C, H, W)", "(2, 3, 4)"]),
        (BatchNorm2d(3), (2, 4, 2, 2), ["BatchNorm2d", "expected 3 channels on axis 1, got 4", "(2, 4, 2, 2)"]),
        (BatchNorm1d(3), (2, 3, 4, 5), ["BatchNorm1d", "(N, F)", "(N, C, L)", "(2, 3, 4, 5)"]),
        (BatchNorm1d(3), (6,), ["BatchNorm1d", "(N, F)", "(6,)"]),
        (BatchNorm1d(3), (2, 5), ["BatchNorm1d", "expected 3 channels on axis 1, got 5"]),
    ],
    ids=["2d-ndim", "2d-channels", "1d-ndim", "1d-vector", "1d-features"],
)
def test_bad_input_shapes_are_rejected(layer, shape, fragments):
    with raises(*fragments):
        layer.forward(dev(np.ones(shape, dtype=np.float32)))


@pytest.mark.parametrize("bad", ["int64", "float16", "bool"])
def test_non_float_inputs_are_rejected(bad):
    with raises("BatchNorm2d", "float32 or float64", bad):
        BatchNorm2d(2).forward(dev(np.ones((2, 2, 2, 2), dtype=bad)))


@pytest.mark.parametrize("affine", [True, False])
def test_input_dtype_must_match_the_layer(affine):
    kind = "parameter 'weight'" if affine else "buffer 'running_mean'"
    with raises("BatchNorm2d", "input dtype float64", kind, "dtype float32", ".astype("):
        BatchNorm2d(2, affine=affine).forward(batch((2, 2, 2, 2), seed=0))


def test_backward_errors():
    layer = BatchNorm2d(2, dtype=np.float64)
    with raises("BatchNorm2d", "backward called before forward"):
        layer.backward(randn((2, 2, 2, 2), seed=0))
    layer.forward(batch((2, 2, 2, 2), seed=0))
    with raises("BatchNorm2d", "dy", "(2, 2, 2, 2)", "(2, 2, 2, 3)"):
        layer.backward(randn((2, 2, 2, 3), seed=0))
    with raises("BatchNorm2d", "float32", "float64"):
        layer.backward(randn((2, 2, 2, 2), seed=0, dtype=np.float32))


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"num_features": 0}, ["BatchNorm2d: num_features", ">= 1", "0"]),
        ({"num_features": 2.0}, ["BatchNorm2d: num_features", "integer", "2.0"]),
        ({"num_features": True}, ["BatchNorm2d: num_features", "True"]),
        ({"num_features": 2, "eps": 0.0}, ["BatchNorm2d: eps", "> 0", "0.0"]),
        ({"num_features": 2, "eps": float("nan")}, ["BatchNorm2d: eps", "nan"]),
        ({"num_features": 2, "momentum": 1.5}, ["BatchNorm2d: momentum", "[0, 1]", "1.5"]),
        ({"num_features": 2, "momentum": -0.1}, ["BatchNorm2d: momentum", "-0.1"]),
        ({"num_features": 2, "convention": "tensorflow"}, ["BatchNorm2d: convention", "pytorch, keras", "tensorflow"]),
        ({"num_features": 2, "affine": 1}, ["BatchNorm2d: affine", "True or False", "1"]),
        ({"num_features": 2, "dtype": "float16"}, ["BatchNorm2d", "float32 or float64", "float16"]),
    ],
    ids=["zero", "float", "bool", "eps-0", "eps-nan", "momentum-big", "momentum-neg", "convention", "affine", "dtype"],
)
def test_bad_hyper_parameters_are_rejected(kwargs, fragments):
    with raises(*fragments):
        BatchNorm2d(**kwargs)


# -- state: names, state dicts, checkpoints, optimisers --------------------------------------------------------------


def small_net(dtype: Any = np.float64) -> Sequential:
    minialex.seed(1)
    return Sequential(
        ("conv", Conv2d(2, 3, 3, padding=1)),
        ("bn", BatchNorm2d(3)),
        ("flat", Flatten()),
        ("fc", Linear(3 * 4 * 4, 4)),
        ("bn_fc", BatchNorm1d(4)),
    ).astype(dtype)


def train_steps(model: Sequential, optimizer: Any, steps: int, seed: int = 0) -> None:
    loss = SoftmaxCrossEntropy()
    dtype = model.params["conv.weight"].dtype
    for step in range(steps):
        x = batch((5, 2, 4, 4), seed=seed + step, dtype=dtype)
        loss.forward(model.forward(x), dev(np.arange(5) % 4))
        model.backward(loss.backward(), need_input_grad=False)
        optimizer.step()


def test_running_statistics_are_named_buffers_in_the_state_dict():
    model = small_net()
    assert set(model.buffers) == {"bn.running_mean", "bn.running_var", "bn_fc.running_mean", "bn_fc.running_var"}
    assert {"bn.weight", "bn.bias", "bn_fc.weight", "bn_fc.bias"} <= set(model.params)
    assert not set(model.buffers) & set(model.params)
    assert set(model.buffers) <= set(model.state_dict())


def test_state_dict_round_trip_restores_the_running_statistics_bit_for_bit():
    model = small_net()
    train_steps(model, SGD(model, lr=0.05), steps=3)
    saved = model.state_dict()
    fresh = small_net()
    buffers_before = dict(fresh.buffers)
    fresh.load_state_dict(saved)
    for name, value in fresh.buffers.items():
        assert value is buffers_before[name]  # copied in place
        np.testing.assert_array_equal(host(value), saved[name])
    x = batch((5, 2, 4, 4), seed=9)
    np.testing.assert_array_equal(host(fresh.eval().forward(x)), host(model.eval().forward(x)))


def test_a_state_without_running_statistics_is_rejected():
    model = small_net()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("bn.running")}
    before = host(model.buffers["bn_fc.running_var"]).copy()
    with raises(
        "does not fit this model", "missing tensors", "bn.running_mean", "bn.running_var", error=CheckpointError
    ):
        model.load_state_dict(state)
    np.testing.assert_array_equal(host(model.buffers["bn_fc.running_var"]), before)


def test_a_checkpoint_file_keeps_the_running_statistics(tmp_path):
    from minialex.training.checkpoint import restore, save_checkpoint

    model = small_net(np.float32)
    train_steps(model, SGD(model, lr=0.05), steps=3)
    save_checkpoint(tmp_path / "bn.safetensors", model)
    fresh = small_net(np.float32)
    restore(tmp_path / "bn.safetensors", fresh)
    for name, value in model.buffers.items():
        np.testing.assert_array_equal(host(fresh.buffers[name]), host(value))


def test_optimisers_never_touch_the_running_statistics_and_sgd_decays_gamma_not_beta():
    """Running statistics move only in forward passes. SGD's default decays ``bn.weight`` (γ) but not ``bn.bias``."""
    model = small_net()
    model.forward(batch((5, 2, 4, 4), seed=0))
    buffers = {k: host(v).copy() for k, v in model.buffers.items()}
    for _, layer in model.named_layers():
        layer.grads = {k: xp.zeros_like(v) for k, v in layer.params.items()}
    gamma, beta = host(model.params["bn.weight"]).copy(), host(model.params["bn.bias"]).copy()
    SGD(model, lr=0.1, momentum=0.0, weight_decay=0.5).step()
    for name, value in buffers.items():
        np.testing.assert_array_equal(host(model.buffers[name]), value)
    np.testing.assert_allclose(host(model.params["bn.weight"]), gamma * (1 - 0.1 * 0.5), rtol=1e-15)
    np.testing.assert_array_equal(host(model.params["bn.bias"]), beta)
    assert SGD(model).decays("bn.weight") and not SGD(model).decays("bn.bias")
    assert SGD(model, decay_biases=True).decays("bn.bias")  # what torch.optim.SGD does with every parameter


def test_sequential_eval_switches_batchnorm_to_running_statistics():
    model = small_net()
    x = batch((5, 2, 4, 4), seed=2)
    model.forward(x)
    running = host(model.buffers["bn.running_mean"]).copy()
    model.eval()
    assert not model["bn"].training
    model.forward(x)
    np.testing.assert_array_equal(host(model.buffers["bn.running_mean"]), running)
