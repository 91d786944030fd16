"""Run the minialex benchmarks: ``python -m benchmarks.run [--quick]`` (see benchmarks/README.md).

Full run (about 10 minutes on 2 idle cores, more on a busy machine): per-layer times of the paper model at
batch 32 and 128, training steps of paper (32, 128), torchvision (128), d2l (128) and mini (128), each
minialex beside PyTorch, and the peak memory of the paper and torchvision steps, each in its own process.
``--quick``: batch 32 only, fewer rounds (about 3 minutes).
With a GPU (CuPy and torch CUDA importable), the same measurements are repeated on it in a child process
with ``MINIALEX_BACKEND=cupy`` and merged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {
    "per_layer": [("paper", 32), ("paper", 128)],
    "steps": [("paper", 32), ("paper", 128), ("torchvision", 128), ("d2l", 128), ("mini", 128)],
    "memory": [("paper", 32), ("paper", 128), ("torchvision", 128)],
    "layer_repeats": 2,
    "step_repeats": {32: 5, 128: 3},
}
QUICK = {
    "per_layer": [("paper", 32)],
    "steps": [("paper", 32), ("torchvision", 32), ("d2l", 32), ("mini", 32)],
    "memory": [("paper", 32)],
    "layer_repeats": 2,
    "step_repeats": {32: 3, 128: 2},
}
TINY = {  # for the smoke test: seconds, not minutes
    "per_layer": [("mini", 4)],
    "steps": [("mini", 4)],
    "memory": [("mini", 4)],
    "layer_repeats": 1,
    "step_repeats": {4: 1},
}


def log(msg: str) -> None:
    print(msg, flush=True)


def memory_run(framework: str, variant: str, n: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Peak memory of two training steps in a fresh interpreter (see :mod:`benchmarks.memory`)."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--framework", framework, "--variant", variant]
    cmd += ["--batch", str(n), "--steps", "2"]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minialex vs PyTorch: per-layer and training-step benchmarks")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="batch 32 only, fewer rounds (about 2 minutes)")
    mode.add_argument("--tiny", action="store_true", help="the mini model at batch 4, one round (a smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="minialex only")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--name", default=None, help="machine name for the file names (default: from the CPU)")
    parser.add_argument("--gpu-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else QUICK if args.quick else FULL
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t_start = time.perf_counter()

    from benchmarks import bench, machine, report
    from minialex import backend

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            log("PyTorch is not installed: minialex only (pip install 'minialex[torch]')")
    device = "gpu" if backend.on_gpu else "cpu"
    torch_device = "cuda" if device == "gpu" else "cpu"
    if torch is not None:
        torch.set_num_threads(args.threads)
        if device == "gpu" and not torch.cuda.is_available():
            log("PyTorch has no CUDA here: CuPy only")
            torch = None

    info = machine.describe(torch)
    blas = machine.blas_line()
    log(f"machine: {info['cpu']}, {info['usable_cpus']} CPUs; backend {info['minialex_backend']}")
    log(f"BLAS: {blas}")
    log(f"OpenBLAS env: {info['env']}")
    if torch is not None:
        log(f"torch {torch.__version__}: {torch.get_num_threads()} threads on {torch_device}")
    gemm_start = machine.gemm_rate()
    log(f"float32 GEMM rate (NumPy, 2048^3): {gemm_start:.1f} GFLOP/s")

    results: dict[str, Any] = {
        "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "started": started,
        "machine": info,
        "machine_name": args.name or _machine_name(info, device),
        "blas_line": blas,
        "device": device,
        "per_layer": [],
        "steps": [],
        "notes": [],
    }
    tf32 = (True, False) if device == "gpu" else (False,)
    for variant, n in plan["per_layer"]:
        log(f"per-layer: {variant} batch {n}")
        entry = bench.per_layer(variant, n, plan["layer_repeats"], torch, torch_device, log=log)
        entry["device"] = device
        results["per_layer"].append(entry)
    for variant, n in plan["steps"]:
        log(f"training step: {variant} batch {n}")
        repeats = plan["step_repeats"].get(n, 3) * (4 if variant == "mini" else 1)  # a mini step is short: more rounds
        entry = bench.train_steps(variant, n, repeats, torch, torch_device, tf32, log=log)
        entry["device"] = device
        results["steps"].append(entry)
    gemm_end = machine.gemm_rate()
    results["gemm_gflops_start"], results["gemm_gflops_end"] = gemm_start, gemm_end
    results["gemm_gflops"] = max(gemm_start, gemm_end)
    log(f"float32 GEMM rate at the end: {gemm_end:.1f} GFLOP/s")

    if not args.no_memory:
        wanted = set(plan["memory"])
        for entry in results["steps"]:
            if (entry["variant"], entry["batch"]) not in wanted:
                continue
            entry["memory"] = {}
            for fw in ("minialex", "torch") if torch is not None else ("minialex",):
                mem = memory_run(fw, entry["variant"], entry["batch"])
                log(f"memory {fw} {entry['variant']} batch {entry['batch']}: {mem}")
                if "error" not in mem:
                    key = (
                        fw
                        if fw == "minialex" or device == "cpu"
                        else next(k for k in entry["median_s"] if k != "minialex")
                    )
                    entry["memory"][key] = mem
    if device == "cpu":
        results["notes"].append(_gpu_note(args, plan, results))
    results["elapsed_s"] = time.perf_counter() - t_start

    if args.gpu_child:
        results["gemm_gflops_gpu"] = machine.gpu_gemm_rate()
        print("JSON:" + json.dumps(results, default=str))
        return 0
    stem = results["machine_name"] + ("-quick" if args.quick else "-tiny" if args.tiny else "")
    paths = report.write(results, args.out, stem)
    if not (args.quick or args.tiny) and args.out.resolve() == RESULTS:  # a full run is "the latest results"
        report.update_readme(results, RESULTS.parent / "README.md", stem)
    print(report.markdown(results))
    log("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _machine_name(info: dict[str, Any], device: str) -> str:
    cpu = info["cpu"].lower().replace("(r)", "").replace("(tm)", "")
    words = [w for w in cpu.replace("-", " ").split() if w not in {"processor", "cpu", "with"}][:3]
    name = "-".join(words) + f"-{info['usable_cpus']}cpu"
    if device == "gpu" and "gpu" in info:
        name += "-" + info["gpu"].lower().replace(" ", "-")
    return "".join(ch for ch in name if ch.isalnum() or ch in "-_.") or platform.machine()


def _gpu_note(args: argparse.Namespace, plan: dict[str, Any], results: dict[str, Any]) -> str:
    """Run the same plan on a GPU in a child process when CuPy and a GPU are there; else say why not."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"No GPU measurements: CuPy with a CUDA GPU is not available here ({type(exc).__name__}: {exc})."
    if not count:
        return "No GPU measurements: CuPy found no CUDA device."
    cmd = [sys.executable, "-m", "benchmarks.run", "--gpu-child", "--no-memory"]
    cmd += ["--tiny"] if args.tiny else ["--quick"] if args.quick else []
    env = dict(os.environ, MINIALEX_BACKEND="cupy")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")), None)
    if line is None:
        return f"GPU run failed: {proc.stderr.strip()[-500:]}"
    gpu = json.loads(line[5:])
    results["per_layer"] += gpu["per_layer"]
    results["steps"] += gpu["steps"]
    results["machine"]["gpu"] = gpu["machine"].get("gpu", gpu["machine"]["minialex_backend"])
    results["gemm_gflops_gpu"] = gpu.get("gemm_gflops_gpu")
    return f"GPU rows measured on {results['machine']['gpu']} with MINIALEX_BACKEND=cupy (CUDA events)."


if __name__ == "__main__":
    sys.exit(main())
