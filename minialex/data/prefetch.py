"""Preparing batches ahead on worker threads, delivered in order: the training step never waits for the disk.

:class:`Prefetcher` runs a producer over a sequence of jobs on a small thread pool, at most ``ahead`` jobs
beyond the one the consumer is using, and hands the results back in job order whatever the thread timing
(so a seeded run is reproducible). Threads suit this work: reading a memory-mapped cache, copying rows into
a contiguous batch and decoding JPEGs all run in C code that releases the GIL.

    with Prefetcher.gather(cache.train_images, batches, labels=cache.train_labels, ahead=3) as batches:
        for images, labels in batches:      # uint8 (B, C, H, W), C-contiguous; int64 (B,)
            step(images, labels)

* **Bounded**: at most ``ahead`` results wait, or are being prepared, beyond the one returned last; a job is
  only started when there is room, so memory is ``(ahead + 1) ×`` one batch.
* **Errors** raised by the producer are re-raised in the consumer, at the position of the failing job (the
  results before it are delivered first); the jobs after it are cancelled.
* **Shutdown**: :meth:`Prefetcher.close` (called by ``with``, by the end of the jobs, by an error, and on
  garbage collection) drops the jobs not yet started and waits for the running ones, at most one per
  worker. A Ctrl-C or an exception in the consumer's loop therefore ends the pool promptly.
* **Bounded waits**: a job that has not finished after ``timeout_s`` raises a
  :class:`~minialex.errors.DataError` in the consumer instead of hanging, and :meth:`~Prefetcher.close`
  waits at most ``timeout_s`` for running jobs. The workers are daemon threads, so even a job stuck for
  good (a dead network drive) cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

from minialex import validate
from minialex.errors import DataError

Job = TypeVar("Job")
Result = TypeVar("Result")


def default_workers() -> int:
    """The CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Prefetcher(Generic[Job, Result]):
    """Iterate over ``produce(job)`` for each job, computed ahead on threads, in job order.

    Parameters
    ----------
    produce : callable job -> result
        Runs on a worker thread; it must not depend on the order in which jobs run (draw any random numbers
        in the consumer, or into the jobs, never inside ``produce``).
    jobs : iterable
        Consumed lazily, in the consumer's thread, at most ``ahead`` jobs beyond the last result returned.
    ahead : int
        Results prepared ahead of the consumer (>= 1).
    workers : int, optional
        Threads (default: ``min(ahead, CPUs)``).
    timeout_s : float, optional
        Longest wait for one result, and for the running jobs on :meth:`close` (default 600 s; ``None``:
        no limit).
    """

    def __init__(
        self,
        produce: Callable[[Job], Result],
        jobs: Iterable[Job],
        *,
        ahead: int = 2,
        workers: int | None = None,
        timeout_s: float | None = 600.0,
    ) -> None:
        self.ahead = validate.integer(ahead, "Prefetcher: ahead", low=1)
        limit = min(self.ahead, default_workers())
        self.workers = validate.integer(workers if workers is not None else limit, "Prefetcher: workers", low=1)
        if timeout_s is not None:
            timeout_s = validate.number(timeout_s, "Prefetcher: timeout_s", low=0, low_open=True)
        self.timeout_s = timeout_s
        self._produce = produce
        self._jobs = iter(jobs)
        self._exhausted = False
        self._submitted = 0  # jobs handed to the workers
        self._position = 0  # index of the next result handed out
        self._closed = False
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[int, Job]] = collections.deque()  # jobs not yet started
        self._done: dict[int, tuple[bool, Any]] = {}  # finished: index -> (succeeded, result or exception)
        self._threads = [
            threading.Thread(target=self._work, name=f"minialex-prefetch-{k}", daemon=True) for k in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def gather(
        cls,
        images: np.ndarray,
        batches: Iterable[np.ndarray],
        labels: np.ndarray | None = None,
        **options: Any,
    ) -> Prefetcher[np.ndarray, Any]:
        """Batches ``images[idx]`` (and ``labels[idx]``) for each index array, as contiguous host copies.

        ``images`` is typically a memory-mapped uint8 cache (N, C, H, W): each batch reads only its own rows
        and comes out as a C-contiguous ``np.ndarray`` of the same dtype, ready to send to the device.
        ``options`` are those of :class:`Prefetcher`. Yields ``images[idx]``, or ``(images[idx],
        labels[idx])`` with labels.
        """

        def produce(idx: np.ndarray) -> Any:
            rows = np.asarray(idx)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise DataError(f"Prefetcher.gather: expected a 1-D integer index array, got {rows.dtype} {rows.shape}")
            batch = np.ascontiguousarray(images[rows])
            return batch if labels is None else (batch, np.asarray(labels[rows]))

        return cls(produce, batches, **options)

    # -- the workers ----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                index, job = self._queue.popleft()
            try:
                outcome = (True, self._produce(job))
            except BaseException as exc:  # handed to the consumer, raised there
                outcome = (False, exc)
            with self._cond:
                if not self._closed:
                    self._done[index] = outcome
                self._cond.notify_all()

    # -- the consumer ---------------------------------------------------------------------------------------
    def _fill(self) -> None:
        while not self._closed and not self._exhausted and self._submitted - self._position < self.ahead:
            try:
                job = next(self._jobs)
            except StopIteration:
                self._exhausted = True
                return
            with self._cond:
                self._queue.append((self._submitted, job))
                self._submitted += 1
                self._cond.notify()

    def __iter__(self) -> Iterator[Result]:
        return self

    def __next__(self) -> Result:
        if self._closed:
            raise StopIteration
        try:
            self._fill()
            if self._position == self._submitted:
                self.close()
                raise StopIteration
            with self._cond:
                ready = self._cond.wait_for(lambda: self._position in self._done, timeout=self.timeout_s)
                if not ready:
                    self._closed = True  # do not wait again for the stalled job in close()
                    raise DataError(
                        f"Prefetcher: result {self._position} not ready after {self.timeout_s:g} s (a stalled read?)"
                    )
                succeeded, value = self._done.pop(self._position)
            self._position += 1
            if not succeeded:
                raise value
            self._fill()  # start the next job while the consumer works on this result
            return value
        except BaseException:
            self.close()
            raise

    # -- shutdown -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the jobs not yet started, wait for the running ones (at most ``timeout_s``), end the threads."""
        with self._cond:
            waited = self._closed
            self._closed = True
            self._queue.clear()
            self._done.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=0 if waited else self.timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    @property
    def closed(self) -> bool:
        """Whether the pool has been shut down (no more results)."""
        return self._closed

    def __enter__(self) -> Prefetcher[Job, Result]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with self._cond:
                self._closed = True
                self._queue.clear()
                self._cond.notify_all()
