"""Adam and AdamW: by hand, against torch.optim.Adam/AdamW, against TensorFlow's formula, and exact resume.

* ``torch.optim.Adam`` (plain, L2 weight decay, decoupled) and ``torch.optim.AdamW`` over 25 steps on the same
  gradients: relative difference <= 1e-10 in float64 and <= 1e-4 in float32, including a learning-rate
  change mid-run and weight decay that skips the biases.
* The epsilon-hat form against a direct implementation of TensorFlow's ``ApplyAdam`` formula.
* Resume: a state saved after 10 steps (through JSON for its scalars) and loaded into a fresh Adam continues
  bit for bit like an uninterrupted run on NumPy.
* The chunked NumPy update against the whole-array formula (bit for bit), in place, dtypes, the state checks.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from helpers import TORCH_BOUND, dev, host, rel_diff

import minialex
from minialex import backend
from minialex._engine import parallel
from minialex.errors import CheckpointError, ConfigError, LayerInputError
from minialex.layers import BatchNorm1d, Linear, Sequential, SoftmaxCrossEntropy
from minialex.optim import CHUNK, SGD, Adam, AdamW, ReduceLROnPlateau, StepLR
from minialex.optim import adam as adam_module

xp = backend.xp
STEPS = 25


def net(dtype: Any = np.float64, sizes: tuple[int, ...] = (5, 4, 3)) -> Sequential:
    minialex.seed(0)
    model = Sequential(
        ("fc1", Linear(sizes[0], sizes[1], dtype=dtype)),
        ("fc2", Linear(sizes[1], sizes[2], dtype=dtype)),
    ).astype(dtype)
    rng = np.random.default_rng(1)
    for value in model.params.values():  # biases away from 0 as well, so that their decay shows
        value[...] = dev(rng.standard_normal(value.shape), value.dtype)
    return model


def gradients(model: Sequential, steps: int, seed: int = 5, scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in model.params.items()}
        for _ in range(steps)
    ]


def set_grads(model: Sequential, grads: dict[str, np.ndarray]) -> None:
    """Put given gradients where a backward pass would (each layer's ``grads``)."""
    for name, layer in model.named_layers():
        layer.grads = {k: dev(grads[f"{name}.{k}"]) for k in layer.params}


def weights(model: Sequential) -> dict[str, np.ndarray]:
    return {k: host(v).copy() for k, v in model.params.items()}


def raises(error: type[Exception], *fragments: str):
    return pytest.raises(error, match="".join(f"(?=[\\s\\S]*{re.escape(f)})" for f in fragments))


# -- by hand ----------------------------------------------------------------------------------------------------


def test_first_two_steps_by_hand():
    """θ = 2, g = 0.5, α = 0.1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25, θ ← 2 − 0.1·0.5/(0.5 + 1e-8)."""
    model = Sequential(("fc", Linear(1, 1, dtype=np.float64)))
    layer = model["fc"]
    layer.params["weight"][...] = 2.0
    layer.params["bias"][...] = -1.0
    opt = Adam(model, lr=0.1)
    layer.grads = {"weight": dev(np.array([[0.5]])), "bias": dev(np.array([-0.25]))}
    opt.step()
    assert float(layer.params["weight"][0, 0]) == pytest.approx(2.0 - 0.1 * 0.5 / (0.5 + 1e-8), abs=1e-15)
    assert float(layer.params["bias"][0]) == pytest.approx(-1.0 + 0.1 * 0.25 / (0.25 + 1e-8), abs=1e-15)
    assert float(opt.m["fc.weight"][0, 0]) == pytest.approx(0.05, rel=1e-15)
    assert float(opt.v["fc.weight"][0, 0]) == pytest.approx(0.00025, rel=1e-15)
    w1 = float(layer.params["weight"][0, 0])
    layer.grads = {"weight": dev(np.array([[-1.0]])), "bias": dev(np.array([0.0]))}
    opt.step()  # m = 0.045 − 0.1 = −0.055, v = 0.00024975 + 0.001; corrections 0.19 and 0.001999
    m_hat, v_hat = -0.055 / 0.19, (0.999 * 0.00025 + 0.001) / (1 - 0.999**2)
    assert float(layer.params["weight"][0, 0]) == pytest.approx(w1 - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8), abs=1e-15)
    assert opt.steps == 2


@pytest.mark.parametrize("hat", [False, True], ids=["standard", "epsilon-hat"])
def test_steps_do_not_depend_on_the_scale_of_the_gradients(hat):
    """With ε = 0, m scales with g and √v with |g|: gradients × 2¹⁰ give bit for bit the same trajectory."""
    runs = []
    for scale in (1.0, 2.0**10):
        model = net()
        opt = Adam(model, lr=0.01, eps=0.0, epsilon_hat=hat)
        for grads in gradients(model, 10, scale=scale):
            set_grads(model, grads)
            opt.step()
        runs.append(weights(model))
    for k, value in runs[0].items():
        np.testing.assert_array_equal(runs[1][k], value)


# -- PyTorch -----------------------------------------------------------------------------------------------------


def torch_twin(torch, model: Sequential, cls: Any, skip_bias_decay: bool = False, **kwargs: Any) -> tuple[dict, Any]:
    """Torch copies of the parameters and a torch optimiser over them (biases in a group without decay if asked)."""
    tensors = {k: torch.tensor(host(v).copy(), requires_grad=True) for k, v in model.params.items()}
    if not skip_bias_decay:
        return tensors, cls(list(tensors.values()), **kwargs)
    groups = [
        {"params": [t for k, t in tensors.items() if not k.endswith(".bias")]},
        {"params": [t for k, t in tensors.items() if k.endswith(".bias")], "weight_decay": 0.0},
    ]
    return tensors, cls(groups, **kwargs)


def torch_difference(torch, opt: Adam, model: Sequential, tensors: dict, torch_opt: Any, lr_changes=()) -> float:
    """Run both optimisers on the same gradients for STEPS steps; the worst relative difference of the weights."""
    worst = 0.0
    for step, grads in enumerate(gradients(model, STEPS), start=1):
        if step in dict(lr_changes):
            opt.lr = dict(lr_changes)[step]
            for group in torch_opt.param_groups:
                group["lr"] = dict(lr_changes)[step]
        set_grads(model, grads)
        opt.step()
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        torch_opt.step()
        for k, value in weights(model).items():
            worst = max(worst, rel_diff(value, tensors[k].detach().numpy()))
    return worst


CONFIGS = [
    # (id, minialex constructor, torch class name, torch keyword arguments)
    ("adam", lambda m: Adam(m, lr=0.01), "Adam", {"lr": 0.01}),
    (
        "adam-betas-eps",
        lambda m: Adam(m, 0.02, (0.8, 0.99), 1e-3),
        "Adam",
        {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-3},
    ),
    ("adam-l2", lambda m: Adam(m, lr=0.01, weight_decay=0.1), "Adam", {"lr": 0.01, "weight_decay": 0.1}),
    (
        "adam-decoupled",
        lambda m: Adam(m, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        "Adam",
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    ("adamw", lambda m: AdamW(m, lr=0.01, weight_decay=0.1), "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw-defaults", AdamW, "AdamW", {}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("build", "torch_cls", "torch_kwargs"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_matches_torch_step_for_step(torch, build, torch_cls, torch_kwargs, dtype):
    model = net(dtype)
    tensors, torch_opt = torch_twin(torch, model, getattr(torch.optim, torch_cls), **torch_kwargs)
    err = torch_difference(torch, build(model), model, tensors, torch_opt)
    assert err <= TORCH_BOUND[dtype], f"relative difference {err:.3g} after {STEPS} steps"


@pytest.mark.parametrize("decoupled", [False, True], ids=["l2", "decoupled"])
def test_matches_torch_with_a_schedule_and_undecayed_biases(torch, decoupled):
    model = net()
    opt = Adam(model, lr=0.01, weight_decay=0.05, decoupled_weight_decay=decoupled, decay_biases=False)
    tensors, torch_opt = torch_twin(
        torch,
        model,
        torch.optim.Adam,
        skip_bias_decay=True,
        lr=0.01,
        weight_decay=0.05,
        decoupled_weight_decay=decoupled,
    )
    err = torch_difference(torch, opt, model, tensors, torch_opt, lr_changes=[(8, 0.001), (16, 0.0002)])
    assert err <= TORCH_BOUND[np.float64], f"{err:.3g}"


def test_decoupled_and_l2_decay_differ(torch):
    """The check above can tell the two kinds of weight decay apart."""
    model = net()
    tensors, torch_opt = torch_twin(torch, model, torch.optim.AdamW, lr=0.01, weight_decay=0.1)
    assert torch_difference(torch, Adam(model, lr=0.01, weight_decay=0.1), model, tensors, torch_opt) > 1e-4


# -- the epsilon-hat form ------------------------------------------------------------------------------------------


def tensorflow_adam(theta: np.ndarray, grads: list[np.ndarray], lr: float, beta1: float, beta2: float, eps: float):
    """TensorFlow's ``ApplyAdam``, as documented, written out directly::

    lr_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ);  m = β₁m + (1 − β₁)g;  v = β₂v + (1 − β₂)g²;  θ ← θ − lr_t·m/(√v + ε)
    """
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta - lr_t * m / (np.sqrt(v) + eps)
    return theta


@pytest.mark.parametrize("scale", [1.0, 1e-6], ids=["unit-gradients", "tiny-gradients"])
def test_epsilon_hat_form_is_tensorflows_formula(scale):
    """Tiny gradients (1e-6, next to ε̂ = 1e-7... 1e-5) are where the two forms part."""
    model = net()
    start, grads = weights(model), gradients(model, STEPS, scale=scale)
    opt = Adam.keras(model, lr=0.01, eps=1e-6)
    assert (opt.epsilon_hat, opt.eps, opt.betas) == (True, 1e-6, (0.9, 0.999))
    for g in grads:
        set_grads(model, g)
        opt.step()
    for k, value in weights(model).items():
        expected = tensorflow_adam(start[k], [g[k] for g in grads], 0.01, 0.9, 0.999, 1e-6)
        assert rel_diff(value, expected) <= 1e-13, k
    plain = net()
    opt = Adam(plain, lr=0.01, eps=1e-6)
    for g in grads:
        set_grads(plain, g)
        opt.step()
    difference = max(rel_diff(weights(plain)[k], value) for k, value in weights(model).items())
    assert difference > (1e-3 if scale < 1 else 1e-9)  # the forms are different algorithms for the same ε


def test_keras_defaults():
    opt = Adam.keras(net())
    assert (opt.lr, opt.betas, opt.eps, opt.epsilon_hat, opt.weight_decay) == (1e-3, (0.9, 0.999), 1e-7, True, 0.0)
    assert repr(opt) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-07, epsilon_hat=True)"
    keras_adamw = AdamW.keras(net(), weight_decay=0.004)
    assert isinstance(keras_adamw, AdamW) and keras_adamw.epsilon_hat and keras_adamw.decoupled_weight_decay
    assert (keras_adamw.eps, keras_adamw.weight_decay) == (1e-7, 0.004)


# -- resume ---------------------------------------------------------------------------------------------------------


def through_json(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint keeps: the scalars through JSON, each tensor group as separate host arrays."""
    scalars = json.loads(json.dumps({k: v for k, v in state.items() if k not in ("m", "v")}))
    return {
        **scalars,
        "m": {k: v.copy() for k, v in state["m"].items()},
        "v": {k: v.copy() for k, v in state["v"].items()},
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "build",
    [
        lambda m: Adam(m, lr=0.01, weight_decay=0.01),
        lambda m: AdamW(m, lr=0.01),
        lambda m: Adam.keras(m, lr=0.01),
    ],
    ids=["adam-l2", "adamw", "keras"],
)
def test_resume_continues_bit_for_bit(build, dtype):
    grads = gradients(net(dtype), 20)
    uninterrupted = net(dtype)
    opt = build(uninterrupted)
    for g in grads:
        set_grads(uninterrupted, g)
        opt.step()

    first = net(dtype)
    opt = build(first)
    for g in grads[:10]:
        set_grads(first, g)
        opt.step()
    opt.lr = 0.005  # as a schedule would; the state must carry it
    saved_weights, saved_state = first.state_dict(), through_json(opt.state_dict())

    resumed = net(dtype)
    resumed.load_state_dict(saved_weights)
    opt = Adam(resumed)  # other settings: the state restores them
    opt.load_state_dict(saved_state)
    assert opt.steps == 10 and opt.lr == 0.005
    opt.lr = 0.01
    for g in grads[10:]:
        set_grads(resumed, g)
        opt.step()
    for k, value in weights(uninterrupted).items():
        np.testing.assert_array_equal(weights(resumed)[k], value)


def test_state_dict_layout():
    model = net()
    opt = Adam(model, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, decoupled_weight_decay=True)
    set_grads(model, gradients(model, 1)[0])
    opt.step()
    state = opt.state_dict()
    assert set(state) == {
        "kind",
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "decoupled_weight_decay",
        "epsilon_hat",
        "decay_biases",
        "step",
        "m",
        "v",
    }
    assert {k: v for k, v in state.items() if k not in ("m", "v")} == {
        "kind": "Adam",
        "lr": 0.01,
        "betas": [0.8, 0.9],
        "eps": 1e-6,
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
        "epsilon_hat": False,
        "decay_biases": True,
        "step": 1,
    }
    for group in ("m", "v"):
        assert set(state[group]) == set(model.params)
        for k, value in state[group].items():
            assert isinstance(value, np.ndarray) and value.shape == tuple(model.params[k].shape)
            assert value is not opt.m[k] and value is not opt.v[k]  # copies
    json.dumps({k: v for k, v in state.items() if k not in ("m", "v")})


def snapshot(opt: Adam) -> tuple:
    return (
        opt.steps,
        opt.lr,
        opt.hyperparams(),
        {k: host(v).copy() for k, v in opt.m.items()},
        {k: host(v).copy() for k, v in opt.v.items()},
    )


def broken(state: dict[str, Any], change: str) -> dict[str, Any]:
    state = through_json(state)
    name = "fc1.weight"
    if change == "wrong-shape":
        state["m"][name] = np.zeros((2, 2))
    elif change == "missing-tensor":
        del state["v"][name]
    elif change == "extra-tensor":
        state["m"]["fc3.weight"] = np.zeros(3)
    elif change == "missing-group":
        del state["v"]
    elif change == "group-not-dict":
        state["m"] = [1, 2]
    elif change == "sgd-state":
        state = {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "decay_biases": False, "steps": 3, "velocity": {}}
    elif change == "not-a-dict":
        state = [state]
    elif change == "negative-v":
        state["v"][name] = -np.ones_like(state["v"][name])
    elif change == "nan-m":
        state["m"][name] = np.full_like(state["m"][name], np.nan)
    elif change == "integer-m":
        state["m"][name] = np.zeros(state["m"][name].shape, dtype=np.int64)
    elif change == "bad-beta":
        state["betas"] = [0.9, 1.0]
    elif change == "bad-lr":
        state["lr"] = -1.0
    elif change == "bad-step":
        state["step"] = 2.5
    elif change == "bad-flag":
        state["epsilon_hat"] = "no"
    return state


BROKEN = [
    ("wrong-shape", ["does not fit this model", "'m' tensors", "fc1.weight", "expected (4, 5), got (2, 2)"]),
    ("missing-tensor", ["missing 'v' tensors: fc1.weight"]),
    ("extra-tensor", ["unexpected 'm' tensors: fc3.weight"]),
    ("missing-group", ["missing optimizer fields: v"]),
    ("group-not-dict", ["m must be a dict of arrays", "list"]),
    ("sgd-state", ["expected an Adam state", "None", "SGD velocities"]),
    ("not-a-dict", ["expected a dict", "list"]),
    ("negative-v", ["v['fc1.weight']", "negative"]),
    ("nan-m", ["m['fc1.weight']", "20 non-finite"]),
    ("integer-m", ["m['fc1.weight']", "floating-point", "int64"]),
    ("bad-beta", ["beta2", "[0, 1)", "1.0"]),
    ("bad-lr", ["lr", "> 0", "-1.0"]),
    ("bad-step", ["step", "integer", "2.5"]),
    ("bad-flag", ["epsilon_hat", "True or False", "'no'"]),
]


@pytest.mark.parametrize(("change", "fragments"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_bad_state_is_rejected_before_anything_changes(change, fragments):
    model = net()
    opt = Adam(model, lr=0.01)
    for g in gradients(model, 3):
        set_grads(model, g)
        opt.step()
    bad = broken(opt.state_dict(), change)
    before = snapshot(opt)
    with raises(CheckpointError, "my checkpoint", *fragments):
        opt.check_state_dict(bad, "my checkpoint")
    with raises(CheckpointError, "my checkpoint", *fragments):
        opt.load_state_dict(bad, "my checkpoint")
    after = snapshot(opt)
    assert after[:3] == before[:3]
    for group in (3, 4):
        for k, value in before[group].items():
            np.testing.assert_array_equal(after[group][k], value)


def test_zero_state():
    model = net()
    opt = Adam(model)
    set_grads(model, gradients(model, 1)[0])
    opt.step()
    opt.zero_state()
    assert opt.steps == 0
    assert all(not host(v).any() for v in (*opt.m.values(), *opt.v.values()))


# -- the update ------------------------------------------------------------------------------------------------------


def whole_array_adam(w, m, v, g, t, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False, hat=False) -> None:
    """The update as whole-array NumPy operations in the documented order (the chunked one must equal it)."""
    c = w.dtype.type
    if weight_decay and decoupled:
        w *= c(1 - lr * weight_decay)
    if weight_decay and not decoupled:
        g = w * c(weight_decay) + g
    m += (g - m) * c(1 - beta1)
    v *= c(beta2)
    v += (g * g) * c(1 - beta2)
    correction1, sqrt_correction2 = 1 - beta1**t, math.sqrt(1 - beta2**t)
    eps_prime = eps if hat else eps * sqrt_correction2
    w -= (m / (np.sqrt(v) + c(eps_prime))) * c(lr * sqrt_correction2 / correction1)


@pytest.mark.parametrize(
    "settings",
    [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled": True}, {"hat": True}],
    ids=["plain", "l2", "decoupled", "epsilon-hat"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3 * CHUNK + 123, parallel.MIN_ELEMENTS + 5 * CHUNK + 7], ids=["chunks", "threads"])
def test_chunked_update_equals_whole_array_update(n, dtype, settings):
    """A parameter several chunks long, updated chunk by chunk (over threads when it has a million elements or
    more), gives bit for bit the whole-array result."""
    if n >= parallel.MIN_ELEMENTS and parallel.THREADS > 1:
        assert len(parallel.ranges(n, n)) >= 2  # the update really is split
    model = Sequential(("fc", Linear(n, 1, dtype=dtype)))
    weight_decay, decoupled, hat = (
        settings.get("weight_decay", 0.0),
        settings.get("decoupled", False),
        settings.get("hat", False),
    )
    opt = Adam(model, lr=0.03, weight_decay=weight_decay, decoupled_weight_decay=decoupled, epsilon_hat=hat)
    w = host(model.params["fc.weight"]).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, grads in enumerate(gradients(model, 3), start=1):
        set_grads(model, grads)
        opt.step()
        whole_array_adam(w, m, v, grads["fc.weight"], t, 0.03, 0.9, 0.999, 1e-8, weight_decay, decoupled, hat)
    np.testing.assert_array_equal(host(model.params["fc.weight"]), w)
    np.testing.assert_array_equal(host(opt.m["fc.weight"]), m)
    np.testing.assert_array_equal(host(opt.v["fc.weight"]), v)


def test_non_contiguous_parameters_are_updated_like_contiguous_ones():
    model, twin = net(), net()
    layer = model["fc1"]
    layer.params["weight"] = dev(np.asfortranarray(host(layer.params["weight"])))  # not C-contiguous
    a, b = Adam(model, lr=0.01, weight_decay=0.1), Adam(twin, lr=0.01, weight_decay=0.1)
    for g in gradients(model, 5):
        set_grads(model, g)
        set_grads(twin, g)
        a.step()
        b.step()
    for k, value in weights(twin).items():
        np.testing.assert_array_equal(weights(model)[k], value)


def test_updates_in_place_keeps_float32_and_follows_astype():
    model = net(np.float32)
    before = dict(model.params)
    opt = Adam(model)
    set_grads(model, gradients(model, 1)[0])
    opt.step()
    for k, value in model.params.items():
        assert value is before[k] and value.dtype == np.float32
        assert opt.m[k].dtype == np.float32 and opt.v[k].dtype == np.float32
    model.astype(np.float64)
    set_grads(model, {k: g.astype(np.float64) for k, g in gradients(model, 1)[0].items()})
    opt.step()
    assert all(opt.m[k].dtype == np.float64 and opt.v[k].dtype == np.float64 for k in model.params)


@pytest.mark.parametrize("decoupled", [False, True], ids=["l2", "decoupled"])
def test_decay_biases_false_leaves_biases_undecayed(decoupled):
    """With zero gradients only the decay moves a parameter: weights move towards 0, biases stay."""
    model = net()
    start = weights(model)
    opt = Adam(model, lr=0.1, weight_decay=0.5, decoupled_weight_decay=decoupled, decay_biases=False)
    set_grads(model, {k: np.zeros_like(v) for k, v in start.items()})
    opt.step()
    for k, value in weights(model).items():
        if k.endswith(".bias"):
            np.testing.assert_array_equal(value, start[k])
        else:
            np.testing.assert_array_equal(np.sign(value - start[k]), -np.sign(start[k]))
    assert opt.decays("fc1.weight") and not opt.decays("fc1.bias")
    assert Adam(model, weight_decay=0.1).decays("fc1.bias")  # the default decays every parameter, as PyTorch


def test_running_statistics_are_not_touched():
    minialex.seed(0)
    model = Sequential(("fc", Linear(3, 4, dtype=np.float64)), ("bn", BatchNorm1d(4, dtype=np.float64)))
    opt = Adam(model, lr=0.1, weight_decay=0.5)
    assert set(opt.m) == {"fc.weight", "fc.bias", "bn.weight", "bn.bias"}
    loss = SoftmaxCrossEntropy()
    loss.forward(model.forward(dev(np.random.default_rng(0).standard_normal((6, 3)))), dev(np.arange(6) % 4))
    model.backward(loss.backward())
    buffers = {k: host(v).copy() for k, v in model.buffers.items()}
    opt.step()
    for k, value in buffers.items():
        np.testing.assert_array_equal(host(model.buffers[k]), value)


def test_a_failed_step_changes_nothing():
    model = net()
    opt = Adam(model)
    grads = gradients(model, 1)[0]
    set_grads(model, grads)
    del model["fc2"].grads["bias"]
    start = weights(model)
    with raises(LayerInputError, "Adam", "no gradient for 'fc2.bias'", "model.backward"):
        opt.step()
    assert opt.steps == 0
    for k, value in weights(model).items():
        np.testing.assert_array_equal(value, start[k])


def test_gradient_and_model_mismatches_are_rejected():
    model = net()
    opt = Adam(model)
    set_grads(model, gradients(model, 1)[0])
    model["fc1"].grads["weight"] = model["fc1"].grads["weight"].astype(np.float32)
    with raises(LayerInputError, "gradient of 'fc1.weight'", "float32(4, 5)", "float64(4, 5)"):
        opt.step()
    grads = gradients(model, 1)[0]
    model["fc1"].params["extra"] = xp.zeros(2)  # a parameter the optimiser has never seen
    set_grads(model, {**grads, "fc1.extra": np.zeros(2)})
    with raises(LayerInputError, "'fc1.extra'", "no matching moments", "zero_state()"):
        opt.step()


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"lr": 0.0}, ["Adam: lr (learning rate)", "> 0", "0.0"]),
        ({"lr": float("nan")}, ["Adam: lr", "nan"]),
        ({"lr": True}, ["Adam: lr", "True"]),
        ({"betas": (1.0, 0.999)}, ["Adam: beta1", "[0, 1)", "1.0"]),
        ({"betas": (0.9, -0.1)}, ["Adam: beta2", "-0.1"]),
        ({"betas": 0.9}, ["Adam: betas must be a pair", "0.9"]),
        ({"betas": (0.9, 0.99, 0.999)}, ["Adam: betas must be a pair"]),
        ({"eps": -1e-8}, ["Adam: eps", ">= 0", "-1e-08"]),
        ({"weight_decay": -0.1}, ["Adam: weight_decay", ">= 0", "-0.1"]),
        ({"epsilon_hat": 1}, ["Adam: epsilon_hat", "True or False", "1"]),
        ({"decoupled_weight_decay": "yes"}, ["Adam: decoupled_weight_decay", "'yes'"]),
    ],
    ids=["lr-0", "lr-nan", "lr-bool", "beta1", "beta2", "betas-scalar", "betas-3", "eps", "wd", "hat", "decoupled"],
)
def test_bad_hyperparameters(kwargs, fragments):
    with raises(ConfigError, *fragments):
        Adam(net(), **kwargs)


def test_model_without_parameters_is_rejected_and_lr_is_validated_on_assignment():
    with raises(ConfigError, "AdamW: model must have params and grads", "list"):
        AdamW([])
    opt = Adam(net())
    with raises(ConfigError, "Adam: lr", "-0.5"):
        opt.lr = -0.5
    assert opt.lr == 1e-3


def test_schedules_drive_adam():
    model = net()
    opt = Adam(model, lr=0.01)
    schedule = StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(4):
        schedule.step()
    assert opt.lr == pytest.approx(0.0025)
    plateau = ReduceLROnPlateau(opt, patience=0)
    plateau.step(1.0)
    assert plateau.step(1.0) and opt.lr == pytest.approx(0.00025)


def test_adam_trains_faster_than_plain_sgd_on_a_badly_scaled_problem():
    """One input feature 1000× larger than the other: Adam's per-parameter step size copes, SGD at a stable
    learning rate barely moves the small weight."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)) * np.array([1000.0, 1.0])
    labels = (x[:, 1] > 0).astype(np.int64)  # only the small feature matters
    losses = {}
    for name, make in (("adam", lambda m: Adam(m, lr=0.05)), ("sgd", lambda m: SGD(m, lr=1e-7, momentum=0.9))):
        minialex.seed(0)
        model = Sequential(("fc", Linear(2, 2, dtype=np.float64)))
        opt, loss = make(model), SoftmaxCrossEntropy()
        for _ in range(100):
            value = float(loss.forward(model.forward(dev(x)), dev(labels)))
            model.backward(loss.backward())
            opt.step()
        losses[name] = value
    assert losses["adam"] < 0.5 * losses["sgd"], losses


@pytest.mark.gpu
@pytest.mark.parametrize(
    "settings",
    [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}, {"epsilon_hat": True}],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_kernel_rounds_like_the_elementwise_operations(dtype, settings):
    """The fused kernel (no fused multiply-adds) against the same update as separate CuPy operations."""
    n = 3 * CHUNK + 5
    model = Sequential(("fc", Linear(n, 1, dtype=dtype)))
    opt = Adam(model, lr=0.03, **settings)
    w = model.params["fc.weight"].copy()
    m, v = xp.zeros_like(w), xp.zeros_like(w)
    for grads in gradients(model, 3):
        set_grads(model, grads)
        opt.step()
        constants = opt._constants(opt.steps, opt.decays("fc.weight"))
        g = dev(grads["fc.weight"])
        adam_module._update(w, m, v, g, constants, xp.empty_like(w), xp.empty_like(w))
    np.testing.assert_array_equal(host(model.params["fc.weight"]), host(w))
    np.testing.assert_array_equal(host(opt.v["fc.weight"]), host(v))


def test_adamw_is_adam_with_decoupled_decay():
    opt = AdamW(net(), 0.01, betas=(0.8, 0.9), eps=1e-6)
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay, opt.decoupled_weight_decay) == (
        0.01,
        (0.8, 0.9),
        1e-6,
        0.01,
        True,
    )
    assert opt.hyperparams()["kind"] == "Adam"
    assert repr(opt) == "AdamW(lr=0.01, betas=(0.8, 0.9), eps=1e-06, weight_decay=0.01, decoupled_weight_decay=True)"
    with raises(ConfigError, "AdamW", "always decoupled"):
        AdamW(net(), decoupled_weight_decay=False)
