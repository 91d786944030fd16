"""Scratch buffers reused across calls: the one place where minialex keeps work memory between steps.

A convolution lowers its input to columns (``im2col``), multiplies, and in the backward pass builds the
columns' gradient and scatters it back (``col2im``). Those buffers are large (tens to hundreds of MB)
and short-lived. Allocating them afresh at every call costs page faults: the operating system hands out
new memory lazily, one 4 KiB page at a time, and zeroes each page on first touch. Reusing one buffer
per role avoids that, and because every convolution uses the *same* buffers one after another (only one
layer runs at a time), the memory they take is that of the largest single chunk, not the sum over layers.

Usage::

    buf = scratch("cols", (rows, cols), x.dtype)   # a view of a reused buffer, contents undefined

Rules that keep this safe:

* a scratch view is only valid until the next ``scratch`` call with the same ``role``: never return
  one to the caller or keep it on a layer between forward and backward;
* roles used within one computation must differ ("pad", "cols", "dcols", ...).

:func:`release` drops every buffer (e.g. before measuring memory, or after switching models). The layers
(convolution, im2col) and the optimiser (SGD's chunked update) share this one pool of buffers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp

Array = Any

_buffers: dict[tuple[str, np.dtype], Array] = {}


def scratch(role: str, shape: tuple[int, ...], dtype: Any) -> Array:
    """A C-contiguous array of ``shape`` and ``dtype`` backed by the reused buffer for ``role``.

    The contents are whatever the last user left (like ``empty``). The buffer grows when a larger one is
    asked for and is otherwise reused as is.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    key = (role, dtype)
    buf = _buffers.get(key)
    if buf is None or buf.size < size:
        _buffers.pop(key, None)  # let the old one go before the new one is made
        buf = _buffers[key] = xp.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def release() -> None:
    """Forget every scratch buffer (their memory is freed once no view of them is alive)."""
    _buffers.clear()


def nbytes() -> int:
    """Total bytes held by the scratch buffers."""
    return sum(int(b.nbytes) for b in _buffers.values())


def available_device_bytes() -> int:
    """On a GPU, the bytes minialex could still use: free device memory, the free blocks of CuPy's memory
    pool, and the scratch buffers (a chunk may reuse them). On the CPU: 0 (the CPU sizes chunks by a constant)."""
    if not backend.on_gpu:
        return 0
    free, _total = xp.cuda.runtime.memGetInfo()
    return int(free) + int(xp.get_default_memory_pool().free_bytes()) + nbytes()
