"""The batches of a training epoch, gathered ahead on threads, and the time the training step waited for them.

Each step needs ``images[batch]``: for a photo folder a gather of 128 rows of 196,608 bytes from the
memory-mapped decoded-image cache (the page cache, or the disk), for the other data sets a copy from memory.
:class:`BatchFeed` hands that work to a :class:`~minialex.data.Prefetcher`, which prepares the next
``ahead`` batches on worker threads while the current step runs, in the epoch's order (so a seeded run is
the same with or without it). The random parts of the input pipeline (crops, flips, colour noise) stay in
the training thread, on the device, in step order.

What the step still waits for is measured: :attr:`BatchFeed.waited` is the wall-clock time spent blocked in
``next()``, the whole of the first batch of an epoch included (nothing can be read before it is asked for),
and each epoch's history row records it as ``data_wait_seconds``. When it is a small fraction of the
epoch's ``train_seconds``, the data is not what training waits for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from minialex.data.prefetch import Prefetcher

AHEAD = 3
"""Batches prepared ahead of the step (memory: ``AHEAD + 1`` batches of uint8 images)."""
WORKERS = 2
"""Threads gathering batches (at most; a gather is a copy, which releases the GIL)."""


class BatchFeed:
    """Iterate over ``(images[idx], labels[idx])`` for each index array of ``batches``, prepared ahead.

    Parameters
    ----------
    images : uint8 (N, C, H, W): an array, a memory map, or a :class:`~minialex.training.data.RowSubset`
    labels : int64 (N,)
    batches : iterable of 1-D integer index arrays (:func:`minialex.data.batches.epoch_batches`)
    ahead : batches prepared ahead of the consumer
    timeout_s : longest wait for one batch before a :class:`~minialex.errors.DataError` (a stalled disk)

    Yields
    ------
    (np.ndarray uint8 (B, C, H, W), C-contiguous; np.ndarray int64 (B,))
    """

    def __init__(
        self,
        images: Any,
        labels: np.ndarray,
        batches: Iterable[np.ndarray],
        *,
        ahead: int = AHEAD,
        timeout_s: float | None = 600.0,
    ) -> None:
        workers = min(WORKERS, ahead)
        self._stream = Prefetcher.gather(
            images, batches, labels=labels, ahead=ahead, workers=workers, timeout_s=timeout_s
        )
        self.waited = 0.0
        """Seconds the consumer spent blocked waiting for a batch."""
        self.delivered = 0
        """Batches handed out."""

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        try:
            item = next(self._stream)
        finally:
            self.waited += time.perf_counter() - started
        self.delivered += 1
        return item

    def close(self) -> None:
        """Stop the worker threads (the batches not yet started are dropped)."""
        self._stream.close()

    def __enter__(self) -> BatchFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
