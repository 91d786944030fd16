"""The order in which an epoch visits the training images, and its mini-batches.

One function, :func:`epoch_batches`, says which images each step of an epoch takes. With a seed the order
is a permutation drawn from ``np.random.default_rng([seed, epoch])``: a function of the run's seed and the
epoch number alone, never of any other random draw, so a run resumed in the middle of an epoch visits the
same images in the same order as one that was never stopped. Without a seed the images go in order.
Each batch holds ``batch_size`` images; the last one may be smaller (or be dropped with ``drop_last``).

:func:`iterate_batches` is the convenience form for a hand-written loop: it gathers the images and labels
of each batch from host arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from minialex import backend, validate
from minialex.errors import DataError


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches in one epoch over ``n`` examples: ⌈n / batch_size⌉ (⌊n / batch_size⌋ with ``drop_last``)."""
    batch_size = validate.integer(batch_size, "batch_size", low=1)
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` that epoch ``epoch`` of a run seeded with ``seed`` visits, int64 (n,)."""
    seed = validate.integer(seed, "seed", low=0)
    epoch = validate.integer(epoch, "epoch", low=0)
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batches(
    n: int, batch_size: int, *, seed: int | None = None, epoch: int = 0, start: int = 0, drop_last: bool = False
) -> Iterator[np.ndarray | slice]:
    """Yield the indices of each batch of one epoch over ``n`` examples, from batch ``start`` on.

    Parameters
    ----------
    n : number of examples
    batch_size : examples per batch (the last batch may hold fewer)
    seed, epoch : with a seed, batch b is ``epoch_order(n, seed, epoch)[b·B : (b+1)·B]``; with None, the
        slice ``b·B : (b+1)·B`` (the examples in order, so indexing gives views, not copies)
    start : batches already done (a resumed epoch skips them without drawing anything)
    drop_last : drop a last batch smaller than ``batch_size``

    Yields
    ------
    np.ndarray of int64 (B,) with a seed, else a ``slice``: either indexes a host array (N, ...).
    """
    batch_size = validate.integer(batch_size, "batch_size", low=1)
    steps = num_batches(n, batch_size, drop_last)
    start = validate.integer(start, "start (batches already done)", low=0, high=steps)
    order = None if seed is None else epoch_order(n, seed, epoch)
    for step in range(start, steps):
        window = slice(step * batch_size, min((step + 1) * batch_size, n))
        yield window if order is None else order[window]


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images[b], labels[b])`` mini-batches of host arrays (see :func:`epoch_batches`).

    Parameters
    ----------
    images : np.ndarray, shape (N, C, H, W)
        Usually uint8; shuffled batches are gathered copies, unshuffled ones views, of the same dtype.
    labels : np.ndarray, shape (N,)
    batch_size : int
    shuffle : bool
        Visit the examples in a random permutation (a new one per call) instead of in order.
    rng : np.random.Generator, optional
        Draws the seed of the permutation; default :func:`minialex.backend.host_rng`, so that
        :func:`minialex.seed` reproduces the order.
    drop_last : bool
        Drop the last batch when it has fewer than ``batch_size`` examples (default: yield it, smaller).

    Yields
    ------
    (np.ndarray (B, C, H, W), np.ndarray (B,))
        ``B = batch_size`` except possibly for the last batch.
    """
    batch_size = validate.integer(batch_size, "batch_size", low=1)
    if len(images) != len(labels):
        raise DataError(f"iterate_batches: {len(images)} images but {len(labels)} labels: expected equal counts")
    seed = int((rng if rng is not None else backend.host_rng()).integers(2**63)) if shuffle else None
    for take in epoch_batches(len(images), batch_size, seed=seed, drop_last=drop_last):
        yield images[take], labels[take]
