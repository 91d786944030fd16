"""Adam (Kingma & Ba, 2015, Algorithm 1), its "epsilon-hat" form (TensorFlow, Keras), and AdamW.

For every parameter θ with gradient g = ∂L/∂θ of the batch-mean loss, at step t = 1, 2, …, with learning
rate α, decay rates β₁, β₂ and ε::

    m ← β₁·m + (1 − β₁)·g           moving mean of g            (m = 0 before step 1)
    v ← β₂·v + (1 − β₂)·g²          moving mean of g²           (v = 0 before step 1)
    m̂ = m / (1 − β₁ᵗ)               bias correction: m and v start at 0, so early averages are too small
    v̂ = v / (1 − β₂ᵗ)
    θ ← θ − α·m̂ / (√v̂ + ε)

(α = 1e-3, β₁ = 0.9, β₂ = 0.999, ε = 1e-8 in the paper and in ``torch.optim.Adam``.) Each parameter
moves by about α in the direction of the sign of its recent gradients, whatever their scale.

Epsilon-hat form (``epsilon_hat=True``). The paper's §2 notes that the same step costs fewer operations as::

    α_t = α·√(1 − β₂ᵗ) / (1 − β₁ᵗ)
    θ ← θ − α_t·m / (√v + ε̂)

which is what TensorFlow and Keras compute (their ``epsilon`` is ε̂, default 1e-7; :meth:`Adam.keras`).
The two agree exactly when ε = ε̂ = 0; otherwise ε̂ is the paper's ε scaled by √(1 − β₂ᵗ), so the same number
means a larger ε early in training: ε = ε̂/√(1 − β₂ᵗ), 31.6·ε̂ at t = 1 with β₂ = 0.999, tending to ε̂.

Weight decay λ, two kinds (both as in PyTorch):

* L2, coupled (default, ``torch.optim.Adam(weight_decay=λ)``): g ← g + λ·θ before the moments, so the
  decay is rescaled by √v̂ like the gradient;
* decoupled (``decoupled_weight_decay=True``, :class:`AdamW`, ``torch.optim.AdamW``; Loshchilov & Hutter):
  θ ← θ·(1 − α·λ) before the Adam step, independent of the gradient's scale.

Every parameter is decayed, as PyTorch does with every parameter it is given; ``decay_biases=False``
skips those named ``*.bias`` (the paper's SGD rule, see :mod:`minialex.optim.sgd`).

Both forms are computed as one: m̂/(√v̂ + ε) = (√(1 − β₂ᵗ)/(1 − β₁ᵗ))·m/(√v + ε·√(1 − β₂ᵗ)), so every step is
θ ← θ − step_size·m/(√v + ε′) with step_size = α·√(1 − β₂ᵗ)/(1 − β₁ᵗ) and ε′ = ε·√(1 − β₂ᵗ) (or ε̂): the same
number as the formula above with one division fewer.

Updates are in place, in the parameter's dtype. On NumPy they run over chunks of
:data:`~minialex.optim.sgd.CHUNK` elements through two scratch arrays of one chunk, so no temporary as large
as a parameter is made and each chunk stays in cache for its dozen operations; parameters of a million
elements or more are cut into ranges that run on several threads (:mod:`minialex._engine.parallel`). On CuPy
each parameter is one elementwise kernel compiled without fused multiply-adds, so that it rounds like the
NumPy operations, one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex._engine import parallel
from minialex.backend import xp
from minialex.errors import (
    CheckpointError,
    ConfigError,
    LayerInputError,
    MinialexError,
    mismatch_report,
    shape_mismatches,
)
from minialex.optim.sgd import CHUNK

Array = Any
KIND = "Adam"
HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "epsilon_hat", "decay_biases")
MOMENTS = ("m", "v")


@dataclass(frozen=True)
class _StepConstants:
    """The scalars of one step, the same for every parameter (see :meth:`Adam._constants`)."""

    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    eps: float  # added to √v: ε·√(1 − β₂ᵗ) in the paper's form, ε̂ in the epsilon-hat form
    step_size: float  # α·√(1 − β₂ᵗ)/(1 − β₁ᵗ)
    keep: float  # 1 − α·λ for decoupled decay, else 1
    l2: float  # λ for coupled decay, else 0


def _update(w: Array, m: Array, v: Array, g: Array, k: _StepConstants, s: Array, grad: Array) -> None:
    """One Adam step of ``w`` in place, through the scratch arrays ``s`` and ``grad`` (shaped like ``w``)."""
    t = w.dtype.type
    if k.keep != 1.0:
        w *= t(k.keep)  # decoupled: θ ← θ·(1 − α·λ)
    if k.l2:
        xp.multiply(w, t(k.l2), out=grad)  # coupled: g + λ·θ
        grad += g
        g = grad
    xp.subtract(g, m, out=s)  # m ← m + (1 − β₁)(g − m), i.e. β₁·m + (1 − β₁)·g
    s *= t(k.one_minus_beta1)
    m += s
    v *= t(k.beta2)  # v ← β₂·v + (1 − β₂)·g²
    xp.multiply(g, g, out=s)
    s *= t(k.one_minus_beta2)
    v += s
    xp.sqrt(v, out=s)  # θ ← θ − step_size·m/(√v + eps)
    s += t(k.eps)
    xp.divide(m, s, out=s)
    s *= t(k.step_size)
    w -= s


def _update_range(w: Array, m: Array, v: Array, g: Array, k: _StepConstants, start: int, stop: int) -> None:
    """:func:`_update` of the flat elements ``start..stop``, :data:`CHUNK` at a time, with this call's own scratch."""
    scratch = xp.empty((2, min(CHUNK, stop - start)), dtype=w.dtype)  # private: threads run ranges at once
    for a in range(start, stop, CHUNK):
        b = min(a + CHUNK, stop)
        _update(w[a:b], m[a:b], v[a:b], g[a:b], k, scratch[0, : b - a], scratch[1, : b - a])


_kernels: dict[tuple[bool, bool], Any] = {}


def _gpu_update(w: Array, m: Array, v: Array, g: Array, k: _StepConstants) -> None:
    """:func:`_update` as one CuPy kernel, the same operations in the same order, without fused multiply-adds."""
    key = (k.keep != 1.0, bool(k.l2))
    if key not in _kernels:
        decoupled, coupled = key
        body = [
            "T theta = w;",
            "theta = theta * keep;" if decoupled else "",
            "T grad = theta * l2; grad = grad + g;" if coupled else "T grad = g;",
            "m = m + (grad - m) * omb1;",
            "v = v * b2 + (grad * grad) * omb2;",
            "w = theta - (m / (sqrt(v) + eps)) * step;",
        ]
        _kernels[key] = xp.ElementwiseKernel(
            "T g, T omb1, T b2, T omb2, T eps, T step, T keep, T l2",
            "T w, T m, T v",
            " ".join(line for line in body if line),
            "minialex_adam_" + "".join("1" if flag else "0" for flag in key),
            options=("--fmad=false",),
        )
    t = w.dtype.type
    scalars = (k.one_minus_beta1, k.beta2, k.one_minus_beta2, k.eps, k.step_size, k.keep, k.l2)
    _kernels[key](g, *(t(value) for value in scalars), w, m, v)


def gradient_of(model: Any, name: str, w: Array, owner: str) -> Array:
    """``model.grads[name]``, checked to exist and to match the parameter ``w`` in shape and dtype.

    Raises :class:`LayerInputError` naming ``owner`` (the optimiser) otherwise: an optimiser step without a
    backward pass, or with the gradients of another model, would otherwise fail deep inside the update.
    """
    g = model.grads.get(name)
    if g is None:
        problem = f"no gradient for {name!r}; call model.backward before optimizer.step"
    elif g.shape != w.shape or g.dtype != w.dtype:
        problem = f"gradient of {name!r} is {g.dtype}{tuple(g.shape)}, parameter is {w.dtype}{tuple(w.shape)}"
    else:
        return g
    raise LayerInputError(f"{owner}: {problem}")


def _validated(values: dict[str, Any], what: str, error: type[MinialexError]) -> dict[str, Any]:
    """The hyper-parameters but lr (see :data:`HYPERPARAMETERS`) checked and converted, else ``error`` naming ``what``."""
    betas = values["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise error(f"{what}: betas must be a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = (
        validate.number(b, f"{what}: {name}", low=0.0, high=1.0, high_open=True, error=error)
        for name, b in zip(("beta1", "beta2"), betas, strict=True)
    )
    checked: dict[str, Any] = {
        "betas": (beta1, beta2),
        "eps": validate.number(values["eps"], f"{what}: eps", low=0.0, error=error),
        "weight_decay": validate.number(values["weight_decay"], f"{what}: weight_decay", low=0.0, error=error),
    }
    for key in ("decoupled_weight_decay", "epsilon_hat", "decay_biases"):
        checked[key] = validate.flag(values[key], f"{what}: {key}", error=error)
    return checked


class Adam:
    """Adam with bias correction, updating ``model.params`` in place from ``model.grads``.

    Parameters
    ----------
    model : anything with ``params`` and ``grads`` dicts of the same keys (a minialex model or layer)
    lr : α > 0 (``optimizer.lr`` may be changed between steps, e.g. by a schedule)
    betas : (β₁, β₂), each in [0, 1)
    eps : ε >= 0, added to √v̂ (or ε̂, added to √v, in the epsilon-hat form)
    weight_decay : λ >= 0
    decoupled_weight_decay : False: L2 added to the gradient (``torch.optim.Adam``); True: θ ← θ·(1 − α·λ)
        (AdamW, ``torch.optim.AdamW``)
    epsilon_hat : use TensorFlow's / Keras's form θ ← θ − α_t·m/(√v + ε̂) (module docstring)
    decay_biases : decay parameters named ``*.bias`` too (default True, as PyTorch)

    Attributes
    ----------
    m, v : dict name -> array of the parameter's shape and dtype, on the backend's device
    steps : t, the number of :meth:`step` calls since construction or :meth:`zero_state`
    """

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        epsilon_hat: bool = False,
        decay_biases: bool = True,
    ) -> None:
        kind = type(self).__name__
        if not hasattr(model, "params") or not hasattr(model, "grads"):
            raise ConfigError(f"{kind}: model must have params and grads, got a {type(model).__name__}")
        self.model = model
        self.lr = lr
        self._set_hyperparameters(
            {
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "decoupled_weight_decay": decoupled_weight_decay,
                "epsilon_hat": epsilon_hat,
                "decay_biases": decay_biases,
            },
            ConfigError,
        )
        self.m: dict[str, Array] = {}
        self.v: dict[str, Array] = {}
        self.steps = 0
        self.zero_state()

    @classmethod
    def keras(
        cls, model: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7, **kwargs: Any
    ) -> Adam:
        """Keras's ``Adam()`` defaults: the epsilon-hat form with ε̂ = 1e-7 (lr 1e-3, β 0.9/0.999).

        ``AdamW.keras(model, weight_decay=0.004)`` is Keras's ``AdamW()`` (its decay is decoupled too, and its
        default λ is 0.004).
        """
        return cls(model, lr, betas=betas, eps=eps, epsilon_hat=True, **kwargs)

    def _set_hyperparameters(self, values: dict[str, Any], error: type[MinialexError]) -> None:
        """Set every hyper-parameter but lr from ``values``, validated by :func:`_validated`."""
        checked = _validated(values, type(self).__name__, error)
        self.betas, self.eps, self.weight_decay = checked["betas"], checked["eps"], checked["weight_decay"]
        self.decoupled_weight_decay = checked["decoupled_weight_decay"]
        self.epsilon_hat = checked["epsilon_hat"]
        self.decay_biases = checked["decay_biases"]

    # -- the learning rate: validated on every assignment (schedules set it) --------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = validate.number(value, f"{type(self).__name__}: lr (learning rate)", low=0.0, low_open=True)

    def decays(self, name: str) -> bool:
        """Whether weight decay applies to the parameter ``name``."""
        return self.weight_decay > 0 and (self.decay_biases or not (name.endswith(".bias") or name == "bias"))

    def zero_state(self) -> None:
        """Set m and v to zero (as at construction) and the step count to 0."""
        self.m = {name: xp.zeros_like(w) for name, w in self.model.params.items()}
        self.v = {name: xp.zeros_like(w) for name, w in self.model.params.items()}
        self.steps = 0

    # -- the update -----------------------------------------------------------------------------------------
    def _checked_arrays(self) -> list[tuple[str, Array, Array, Array, Array]]:
        """(name, θ, m, v, g) for every parameter, checked before any of them is changed."""
        kind = type(self).__name__
        arrays = []
        for name, w in self.model.params.items():
            g = gradient_of(self.model, name, w, kind)
            m, v = self.m.get(name), self.v.get(name)
            if m is None or v is None or m.shape != w.shape or v.shape != w.shape:
                raise LayerInputError(
                    f"{kind}: the model's parameter {name!r} {tuple(w.shape)} has no matching moments; the model "
                    "changed after the optimiser was made (call zero_state() or make a new optimiser)"
                )
            if m.dtype != w.dtype:  # the model was cast with astype(): follow it
                m = self.m[name] = m.astype(w.dtype)
                v = self.v[name] = v.astype(w.dtype)
            arrays.append((name, w, m, v, g))
        return arrays

    def _constants(self, step: int, decays: bool) -> _StepConstants:
        """The scalars of step t: m̂/(√v̂ + ε) = (√(1 − β₂ᵗ)/(1 − β₁ᵗ))·m/(√v + ε·√(1 − β₂ᵗ)), one division fewer."""
        beta1, beta2 = self.betas
        correction1, sqrt_correction2 = 1.0 - beta1**step, math.sqrt(1.0 - beta2**step)
        decoupled = decays and self.decoupled_weight_decay
        return _StepConstants(
            one_minus_beta1=1.0 - beta1,
            beta2=beta2,
            one_minus_beta2=1.0 - beta2,
            eps=self.eps if self.epsilon_hat else self.eps * sqrt_correction2,
            step_size=self._lr * sqrt_correction2 / correction1,
            keep=1.0 - self._lr * self.weight_decay if decoupled else 1.0,
            l2=self.weight_decay if decays and not self.decoupled_weight_decay else 0.0,
        )

    def step(self) -> None:
        """One update of every parameter from ``model.grads`` (filled by the last backward pass)."""
        arrays = self._checked_arrays()
        step = self.steps + 1
        for name, w, m, v, g in arrays:
            constants = self._constants(step, self.decays(name))
            if backend.on_gpu:
                _gpu_update(w, m, v, g, constants)
            elif w.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous:
                flat = [a.reshape(-1) for a in (w, m, v, g)]  # views (g is copied only if it is not contiguous)
                parallel.split(lambda a, b, flat=flat, k=constants: _update_range(*flat, k, a, b), w.size, w.size)
            else:  # arrays not made by minialex: the whole-array form, with temporaries of w's size
                _update(w, m, v, g, constants, xp.empty_like(w), xp.empty_like(w))
        self.steps = step

    # -- state ----------------------------------------------------------------------------------------------
    def hyperparams(self) -> dict[str, Any]:
        """The JSON-able part of the state: kind ("Adam"), lr, betas, eps, weight decay settings, form, step."""
        return {
            "kind": KIND,
            "lr": self._lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "epsilon_hat": self.epsilon_hat,
            "decay_biases": self.decay_biases,
            "step": self.steps,
        }

    def state_dict(self) -> dict[str, Any]:
        """``hyperparams()`` plus the tensor groups ``"m"`` and ``"v"``: name -> host NumPy copy."""
        groups = {key: {k: np.array(backend.to_numpy(a)) for k, a in getattr(self, key).items()} for key in MOMENTS}
        return {**self.hyperparams(), **groups}

    def check_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Raise :class:`CheckpointError` if ``state`` is not an Adam state that fits this model; changes nothing."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: expected a dict, got {type(state).__name__}")
        if state.get("kind") != KIND:
            hint = " (it holds SGD velocities)" if "velocity" in state else ""
            raise CheckpointError(
                f"{source}: expected an Adam state (kind 'Adam'), got kind {state.get('kind')!r}{hint}"
            )
        absent = [k for k in ("lr", *HYPERPARAMETERS, "step", *MOMENTS) if k not in state]
        if absent:
            raise CheckpointError(f"{source}: missing optimizer fields: {', '.join(absent)}")
        validate.number(state["lr"], f"{source}: lr", low=0.0, low_open=True, error=CheckpointError)
        _validated(state, source, CheckpointError)
        validate.integer(state["step"], f"{source}: step", low=0, error=CheckpointError)
        params = self.model.params
        for key in MOMENTS:
            group = state[key]
            if not isinstance(group, dict):
                raise CheckpointError(f"{source}: {key} must be a dict of arrays, got {type(group).__name__}")
            report = mismatch_report(*shape_mismatches(params, group), noun=f"'{key}' tensors")
            if report:
                raise CheckpointError(f"{source} does not fit this model: {report}")
            for name, value in group.items():
                self._check_moment(value, f"{source}: {key}[{name!r}]", non_negative=key == "v")

    @staticmethod
    def _check_moment(value: Any, what: str, non_negative: bool) -> None:
        array = np.asarray(backend.to_numpy(value))
        if array.dtype.kind != "f":
            raise CheckpointError(f"{what} must hold floating-point numbers, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise CheckpointError(f"{what} holds {int((~np.isfinite(array)).sum())} non-finite values")
        if non_negative and (array < 0).any():
            raise CheckpointError(f"{what} is a mean of squares but holds {int((array < 0).sum())} negative values")

    def load_state_dict(self, state: dict[str, Any], source: str = "optimizer state") -> None:
        """Restore a :meth:`state_dict` (moments copied to the device in the parameters' dtype)."""
        self.check_state_dict(state, source)
        params = self.model.params
        for key in MOMENTS:
            setattr(self, key, {k: backend.asarray(state[key][k], dtype=params[k].dtype).copy() for k in params})
        self.lr = state["lr"]
        self._set_hyperparameters(state, CheckpointError)
        self.steps = int(state["step"])

    def __repr__(self) -> str:
        text = f"{type(self).__name__}(lr={self._lr:g}, betas=({self.betas[0]:g}, {self.betas[1]:g}), eps={self.eps:g}"
        if self.weight_decay:
            text += f", weight_decay={self.weight_decay:g}"
            text += ", decoupled_weight_decay=True" if self.decoupled_weight_decay else ""
            text += "" if self.decay_biases else ", decay_biases=False"
        return text + (", epsilon_hat=True)" if self.epsilon_hat else ")")


class AdamW(Adam):
    """Adam with decoupled weight decay, θ ← θ·(1 − α·λ) before each step, with ``torch.optim.AdamW``'s defaults.

    The same optimiser as ``Adam(..., decoupled_weight_decay=True)`` (its state says so); λ defaults to 0.01.
    ``options`` are :class:`Adam`'s ``betas``, ``eps``, ``epsilon_hat`` and ``decay_biases``.
    """

    def __init__(self, model: Any, lr: float = 1e-3, *, weight_decay: float = 1e-2, **options: Any) -> None:
        if "decoupled_weight_decay" in options:
            raise ConfigError("AdamW: decay is always decoupled; use Adam(..., decoupled_weight_decay=False) for L2")
        super().__init__(model, lr, weight_decay=weight_decay, decoupled_weight_decay=True, **options)
