"""Stochastic gradient descent with the paper's momentum and weight decay.

The update rule (the paper, §5), for every weight w with velocity v, learning rate ε, momentum μ and weight
decay λ, where g = ∂L/∂w is the gradient of the batch-mean loss::

    v ← μ·v − λ·ε·w − ε·g
    w ← w + v

(μ = 0.9, λ = 0.0005, ε = 0.01 in the paper.) Weight decay is applied to weights, not to biases, as in
Caffe's ``bvlc_alexnet`` (``decay_mult: 0`` on biases): decaying a bias pulls a ReLU's threshold to 0 and
regularises nothing. A parameter is a bias when its name ends in ``.bias``; ``decay_biases=True``
decays them too.

Relation to ``torch.optim.SGD``. PyTorch keeps a buffer b of gradients, not of steps::

    b ← μ·b + (g + λ·w)
    w ← w − ε·b

While ε is constant the two are the same algorithm: by induction v = −ε·b (true at the start, both 0;
then v' = μ·v − ε(g + λ·w) = −ε(μ·b + g + λ·w) = −ε·b'), so the weights agree step for step. When ε
changes from ε₁ to ε₂ they differ: PyTorch multiplies the whole remembered buffer by the *new* ε at once,
while the paper's v keeps the old ε in its past steps and forgets them at rate μ. On the first step after
the change, PyTorch's step is −ε₂(μ·b + g + λ·w) and the paper's is μ·v − ε₂(g + λ·w) with v = −ε₁·b, so
the two weights then differ by exactly μ·(ε₂ − ε₁)·b: after a division by 10, PyTorch's very next step is
10× smaller, while the paper's decays towards the new size over ~1/(1 − μ) = 10 steps.

``velocity_follows_lr=True`` gives PyTorch's behaviour: when ε changes from ε₁ to ε₂ between two steps, the
velocity is first rescaled, v ← v · ε₂/ε₁, which keeps v = −ε·b true across the change, so the weights
then agree with ``torch.optim.SGD`` step for step. The rescaling is folded into that one step's momentum
(μ·ε₂/ε₁), so it costs no extra pass. The default, False, is the paper's rule.

Every parameter is updated in place (the model's arrays are never replaced), in its own dtype (float32
stays float32). On NumPy the update runs over chunks of :data:`CHUNK` elements with one reusable scratch
buffer (:mod:`minialex._engine.workspace`), so no temporary as large as fc6's 151 MB weight is ever made
and each chunk stays in cache for all four operations. On CuPy it is one fused elementwise kernel, compiled
without fused multiply-adds (``--fmad=false``): it then rounds after every multiply and every subtraction,
in the same order as the NumPy update, and gives bit for bit the same weights. The NumPy update is the
reference the tests check the kernel against.

Schedules (:mod:`minialex.optim.schedules`) change ``optimizer.lr`` once per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex._engine import workspace
from minialex.backend import xp
from minialex.errors import CheckpointError, ConfigError, LayerInputError, mismatch_report, shape_mismatches

Array = Any
CHUNK = 1 << 16
"""Elements per chunk of the NumPy update: 256 KiB of float32, well inside L2 with v, w and g."""

FIELDS = ("lr", "momentum", "weight_decay", "decay_biases", "velocity_follows_lr", "velocity_lr", "steps")
"""The JSON-able fields of :meth:`SGD.state_dict` (plus its tensor group ``"velocity"``)."""

_OPTIONAL_FIELDS = {"velocity_follows_lr": False, "velocity_lr": None}  # absent from older checkpoints


def check_lr(value: Any, what: str = "SGD: lr (learning rate)", error: type = ConfigError) -> float:
    """A learning rate: a finite number > 0 (large is legal: the trainer detects divergence)."""
    return validate.number(value, what, low=0.0, high=math.inf, low_open=True, high_open=True, error=error)


def check_momentum(value: Any, what: str = "SGD: momentum", error: type = ConfigError) -> float:
    """A momentum: a finite number in [0, 1)."""
    return validate.number(value, what, low=0.0, high=1.0, high_open=True, error=error)


_kernels: dict[bool, Any] = {}


def _gpu_update(w: Array, v: Array, g: Array, mu: float, decay: float, lr: float) -> None:
    """The same update as one CuPy elementwise kernel (one read of w, v, g and one write of w, v).

    Compiled with ``--fmad=false``: every product is rounded before it is subtracted, as NumPy does, so the
    result is bit for bit the NumPy update's (a fused multiply-add would round once and differ in the last
    bit). Without weight decay the decay term is left out, as the NumPy update leaves it out.
    """
    with_decay = bool(decay)
    kernel = _kernels.get(with_decay)
    if kernel is None:
        decay_term = " - decay * w" if with_decay else ""
        kernel = _kernels[with_decay] = xp.ElementwiseKernel(
            "T g, T mu, T decay, T lr",
            "T w, T v",
            f"v = mu * v{decay_term} - lr * g; w += v;",
            "minialex_sgd_paper" + ("_decay" if with_decay else ""),
            options=("--fmad=false",),
        )
    t = w.dtype.type
    kernel(g, t(mu), t(decay), t(lr), w, v)


class SGD:
    """The paper's SGD with momentum and weight decay, updating ``model.params`` in place.

    Parameters
    ----------
    model : anything with ``params`` and ``grads`` dicts of the same keys (a minialex model or layer)
    lr : ε > 0, the learning rate (``optimizer.lr`` may be changed between steps, e.g. by a schedule)
    momentum : μ in [0, 1)
    weight_decay : λ >= 0
    decay_biases : also decay parameters named ``*.bias`` (default False: the paper's Caffe setting)
    velocity_follows_lr : rescale the velocity by ε_new/ε_old when the learning rate changes, as
        ``torch.optim.SGD`` effectively does (default False: the paper's rule; see the module docstring)

    Attributes
    ----------
    velocity : dict name -> array v of the parameter's shape and dtype, on the backend's device
    velocity_lr : the learning rate of the last step (the one the velocity holds), None before the first
    steps : number of :meth:`step` calls since construction or :meth:`zero_state`
    """

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        decay_biases: bool = False,
        velocity_follows_lr: bool = False,
    ) -> None:
        if not hasattr(model, "params") or not hasattr(model, "grads"):
            raise ConfigError(f"SGD: model must have params and grads, got a {type(model).__name__}")
        self.model = model
        self.lr = lr
        self.momentum = check_momentum(momentum)
        self.weight_decay = validate.number(weight_decay, "SGD: weight_decay", low=0.0)
        self.decay_biases = validate.flag(decay_biases, "SGD: decay_biases")
        self.velocity_follows_lr = validate.flag(velocity_follows_lr, "SGD: velocity_follows_lr")
        self.velocity: dict[str, Array] = {}
        self.velocity_lr: float | None = None
        self.steps = 0
        self.zero_state()

    # -- the learning rate: validated on every assignment (schedules set it) --------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_lr(value)

    def decays(self, name: str) -> bool:
        """Whether weight decay applies to the parameter ``name``."""
        return self.decay_biases or not (name.endswith(".bias") or name == "bias")

    def zero_state(self) -> None:
        """Set every velocity to zero (as at construction) and the step count to 0."""
        self.velocity = {name: xp.zeros_like(w) for name, w in self.model.params.items()}
        self.velocity_lr = None
        self.steps = 0

    # -- the update -----------------------------------------------------------------------------------------
    def step(self) -> None:
        """One update of every parameter from ``model.grads`` (filled by the last backward pass).

        The gradients are read, never kept: a layer may write its next backward pass into the same arrays
        (:class:`~minialex.layers.Linear` reuses its weight-gradient array from step to step), so the
        gradients ``step`` used are gone after the next ``model.backward``. Copy them to keep them.
        """
        params, grads = self.model.params, self.model.grads
        for name, w in params.items():  # every check before any update: a step is applied whole or not at all
            g = grads.get(name)
            if g is None:
                raise LayerInputError(f"SGD: no gradient for {name!r}; call model.backward before optimizer.step")
            if g.shape != w.shape or g.dtype != w.dtype:
                raise LayerInputError(
                    f"SGD: gradient of {name!r} is {g.dtype}{tuple(g.shape)}, parameter is {w.dtype}{tuple(w.shape)}"
                )
            v = self.velocity.get(name)
            if v is None or v.shape != w.shape:
                raise LayerInputError(
                    f"SGD: the model's parameter {name!r} {tuple(w.shape)} has no matching velocity; the model "
                    "changed after the optimiser was made (call zero_state() or make a new SGD)"
                )
        mu = self.momentum
        if self.velocity_follows_lr and self.velocity_lr is not None and self.velocity_lr != self._lr:
            mu *= self._lr / self.velocity_lr  # v ← v · ε_new/ε_old, folded into this step's momentum
        for name, w in params.items():
            v = self.velocity[name]
            if v.dtype != w.dtype:  # the model was cast with astype(): follow it
                v = self.velocity[name] = v.astype(w.dtype)
            decay = self.weight_decay * self._lr if self.decays(name) else 0.0
            self._update(w, v, grads[name], mu, decay, self._lr)
        self.velocity_lr = self._lr
        self.steps += 1

    def _update(self, w: Array, v: Array, g: Array, mu: float, decay: float, lr: float) -> None:
        """v ← μ·v − decay·w − lr·g ; w ← w + v, in place (decay = λ·ε, or 0 for a bias)."""
        if backend.on_gpu:
            _gpu_update(w, v, g, mu, decay, lr)
            return
        t = w.dtype.type
        mu, decay, lr = t(mu), t(decay), t(lr)
        if not (w.flags.c_contiguous and v.flags.c_contiguous):  # not made by minialex: plain whole-array form
            v *= mu
            if decay:
                v -= decay * w
            v -= lr * g
            w += v
            return
        flat_w, flat_v = w.reshape(-1), v.reshape(-1)
        flat_g = g.reshape(-1)  # a copy only if g is not contiguous
        scratch = workspace.scratch("sgd.chunk", (CHUNK,), w.dtype)
        for start in range(0, w.size, CHUNK):
            stop = min(start + CHUNK, w.size)
            wc, vc, gc, s = flat_w[start:stop], flat_v[start:stop], flat_g[start:stop], scratch[: stop - start]
            vc *= mu
            if decay:
                np.multiply(wc, decay, out=s)
                vc -= s
            np.multiply(gc, lr, out=s)
            vc -= s
            wc += vc

    # -- state ----------------------------------------------------------------------------------------------
    def hyperparams(self) -> dict[str, Any]:
        """The JSON-able part of the state: every name in :data:`FIELDS`."""
        return {
            "lr": self._lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
            "velocity_follows_lr": self.velocity_follows_lr,
            "velocity_lr": self.velocity_lr,
            "steps": self.steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """``hyperparams()`` plus the tensor group ``"velocity"``: name -> host NumPy copy of each velocity."""
        return {**self.hyperparams(), "velocity": {k: np.array(backend.to_numpy(v)) for k, v in self.velocity.items()}}

    def _parse_state(self, state: Any, source: str) -> dict[str, Any]:
        """The scalars of ``state``, checked and converted (the fields older checkpoints lack take defaults)."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: expected a dict, got {type(state).__name__}")
        absent = [k for k in (*FIELDS, "velocity") if k not in state and k not in _OPTIONAL_FIELDS]
        if absent:
            raise CheckpointError(f"{source}: missing optimizer fields: {', '.join(absent)}")
        state = {**_OPTIONAL_FIELDS, **state}
        err = CheckpointError
        velocity_lr = state["velocity_lr"]
        return {
            "lr": check_lr(state["lr"], f"{source}: lr", err),
            "momentum": check_momentum(state["momentum"], f"{source}: momentum", err),
            "weight_decay": validate.number(state["weight_decay"], f"{source}: weight_decay", low=0.0, error=err),
            "decay_biases": validate.flag(state["decay_biases"], f"{source}: decay_biases", error=err),
            "velocity_follows_lr": validate.flag(
                state["velocity_follows_lr"], f"{source}: velocity_follows_lr", error=err
            ),
            "velocity_lr": None if velocity_lr is None else check_lr(velocity_lr, f"{source}: velocity_lr", err),
            "steps": validate.integer(state["steps"], f"{source}: steps", low=0, error=err),
        }

    def check_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Raise :class:`CheckpointError` if ``state`` does not fit this model; changes nothing."""
        if isinstance(state, dict) and state.get("kind") is not None and "velocity" not in state:
            raise CheckpointError(
                f"{source}: expected an SGD state (velocities), got the state of a {state['kind']!r} optimiser"
            )
        self._parse_state(state, source)
        params, velocity = self.model.params, state["velocity"]
        if not isinstance(velocity, dict):
            raise CheckpointError(f"{source}: velocity must be a dict of arrays, got {type(velocity).__name__}")
        report = mismatch_report(*shape_mismatches(params, velocity), noun="velocities")
        if report:
            raise CheckpointError(f"{source} does not fit this model: {report}")

    def load_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Restore a :meth:`state_dict` (velocities copied to the device in the parameters' dtype)."""
        self.check_state_dict(state, source)
        values = self._parse_state(state, source)
        params = self.model.params
        self.velocity = {k: backend.asarray(state["velocity"][k], dtype=params[k].dtype).copy() for k in params}
        self._lr = values.pop("lr")
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self._lr:g}, momentum={self.momentum:g}, weight_decay={self.weight_decay:g}, "
            f"decay_biases={self.decay_biases}, velocity_follows_lr={self.velocity_follows_lr})"
        )
