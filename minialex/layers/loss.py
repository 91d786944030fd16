"""Softmax followed by cross-entropy: AlexNet's 1000-way output and training loss.

A loss is not a layer: it takes two inputs (the logits and the labels), returns a scalar, and its backward
pass starts the chain rule. Its protocol (:class:`Loss`) is therefore its own::

    loss = loss_fn.forward(logits, labels)      # or loss_fn(logits, labels): a 0-d array
    dlogits = loss_fn.backward(dloss=1.0)       # dL/dlogits, the logits' shape

Shapes: logits z (N, K), integer labels t (N,) in [0, K); the loss is a scalar.

Forward, through log-sum-exp so that no exp overflows (stable for logits of ±1e4)::

    log p_nk = z_nk − m_n − log Σ_j exp(z_nj − m_n),     m_n = max_j z_nj
    L = −(1/N) Σ_n log p_{n, t_n}

Backward. ∂(−log p_{n,t})/∂z_nk = p_nk − [k = t]  (softmax and log cancel into this simple form), so::

    dL/dz = (softmax(z) − onehot(t)) / N

No "+1e-7" is added anywhere: log p is computed directly, never as log(p).

Labels are checked before anything is computed: an integer dtype, shape (N,), every value in [0, K).
Labels given as host NumPy arrays (or lists) are checked on the host, which costs no device
synchronisation, and then copied to the device. Labels already on the GPU are checked with one reduction,
``any((t < 0) | (t >= K))``, whose single boolean is the one value read back (one synchronisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex import backend, validate
from minialex.backend import xp
from minialex.errors import LayerInputError
from minialex.layers.base import Array, InputChecks


def log_softmax(z: Array) -> Array:
    """Row-wise ``log softmax(z)`` for z (N, K), computed through log-sum-exp."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class Loss(InputChecks):
    """The protocol of a loss: ``forward(logits, labels) -> 0-d array``, ``backward(dloss=1.0) -> dlogits``.

    ``backward`` returns dL/dlogits for the last ``forward``, scaled by ``dloss`` (the gradient of whatever
    is computed from the loss; 1 when the loss itself is minimised). A loss has no parameters.
    """

    def __init__(self) -> None:
        self.name = type(self).__name__
        self._saved: tuple | None = None

    def forward(self, logits: Array, labels: Any) -> Array:
        raise NotImplementedError

    def backward(self, dloss: Any = 1.0) -> Array:
        raise NotImplementedError

    def __call__(self, logits: Array, labels: Any) -> Array:
        return self.forward(logits, labels)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _dloss(self, dloss: Any) -> float:
        """``dloss`` as a float: a Python or NumPy number, or a one-element array (read back once)."""
        if hasattr(dloss, "shape") and getattr(dloss, "size", 0) == 1:
            dloss = float(dloss.reshape(()))  # a device scalar: one small read
        elif hasattr(dloss, "shape"):
            raise LayerInputError(
                f"{self.name}: dloss must be one number (dL/dloss, the loss is a scalar), got an array of shape "
                f"{tuple(dloss.shape)}"
            )
        return validate.number(dloss, f"{self.name}: dloss", error=LayerInputError)

    def _labels(self, labels: Any, n: int, classes: int) -> Array:
        """``labels`` checked (integer dtype, shape (n,), values in [0, classes)) and on the device."""
        if labels is None:
            raise LayerInputError(f"{self.name}: forward needs the integer labels as its second argument")
        on_device = backend.on_gpu and isinstance(labels, xp.ndarray)
        checked = labels if on_device else np.asarray(labels)
        if checked.dtype.kind not in "iu":
            raise LayerInputError(f"{self.name}: labels must be integers, got dtype {checked.dtype}")
        if tuple(checked.shape) != (n,):
            raise LayerInputError(
                f"{self.name}: expected labels of shape ({n},) for {n} rows of logits, got {tuple(checked.shape)}"
            )
        if n == 0:
            raise LayerInputError(f"{self.name}: the batch is empty (no rows of logits)")
        if on_device:
            out_of_range = bool(((checked < 0) | (checked >= classes)).any())  # one reduction, one read-back
        else:
            out_of_range = bool(checked.min() < 0 or checked.max() >= classes)  # on the host: no device sync
        if out_of_range:
            low, high = int(checked.min()), int(checked.max())  # only on the error path
            bad = low if low < 0 else high
            raise LayerInputError(f"{self.name}: labels must lie in [0, {classes}) for {classes} classes, found {bad}")
        return checked if on_device else backend.asarray(checked)


class SoftmaxCrossEntropy(Loss):
    """Mean cross-entropy of softmax(logits) against integer labels.

    ``forward(logits, labels)`` returns the loss as a 0-d array (``float(loss)`` reads it);
    ``backward(dloss=1.0)`` returns dL/dlogits, (N, K). After a forward, :attr:`probs` holds softmax(logits).
    """

    @property
    def probs(self) -> Array | None:
        """softmax(logits) of the last forward, (N, K); None before any."""
        return None if self._saved is None else self._saved[0]

    def forward(self, logits: Array, labels: Any) -> Array:
        self._check_ndim(logits, 2, "(N, classes)")
        n, k = logits.shape
        labels = self._labels(labels, n, k)
        logp = log_softmax(logits)
        loss = -logp[xp.arange(n), labels].mean()
        self._saved = (xp.exp(logp), labels)
        return loss

    def backward(self, dloss: Any = 1.0) -> Array:
        probs, labels = self._saved_for_backward()
        n = probs.shape[0]
        grad = probs.copy()
        grad[xp.arange(n), labels] -= 1
        grad *= probs.dtype.type(self._dloss(dloss) / n)
        return grad


__all__ = ["Loss", "SoftmaxCrossEntropy", "log_softmax"]
