"""Stochastic gradient descent with the paper's momentum and weight decay, and learning-rate schedules.

The update rule ([P] §5), for every weight w with velocity v, learning rate ε, momentum μ and weight
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
changes they differ: PyTorch multiplies the whole remembered buffer by the *new* ε at once, while the
paper's v keeps the old ε in its past steps and forgets them at rate μ. After a division by 10, PyTorch's
very next step is 10× smaller; the paper's decays towards the new size over ~1/(1 − μ) = 10 steps.

Every parameter is updated in place (the model's arrays are never replaced), in its own dtype (float32
stays float32). On NumPy the update runs over chunks of at most 2¹⁶ elements with one reusable scratch
buffer, so no temporary as large as fc6's 151 MB weight is ever made and each chunk stays in cache for all
four operations (on fc6, one thread: 71 ms per step against 339 ms for the whole-array form, which
allocates two 151 MB temporaries); on CuPy it is one fused elementwise kernel.

Schedules (:class:`ReduceLROnPlateau`, :class:`StepLR`) change ``optimizer.lr`` once per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend
from minialex._engine import workspace
from minialex.backend import xp
from minialex.errors import CheckpointError, ConfigError, LayerInputError, mismatch_report, shape_mismatches

Array = Any
CHUNK = 1 << 16  # elements per chunk of the NumPy update: 256 KiB of float32, well inside L2 with v, w, g


def _number(value: Any, what: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a float in [low, high) (or (low, high) when ``low_open``), else a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value < high
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise ConfigError(f"{what} must be a finite number in {interval}, got {value!r}")
    return value


_fused_kernel = None


def _gpu_update(w: Array, v: Array, g: Array, mu: float, decay: float, lr: float) -> None:
    """The same update as one CuPy elementwise kernel (one read of w, v, g and one write of w, v)."""
    global _fused_kernel
    if _fused_kernel is None:
        _fused_kernel = xp.ElementwiseKernel(
            "T g, T mu, T decay, T lr",
            "T w, T v",
            "v = mu * v - decay * w - lr * g; w += v;",
            "minialex_sgd_paper",
        )
    t = w.dtype.type
    _fused_kernel(g, t(mu), t(decay), t(lr), w, v)


class SGD:
    """The paper's SGD with momentum and weight decay, updating ``model.params`` in place.

    Parameters
    ----------
    model : anything with ``params`` and ``grads`` dicts of the same keys (a minialex model or layer)
    lr : ε > 0, the learning rate (``optimizer.lr`` may be changed between steps, e.g. by a schedule)
    momentum : μ in [0, 1)
    weight_decay : λ >= 0
    decay_biases : also decay parameters named ``*.bias`` (default False: the paper's Caffe setting)

    Attributes
    ----------
    velocity : dict name -> array v of the parameter's shape and dtype, on the backend's device
    steps : number of :meth:`step` calls since construction or :meth:`zero_state`
    """

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        decay_biases: bool = False,
    ) -> None:
        if not hasattr(model, "params") or not hasattr(model, "grads"):
            raise ConfigError(f"SGD: model must have params and grads, got a {type(model).__name__}")
        self.model = model
        self.lr = lr
        self.momentum = _number(momentum, "SGD: momentum", 0.0, 1.0)
        self.weight_decay = _number(weight_decay, "SGD: weight_decay", 0.0)
        if not isinstance(decay_biases, bool):
            raise ConfigError(f"SGD: decay_biases must be True or False, got {decay_biases!r}")
        self.decay_biases = decay_biases
        self.velocity: dict[str, Array] = {}
        self.steps = 0
        self.zero_state()

    # -- the learning rate: validated on every assignment (schedules set it) --------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _number(value, "SGD: lr (learning rate)", 0.0, low_open=True)

    def decays(self, name: str) -> bool:
        """Whether weight decay applies to the parameter ``name``."""
        return self.decay_biases or not (name.endswith(".bias") or name == "bias")

    def zero_state(self) -> None:
        """Set every velocity to zero (as at construction) and the step count to 0."""
        self.velocity = {name: xp.zeros_like(w) for name, w in self.model.params.items()}
        self.steps = 0

    # -- the update -----------------------------------------------------------------------------------------
    def step(self) -> None:
        """One update of every parameter from ``model.grads`` (filled by the last backward pass)."""
        params, grads = self.model.params, self.model.grads
        for name, w in params.items():
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
            if v.dtype != w.dtype:  # the model was cast with astype(): follow it
                v = self.velocity[name] = v.astype(w.dtype)
            decay = self.weight_decay * self._lr if self.decays(name) else 0.0
            self._update(w, v, g, self.momentum, decay, self._lr)
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
        """The JSON-able part of the state: lr, momentum, weight_decay, decay_biases, steps."""
        return {
            "lr": self._lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases,
            "steps": self.steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """``hyperparams()`` plus ``"velocity"``: name -> host NumPy copy of each velocity."""
        return {**self.hyperparams(), "velocity": {k: np.array(backend.to_numpy(v)) for k, v in self.velocity.items()}}

    def check_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Raise :class:`CheckpointError` if ``state`` does not fit this model; changes nothing."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: expected a dict, got {type(state).__name__}")
        absent = [k for k in ("lr", "momentum", "weight_decay", "decay_biases", "steps", "velocity") if k not in state]
        if absent:
            raise CheckpointError(f"{source}: missing optimizer fields: {', '.join(absent)}")
        try:
            _number(state["lr"], "lr", 0.0, low_open=True)
            _number(state["momentum"], "momentum", 0.0, 1.0)
            _number(state["weight_decay"], "weight_decay", 0.0)
        except ConfigError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
        params, velocity = self.model.params, state["velocity"]
        if not isinstance(velocity, dict):
            raise CheckpointError(f"{source}: velocity must be a dict of arrays, got {type(velocity).__name__}")
        report = mismatch_report(*shape_mismatches(params, velocity), noun="velocities")
        if report:
            raise CheckpointError(f"{source} does not fit this model: {report}")

    def load_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Restore a :meth:`state_dict` (velocities copied to the device in the parameters' dtype)."""
        self.check_state_dict(state, source)
        params = self.model.params
        self.velocity = {k: backend.asarray(state["velocity"][k], dtype=params[k].dtype).copy() for k in params}
        self.lr = state["lr"]
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        self.decay_biases = bool(state["decay_biases"])
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self._lr:g}, momentum={self.momentum:g}, weight_decay={self.weight_decay:g}, "
            f"decay_biases={self.decay_biases})"
        )
