"""A seeded, shuffling mini-batch iterator over host uint8 arrays."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from minialex import backend
from minialex.errors import ConfigError, DataError


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches :func:`iterate_batches` yields for ``n`` examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images[b], labels[b])`` mini-batches, host arrays, in a seeded order.

    Parameters
    ----------
    images : np.ndarray, shape (N, C, H, W)
        Usually uint8; shuffled batches are gathered copies, unshuffled ones views, of the same dtype.
    labels : np.ndarray, shape (N,)
    batch_size : int
    shuffle : bool
        Visit the examples in a random permutation (one per call) instead of in order.
    rng : np.random.Generator, optional
        Source of the permutation; default :func:`minialex.backend.host_rng`, so :func:`minialex.seed`
        reproduces the order.
    drop_last : bool
        Drop the last batch when it has fewer than ``batch_size`` examples (default: yield it, smaller).

    Yields
    ------
    (np.ndarray (B, C, H, W), np.ndarray (B,))
        ``B = batch_size`` except possibly for the last batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if len(images) != len(labels):
        raise DataError(f"iterate_batches: {len(images)} images but {len(labels)} labels: expected equal counts")
    n = len(images)
    order = (rng if rng is not None else backend.host_rng()).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield images[start : start + batch_size], labels[start : start + batch_size]
        else:
            take = order[start : start + batch_size]
            yield images[take], labels[take]
