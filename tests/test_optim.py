"""SGD with the paper's rule, its relation to torch.optim.SGD, and the learning-rate schedules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import minialex
from minialex import backend
from minialex.errors import CheckpointError, ConfigError, LayerInputError
from minialex.layers import Linear, Sequential, SoftmaxCrossEntropy
from minialex.models import alexnet
from minialex.optim import CHUNK, SGD, ReduceLROnPlateau, StepLR


def _net(dtype=np.float64, sizes=(3, 4, 2)) -> Sequential:
    minialex.seed(0)
    return Sequential(
        ("fc1", Linear(sizes[0], sizes[1], dtype=dtype)),
        ("fc2", Linear(sizes[1], sizes[2], dtype=dtype)),
    ).astype(dtype)


def _set_grads(model: Sequential, grads: dict[str, np.ndarray]) -> None:
    """Put given gradients where a backward pass would (each layer's ``grads``)."""
    for name, layer in model.named_layers():
        layer.grads = {k: backend.asarray(grads[f"{name}.{k}"]) for k in layer.params}


def _gradient_sequence(model: Sequential, steps: int, seed: int = 5) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(v.shape) for k, v in model.params.items()} for _ in range(steps)]


def _host(model: Sequential) -> dict[str, np.ndarray]:
    return {k: backend.to_numpy(v).copy() for k, v in model.params.items()}


def test_update_rule_by_hand_over_three_steps():
    """v ← μv − λεw − εg ; w ← w + v, element by element in plain Python floats."""
    model = _net()
    lr, mu, wd = 0.05, 0.9, 0.01
    opt = SGD(model, lr=lr, momentum=mu, weight_decay=wd)
    w = {k: [float(a) for a in v.reshape(-1)] for k, v in _host(model).items()}
    v = {k: [0.0] * len(a) for k, a in w.items()}
    for grads in _gradient_sequence(model, 3):
        _set_grads(model, grads)
        opt.step()
        for k in w:
            decay = 0.0 if k.endswith(".bias") else wd
            for i, g in enumerate(grads[k].reshape(-1)):
                v[k][i] = mu * v[k][i] - decay * lr * w[k][i] - lr * float(g)
                w[k][i] = w[k][i] + v[k][i]
    for k, value in _host(model).items():
        np.testing.assert_allclose(value.reshape(-1), w[k], rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(backend.to_numpy(opt.velocity[k]).reshape(-1), v[k], rtol=1e-13, atol=1e-16)
    assert opt.steps == 3


def test_first_step_numbers():
    """One weight, one bias, written out: w = 2, g = 0.5, ε = 0.1, λ = 0.01 -> v = −0.002 − 0.05."""
    model = Sequential(("fc", Linear(1, 1, dtype=np.float64)))
    layer = model["fc"]
    layer.params["weight"][...] = 2.0
    layer.params["bias"][...] = 3.0
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=0.01)
    layer.grads = {"weight": backend.asarray(np.array([[0.5]])), "bias": backend.asarray(np.array([0.5]))}
    opt.step()
    assert float(layer.params["weight"][0, 0]) == pytest.approx(2.0 - 0.002 - 0.05, abs=1e-15)
    assert float(layer.params["bias"][0]) == pytest.approx(3.0 - 0.05, abs=1e-15)  # no decay on the bias
    opt.step()  # same gradient: v = 0.9·(−0.052) − 0.01·0.1·1.948 − 0.05
    assert float(layer.params["weight"][0, 0]) == pytest.approx(1.948 + 0.9 * -0.052 - 0.001948 - 0.05, abs=1e-15)


def test_updates_in_place_and_keeps_float32():
    model = _net(np.float32)
    before = dict(model.params)
    opt = SGD(model)
    _set_grads(model, {k: g.astype(np.float32) for k, g in _gradient_sequence(model, 1)[0].items()})
    opt.step()
    for k, v in model.params.items():
        assert v is before[k] and v.dtype == np.float32 and opt.velocity[k].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_update_equals_whole_array_update(dtype):
    """A parameter several chunks long, updated chunk by chunk, gives bit for bit the whole-array result."""
    n = 3 * CHUNK + 123
    model = Sequential(("fc", Linear(n, 1, dtype=dtype)))
    opt = SGD(model, lr=0.03, momentum=0.9, weight_decay=5e-4)
    w = backend.to_numpy(model.params["fc.weight"]).copy()
    v = np.zeros_like(w)
    t = np.dtype(dtype).type
    for grads in _gradient_sequence(model, 2):
        grads = {k: g.astype(dtype) for k, g in grads.items()}
        _set_grads(model, grads)
        opt.step()
        v *= t(0.9)
        v -= t(0.03 * 5e-4) * w
        v -= t(0.03) * grads["fc.weight"]
        w += v
    assert np.array_equal(backend.to_numpy(model.params["fc.weight"]), w)


def test_biases_are_not_decayed_unless_asked():
    for decay_biases in (False, True):
        model = _net()
        start = _host(model)
        for v in model.params.values():
            v[...] = 1.0
        opt = SGD(model, lr=0.1, momentum=0.0, weight_decay=0.5, decay_biases=decay_biases)
        _set_grads(model, {k: np.zeros_like(v) for k, v in start.items()})
        opt.step()
        for k, v in _host(model).items():
            shrunk = 1.0 - 0.1 * 0.5
            expected = 1.0 if k.endswith(".bias") and not decay_biases else shrunk
            assert np.all(v == expected), (k, decay_biases)


def _torch_pair(torch, model, lr, mu, wd):
    """A torch copy of the parameters and a torch.optim.SGD that decays weights but not biases."""
    tensors = {k: torch.tensor(backend.to_numpy(v), requires_grad=True) for k, v in model.params.items()}
    groups = [
        {"params": [t for k, t in tensors.items() if not k.endswith(".bias")], "weight_decay": wd},
        {"params": [t for k, t in tensors.items() if k.endswith(".bias")], "weight_decay": 0.0},
    ]
    return tensors, torch.optim.SGD(groups, lr=lr, momentum=mu)


def _step_both(torch, opt, torch_opt, tensors, model, grads) -> None:
    """Give both optimisers the same gradients and take one step with each."""
    _set_grads(model, grads)
    opt.step()
    for k, t in tensors.items():
        t.grad = torch.from_numpy(grads[k].copy())
    torch_opt.step()


def test_equivalent_to_torch_sgd_while_lr_is_constant():
    torch = pytest.importorskip("torch")
    model = _net()
    tensors, torch_opt = _torch_pair(torch, model, lr=0.02, mu=0.9, wd=5e-4)
    opt = SGD(model, lr=0.02, momentum=0.9, weight_decay=5e-4)
    for grads in _gradient_sequence(model, 6):
        _step_both(torch, opt, torch_opt, tensors, model, grads)
        for k, value in _host(model).items():
            theirs = tensors[k].detach().numpy()
            assert np.abs(value - theirs).max() <= 1e-14 * np.abs(theirs).max(), k


def test_differs_from_torch_sgd_when_lr_changes_as_derived():
    """After ε₁ → ε₂, ours − torch's = μ·(ε₂ − ε₁)·b, b being torch's buffer before the step (module docstring)."""
    torch = pytest.importorskip("torch")
    model = _net()
    lr1, lr2, mu = 0.05, 0.005, 0.9
    tensors, torch_opt = _torch_pair(torch, model, lr=lr1, mu=mu, wd=5e-4)
    opt = SGD(model, lr=lr1, momentum=mu, weight_decay=5e-4)
    grads_seq = _gradient_sequence(model, 4)
    for step, grads in enumerate(grads_seq):
        if step == 3:
            opt.lr = lr2
            for group in torch_opt.param_groups:
                group["lr"] = lr2
            buffers = {k: torch_opt.state[t]["momentum_buffer"].numpy().copy() for k, t in tensors.items()}
        _step_both(torch, opt, torch_opt, tensors, model, grads)
    for k, value in _host(model).items():
        theirs = tensors[k].detach().numpy()
        difference = value - theirs
        assert np.abs(difference).max() > 1e-4  # a real difference, not rounding
        np.testing.assert_allclose(difference, mu * (lr2 - lr1) * buffers[k], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("drops", [(3,), (2, 4)], ids=["one-drop", "two-changes"])
def test_velocity_follows_lr_agrees_with_torch_sgd_across_learning_rate_changes(drops):
    """v ← v · ε_new/ε_old keeps v = −ε·b through a change: then torch and minialex agree step for step."""
    torch = pytest.importorskip("torch")
    model = _net()
    lrs = {0: 0.05, drops[0]: 0.005}
    if len(drops) > 1:
        lrs[drops[1]] = 0.02  # an increase too
    tensors, torch_opt = _torch_pair(torch, model, lr=lrs[0], mu=0.9, wd=5e-4)
    opt = SGD(model, lr=lrs[0], momentum=0.9, weight_decay=5e-4, velocity_follows_lr=True)
    for step, grads in enumerate(_gradient_sequence(model, 7)):
        if step in lrs:
            opt.lr = lrs[step]
            for group in torch_opt.param_groups:
                group["lr"] = lrs[step]
        _step_both(torch, opt, torch_opt, tensors, model, grads)
        for k, value in _host(model).items():
            theirs = tensors[k].detach().numpy()
            assert np.abs(value - theirs).max() <= 1e-14 * np.abs(theirs).max(), (step, k)
        # and the velocity is −ε times torch's buffer, as the module docstring derives
        for k, t in tensors.items():
            buffer = torch_opt.state[t]["momentum_buffer"].numpy()
            np.testing.assert_allclose(backend.to_numpy(opt.velocity[k]), -opt.lr * buffer, rtol=1e-12, atol=1e-17)


def test_velocity_follows_lr_changes_nothing_while_lr_is_constant():
    models = [_net(), _net()]
    opts = [SGD(models[0], lr=0.03), SGD(models[1], lr=0.03, velocity_follows_lr=True)]
    for grads in _gradient_sequence(models[0], 4):
        for model, opt in zip(models, opts, strict=True):
            _set_grads(model, grads)
            opt.step()
    a, b = _host(models[0]), _host(models[1])
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bit for bit: the rescaling is never applied


def test_velocity_follows_lr_rescales_once_by_the_ratio():
    """After a change ε₁ → ε₂ the first step uses momentum μ·ε₂/ε₁, by hand on one weight without decay."""
    model = Sequential(("fc", Linear(1, 1, bias=False, dtype=np.float64)))
    model["fc"].params["weight"][...] = 1.0
    opt = SGD(model, lr=0.1, momentum=0.5, weight_decay=0.0, velocity_follows_lr=True)
    model["fc"].grads = {"weight": backend.asarray(np.array([[2.0]]))}
    opt.step()  # v = −0.2, w = 0.8
    opt.lr = 0.01
    opt.step()  # v = 0.5 · (−0.2 · 0.01/0.1) − 0.01 · 2 = −0.03, w = 0.77
    assert float(opt.velocity["fc.weight"][0, 0]) == pytest.approx(-0.03, abs=1e-16)
    assert float(model["fc"].params["weight"][0, 0]) == pytest.approx(0.77, abs=1e-15)
    assert opt.velocity_lr == 0.01


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_gpu_update_is_bit_equal_to_the_numpy_update(dtype):
    """The CuPy kernel, compiled without fused multiply-adds, rounds as the NumPy reference does."""
    model = _net(dtype, sizes=(300, 200, 10))
    w0 = _host(model)
    opt = SGD(model, lr=0.037, momentum=0.9, weight_decay=5e-4)
    grads_seq = [{k: g.astype(dtype) for k, g in grads.items()} for grads in _gradient_sequence(model, 3)]
    w, v = {k: a.copy() for k, a in w0.items()}, {k: np.zeros_like(a) for k, a in w0.items()}
    t = np.dtype(dtype).type
    for grads in grads_seq:
        _set_grads(model, grads)
        opt.step()
        for k in w:  # the NumPy update, operation for operation
            decay = 0.0 if k.endswith(".bias") else 5e-4 * 0.037
            v[k] *= t(0.9)
            if decay:
                v[k] -= t(decay) * w[k]
            v[k] -= t(0.037) * grads[k]
            w[k] += v[k]
    for k, value in _host(model).items():
        np.testing.assert_array_equal(value, w[k])
        np.testing.assert_array_equal(backend.to_numpy(opt.velocity[k]), v[k])


def test_training_steps_lower_the_loss():
    minialex.seed(1)
    model = alexnet("mini", widths=(4, 4, 8, 16), image_size=15, num_classes=3, dtype=np.float64).eval()
    x = backend.asarray(np.random.default_rng(0).standard_normal((6, 1, 15, 15)))
    labels = backend.asarray(np.array([0, 1, 2, 0, 1, 2]))
    loss, opt = SoftmaxCrossEntropy(), SGD(model, lr=0.05)
    first = float(loss.forward(model.forward(x), labels))
    for _ in range(40):
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward())
        opt.step()
    assert float(loss.forward(model.forward(x), labels)) < 0.5 * first


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"decay_biases": "yes"}, "decay_biases"),
        ({"velocity_follows_lr": 1}, "velocity_follows_lr must be True or False"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SGD(_net(), **kwargs)


def test_lr_is_validated_on_assignment():
    opt = SGD(_net())
    with pytest.raises(ConfigError, match=r"lr \(learning rate\) must be a finite number in \(0, inf\), got -1"):
        opt.lr = -1
    opt.lr = 10.0  # large is legal (the trainer detects divergence), only non-positive/non-finite is not
    assert opt.lr == 10.0


def test_step_before_backward():
    with pytest.raises(LayerInputError, match=r"no gradient for 'fc1\.weight'"):
        SGD(_net()).step()


def test_a_step_with_a_missing_gradient_changes_nothing():
    model = _net()
    before = _host(model)
    grads = _gradient_sequence(model, 1)[0]
    _set_grads(model, grads)
    model["fc2"].grads = {"weight": model["fc2"].grads["weight"]}  # the last parameter, fc2.bias, has none
    opt = SGD(model)
    with pytest.raises(LayerInputError, match=r"no gradient for 'fc2\.bias'"):
        opt.step()
    after = _host(model)
    assert all(np.array_equal(before[k], after[k]) for k in before) and opt.steps == 0


def test_velocity_follows_a_dtype_change():
    model = _net(np.float32)
    opt = SGD(model)
    model.astype(np.float64)
    _set_grads(model, _gradient_sequence(model, 1)[0])
    opt.step()
    assert all(v.dtype == np.float64 for v in opt.velocity.values())


def test_state_dict_round_trip_continues_identically():
    model_a, model_b = _net(), _net()
    opt_a = SGD(model_a, lr=0.03)
    grads_seq = _gradient_sequence(model_a, 5)
    for grads in grads_seq[:3]:
        _set_grads(model_a, grads)
        opt_a.step()
    opt_a.lr = 0.007
    state = opt_a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state["velocity"].values())
    state["velocity"]["fc1.weight"][...] += 0  # a host copy: touching it changes nothing
    model_b.load_state_dict(model_a.state_dict())
    opt_b = SGD(model_b, lr=0.5, momentum=0.5, weight_decay=0.0)
    opt_b.load_state_dict(state)
    assert (opt_b.lr, opt_b.momentum, opt_b.weight_decay, opt_b.steps) == (0.007, 0.9, 5e-4, 3)
    for grads in grads_seq[3:]:
        for model, opt in ((model_a, opt_a), (model_b, opt_b)):
            _set_grads(model, grads)
            opt.step()
    a, b = _host(model_a), _host(model_b)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_state_dict_keeps_velocity_follows_lr_and_resumes_across_a_learning_rate_change():
    model_a, model_b = _net(), _net()
    opt_a = SGD(model_a, lr=0.05, velocity_follows_lr=True)
    grads_seq = _gradient_sequence(model_a, 5)
    for grads in grads_seq[:3]:
        _set_grads(model_a, grads)
        opt_a.step()
    state = opt_a.state_dict()
    assert state["velocity_follows_lr"] is True and state["velocity_lr"] == 0.05
    assert {k: v for k, v in state.items() if k != "velocity"} == opt_a.hyperparams()
    json.dumps(opt_a.hyperparams())  # JSON-able, as checkpoints store it
    model_b.load_state_dict(model_a.state_dict())
    opt_b = SGD(model_b, lr=0.5)
    opt_b.load_state_dict(state)
    assert opt_b.velocity_follows_lr and opt_b.velocity_lr == 0.05
    for opt in (opt_a, opt_b):
        opt.lr = 0.005  # the drop happens after the resume: the rescaling must still use 0.05 / 0.005
    for grads in grads_seq[3:]:
        for model, opt in ((model_a, opt_a), (model_b, opt_b)):
            _set_grads(model, grads)
            opt.step()
    a, b = _host(model_a), _host(model_b)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_state_without_the_newer_fields_still_loads():
    """A state saved before ``velocity_follows_lr`` existed loads with the paper's rule."""
    opt = SGD(_net(), lr=0.03)
    state = opt.state_dict()
    del state["velocity_follows_lr"], state["velocity_lr"]
    other = SGD(_net(), velocity_follows_lr=True)
    other.load_state_dict(state)
    assert other.velocity_follows_lr is False and other.velocity_lr is None and other.lr == 0.03


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"steps": -1}, "steps must be an integer >= 0"),
        ({"velocity_lr": 0.0}, "velocity_lr must be a finite number in"),
        ({"velocity_follows_lr": "no"}, "velocity_follows_lr must be True or False"),
        ({"decay_biases": 0}, "decay_biases must be True or False"),
    ],
)
def test_malformed_state_fields_are_rejected_and_change_nothing(change, match):
    opt = SGD(_net())
    before = opt.hyperparams()
    with pytest.raises(CheckpointError, match=match):
        opt.load_state_dict(opt.state_dict() | change, source="ckpt")
    assert opt.hyperparams() == before


def test_state_of_another_model_is_rejected_with_the_list():
    opt = SGD(_net(sizes=(3, 4, 2)))
    other = SGD(Sequential(("fc1", Linear(3, 5)), ("head", Linear(5, 2)))).state_dict()
    before = {k: v.copy() for k, v in opt.velocity.items()}
    with pytest.raises(CheckpointError) as info:
        opt.load_state_dict(other, source="ckpt.safetensors")
    message = str(info.value)
    assert "ckpt.safetensors" in message
    assert "missing velocities: fc2.bias, fc2.weight" in message
    assert "unexpected velocities: head.bias, head.weight" in message
    assert "fc1.weight: expected (4, 3), got (5, 3)" in message
    assert all(np.array_equal(before[k], opt.velocity[k]) for k in before)
    bad = opt.state_dict() | {"lr": -1.0}
    with pytest.raises(CheckpointError, match="lr"):
        opt.load_state_dict(bad)
    with pytest.raises(CheckpointError, match="velocity must be a dict"):
        opt.load_state_dict(opt.state_dict() | {"velocity": [1, 2]})


def test_zero_state():
    model = _net()
    opt = SGD(model)
    _set_grads(model, _gradient_sequence(model, 1)[0])
    opt.step()
    opt.zero_state()
    assert opt.steps == 0 and all(not np.any(backend.to_numpy(v)) for v in opt.velocity.values())


# -- schedules --------------------------------------------------------------------------------------------------


def test_plateau_divides_by_ten_and_caps_the_reductions():
    opt = SGD(_net(), lr=0.01)
    sched = ReduceLROnPlateau(opt, factor=0.1, patience=1, max_reductions=2)
    errors = [0.5, 0.4, 0.4, 0.41, 0.3, 0.35, 0.36, 0.2, 0.2, 0.2, 0.2, 0.2]
    lrs, reduced = [], []
    for e in errors:
        reduced.append(sched.step(e))
        lrs.append(opt.lr)
    # epoch 3 and 4 do not improve on 0.4 -> the 2nd one past patience 1 reduces; same after 0.3; then capped.
    assert reduced == [False, False, False, True, False, False, True, False, False, False, False, False]
    np.testing.assert_allclose(lrs, [0.01] * 3 + [1e-3] * 3 + [1e-4] * 6, rtol=1e-12)
    assert sched.num_reductions == 2 and sched.exhausted


def test_plateau_mode_max_and_threshold():
    opt = SGD(_net(), lr=1.0)
    sched = ReduceLROnPlateau(opt, patience=0, mode="max", threshold=0.01, max_reductions=5)
    assert [sched.step(a) for a in (0.90, 0.905, 0.92, 0.90)] == [False, True, False, True]
    assert opt.lr == pytest.approx(0.01)


@pytest.mark.parametrize("metric", [None, math.nan, "0.3"])
def test_plateau_needs_a_finite_metric(metric):
    sched = ReduceLROnPlateau(SGD(_net()))
    with pytest.raises(ConfigError, match="metric"):
        sched.step(metric)


@pytest.mark.parametrize(
    "kwargs", [{"factor": 1.0}, {"factor": 0.0}, {"patience": -1}, {"max_reductions": 1.5}, {"mode": "up"}]
)
def test_plateau_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        ReduceLROnPlateau(SGD(_net()), **kwargs)


def test_plateau_state_round_trip():
    errors = [0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3]
    opt_a = SGD(_net(), lr=0.01)
    a = ReduceLROnPlateau(opt_a, patience=1)
    for e in errors[:5]:
        a.step(e)
    opt_b = SGD(_net(), lr=opt_a.lr)
    b = ReduceLROnPlateau(opt_b)
    b.load_state_dict(a.state_dict())
    for e in errors[5:]:
        assert a.step(e) == b.step(e)
    assert a.state_dict() == b.state_dict() and opt_a.lr == opt_b.lr
    with pytest.raises(CheckpointError, match="expected a ReduceLROnPlateau state, got 'StepLR'"):
        b.load_state_dict(StepLR(opt_b, 3).state_dict())
    before = b.state_dict()
    for bad in ({"mode": "up"}, {"factor": 2.0}, {"patience": "x"}):
        with pytest.raises(CheckpointError, match="malformed ReduceLROnPlateau state"):
            b.load_state_dict(before | bad)
    assert b.state_dict() == before  # a rejected state changes nothing


def test_step_lr():
    opt = SGD(_net(), lr=0.01)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(7):
        sched.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-12)
    other = StepLR(SGD(_net(), lr=0.5), step_size=5)
    other.load_state_dict(sched.state_dict())
    assert other.state_dict() == sched.state_dict()
    with pytest.raises(ConfigError, match="step_size"):
        StepLR(opt, step_size=0)
    with pytest.raises(CheckpointError, match="expected a StepLR state"):
        other.load_state_dict({"kind": "ReduceLROnPlateau"})
