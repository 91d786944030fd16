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

On a GPU. A check makes 2 forwards per entry of every array, each forward a few dozen tiny kernels, so
two things decide its speed there. Nothing waits for the device per entry: the function values stay on
the GPU until every difference is formed (:func:`numerical_gradient`). And the entries of the input are
differenced many at a time: perturbed copies of ``x`` travel through the layer as one batch
(:func:`numerical_gradient_stacked`), which is exact whenever the layer treats each sample on its own,
and that is checked before it is used (:func:`samples_independent`). The differences are the same
central differences with the same h, so the bound keeps its meaning; on the CPU ``check_layer`` and
``check_model`` still perturb one entry at a time unless asked (``stacked=True``).
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


def _check_perturbable(x: Array, what: str) -> None:
    if x.dtype != np.float64:
        raise LayerInputError(f"{what}: use float64 arrays (got {x.dtype}); float32 differences are noise")
    if not x.flags.c_contiguous:
        raise LayerInputError(f"{what}: x must be C-contiguous so that it can be perturbed in place")


def numerical_gradient(f: Callable[[], Any], x: Array, h: float = 1e-6) -> Array:
    """Central differences of the scalar ``f()`` with respect to every entry of ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored exactly; ``f`` must read it. ``f`` may
    return a Python float or a 0-d array of the backend: with a 0-d array nothing waits for the GPU, the
    values are collected on the device and brought back once, at the end (a ``float()`` per value would
    stop the host at every one of the 2·x.size evaluations until the GPU caught up).
    Returns an array of ``x``'s shape and dtype, on ``x``'s device: a host NumPy ``x`` (the input of a
    :mod:`minialex.reference` function, say) gives a host gradient whatever the backend.
    """
    _check_perturbable(x, "numerical_gradient")
    module = np if isinstance(x, np.ndarray) else xp
    flat = x.reshape(-1)  # a view of x
    original = flat.copy()
    up, down = original + h, original - h  # x_i ± h, rounded exactly as old ± h is
    values = module.empty((2, x.size), dtype=np.float64)
    for i in range(x.size):
        entry = slice(i, i + 1)  # copies between device arrays: no value crosses to the host
        flat[entry] = up[entry]
        values[0, i] = f()
        flat[entry] = down[entry]
        values[1, i] = f()
        flat[entry] = original[entry]
    return ((values[0] - values[1]) / (2 * h)).reshape(x.shape)


STACK_COORDINATES = 256
""":func:`numerical_gradient_stacked` differences at most this many entries of ``x`` per call of ``f``..."""
STACK_BYTES = 64 * 2**20
"""... and its stacked copies of ``x`` take at most this many bytes."""


def numerical_gradient_stacked(
    f_copies: Callable[[Array], Array],
    x: Array,
    h: float = 1e-6,
    max_coordinates: int = STACK_COORDINATES,
    max_bytes: int = STACK_BYTES,
) -> Array:
    """The central differences of :func:`numerical_gradient`, for many entries of ``x`` per evaluation.

    ``f_copies(X)`` receives ``X`` of shape (2m, *x.shape): copy j < m is x with entry i_j moved to
    x_i + h, copy m + j the same entry moved to x_i − h, and must return the scalar function's value for
    every copy, an array of shape (2m,). Then ``∂f/∂x_i ≈ (value_j − value_{m+j}) / (2h)``, the same
    difference, rounded the same way, as :func:`numerical_gradient` forms; ``x`` itself is not touched.

    For a layer this turns 2·x.size forwards into a few: the copies travel as one large batch, which is
    right only when the layer treats every sample on its own (see :func:`samples_independent`). On a
    GPU a small forward costs its kernel launches, not its arithmetic, so fewer and larger forwards are
    what makes the check fast there.
    """
    _check_perturbable(x, "numerical_gradient_stacked")
    flat = x.reshape(-1)
    per_call = max(1, min(x.size, max_coordinates, max_bytes // max(2 * x.nbytes, 1)))
    grad = xp.empty(x.size, dtype=np.float64)
    for start in range(0, x.size, per_call):
        stop = min(x.size, start + per_call)
        m = stop - start
        entries, rows = xp.arange(start, stop), xp.arange(m)
        copies = xp.empty((2, m, x.size), dtype=x.dtype)
        copies[...] = flat
        copies[0, rows, entries] = flat[entries] + h
        copies[1, rows, entries] = flat[entries] - h
        values = f_copies(copies.reshape(2 * m, *x.shape))
        if tuple(values.shape) != (2 * m,):
            raise LayerInputError(
                f"numerical_gradient_stacked: f_copies must return one value per copy, shape ({2 * m},), "
                f"got {tuple(values.shape)}"
            )
        values = values.reshape(2, m)
        grad[start:stop] = (values[0] - values[1]) / (2 * h)
    return grad.reshape(x.shape)


def samples_independent(forward: Callable[[Array], Array], x: Array, rtol: float = 1e-10) -> bool:
    """Whether ``forward`` treats the entries of ``x`` along axis 0 (the samples) independently, tried on ``x``.

    True when ``forward`` of the batch [−x; x] is [forward(−x); forward(x)] to within ``rtol`` of the
    output's scale (rounding may differ with the batch size; a layer that mixes samples, such as batch
    normalisation, or draws a fresh dropout mask for the larger batch, misses by far more). ``forward``
    must be repeatable: re-seed inside it for a layer that draws random numbers. A layer that rejects the
    doubled batch (:class:`~minialex.errors.LayerInputError`) is not stacked either.
    """
    if x.ndim == 0 or x.shape[0] == 0:
        return False
    first = forward(-x).copy()  # a copy, in case an output shares memory with the next call's
    apart = xp.concatenate([first, forward(x)])
    try:
        together = forward(xp.concatenate([-x, x]))
    except LayerInputError:  # a layer that accepts only this batch size: differences one entry at a time
        return False
    if tuple(together.shape) != tuple(apart.shape):
        return False
    apart_host, together_host = backend.to_numpy(apart), backend.to_numpy(together)
    if not (np.isfinite(apart_host).all() and np.isfinite(together_host).all()):
        return False
    scale = float(np.abs(apart_host).max()) if apart_host.size else 0.0
    return bool(np.abs(together_host - apart_host).max(initial=0.0) <= rtol * max(scale, 1e-300))


def _errors(
    analytic: dict[str, Array],
    x: Array,
    params: dict[str, Array],
    loss: Callable[[], Array],
    forward_of: Callable[[Array], Array],
    copy_losses: Callable[[Array], Array],
    h: float,
    stacked: bool | None,
) -> dict[str, float]:
    """The relative error of every analytic gradient against its central differences.

    ``x``'s differences are stacked when asked (``stacked=None``: on a GPU) and ``forward_of`` treats
    samples independently; the parameters are shared by every sample, so they are always perturbed one
    entry at a time.
    """
    if (backend.on_gpu if stacked is None else stacked) and samples_independent(forward_of, x):
        numeric_x = numerical_gradient_stacked(copy_losses, x, h)
    else:
        numeric_x = numerical_gradient(loss, x, h)
    errors = {"x": rel_error(analytic["x"], numeric_x)}
    for name, value in params.items():
        errors[name] = rel_error(analytic[name], numerical_gradient(loss, value, h))
    return errors


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
    stacked: bool | None = None,
) -> dict[str, float]:
    """Compare ``layer.backward`` with central differences of ``L = Σ layer.forward(x) · dy``.

    Parameters
    ----------
    layer : a layer in float64 (call ``layer.astype("float64")`` first)
    x : float64 input
    dy : the upstream gradient (random N(0, 1) if None)
    seed : if given, :func:`minialex.seed` is called before every forward, so that a random layer
        (dropout) draws the same mask each time and is checked as the fixed function it is for one mask.
    stacked : difference many entries of ``x`` per forward (:func:`numerical_gradient_stacked`) when the
        layer treats samples independently (:func:`samples_independent`; otherwise one entry at a time).
        None (the default) stacks on a GPU only; the parameters are always differenced one entry at a time.

    Returns
    -------
    ``{"x": error, "<param>": error, ...}``: the relative error (:func:`rel_error`) of each array.
    """
    x = x.copy()

    def forward_of(a: Array) -> Array:
        if seed is not None:
            backend.seed(seed)
        return layer.forward(a)

    y = forward_of(x)
    if dy is None:
        dy = backend.asarray(np.random.default_rng(1).standard_normal(y.shape))
    dx = layer.backward(dy)
    analytic = {"x": dx.copy(), **{name: g.copy() for name, g in layer.grads.items()}}

    def loss() -> Array:  # a 0-d device array: see numerical_gradient
        return (forward_of(x) * dy).sum()

    def copy_losses(copies: Array) -> Array:  # (2m, N, ...) -> the loss of every copy, (2m,)
        k = copies.shape[0]
        out = forward_of(copies.reshape(k * x.shape[0], *x.shape[1:]))
        return (out.reshape(k, *dy.shape) * dy).reshape(k, -1).sum(axis=1)

    return _errors(analytic, x, layer.params, loss, forward_of, copy_losses, h, stacked)


def check_model(
    model: Any,
    loss_layer: Any,
    x: Array,
    labels: Array,
    h: float = 1e-6,
    seed: int | None = None,
    stacked: bool | None = None,
) -> dict[str, float]:
    """Like :func:`check_layer` for a whole network ending in a loss: L = loss_layer(model(x), labels).

    Returns the relative error of dL/dx (key ``"x"``) and of every parameter gradient. With ``stacked``
    (default: on a GPU), the copies of ``x`` go through the model as one batch and the loss is taken
    per copy.
    """
    x = x.copy()

    def forward_of(a: Array) -> Array:
        if seed is not None:
            backend.seed(seed)
        return model.forward(a)

    def loss() -> Array:  # a 0-d device array: see numerical_gradient
        return loss_layer.forward(forward_of(x), labels)

    def copy_losses(copies: Array) -> Array:  # (2m, N, ...) -> the loss of every copy, (2m,)
        k, n = copies.shape[0], x.shape[0]
        logits = forward_of(copies.reshape(k * n, *x.shape[1:]))
        logits = logits.reshape(k, n, *logits.shape[1:])
        return xp.stack([loss_layer.forward(logits[j], labels) for j in range(k)])

    loss()
    dx = model.backward(loss_layer.backward())
    analytic = {"x": dx.copy(), **{name: g.copy() for name, g in model.grads.items()}}
    return _errors(analytic, x, model.params, loss, forward_of, copy_losses, h, stacked)
