"""The one place that knows NumPy from CuPy.

The array module is chosen once, when minialex is first imported, from the environment variable
``MINIALEX_BACKEND``:

==========  ============================================================
``numpy``   the default: NumPy on the CPU
``cupy``    CuPy on an NVIDIA GPU; fails at import if CuPy or a GPU is missing
``auto``    CuPy when it imports and sees a GPU, NumPy otherwise
==========  ============================================================

Everything else in the library does its array math through :data:`xp`, so one code path serves both
devices. Randomness comes from one seedable host generator (:func:`seed`, :func:`host_rng`); draws that
must live on the device (dropout masks, augmentation noise) are made by :func:`uniform` and
:func:`normal`, which seed a device generator from the host one, so that a run is reproducible from a
single integer and its whole random state can be saved in a checkpoint as JSON.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from minialex.errors import BackendError

ENV_VAR = "MINIALEX_BACKEND"
CHOICES = ("numpy", "cupy", "auto")


def _import_cupy() -> tuple[ModuleType | None, str]:
    """Import CuPy and check that it sees a GPU; return ``(module or None, reason it is unusable)``."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return None, f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy sees no usable GPU ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CuPy sees no GPU (device count 0)"
    return cupy, ""


def _select() -> tuple[ModuleType, str]:
    requested = os.environ.get(ENV_VAR, "numpy").strip().lower() or "numpy"
    if requested not in CHOICES:
        raise BackendError(
            f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a known backend: expected one of {', '.join(CHOICES)}"
        )
    if requested == "numpy":
        return np, "numpy"
    cupy, reason = _import_cupy()
    if cupy is not None:
        return cupy, "cupy"
    if requested == "cupy":
        raise BackendError(f"{ENV_VAR}=cupy was requested but {reason}; unset it or use {ENV_VAR}=numpy")
    return np, "numpy"


xp, name = _select()
"""``xp`` is the array module (``numpy`` or ``cupy``); ``name`` is ``"numpy"`` or ``"cupy"``."""

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


def describe() -> str:
    """One line naming the backend and its version (and the GPU under CuPy)."""
    if on_gpu:
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"cupy {xp.__version__} on {gpu}"
    return f"numpy {np.__version__} on the CPU"


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


def _device_generator() -> Any:
    # A fresh CuPy generator seeded from the host stream keeps the host state the single source of truth.
    return xp.random.RandomState(int(_host_rng.integers(2**63 - 1)))


def uniform(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    """Uniform draws in [0, 1) of the given shape and dtype, on the backend's device."""
    if on_gpu:
        return _device_generator().random_sample(shape, dtype=dtype)
    return _host_rng.random(shape, dtype=dtype)


def normal(shape: tuple[int, ...], std: float = 1.0, dtype: Any = np.float32) -> Any:
    """Draws from N(0, std²) of the given shape and dtype, on the backend's device."""
    if on_gpu:
        out = _device_generator().standard_normal(shape, dtype=dtype)
    else:
        out = _host_rng.standard_normal(shape, dtype=dtype)
    if std != 1.0:
        out *= dtype(std) if isinstance(dtype, type) else np.dtype(dtype).type(std)
    return out
