"""Dropout: AlexNet's regulariser on fc6 and fc7 (the paper, §4.2), in its "inverted" form.

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

from minialex import backend, validate
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer


class Dropout(Layer):
    """Inverted dropout with drop probability ``p`` (0 <= p < 1); identity in ``eval()`` mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        what = "Dropout: p (the drop probability)"
        self.p = validate.number(p, what, low=0.0, high=1.0, high_open=True, error=LayerInputError)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Array) -> Array:
        self._check_float(x)
        if not self.training or self.p == 0.0:
            self._saved = (None, tuple(x.shape), x.dtype)
            return x.copy()
        keep = backend.uniform(x.shape, dtype=x.dtype) >= x.dtype.type(self.p)
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))  # m = Bernoulli(1 − p) / (1 − p)
        self._saved = (mask, tuple(x.shape), x.dtype)
        return x * mask

    def backward(self, dy: Array, need_input_grad: bool = True) -> Array:
        mask, shape, dtype = self._saved_for_backward()
        self._check_grad(dy, shape, dtype)
        return dy.copy() if mask is None else dy * mask
