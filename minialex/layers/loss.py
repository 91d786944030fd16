"""Softmax followed by cross-entropy: AlexNet's 1000-way output and training loss.

Shapes: logits z (N, K), integer labels t (N,) in [0, K); the loss is a scalar.

Forward, through log-sum-exp so that no exp overflows (stable for logits of ±1e4)::

    log p_nk = z_nk − m_n − log Σ_j exp(z_nj − m_n),     m_n = max_j z_nj
    L = −(1/N) Σ_n log p_{n, t_n}

Backward. ∂(−log p_{n,t})/∂z_nk = p_nk − [k = t]  (softmax and log cancel into this simple form), so::

    dL/dz = (softmax(z) − onehot(t)) / N

No "+1e-7" is added anywhere: log p is computed directly, never as log(p).
"""

from __future__ import annotations

from typing import Any

from minialex import backend
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, Layer


def log_softmax(z: Array) -> Array:
    """Row-wise ``log softmax(z)`` for z (N, K), computed through log-sum-exp."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy(Layer):
    """Mean cross-entropy of softmax(logits) against integer labels.

    ``forward(logits, labels)`` returns the loss as a 0-d array (``float(loss)`` reads it);
    ``backward(dloss=1.0)`` returns dL/dlogits, (N, K). After a forward, ``probs`` holds softmax(logits).
    """

    def __init__(self) -> None:
        super().__init__()
        self.probs: Array | None = None
        self._labels: Array | None = None

    def forward(self, logits: Array, labels: Any = None) -> Array:  # type: ignore[override]
        self._check_ndim(logits, 2, "(N, classes)")
        n, k = logits.shape
        if labels is None:
            raise LayerInputError(f"{self.name}: forward needs the integer labels as its second argument")
        labels = backend.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise LayerInputError(f"{self.name}: labels must be integers, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise LayerInputError(
                f"{self.name}: expected labels of shape ({n},) for logits {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        if n == 0:
            raise LayerInputError(f"{self.name}: the batch is empty (logits shape {tuple(logits.shape)})")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= k:
            bad = low if low < 0 else high
            raise LayerInputError(f"{self.name}: labels must lie in [0, {k}) for {k} classes, found {bad}")
        logp = log_softmax(logits)
        rows = xp.arange(n)
        loss = -logp[rows, labels].mean()
        self.probs = xp.exp(logp)
        self._labels = labels
        return loss

    def __call__(self, logits: Array, labels: Any = None) -> Array:  # type: ignore[override]
        return self.forward(logits, labels)

    def backward(self, dloss: Any = 1.0) -> Array:  # type: ignore[override]
        self._require_forward(self.probs)
        n = self.probs.shape[0]
        grad = self.probs.copy()
        grad[xp.arange(n), self._labels] -= 1
        grad *= self.probs.dtype.type(float(dloss) / n)
        return grad


def accuracy_counts(logits: Array, labels: Any, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many rows have their label among the top-k logits, for each k in ``ks`` (k capped at K)."""
    labels = backend.asarray(labels)
    top = xp.argsort(-logits, axis=1)
    out = {}
    for k in ks:
        hits = (top[:, : min(k, logits.shape[1])] == labels[:, None]).any(axis=1)
        out[k] = int(hits.sum())
    return out


__all__ = ["SoftmaxCrossEntropy", "accuracy_counts", "log_softmax"]
