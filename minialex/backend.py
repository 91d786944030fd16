"""The one place that knows NumPy from CuPy.

The array module is chosen once, when minialex is first imported, from the environment variable
``MINIALEX_BACKEND``:

==========  ============================================================================================
``numpy``   the default: NumPy on the CPU
``cupy``    CuPy on an NVIDIA GPU; a :class:`~minialex.errors.BackendError` at import, naming the reason,
            if CuPy cannot be used
``auto``    CuPy when it can be used, NumPy otherwise (:data:`fallback_reason` then says why)
==========  ============================================================================================

"Can be used" is decided by running what minialex needs, not by asking whether CuPy imports: a CuPy
installed without the CUDA libraries imports and counts the GPUs, then fails at the first random draw
(cuRAND), the first element-wise operation (every CuPy kernel is compiled at run time by NVRTC) or the
first matrix product (cuBLAS). :func:`probe_cupy` therefore copies data to the GPU and back, compiles and
runs a tiny kernel, draws random numbers and multiplies two matrices, and checks every result. Install
CuPy with its CUDA libraries through the extras, ``pip install "minialex[cuda12]"`` or ``[cuda13]``.

Everything else in the library does its array math through :data:`xp`, so one code path serves both
devices.

Randomness. One seedable host generator (:func:`seed`, :func:`host_rng`) is the root of every draw, so a
run is reproducible from a single integer and its whole random state is the host generator's state, which
a checkpoint saves as JSON (:func:`get_rng_state`). Draws that must live on the device (dropout masks,
colour noise) are made by :func:`uniform` and :func:`normal`. On NumPy they come straight from the host
generator. On CuPy each draw takes one 63-bit integer from the host stream and uses it to re-seed a
cuRAND Philox-4x32-10 generator that is created once per device and then kept: Philox is counter-based,
its whole state is a seed and a position, so re-seeding it costs two host calls and no set-up kernel
(cuRAND's default generator, XORWOW, initialises a state per thread at every new seed, and creating a
generator allocates and fills those states). The device numbers therefore depend only on the host state,
as before, and resuming from a checkpoint reproduces them exactly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from minialex.errors import BackendError

ENV_VAR = "MINIALEX_BACKEND"
CHOICES = ("numpy", "cupy", "auto")


# ---------------------------------------------------------------------------------------------------------
# Choosing the array module.


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (a compile error's message is pages long)."""
    text = " ".join(str(exc).split()) or "no message"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def probe_cupy(cupy: Any) -> str:
    """Run what minialex needs of ``cupy`` on the current GPU; return ``""`` if all of it works, else why not.

    In order: the GPU count; a copy of 2¹⁸ floats to the device and back; an ``ElementwiseKernel`` compiled
    by NVRTC and run; uniform draws from a cuRAND Philox generator; a float32 matrix product (cuBLAS). Each
    result is checked against the value it must have. The reason is one line, e.g. ``"CuPy cannot draw
    random numbers (cuRAND) (ImportError: libcurand.so.10: cannot open shared object file ...)"``.

    ``cupy`` is a parameter so that the decision can be tested with a stand-in module on a machine
    without a GPU.
    """
    stage = "sees no usable GPU"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
        if count < 1:
            return "CuPy sees no GPU (device count 0)"
        stage = "cannot copy data to the GPU and back"
        host = np.arange(1 << 18, dtype=np.float32)
        device = cupy.asarray(host)
        if not np.array_equal(cupy.asnumpy(device), host):
            return f"CuPy {stage}: the data came back changed"
        stage = "cannot compile and run a kernel (NVRTC)"
        kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1", "minialex_backend_probe")
        if not np.array_equal(cupy.asnumpy(kernel(device)), 2 * host + 1):  # exact: integers below 2^24
            return f"CuPy {stage}: the kernel computed wrong values"
        stage = "cannot draw random numbers (cuRAND)"
        draws = cupy.asnumpy(_philox(cupy, 12345).random_sample((4096,), dtype=np.float32))
        if not (draws.min() >= 0.0 and draws.max() < 1.0 and np.unique(draws).size > 4000):
            return f"CuPy {stage}: the draws are not uniform in [0, 1)"
        stage = "cannot multiply matrices (cuBLAS)"
        a = np.arange(64 * 48, dtype=np.float32).reshape(64, 48) % 7
        b = np.arange(48 * 32, dtype=np.float32).reshape(48, 32) % 5
        if not np.array_equal(cupy.asnumpy(cupy.matmul(cupy.asarray(a), cupy.asarray(b))), a @ b):  # small ints
            return f"CuPy {stage}: the product is wrong"
    except Exception as exc:  # a missing library surfaces as ImportError, OSError or a CUDA error class
        return f"CuPy {stage} ({_one_line(exc)})"
    return ""


def _load_cupy() -> tuple[ModuleType | None, str]:
    """Import CuPy and probe it: ``(module, "")`` when it works, ``(None, reason)`` when it does not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load while importing
        return None, f"CuPy cannot be imported ({_one_line(exc)})"
    reason = probe_cupy(cupy)
    return (None, reason) if reason else (cupy, "")


def choose(requested: str, load_cupy: Callable[[], tuple[Any, str]] = _load_cupy) -> tuple[Any, str, str]:
    """The array module for a ``MINIALEX_BACKEND`` value: ``(module, name, fallback_reason)``.

    ``requested`` is compared without case or surrounding spaces; empty means ``numpy``. ``load_cupy``
    returns ``(module, "")`` or ``(None, reason)`` (default: import and :func:`probe_cupy`); it is not
    called for ``numpy``. ``fallback_reason`` is ``""`` unless ``auto`` fell back to NumPy.

    Raises
    ------
    BackendError
        for an unknown value, or for ``cupy`` when CuPy cannot be used (the message gives the reason).
    """
    value = requested.strip().lower() or "numpy"
    if value not in CHOICES:
        raise BackendError(f"{ENV_VAR}={requested!r} is not a known backend: expected one of {', '.join(CHOICES)}")
    if value == "numpy":
        return np, "numpy", ""
    cupy, reason = load_cupy()
    if cupy is not None:
        return cupy, "cupy", ""
    if value == "cupy":
        raise BackendError(f"{ENV_VAR}=cupy was requested but {reason}; unset it or use {ENV_VAR}=numpy")
    return np, "numpy", reason


xp, name, fallback_reason = choose(os.environ.get(ENV_VAR, "numpy"))
"""``xp`` is the array module (``numpy`` or ``cupy``); ``name`` is ``"numpy"`` or ``"cupy"``;
``fallback_reason`` is why ``MINIALEX_BACKEND=auto`` chose NumPy (``""`` when it did not fall back)."""

on_gpu: bool = name == "cupy"


def to_numpy(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array on the host (a no-op for NumPy input)."""
    if on_gpu and isinstance(a, xp.ndarray):
        return xp.asnumpy(a)
    return np.asarray(a)


def asarray(a: Any, dtype: Any = None) -> Any:
    """Return ``a`` as an array of the active backend (copying host data to the GPU under CuPy)."""
    return xp.asarray(a, dtype=dtype)


def synchronize() -> None:
    """Wait until queued GPU work has finished (a no-op on NumPy). Needed before reading a clock."""
    if on_gpu:
        xp.cuda.Device().synchronize()


def release_cached_memory() -> None:
    """Hand the blocks that CuPy's memory pools keep for reuse back to the driver (a no-op on NumPy).

    CuPy never frees device memory on its own: a freed array's block stays in the pool for the next
    allocation. Call this between unrelated workloads (benchmark configurations, say) so that one's
    cached blocks do not count as the next one's memory.
    """
    if on_gpu:
        synchronize()
        xp.get_default_memory_pool().free_all_blocks()
        xp.get_default_pinned_memory_pool().free_all_blocks()


def describe() -> str:
    """One line naming the backend and its version (the GPU under CuPy; the fallback reason under ``auto``)."""
    if on_gpu:
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"cupy {xp.__version__} on {gpu}"
    text = f"numpy {np.__version__} on the CPU"
    if fallback_reason:
        text += f" ({ENV_VAR}=auto fell back: {fallback_reason})"
    return text


# ---------------------------------------------------------------------------------------------------------
# Randomness: one host generator is the root of every draw.

_host_rng = np.random.default_rng(0)


def seed(n: int) -> None:
    """Seed every random draw in minialex (initialisation, dropout, shuffling, augmentation)."""
    global _host_rng
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {n!r}")
    _host_rng = np.random.default_rng(int(n))


def host_rng() -> np.random.Generator:
    """The host (NumPy) generator behind every draw; use it for small host-side draws such as shuffling."""
    return _host_rng


def get_rng_state() -> dict:
    """The generator state as a JSON-serialisable dict (saved in checkpoints)."""
    return _host_rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    _host_rng.bit_generator.state = state


def _philox(cupy: Any, seed_value: int) -> Any:
    """A new cuRAND Philox-4x32-10 generator (CuPy's ``RandomState``) seeded with ``seed_value``."""
    method = cupy.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10
    return cupy.random.RandomState(np.uint64(seed_value), method=method)  # uint64: every CuPy accepts it


_device_generators: dict[int, Any] = {}
_device_lock = threading.Lock()  # a generator's re-seed and its draw must not interleave with another thread's


def _device_draw(draw: Callable[[Any], Any]) -> Any:
    """``draw(generator)`` with this device's cached Philox generator re-seeded from the host stream."""
    seed_value = int(_host_rng.integers(2**63 - 1))  # one host draw per device draw, as the state's root
    with _device_lock:
        device = xp.cuda.Device().id
        generator = _device_generators.get(device)
        if generator is None:
            generator = _device_generators[device] = _philox(xp, seed_value)
        else:
            generator.seed(np.uint64(seed_value))
        return draw(generator)


def uniform(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    """Uniform draws in [0, 1) of the given shape and dtype, on the backend's device."""
    if on_gpu:
        return _device_draw(lambda generator: generator.random_sample(shape, dtype=dtype))
    return _host_rng.random(shape, dtype=dtype)


def normal(shape: tuple[int, ...], std: float = 1.0, dtype: Any = np.float32) -> Any:
    """Draws from N(0, std²) of the given shape and dtype, on the backend's device."""
    if on_gpu:
        out = _device_draw(lambda generator: generator.standard_normal(shape, dtype=dtype))
    else:
        out = _host_rng.standard_normal(shape, dtype=dtype)
    if std != 1.0:
        out *= dtype(std) if isinstance(dtype, type) else np.dtype(dtype).type(std)
    return out
