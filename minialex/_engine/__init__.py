"""The engine room: machinery for speed that a first reading of minialex may skip.

Nothing here changes a result; it only changes how fast and in how much memory a result is computed.

* :mod:`~minialex._engine.parallel`: splits a large memory-bound pass (an im2col copy, a col2im slice-add,
  LRN, max-pooling) over a few threads on the CPU; runs it whole on a GPU.
* :mod:`~minialex._engine.workspace`: scratch buffers reused between calls (a convolution's columns, the
  optimiser's chunk), so that large short-lived arrays are not allocated afresh at every step; and how much
  device memory a GPU chunk may use.

Reading a layer, treat ``parallel.split(fn, length, elements)`` as ``fn(0, length)`` and
``scratch(role, shape, dtype)`` as ``xp.empty(shape, dtype)``: that is exactly what they compute.
"""
