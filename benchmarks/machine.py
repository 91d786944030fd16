"""What the benchmark ran on: CPU, BLAS kernel and threads, library versions, and the float32 GEMM rate.

The GEMM rate is the yardstick for "fraction of the machine": the best of several NumPy float32
``matmul`` calls on 2048×2048 matrices, measured in the same process as the benchmark (the machine is
shared and its speed drifts, so a number from another run would be meaningless).
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The vector extensions the CPU reports that matter for a GEMM kernel."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    return []


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of every BLAS / OpenMP pool loaded in this process (kernel and threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is in the test extras
        return [{"note": "threadpoolctl not installed"}]
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    return [{k: info.get(k) for k in keys if k in info} for info in threadpool_info()]


def blas_line() -> str:
    """One line for the log: ``openblas 0.3.31 SkylakeX x2 threads; libgomp x2``."""
    parts = []
    for info in blas_info():
        text = f"{info.get('internal_api', '?')} {info.get('version') or ''}".strip()
        if info.get("architecture"):
            text += f" kernel={info['architecture']}"
        parts.append(f"{text} threads={info.get('num_threads')} ({info.get('prefix')})")
    return "; ".join(parts)


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of ``a @ b`` for n×n matrices (2·n³ FLOPs per product), NumPy/BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def gpu_gemm_rate(n: int = 8192, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a CuPy ``a @ b`` (n×n) on the GPU, timed with CUDA events (needs the CuPy backend).

    The yardstick of the GPU rows, as :func:`gemm_rate` is of the CPU rows: CuPy's plain float32 product
    (cuBLAS, no TF32 unless ``CUPY_TF32=1`` is set, which :func:`gpu_info` records). Random operands: a
    product of zeros or ones can run faster than real data.
    """
    from minialex import backend

    cupy = backend.xp
    rng = np.random.default_rng(0)
    a = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = cupy.asarray(rng.standard_normal((n, n), dtype=np.float32))
    out = cupy.matmul(a, b)  # warm-up: cuBLAS handle and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        cupy.matmul(a, b, out=out)
        stop.record()
        stop.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    del a, b, out
    backend.release_cached_memory()
    return 2.0 * n**3 / best / 1e9


def gpu_copy_rate(megabytes: int = 1024, repeats: int = 5) -> float:
    """Best device-to-device copy rate in GB/s (bytes read + bytes written), CUDA events: the GPU's memory ceiling."""
    from minialex import backend

    cupy = backend.xp
    src = cupy.arange(megabytes * 2**20 // 4, dtype=cupy.float32)  # made on the device; a copy's speed ignores values
    dst = cupy.empty_like(src)
    cupy.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        cupy.copyto(dst, src)
        stop.record()
        stop.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    nbytes = 2 * src.nbytes
    del src, dst
    backend.release_cached_memory()
    return nbytes / best / 1e9


def gpu_draw_costs(shape: tuple[int, ...] = (128, 4096), draws: int = 50) -> dict[str, float]:
    """Milliseconds per dropout-sized uniform draw on the GPU, host and device time together.

    ``fresh_generator_ms``: a new cuRAND generator (CuPy's default, XORWOW) seeded for every draw, as
    minialex drew before; ``reseeded_xorwow_ms``: one XORWOW generator kept and re-seeded per draw (the
    alternative not taken: XORWOW sets up a state per thread after every new seed); ``cached_philox_ms``:
    :func:`minialex.backend.uniform`, one Philox generator per device re-seeded from the host stream per
    draw. The host generator's state is restored afterwards.
    """
    from minialex import backend

    cupy = backend.xp
    state = backend.get_rng_state()
    kept = cupy.random.RandomState(np.uint64(1))

    def fresh() -> Any:
        return cupy.random.RandomState(np.uint64(12345)).random_sample(shape, dtype=np.float32)

    def reseeded() -> Any:
        kept.seed(np.uint64(12345))
        return kept.random_sample(shape, dtype=np.float32)

    def cached() -> Any:
        return backend.uniform(shape, np.float32)

    costs = {}
    for key, draw in (("fresh_generator_ms", fresh), ("reseeded_xorwow_ms", reseeded), ("cached_philox_ms", cached)):
        draw()  # warm-up: kernels compiled, library loaded
        backend.synchronize()
        start = time.perf_counter()
        for _ in range(draws):
            draw()
        backend.synchronize()
        costs[key] = (time.perf_counter() - start) / draws * 1e3
    backend.set_rng_state(state)
    return costs


def gpu_info() -> dict[str, Any]:
    """The GPU as CuPy sees it (name, memory, compute capability, driver and runtime versions); {} on NumPy."""
    from minialex import backend

    if not backend.on_gpu:
        return {}
    cupy = backend.xp
    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {
        "name": name,
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"],
        "driver_version": cupy.cuda.runtime.driverGetVersion(),
        "runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
        "cupy": cupy.__version__,
        "cupy_tf32": os.environ.get("CUPY_TF32", "0"),
    }


def describe(torch_module: Any = None) -> dict[str, Any]:
    """The machine and software, as a JSON-able dict."""
    import scipy

    import minialex
    from minialex import backend

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "minialex": getattr(minialex, "__version__", "?"),
        "minialex_backend": backend.describe(),
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in OPENBLAS_VARS},
    }
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            info["memory_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        info["load_average_1_5_15"] = list(os.getloadavg())
    except OSError:
        pass
    gpu = gpu_info()
    if gpu:
        info["gpu"], info["gpu_details"] = gpu["name"], gpu
    if torch_module is not None:
        info["torch"] = torch_module.__version__
        info["torch_threads"] = torch_module.get_num_threads()
        info["torch_interop_threads"] = torch_module.get_num_interop_threads()
        info["torch_mkldnn"] = bool(torch_module.backends.mkldnn.is_available())
        if backend.on_gpu and torch_module.cuda.is_available():
            info.setdefault("gpu", torch_module.cuda.get_device_name(0))
            info["torch_cuda"] = torch_module.version.cuda
            info["torch_cudnn"] = torch_module.backends.cudnn.version()
            info["torch_cudnn_benchmark"] = bool(torch_module.backends.cudnn.benchmark)
    return info
