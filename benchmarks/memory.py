"""Peak host memory of training steps, one fresh process per configuration so that peaks never mix.

Run as ``python -m benchmarks.memory --framework minialex|torch --variant paper --batch 128 --steps 2``;
prints one JSON line::

    rss_ready_mb   resident memory once the libraries, the model, the optimiser and the batch exist
    peak_mb        the process's peak resident set (VmHWM) over its whole life: what the machine must have
    step_peak_mb   the peak during the steps (the mark is reset before them) − rss_ready_mb: what the
                   training steps themselves add on top of the model, optimiser state and batch
    gpu_pool_total_mb  on CuPy: bytes held by CuPy's memory pool after the steps, which were started from an
                   emptied pool: the pool's high-water mark over the steps
    gpu_reserved_peak_mb  PyTorch on CUDA: torch.cuda.max_memory_reserved over the steps

The minialex process does not import torch, and the torch process does not build a minialex model's
work buffers, so each peak is that framework's alone (the torch process builds its weights from a
minialex model only to share the initial values; the minialex model is dropped before measuring).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys

import numpy as np


def rss_mb() -> float:
    """Current resident set size in MB (from /proc/self/statm)."""
    with open("/proc/self/statm", encoding="utf-8") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def peak_mb() -> float:
    """Peak resident set size of this process so far in MB.

    From VmHWM in /proc/self/status, which starts afresh in a new program. (``ru_maxrss`` does not: after
    fork + exec it still holds the parent's peak, so a child of a big parent would report the parent's.)
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(framework: str, variant: str, n: int, steps: int, threads: int) -> dict[str, float | str | int]:
    from benchmarks import bench
    from minialex import backend

    out: dict[str, float | str | int] = {"framework": framework, "variant": variant, "batch": n, "steps": steps}
    device = "cpu"
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        model = bench.make_minialex(variant)
        x_host, labels_host = bench.batch(model, n)
        device = "cuda" if backend.on_gpu and torch.cuda.is_available() else "cpu"
        tmodel = bench.torch_mirror(model, torch, device)
        del model
        gc.collect()
        step = bench.torch_step_fn(
            tmodel, torch, torch.from_numpy(x_host).to(device), torch.from_numpy(labels_host).to(device)
        )
        out["torch_threads"] = torch.get_num_threads()
    else:
        model = bench.make_minialex(variant)
        x_host, labels_host = bench.batch(model, n)
        step = bench.minialex_step_fn(model, backend.asarray(x_host), backend.asarray(labels_host))
    gc.collect()
    backend.release_cached_memory()  # CuPy: the pool keeps only live arrays, so its growth is the steps'
    if framework == "torch" and device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    out["rss_ready_mb"] = rss_mb()
    out["peak_setup_mb"] = peak_mb()  # the peak while importing and building, before any step
    out["peak_reset"] = reset_peak()
    for _ in range(steps):
        step()
    backend.synchronize()
    out["peak_steps_mb"] = peak_mb()  # the peak during the steps (the whole life if the reset failed)
    out["peak_mb"] = max(out["peak_setup_mb"], out["peak_steps_mb"])
    out["step_peak_mb"] = out["peak_steps_mb"] - out["rss_ready_mb"]
    if framework == "minialex" and backend.on_gpu:
        pool = backend.xp.get_default_memory_pool()
        out["gpu_pool_total_mb"] = pool.total_bytes() / 1e6
    if framework == "torch" and device == "cuda":
        torch.cuda.synchronize()
        out["gpu_reserved_peak_mb"] = torch.cuda.max_memory_reserved() / 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("minialex", "torch"), required=True)
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    np.random.default_rng(0)
    print(json.dumps(measure(args.framework, args.variant, args.batch, args.steps, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
