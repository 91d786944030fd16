"""Finite-difference gradient checking: the proof that every hand-written backward pass is right.

For a scalar function L of an array θ, the central difference

    ∂L/∂θ_i ≈ (L(θ + h e_i) − L(θ − h e_i)) / (2h)

has error O(h²) from truncation and O(ε·|L|/h) from rounding (ε = 2.2e-16 in float64). With h = 1e-6 both
are far below 1e-6 of the gradient's size, so a correct backward agrees to about 1e-9 and a wrong one
(an off-by-one window, a missing ``+=``) disagrees at order 1. In float32 (ε = 1.2e-7) the rounding term
swamps everything: checks run in float64 only.

Relative error, per array::

    rel_error(a, n) = max_i |a_i − n_i| / max(max_i |a_i| + max_i |n_i|, 1e-8)

The error of the worst element, relative to the array's gradient scale. (Dividing each element by its own
|a_i| + |n_i|, as CS231n does, blows up on elements whose true gradient is 0 ± rounding noise, which makes a
fixed bound flaky; normalising by the array's scale keeps a bound of 1e-6 strict and stable.)

Layers that branch (ReLU at 0, max-pool ties) are not differentiable at the branch point: check them on
inputs whose entries are all distinct and away from 0 by more than h (see :func:`tie_free`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.errors import LayerInputError

Array = Any


def rel_error(analytic: Array, numeric: Array) -> float:
    """``max|a − n| / max(max|a| + max|n|, 1e-8)`` over the whole array (see the module docstring)."""
    a = backend.to_numpy(analytic).astype(np.float64)
    n = backend.to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise LayerInputError(f"rel_error: shapes differ, {a.shape} vs {n.shape}")
    if a.size == 0:
        return 0.0
    scale = max(float(np.abs(a).max()) + float(np.abs(n).max()), 1e-8)
    return float(np.abs(a - n).max()) / scale


def numerical_gradient(f: Callable[[], float], x: Array, h: float = 1e-6) -> Array:
    """Central differences of the scalar ``f()`` with respect to every entry of ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored exactly; ``f`` must read it.
    Returns an array of ``x``'s shape and dtype, on ``x``'s device: a host NumPy ``x`` (the input of a
    :mod:`minialex.reference` function, say) gives a host gradient whatever the backend.
    """
    if x.dtype != np.float64:
        raise LayerInputError(f"numerical_gradient: use float64 arrays (got {x.dtype}); float32 differences are noise")
    if not x.flags.c_contiguous:
        raise LayerInputError("numerical_gradient: x must be C-contiguous so that it can be perturbed in place")
    grad = np.zeros_like(x) if isinstance(x, np.ndarray) else xp.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views of x and grad
    for i in range(x.size):
        old = float(flat_x[i])
        flat_x[i] = old + h
        plus = float(f())
        flat_x[i] = old - h
        minus = float(f())
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * h)
    return grad


def tie_free(shape: tuple[int, ...], low: float = -1.0, high: float = 1.0, gap: float = 1e-3, seed: int = 0) -> Array:
    """A float64 array of ``shape`` whose entries are distinct, shuffled, evenly spread over [low, high] with
    small jitter, and at least ``gap`` away from 0 and from each other: no ReLU kink or max-pool tie lies
    within a finite-difference step of any entry."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    values = np.linspace(low, high, size)
    step = (high - low) / max(size - 1, 1)
    values += rng.uniform(-0.2, 0.2, size) * step
    values[np.abs(values) < gap] += 2 * gap * np.sign(values[np.abs(values) < gap] + 1e-300)
    rng.shuffle(values)
    return backend.asarray(values.reshape(shape))


def check_layer(
    layer: Any,
    x: Array,
    dy: Array | None = None,
    h: float = 1e-6,
    seed: int | None = None,
) -> dict[str, float]:
    """Compare ``layer.backward`` with central differences of ``L = Σ layer.forward(x) · dy``.

    Parameters
    ----------
    layer : a layer in float64 (call ``layer.astype("float64")`` first)
    x : float64 input
    dy : the upstream gradient (random N(0, 1) if None)
    seed : if given, :func:`minialex.seed` is called before every forward, so that a random layer
        (dropout) draws the same mask each time and is checked as the fixed function it is for one mask.

    Returns
    -------
    ``{"x": error, "<param>": error, ...}``: the relative error (:func:`rel_error`) of each array.
    """
    x = x.copy()

    def forward() -> Array:
        if seed is not None:
            backend.seed(seed)
        return layer.forward(x)

    y = forward()
    if dy is None:
        dy = backend.asarray(np.random.default_rng(1).standard_normal(y.shape))
    dx = layer.backward(dy)
    analytic = {"x": dx.copy(), **{name: g.copy() for name, g in layer.grads.items()}}

    def loss() -> float:
        return float((forward() * dy).sum())

    errors = {"x": rel_error(analytic["x"], numerical_gradient(loss, x, h))}
    for name, value in layer.params.items():
        errors[name] = rel_error(analytic[name], numerical_gradient(loss, value, h))
    return errors


def check_model(
    model: Any, loss_layer: Any, x: Array, labels: Array, h: float = 1e-6, seed: int | None = None
) -> dict[str, float]:
    """Like :func:`check_layer` for a whole network ending in a loss: L = loss_layer(model(x), labels).

    Returns the relative error of dL/dx (key ``"x"``) and of every parameter gradient.
    """
    x = x.copy()

    def loss() -> float:
        if seed is not None:
            backend.seed(seed)
        return float(loss_layer.forward(model.forward(x), labels))

    loss()
    dx = model.backward(loss_layer.backward())
    analytic = {"x": dx.copy(), **{name: g.copy() for name, g in model.grads.items()}}
    errors = {"x": rel_error(analytic["x"], numerical_gradient(loss, x, h))}
    for name, value in model.params.items():
        errors[name] = rel_error(analytic[name], numerical_gradient(loss, value, h))
    return errors
