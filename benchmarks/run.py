"""Run the minialex benchmarks: ``python -m benchmarks.run [--quick]`` (see benchmarks/README.md).

Full run (about 10 minutes on 2 idle cores, more on a busy machine): per-layer times of the paper model at
batch 32 and 128, training steps of paper (32, 128), torchvision (128), d2l (128) and mini (128), each
minialex beside PyTorch, and the peak memory of the paper and torchvision steps, each in its own process.
``--quick``: batch 32 only, fewer rounds (about 3 minutes).

GPU. With ``MINIALEX_BACKEND=cupy`` the whole run is on the GPU: minialex on CuPy beside PyTorch CUDA (TF32
off, the reference, and on), more rounds (a GPU step takes milliseconds), every model variant the library
has, peak device memory per step, and the GPU's own GEMM and copy rates as yardsticks. ``--cpu-reference
FILE`` adds the NumPy step times of a recorded CPU run for the CuPy ÷ NumPy ratios. On a CPU run, when CuPy
can be imported, the same plan is repeated on the GPU in a child process (``--no-torch`` and ``--threads``
passed on) and merged; if it fails or outlasts ``--gpu-timeout``, the CPU results are kept and a note says so.
"""

from __future__ import annotations

import argparse
import importlib.util
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

KERAS = [("keras-cifar10", 32, "adam")]
"""The Keras CIFAR-10 AlexNet as its tutorial trains it: batch 32, Adam (a step entry's third item)."""
UPDATES = [("keras-cifar10", "adam"), ("keras-cifar10", "sgd"), ("paper", "adam")]
"""Optimiser updates timed alone (every parameter of the model): Adam beside SGD and beside PyTorch's."""
FULL = {
    "per_layer": [("paper", 32), ("paper", 128), ("keras-cifar10", 32)],
    "steps": [("paper", 32), ("paper", 128), ("torchvision", 128), ("d2l", 128), ("mini", 128), *KERAS],
    "updates": UPDATES,
    "memory": [("paper", 32), ("paper", 128), ("torchvision", 128)],
    "layer_repeats": 2,
    "step_repeats": {32: 5, 128: 3},
}
GPU_FULL = {  # the same configurations (and any other variant the library has); GPU rounds cost milliseconds
    "per_layer": [("paper", 32), ("paper", 128), ("keras-cifar10", 32)],
    "steps": [("paper", 32), ("paper", 128), ("torchvision", 128), ("d2l", 128), ("mini", 128), *KERAS],
    "updates": UPDATES,
    "memory": [],  # device memory is measured in-process, per step (bench.device_step_memory)
    "layer_repeats": 5,
    "step_repeats": {32: 20, 128: 10},
}
QUICK = {
    "per_layer": [("paper", 32), ("keras-cifar10", 32)],
    "steps": [("paper", 32), ("torchvision", 32), ("d2l", 32), ("mini", 32), *KERAS],
    "updates": [("keras-cifar10", "adam")],
    "memory": [("paper", 32)],
    "layer_repeats": 2,
    "step_repeats": {32: 3, 128: 2},
}
TINY = {  # for the smoke test: seconds, not minutes
    "per_layer": [("mini", 4)],
    "steps": [("mini", 4)],
    "updates": [("mini", "adam")],
    "memory": [("mini", 4)],
    "layer_repeats": 1,
    "step_repeats": {4: 1},
}
KERAS_PLAN = {  # --keras: the BatchNorm and Adam rows only (keras-cifar10 per layer, its Adam step, the updates)
    "per_layer": [("keras-cifar10", 32)],
    "steps": KERAS,
    "updates": UPDATES,
    "memory": [],
    "layer_repeats": 3,
    "step_repeats": {32: 5},
}
KNOWN_VARIANTS = ("mini", "paper", "d2l", "torchvision", "keras-cifar10")
GPU_TIMEOUT_S = 1800


def choose_plan(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The plan for this run: ``--tiny``, ``--quick``, or the full one (on a GPU, with every extra variant at 128)."""
    if args.tiny:
        return TINY
    if getattr(args, "keras", False):
        return KERAS_PLAN
    if args.quick:
        return QUICK
    if device != "gpu":
        return FULL
    from minialex.models.variants import VARIANTS

    extra = [(v, 128) for v in VARIANTS if v not in KNOWN_VARIANTS]  # a variant added later (e.g. a Keras one)
    return {**GPU_FULL, "steps": GPU_FULL["steps"] + extra}


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
    mode.add_argument("--keras", action="store_true", help="keras-cifar10 per layer, its Adam step, optimiser updates")
    parser.add_argument("--no-torch", action="store_true", help="minialex only")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-gpu", action="store_true", help="on a CPU run, do not repeat the plan on a GPU")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads (default 2)")
    parser.add_argument(
        "--gpu-timeout", type=float, default=GPU_TIMEOUT_S, help=f"seconds for the GPU child (default {GPU_TIMEOUT_S})"
    )
    parser.add_argument(
        "--cpu-reference", type=Path, default=None, help="a recorded CPU run's JSON, for CuPy ÷ NumPy on a GPU run"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--name", default=None, help="machine name for the file names (default: from the CPU)")
    parser.add_argument("--gpu-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t_start = time.perf_counter()

    from benchmarks import bench, machine, report
    from minialex import backend

    device = "gpu" if backend.on_gpu else "cpu"
    plan = choose_plan(args, device)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            log("PyTorch is not installed: minialex only (pip install 'minialex[torch]')")
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
        "updates": [],
        "notes": [],
    }
    if device == "gpu":
        results["gemm_gflops_gpu"] = machine.gpu_gemm_rate()
        results["copy_gbps_gpu"] = machine.gpu_copy_rate()
        results["device_draws"] = machine.gpu_draw_costs()
        log(
            f"GPU float32 GEMM rate (CuPy, 8192^3): {results['gemm_gflops_gpu']:.0f} GFLOP/s; "
            f"device copy {results['copy_gbps_gpu']:.0f} GB/s; random draws {results['device_draws']}"
        )
    if args.cpu_reference is not None:
        results["cpu_reference"] = load_cpu_reference(args.cpu_reference)
    try:
        measure(results, plan, bench, torch, torch_device)
    except KeyboardInterrupt:  # Ctrl-C, or SIGINT from a time limit: keep and write what was measured
        done = len(results["per_layer"]) + len(results["steps"]) + len(results["updates"])
        results["notes"].append(
            f"Interrupted (SIGINT) after {done} of {len(plan['per_layer']) + len(plan['steps']) + len(plan.get('updates', []))} configurations: "
            "the rows shown are complete, the others were not measured."
        )
        log("interrupted: writing the configurations measured so far")
        args.no_memory = True
    gemm_end = machine.gemm_rate()
    results["gemm_gflops_start"], results["gemm_gflops_end"] = gemm_start, gemm_end
    results["gemm_gflops"] = max(gemm_start, gemm_end)
    log(f"float32 GEMM rate at the end: {gemm_end:.1f} GFLOP/s")

    if not args.no_memory:
        measure_memory(results, plan, torch is not None, device)
    if device == "cpu" and not args.gpu_child and not args.no_gpu:
        results["notes"].append(gpu_note(args, results))
    results["elapsed_s"] = time.perf_counter() - t_start

    if args.gpu_child:
        print("JSON:" + json.dumps(results, default=str))
        return 0
    suffix = "-quick" if args.quick else "-tiny" if args.tiny else "-keras" if args.keras else ""
    stem = results["machine_name"] + suffix
    paths = report.write(results, args.out, stem)
    if not (args.quick or args.tiny or args.keras) and args.out.resolve() == RESULTS:  # a full run is "the latest results"
        report.update_readme(results, RESULTS.parent / "README.md", stem)
    print(report.markdown(results))
    log("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def measure(results: dict[str, Any], plan: dict[str, Any], bench: Any, torch: Any, torch_device: str) -> None:
    """Run the plan's per-layer and training-step configurations, appending each entry as soon as it is done."""
    device = results["device"]
    tf32 = (False, True) if device == "gpu" else (False,)  # TF32 off first: it is the reference
    for variant, n in plan["per_layer"]:
        log(f"per-layer: {variant} batch {n}")
        entry = bench.per_layer(variant, n, plan["layer_repeats"], torch, torch_device, log=log)
        entry["device"] = device
        results["per_layer"].append(entry)
    for variant, n, *optimizer in plan["steps"]:
        log(f"training step: {variant} batch {n}" + (f" ({optimizer[0]})" if optimizer else ""))
        repeats = plan["step_repeats"].get(n, 3) * (4 if variant == "mini" else 1)  # a mini step is short: more rounds
        entry = bench.train_steps(
            variant, n, repeats, torch, torch_device, tf32, log=log, optimizer=(optimizer or ["sgd"])[0]
        )
        entry["device"] = device
        results["steps"].append(entry)
    for variant, optimizer in plan.get("updates", []):
        log(f"optimiser update: {optimizer} over {variant}")
        entry = bench.optimizer_updates(variant, optimizer, plan["layer_repeats"] * 5, torch, torch_device, log=log)
        entry["device"] = device
        results["updates"].append(entry)


def measure_memory(results: dict[str, Any], plan: dict[str, Any], with_torch: bool, device: str) -> None:
    """Peak host memory of the planned configurations, each framework in a fresh process (:mod:`benchmarks.memory`)."""
    wanted = set(plan["memory"])
    for entry in results["steps"]:
        if (entry["variant"], entry["batch"]) not in wanted:
            continue
        entry["memory"] = {}
        for fw in ("minialex", "torch") if with_torch else ("minialex",):
            mem = memory_run(fw, entry["variant"], entry["batch"])
            log(f"memory {fw} {entry['variant']} batch {entry['batch']}: {mem}")
            if "error" not in mem:
                key = (
                    fw if fw == "minialex" or device == "cpu" else next(k for k in entry["median_s"] if k != "minialex")
                )
                entry["memory"][key] = mem


def load_cpu_reference(path: Path) -> dict[str, Any]:
    """The CPU step rows of a recorded run, to set CuPy beside NumPy: ``{source, machine_name, started, steps}``."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    steps = [
        {k: e[k] for k in ("variant", "batch", "median_s", "gflop_step")}
        for e in record.get("steps", [])
        if e.get("device", "cpu") == "cpu"
    ]
    if not steps:
        raise SystemExit(f"--cpu-reference {path}: no CPU training-step rows in it")
    return {
        "source": Path(path).name,
        "machine_name": record.get("machine_name", "?"),
        "started": record.get("started", "?"),
        "gemm_gflops": record.get("gemm_gflops"),
        "steps": steps,
    }


def _machine_name(info: dict[str, Any], device: str) -> str:
    cpu = info["cpu"].lower().replace("(r)", "").replace("(tm)", "")
    words = [w for w in cpu.replace("-", " ").split() if w not in {"processor", "cpu", "with"}][:3]
    name = "-".join(words) + f"-{info['usable_cpus']}cpu"
    if device == "gpu" and "gpu" in info:
        name += "-" + info["gpu"].lower().replace(" ", "-")
    return "".join(ch for ch in name if ch.isalnum() or ch in "-_.") or platform.machine()


def gpu_child_command(args: argparse.Namespace) -> list[str]:
    """The command that repeats this run's plan on the GPU (``--no-torch`` and ``--threads`` passed on)."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--gpu-child", "--no-memory", "--threads", str(args.threads)]
    cmd += ["--tiny"] if args.tiny else ["--quick"] if args.quick else ["--keras"] if getattr(args, "keras", False) else []
    return cmd + (["--no-torch"] if args.no_torch else [])


def run_gpu_child(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run ``cmd``; return its JSON results and ``""``, or None and one line saying what went wrong.

    The child's log is printed after it ends (also after a timeout: what it wrote until then).
    """
    root = Path(__file__).resolve().parent.parent
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        log(partial)
        return None, f"the GPU run did not finish within {timeout:g} s (--gpu-timeout) and was stopped"
    lines = proc.stdout.splitlines()
    log("\n".join(line for line in lines if not line.startswith("JSON:")))
    found = next((line for line in reversed(lines) if line.startswith("JSON:")), None)
    if proc.returncode or found is None:
        last = next((line for line in reversed(lines) if line.strip()), "no output")
        return None, f"the GPU run failed (exit status {proc.returncode}): {last.strip()[:300]}"
    return json.loads(found[5:]), ""


def gpu_note(args: argparse.Namespace, results: dict[str, Any], cmd: list[str] | None = None) -> str:
    """Repeat the plan on a GPU in a child process when CuPy is installed and merge its rows; say what happened.

    Whatever the child does (no GPU, a crash, a timeout), the CPU results in ``results`` are kept.
    """
    if cmd is None:
        if importlib.util.find_spec("cupy") is None:
            return "No GPU measurements: CuPy is not installed here."
        cmd = gpu_child_command(args)
    env = dict(os.environ, MINIALEX_BACKEND="cupy")
    gpu, problem = run_gpu_child(cmd, args.gpu_timeout, env)
    if gpu is None:
        return f"No GPU rows: {problem}; the CPU results above are complete."
    results["per_layer"] += gpu["per_layer"]
    results["steps"] += gpu["steps"]
    results["machine"]["gpu"] = gpu["machine"].get("gpu", gpu["machine"]["minialex_backend"])
    results["machine"]["gpu_details"] = gpu["machine"].get("gpu_details", {})
    for key in ("gemm_gflops_gpu", "copy_gbps_gpu"):
        results[key] = gpu.get(key)
    return f"GPU rows measured on {results['machine']['gpu']} with MINIALEX_BACKEND=cupy (CUDA events)."


if __name__ == "__main__":
    sys.exit(main())
