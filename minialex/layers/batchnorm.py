"""Batch normalisation (Ioffe & Szegedy, 2015): BatchNorm2d after a convolution, BatchNorm1d after a linear layer.

Shapes. Every statistic is per channel c, over the M values of that channel in the batch::

    BatchNorm2d   x (N, C, H, W)                 M = N·H·W
    BatchNorm1d   x (N, F)  or  x (N, C, L)      M = N   or  M = N·L
    weight γ, bias β, running_mean, running_var: (C,)        y: the shape of x

Forward, training mode, for the values x_1 … x_M of one channel::

    μ  = (1/M) Σ_i x_i
    σ² = (1/M) Σ_i (x_i − μ)²            the biased variance: divided by M, not M − 1
    s  = 1/√(σ² + ε)
    x̂_i = (x_i − μ)·s
    y_i = γ·x̂_i + β

and the running statistics move towards the batch's (below). Evaluation mode uses the running μ and σ²
instead, constants of the input, so that an image's output does not depend on the rest of its batch.

Backward, training mode. With g_i = ∂L/∂y_i::

    ∂L/∂β = Σ_i g_i                    ∂L/∂γ = Σ_i g_i·x̂_i

Every x̂_i depends on every x_j through μ and σ²: ∂μ/∂x_j = 1/M and ∂σ²/∂x_j = 2(x_j − μ)/M (the term
in Σ (x_i − μ) vanishes), so, with ∂s/∂x_j = −½ s³ ∂σ²/∂x_j::

    ∂x̂_i/∂x_j = s·(δ_ij − 1/M) − (x_i − μ)·s³·(x_j − μ)/M  =  s·(δ_ij − 1/M − x̂_i·x̂_j/M)

and the chain rule collapses to the two sums already computed for γ and β::

    ∂L/∂x_j = γ Σ_i g_i ∂x̂_i/∂x_j = (γ·s/M)·(M·g_j − Σ_i g_i − x̂_j Σ_i g_i·x̂_i)
            = (γ·s/M)·(M·g_j − ∂L/∂β − x̂_j·∂L/∂γ)

The ``− ∂L/∂β`` term is the gradient through μ (forget it and the mean of dx is wrong), the
``− x̂_j·∂L/∂γ`` term the gradient through σ². In evaluation mode μ and σ² are constants:
∂L/∂x = γ·s_run·g, and ∂L/∂γ, ∂L/∂β are the same sums with x̂ = (x − μ_run)·s_run.

What is kept for the backward pass: a reference to x and the per-channel μ and s, not x̂. The backward pass
recomputes x − μ (one subtraction, bit for bit the forward's) instead of holding a second array of x's size,
and both passes form the per-channel sums of products Σ(x − μ)² and Σ g·x̂ without a temporary
(``numpy.vecdot``). The variance is always the two-pass Σ(x − μ)²/M, never E[x²] − μ², which cancels
catastrophically in float32 when |μ| ≫ σ. Evaluation mode computes y = x·(γ·s) + (β − μ·γ·s) in two passes,
as PyTorch's inference kernel does; its extra rounding, about ε_float·|μ|/σ, is the size of the float32
input's own representation error.

Running statistics. Two conventions are in use, and their ``momentum`` means opposite things:

=============  ========  =======  =============================================  ===================
convention     momentum  ε        running ← …                                    variance kept
=============  ========  =======  =============================================  ===================
``pytorch``    0.1       1e-5     (1 − momentum)·running + momentum·batch        unbiased, × M/(M−1)
``keras``      0.99      1e-3     momentum·running + (1 − momentum)·batch        biased, as used
=============  ========  =======  =============================================  ===================

So Keras's 0.99 is PyTorch's 0.01, and PyTorch's ``running_var`` keeps the unbiased estimate although
the batch is normalised with the biased one. ``convention="pytorch"`` is the default; explicit ``eps``
and ``momentum`` override the convention's numbers and keep its meaning. Both start from running mean 0
and variance 1, γ = 1 and β = 0.

Weight decay. γ is named ``weight`` and β ``bias`` as in PyTorch, so :class:`~minialex.optim.SGD`'s
default decays γ but not β (it skips every ``*.bias``), while ``torch.optim.SGD`` decays every parameter
it is given (``SGD(..., decay_biases=True)`` matches it). The running statistics are buffers: no
optimiser sees them.

Non-finite input. A NaN or ±inf in a channel makes that channel's statistics NaN, so in training mode
its whole output and its running statistics become NaN, as in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import validate
from minialex._engine import parallel
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import SUPPORTED_DTYPES, Array, Layer


@dataclass(frozen=True)
class Convention:
    """What ``momentum`` and ``eps`` default to, what ``momentum`` means, and which variance is kept."""

    name: str
    momentum: float
    eps: float
    momentum_weighs_batch: bool  # PyTorch: running ← (1 − m)·running + m·batch; Keras: the other way round
    unbiased_running_var: bool


CONVENTIONS = {
    "pytorch": Convention("pytorch", momentum=0.1, eps=1e-5, momentum_weighs_batch=True, unbiased_running_var=True),
    "keras": Convention("keras", momentum=0.99, eps=1e-3, momentum_weighs_batch=False, unbiased_running_var=False),
}


def channel_sums(a: Array) -> Array:
    """``a`` (N, C, S) summed over N and S: (C,). The sum over S runs along memory when it can (pairwise)."""
    if a.shape[2] == 1:
        return a[:, :, 0].sum(axis=0)
    return a.sum(axis=2).sum(axis=0)


_vecdot = getattr(xp, "vecdot", None)  # NumPy >= 2: dot products along the last axis, no temporary


def channel_dots(a: Array, b: Array) -> Array:
    """Σ over N and S of ``a·b`` for (N, C, S) arrays: (C,), without an (N, C, S) temporary where possible."""
    if a.shape[2] == 1:  # (N, F): down the columns
        a2, b2 = a[:, :, 0], b[:, :, 0]
        if _vecdot is not None and a2.strides[0] == b2.strides[0] == a2.itemsize:  # columns contiguous (F order,
            return _vecdot(a2, b2, axis=0)  # as a linear layer returns them): no temporary and faster
        return (a2 * b2).sum(axis=0)
    if _vecdot is not None:
        return _vecdot(a, b).sum(axis=0)
    return xp.einsum("ncs,ncs->nc", a, b).sum(axis=0)


@dataclass
class _Cache:
    """What the backward pass needs: the forward's mode, its input, and the μ and s it normalised with."""

    training: bool
    shape: tuple[int, ...]
    dtype: Any
    x3: Array  # the input as (N, C, S): a reference, not a copy
    mean: Array  # μ (C,): the batch's in training mode, the running one in evaluation mode
    inv_std: Array  # s = 1/√(σ² + ε) (C,)


class _BatchNorm(Layer):
    """Shared by :class:`BatchNorm1d` and :class:`BatchNorm2d`; they only say how x becomes (N, C, S)."""

    def __init__(
        self,
        num_features: int,
        eps: float | None = None,
        momentum: float | None = None,
        *,
        convention: str = "pytorch",
        affine: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        self.num_features = validate.integer(num_features, f"{kind}: num_features", low=1, error=LayerInputError)
        rules = CONVENTIONS[validate.choice(convention, f"{kind}: convention", CONVENTIONS, error=LayerInputError)]
        self.convention = rules.name
        self.eps = (
            rules.eps
            if eps is None
            else validate.number(eps, f"{kind}: eps", low=0.0, low_open=True, error=LayerInputError)
        )
        self.momentum = (
            rules.momentum
            if momentum is None
            else validate.number(momentum, f"{kind}: momentum", low=0.0, high=1.0, error=LayerInputError)
        )
        self.affine = validate.flag(affine, f"{kind}: affine", error=LayerInputError)
        if np.dtype(dtype) not in SUPPORTED_DTYPES:
            raise LayerInputError(f"{kind}: dtype must be float32 or float64, got {np.dtype(dtype)}")
        # (keep, new): running ← keep·running + new·batch, in the convention's meaning of momentum.
        if rules.momentum_weighs_batch:
            self.running_weights = (1.0 - self.momentum, self.momentum)
        else:
            self.running_weights = (self.momentum, 1.0 - self.momentum)
        self.unbiased_running_var = rules.unbiased_running_var
        if self.affine:
            self.params["weight"] = xp.ones(self.num_features, dtype=dtype)
            self.params["bias"] = xp.zeros(self.num_features, dtype=dtype)
        self.buffers["running_mean"] = xp.zeros(self.num_features, dtype=dtype)
        self.buffers["running_var"] = xp.ones(self.num_features, dtype=dtype)
        self._cache: _Cache | None = None

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"
        if self.convention != "pytorch":
            text += f", convention={self.convention!r}"
        return text + ("" if self.affine else ", affine=False")

    # -- shapes: each subclass says how its input becomes (N, C, S) ---------------------------------------
    def _as_3d(self, x: Array) -> Array:
        raise NotImplementedError

    def _check_input(self, x: Array) -> Array:
        x3 = self._as_3d(x)
        if x3.shape[1] != self.num_features:
            raise LayerInputError(
                f"{self.name}: expected {self.num_features} channels on axis 1, got {x3.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        for kind, group in (("parameter", self.params), ("buffer", self.buffers)):
            for key, value in group.items():
                if value.dtype != x.dtype:
                    raise LayerInputError(
                        f"{self.name}: input dtype {x.dtype} does not match {kind} '{key}' dtype {value.dtype}; "
                        f"cast the layer with .astype({x.dtype}) or the input with .astype({value.dtype})"
                    )
        return x3

    def _gamma(self, dtype: Any) -> Array:
        return self.params["weight"] if self.affine else xp.ones(self.num_features, dtype=dtype)

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        x3 = self._check_input(x)
        n, channels, spread = x3.shape
        count = n * spread
        if self.training and count < 2:
            raise LayerInputError(
                f"{self.name}: training mode needs at least 2 values per channel to compute a variance, got "
                f"{count} (input shape {tuple(x.shape)}); use a larger batch, or call .eval() to use the "
                "running statistics"
            )
        t = x3.dtype.type
        gamma = self._gamma(x3.dtype)
        y3 = xp.empty_like(x3)  # the layout of x3
        if self.training:
            mean, var = xp.empty(channels, dtype=x3.dtype), xp.empty(channels, dtype=x3.dtype)
            inv_std = xp.empty(channels, dtype=x3.dtype)
        else:
            mean = self.buffers["running_mean"].copy()
            inv_std = t(1) / xp.sqrt(self.buffers["running_var"] + t(self.eps))

        def block(c0: int, c1: int) -> None:  # channels c0..c1; threads take disjoint ranges
            xs, ys = x3[:, c0:c1], y3[:, c0:c1]
            if not self.training:  # y = x·(γ·s) + (β − μ·γ·s): two passes, as PyTorch's inference kernel
                scale = gamma[c0:c1] * inv_std[c0:c1]
                shift = -mean[c0:c1] * scale
                if self.affine:
                    shift += self.params["bias"][c0:c1]
                xp.multiply(xs, scale[:, None], out=ys)
                ys += shift[:, None]
                return
            mean[c0:c1] = channel_sums(xs) / t(count)
            xp.subtract(xs, mean[c0:c1, None], out=ys)  # x − μ
            var[c0:c1] = channel_dots(ys, ys) / t(count)  # the biased σ², from x − μ (two passes)
            inv_std[c0:c1] = t(1) / xp.sqrt(var[c0:c1] + t(self.eps))
            ys *= (gamma[c0:c1] * inv_std[c0:c1])[:, None]  # γ·x̂
            if self.affine:
                ys += self.params["bias"][c0:c1, None]

        parallel.split(block, channels, x3.size)
        if self.training:
            self._update_running_statistics(mean, var, count)
        self._cache = _Cache(self.training, tuple(x.shape), x.dtype, x3, mean, inv_std)
        return y3.reshape(x.shape)

    def _update_running_statistics(self, mean: Array, var: Array, count: int) -> None:
        """running ← keep·running + new·batch, in place (the unbiased σ²·M/(M−1) for PyTorch's variance)."""
        t = mean.dtype.type
        keep, new = t(self.running_weights[0]), t(self.running_weights[1])
        if self.unbiased_running_var:
            var = var * t(count / (count - 1))
        for key, batch in (("running_mean", mean), ("running_var", var)):
            running = self.buffers[key]
            running *= keep
            running += new * batch

    # -- backward -----------------------------------------------------------------------------------------
    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        """dL/dx from dL/dy (see the module docstring); fills ``grads["weight"]`` and ``grads["bias"]``."""
        self._require_forward(self._cache)
        cache = self._cache
        x3 = cache.x3
        self._check_grad(dy, cache.shape, cache.dtype)
        dy3 = dy.reshape(x3.shape)
        t = x3.dtype.type
        count = x3.shape[0] * x3.shape[2]
        gamma = self._gamma(x3.dtype)
        dx3 = xp.empty_like(x3)
        dgamma, dbeta = xp.empty_like(cache.inv_std), xp.empty_like(cache.inv_std)

        def block(c0: int, c1: int) -> None:
            g, out = dy3[:, c0:c1], dx3[:, c0:c1]
            mean, s = cache.mean[c0:c1], cache.inv_std[c0:c1]
            xp.subtract(x3[:, c0:c1], mean[:, None], out=out)  # x − μ, exactly as in the forward pass
            db, dg = channel_sums(g), channel_dots(g, out) * s  # Σ g, Σ g·x̂
            dbeta[c0:c1], dgamma[c0:c1] = db, dg
            if not need_input_grad:
                return
            if cache.training:  # (γ·s/M)·(M·g − dβ − x̂·dγ) = γ·s·(g − dβ/M − (x − μ)·s·dγ/M)
                out *= (-s * dg / t(count))[:, None]
                out += g
                out -= (db / t(count))[:, None]
                out *= (gamma[c0:c1] * s)[:, None]
            else:  # μ and σ² are constants: γ·s·g
                xp.multiply(g, (gamma[c0:c1] * s)[:, None], out=out)

        parallel.split(block, x3.shape[1], x3.size)
        if self.affine:
            self.grads["weight"], self.grads["bias"] = dgamma, dbeta
        return dx3.reshape(cache.shape) if need_input_grad else None


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) feature maps, per channel over N·H·W values.

    Parameters
    ----------
    num_features : C, the number of channels
    eps : ε added to the variance (default: the convention's, 1e-5 for PyTorch, 1e-3 for Keras)
    momentum : the running statistics' rate, in the convention's meaning (default 0.1 for PyTorch,
        0.99 for Keras; see the module docstring)
    convention : ``"pytorch"`` (default) or ``"keras"``
    affine : learn γ (``weight``) and β (``bias``); False fixes γ = 1, β = 0 and has no parameters
    dtype : float32 (default) or float64

    Buffers ``running_mean`` and ``running_var`` (C,) are saved and loaded with the parameters.
    """

    def _as_3d(self, x: Array) -> Array:
        self._check_ndim(x, 4, "(N, C, H, W)")
        n, c, h, w = x.shape
        return x.reshape(n, c, h * w)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, F) features (over N) or (N, C, L) sequences (over N·L), per feature.

    The parameters are those of :class:`BatchNorm2d`.
    """

    def _as_3d(self, x: Array) -> Array:
        self._check_float(x)
        if x.ndim == 2:
            return x.reshape(x.shape[0], x.shape[1], 1)
        if x.ndim == 3:
            return x
        raise LayerInputError(
            f"{self.name}: expected a 2-d input (N, F) or a 3-d input (N, C, L), got shape {tuple(x.shape)}"
        )


__all__ = ["CONVENTIONS", "BatchNorm1d", "BatchNorm2d", "Convention", "channel_sums"]
