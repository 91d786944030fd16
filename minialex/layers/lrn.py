"""Local response normalization across channels, exactly as in the AlexNet paper (§3.3).

Forward. For channel i of N channels at one pixel, with a = the input and window W(i)::

    s_i = k + alpha · Σ_{j ∈ W(i)} a_j²,        W(i) = [max(0, i − ⌊n/2⌋), min(N−1, i + ⌊(n−1)/2⌋)]
    b_i = a_i · s_i^(−beta)

The paper uses n = 5, k = 2, alpha = 1e-4, beta = 0.75 (:data:`PAPER_LRN`, the layer's defaults and what
every AlexNet variant with LRN uses). The window is symmetric for odd n; an even n puts the extra channel
before i, as PyTorch does.

Conventions differ, so copy constants with care. PyTorch's ``LocalResponseNorm(size, alpha, beta, k)`` and
Caffe's LRN layer divide alpha by the window size (and default k to 1)::

    PyTorch / Caffe:  b_i = a_i · (k + (alpha'/n) Σ a_j²)^(−beta)

so the paper's layer is ``torch.nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)``, and
Caffe's ``alpha: 0.0001`` (bvlc_alexnet) is *not* the paper's: it means alpha = 2e-5 and k = 1 here.

Backward. b_i depends on a_m directly (m = i) and through s_i for every i whose window holds m::

    ∂b_i/∂a_m = [i = m] s_i^(−beta) − beta · a_i · s_i^(−beta−1) · 2·alpha·a_m · [m ∈ W(i)]

so, with g = dL/db::

    dL/da_m = g_m · s_m^(−beta) − 2·alpha·beta · a_m · Σ_{i : m ∈ W(i)} g_i · a_i · s_i^(−beta−1)

and g_i · a_i · s_i^(−beta−1) = g_i · b_i / s_i. The set {i : m ∈ W(i)} is the window mirrored:
[m − ⌊(n−1)/2⌋, m + ⌊n/2⌋], the same window when n is odd. Both sums are done as n shifted slice-adds
over the channel axis: no loops over pixels, no cumulative sums (which lose precision in float32). The
formula and its derivative written literally, channel by channel, are :func:`minialex.reference.lrn_forward`
and :func:`~minialex.reference.lrn_backward`.
"""

from __future__ import annotations

from typing import NamedTuple

from minialex import validate
from minialex._engine import parallel
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer, Shape


class LRNConstants(NamedTuple):
    """The four constants of a local response normalization: window ``size`` (n), ``alpha``, ``beta``, ``k``."""

    size: int
    alpha: float
    beta: float
    k: float


PAPER_LRN = LRNConstants(size=5, alpha=1e-4, beta=0.75, k=2.0)
"""The paper's constants (§3.3): "k = 2, n = 5, α = 10⁻⁴, and β = 0.75". ``LocalResponseNorm(*PAPER_LRN)``."""


def channel_window_sum(a: Array, before: int, after: int, out: Array | None = None) -> Array:
    """``out[:, i] = Σ_{j=i−before}^{i+after} a[:, j]`` over the valid channels j (axis 1).

    Returns a new array, or ``out`` (same shape as ``a``, not overlapping it) filled with the sums.
    """
    if out is None:
        out = a.copy()
    else:
        out[...] = a
    channels = a.shape[1]
    for d in range(1, min(before, channels - 1) + 1):  # j = i − d
        out[:, d:] += a[:, : channels - d]
    for d in range(1, min(after, channels - 1) + 1):  # j = i + d
        out[:, : channels - d] += a[:, d:]
    return out


def negative_power(s: Array, beta: float, out: Array | None = None) -> Array:
    """``s ** −beta``; for the paper's beta = 0.75 as 1/√s · √(1/√s), which is cheaper than ``power``."""
    if beta == 0.75:
        r = xp.sqrt(s, out=out)
        xp.reciprocal(r, out=r)  # s^(−1/2)
        return xp.multiply(r, xp.sqrt(r), out=r)  # s^(−1/2) · s^(−1/4)
    return xp.power(s, s.dtype.type(-beta), out=out)


class LocalResponseNorm(Layer):
    """The paper's LRN: ``b_i = a_i / (k + alpha Σ_{j∈W(i)} a_j²)^beta`` over a window of ``size`` channels.

    ``alpha`` multiplies the plain sum (it is NOT divided by ``size``); see the module docstring for the
    PyTorch/Caffe mapping. Input (N, C, ...) with channels on axis 1; output of the same shape.
    ``k`` must be > 0, so the denominator is never 0. Non-finite inputs give what PyTorch gives: a ±inf in
    channel i makes s infinite in every window that holds it, so b_i = inf/inf = NaN and its finite
    neighbours become ±0 (finite/inf); a NaN makes every output whose window holds it NaN.
    """

    def __init__(
        self,
        size: int = PAPER_LRN.size,
        alpha: float = PAPER_LRN.alpha,
        beta: float = PAPER_LRN.beta,
        k: float = PAPER_LRN.k,
    ) -> None:
        super().__init__()
        self.size = validate.integer(size, "LocalResponseNorm: size", low=1, error=LayerInputError)
        self.alpha = validate.number(alpha, "LocalResponseNorm: alpha", low=0.0, error=LayerInputError)
        self.beta = validate.number(beta, "LocalResponseNorm: beta", low=0.0, error=LayerInputError)
        self.k = validate.number(k, "LocalResponseNorm: k", low=0.0, low_open=True, error=LayerInputError)
        self._before, self._after = size // 2, (size - 1) // 2

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def output_shape(self, input_shape: Shape) -> Shape:
        """The input's shape (N, C, ...): at least a batch and a channel axis."""
        return self._check_shape(input_shape, layout="(N, C, ...)", min_ndim=2)

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self.output_shape(x.shape)
        scale, power, y = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)  # same memory layout as x
        dtype = x.dtype.type
        alpha, k = dtype(self.alpha), dtype(self.k)

        def images(n0: int, n1: int) -> None:  # the whole forward for images n0..n1 (threads take ranges)
            xs, ss = x[n0:n1], scale[n0:n1]
            channel_window_sum(xs * xs, self._before, self._after, out=ss)
            ss *= alpha
            ss += k
            negative_power(ss, self.beta, out=power[n0:n1])  # s^(−beta)
            xp.multiply(xs, power[n0:n1], out=y[n0:n1])

        parallel.split(images, x.shape[0], x.size)
        self._saved = (x, scale, power)  # y = x · power is recomputed in backward rather than kept
        return y

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        x, scale, power = self._saved_for_backward()
        self._check_grad(dy, x.shape, x.dtype)
        dx = xp.empty_like(x)
        two_alpha_beta = x.dtype.type(2.0 * self.alpha * self.beta)

        def images(n0: int, n1: int) -> None:
            xs, ps, gs = x[n0:n1], power[n0:n1], dy[n0:n1]
            t = xs * ps  # y, bit for bit as in forward
            t *= gs
            t /= scale[n0:n1]  # g_i · a_i · s_i^(−beta−1)
            # Sum over the mirrored window {i : m ∈ W(i)}: `after` channels before m and `before` after it.
            u = channel_window_sum(t, self._after, self._before)
            u *= xs
            u *= two_alpha_beta
            out = xp.multiply(gs, ps, out=dx[n0:n1])
            out -= u

        parallel.split(images, x.shape[0], x.size)
        return dx
