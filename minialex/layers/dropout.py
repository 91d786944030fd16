"""Dropout: AlexNet's regulariser on fc6 and fc7 ([P] §4.2), in its "inverted" form.

Training. Each activation is kept with probability 1 − p and scaled by 1/(1 − p)::

    m_i ~ Bernoulli(1 − p) / (1 − p)         (drawn afresh at every forward)
    y = x · m                                  dL/dx = dL/dy · m

Evaluation. The layer is the identity.

Why this matches the paper. The paper keeps activations unscaled in training and multiplies the outputs by
0.5 (= 1 − p) at test time. Either way the expected training-time output equals the test-time output:
E[x · Bernoulli(1 − p)] = (1 − p) x (paper) and E[x · Bernoulli(1 − p) / (1 − p)] = x (inverted). Inverted
dropout moves the factor into training, so the network needs no change at test time; the two networks
differ only by a constant factor on the dropped layer's output, which the next layer's weights absorb.

The mask comes from :func:`minialex.backend.uniform`, so :func:`minialex.seed` makes it reproducible.
"""

from __future__ import annotations

from minialex import backend
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer


class Dropout(Layer):
    """Inverted dropout with drop probability ``p`` (0 <= p < 1); identity in ``eval()`` mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise LayerInputError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self._mask: Array | None = None
        self._shape: tuple[int, ...] | None = None
        self._dtype = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        self._shape, self._dtype = tuple(x.shape), x.dtype
        if not self.training or self.p == 0.0:
            self._mask = None
            return x.copy()
        keep = backend.uniform(x.shape, dtype=x.dtype) >= x.dtype.type(self.p)
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        self._require_forward(self._shape)
        self._check_grad(dy, self._shape, self._dtype)
        return dy.copy() if self._mask is None else dy * self._mask
