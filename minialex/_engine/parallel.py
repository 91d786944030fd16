"""Split a large memory-bound pass over a few threads (NumPy only).

NumPy runs element-wise work (copies, slice-adds, ``maximum``, ``sqrt``...) on one core, but it releases
the GIL while it does so. A pass over tens of MB can therefore run on two cores at once by giving each
thread its own slice of the arrays (a range of images, or of channels). On a GEMM-bound network this
is the remaining single-threaded time: im2col copies, col2im slice-adds, LRN, pooling.

On the CPU a pass is also cut into pieces of about :data:`PIECE_ELEMENTS` elements, so that the temporaries
each piece makes stay small. Small passes are not split (starting a thread's work costs tens of
microseconds). On CuPy nothing is split: the GPU already runs each pass in parallel, and every extra piece
would only be one more kernel launch, so the whole range is one piece.

``MINIALEX_THREADS`` sets the number of threads (default: the CPUs this process may use, at most 4;
``1`` turns the splitting over threads off). Anything but a positive integer there is a
:class:`~minialex.errors.ConfigError` when minialex is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from minialex import backend, validate
from minialex.errors import ConfigError

ENV_VAR = "MINIALEX_THREADS"
MAX_THREADS = 1024
"""More than any machine minialex runs on has cores; a larger count is a typo (and would start that many threads)."""


def threads_from_environment(value: str | None = None) -> int:
    """The thread count ``MINIALEX_THREADS`` asks for (``value`` instead, if given), or the default when unset.

    Raises a :class:`~minialex.errors.ConfigError` naming the variable when it is not a positive integer.
    """
    text = (os.environ.get(ENV_VAR, "") if value is None else value).strip()
    if not text:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(4, cpus))
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"{ENV_VAR} must be an integer >= 1 (the number of threads), got {text!r}") from None
    number = validate.integer(number, f"{ENV_VAR} (the number of threads)", low=1)
    if number > MAX_THREADS:
        raise ConfigError(f"{ENV_VAR} must be at most {MAX_THREADS} (the number of threads), got {number}")
    return number


THREADS = threads_from_environment()
MIN_ELEMENTS = 1 << 20
"""Passes over fewer elements than this run in the calling thread."""
PIECE_ELEMENTS = 1 << 22
"""On the CPU, ranges are cut into pieces of about this many elements (16 MB of float32), so that the
temporaries a pass makes per piece stay small and cache-friendly whatever the batch size."""

_pool: ThreadPoolExecutor | None = None


def ranges(length: int, elements: int) -> list[tuple[int, int]]:
    """``[0, length)`` cut into contiguous (start, stop) pieces: one piece on a GPU; on the CPU pieces of about
    :data:`PIECE_ELEMENTS` elements, and at least one per thread for a large pass."""
    if backend.on_gpu:
        return [(0, length)] if length > 0 else []
    pieces = max(1, min(length, -(-elements // PIECE_ELEMENTS)))
    if THREADS > 1 and elements >= MIN_ELEMENTS:
        pieces = max(pieces, min(length, THREADS))
    bounds = [length * i // pieces for i in range(pieces + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(pieces) if bounds[i] < bounds[i + 1]]


def split(fn: Callable[[int, int], None], length: int, elements: int) -> None:
    """Call ``fn(start, stop)`` on every piece of ``[0, length)`` (see :func:`ranges`), on several threads.

    ``fn`` must write only into its own range of its outputs. ``elements`` is the size of the whole
    pass; below :data:`MIN_ELEMENTS`, or with one thread, or on CuPy, the pieces run one after another
    in the calling thread.
    """
    global _pool
    pieces = ranges(length, elements)
    if backend.on_gpu or THREADS < 2 or elements < MIN_ELEMENTS or len(pieces) < 2:
        for start, stop in pieces:
            fn(start, stop)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="minialex")
    for future in [_pool.submit(fn, start, stop) for start, stop in pieces]:
        future.result()  # re-raises an exception from a worker
