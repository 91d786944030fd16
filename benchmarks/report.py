"""Turn a results dict into the markdown report, the JSON file, the charts and the README's results sections.

Also a command, to render recorded results again (e.g. a GPU run's JSON brought back from another machine)::

    python -m benchmarks.report benchmarks/results/h200.json [--readme]

rewrites ``h200.md`` and the charts beside the JSON from its numbers, and with ``--readme`` the matching
"latest results" section of benchmarks/README.md (the CPU one or the GPU one, by the run's device).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.charts import charts
from benchmarks.charts import framework_label as _label

README_MARKS = {
    "cpu": ("<!-- results:start -->", "<!-- results:end -->"),
    "gpu": ("<!-- gpu-results:start -->", "<!-- gpu-results:end -->"),
}


def gemm_rate_for(results: dict[str, Any], device: str) -> float | None:
    """The GEMM rate that rows of ``device`` are measured against: NumPy's on the CPU, CuPy's on the GPU."""
    return results.get("gemm_gflops_gpu") if device == "gpu" else results.get("gemm_gflops")


def machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    lines = [
        f"- CPU: {m['cpu']} ({m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs; "
        f"{', '.join(m['cpu_flags'])}), {m.get('memory_gib', '?')} GiB",
        f"- Python {m['python']}, NumPy {m['numpy']}, SciPy {m['scipy']}, PyTorch {m.get('torch', 'not installed')} "
        f"(threads {m.get('torch_threads', '-')}, inter-op {m.get('torch_interop_threads', '-')})",
        f"- minialex backend: {m['minialex_backend']}",
        f"- BLAS (threadpoolctl): {results['blas_line']}",
        f"- OpenBLAS environment: {', '.join(f'{k}={v}' for k, v in m['env'].items())}",
        f"- float32 GEMM rate (NumPy matmul 2048³, best of 5, measured in this run): "
        f"{results['gemm_gflops']:.1f} GFLOP/s (start {results['gemm_gflops_start']:.1f}, "
        f"end {results['gemm_gflops_end']:.1f})",
        f"- load average at start (1, 5, 15 min): {m.get('load_average_1_5_15')}",
    ]
    if "gpu" in m:
        gpu = m.get("gpu_details") or {}
        formats = {
            "memory_gib": "{} GiB",
            "compute_capability": "compute capability {}",
            "driver_version": "driver API {}",
            "runtime_version": "CUDA runtime {}",
            "cupy": "CuPy {}",
            "cupy_tf32": "CUPY_TF32={}",
        }
        details = ", ".join(text.format(gpu[key]) for key, text in formats.items() if key in gpu)
        lines.append(f"- GPU: {m['gpu']}" + (f" ({details})" if details else ""))
        if "torch_cuda" in m:
            lines.append(
                f"- PyTorch CUDA {m['torch_cuda']}, cuDNN {m.get('torch_cudnn')}, "
                f"cudnn.benchmark={m.get('torch_cudnn_benchmark')}"
            )
    if results.get("gemm_gflops_gpu"):
        lines.append(
            f"- GPU float32 GEMM rate (CuPy matmul 8192³, best of 5, CUDA events): {results['gemm_gflops_gpu']:.0f} "
            f"GFLOP/s; device-to-device copy {results.get('copy_gbps_gpu') or float('nan'):.0f} GB/s (read + write)"
        )
    draws = results.get("device_draws")
    if draws:
        lines.append(
            f"- a dropout-sized draw on the GPU (128×4096 uniform float32): {draws['cached_philox_ms']:.3f} ms with "
            f"minialex's cached Philox generator re-seeded per draw, {draws.get('reseeded_xorwow_ms', float('nan')):.3f}"
            f" ms with a kept XORWOW generator re-seeded per draw, {draws['fresh_generator_ms']:.3f} ms with a new "
            "cuRAND generator per draw"
        )
    ref = results.get("cpu_reference")
    if ref:
        lines.append(
            f"- CPU reference for CuPy ÷ NumPy: `{ref['source']}` ({ref['machine_name']}, {ref['started']}), "
            "NumPy step medians recorded there"
        )
    return lines


def per_layer_table(entry: dict[str, Any], gemm: float | None) -> list[str]:
    """One row per layer: forward and backward ms of each framework, minialex's GFLOP/s, PyTorch ÷ minialex.

    ``gemm`` is the rate of the entry's own device (:func:`gemm_rate_for`).
    """
    device = entry.get("device", "cpu")
    digits = 2 if device == "gpu" else 1  # GPU layers take tenths of a millisecond
    fws = [fw for fw in ("minialex", "torch") if fw in next(iter(entry["layers"].values()))]
    head = "| layer | GFLOP fwd | " + " | ".join(f"{_label(fw, device)} fwd ms | bwd ms" for fw in fws)
    head += " | minialex GFLOP/s | PyTorch ÷ minialex |" if "torch" in fws else " | minialex GFLOP/s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    totals = {fw: [0.0, 0.0] for fw in fws}
    total_gflop = 0.0
    for name, row in entry["layers"].items():
        cells = [name, f"{row['gflop_fwd']:.2f}"]
        for fw in fws:
            cells += [f"{row[fw]['fwd_s'] * 1e3:.{digits}f}", f"{row[fw]['bwd_s'] * 1e3:.{digits}f}"]
            totals[fw][0] += row[fw]["fwd_s"]
            totals[fw][1] += row[fw]["bwd_s"]
        mx = row["minialex"]["fwd_s"] + row["minialex"]["bwd_s"]
        total_gflop += 3 * row["gflop_fwd"]
        cells.append(f"{3 * row['gflop_fwd'] / mx:.0f}" if row["gflop_fwd"] else "")
        if "torch" in fws:
            cells.append(f"{(row['torch']['fwd_s'] + row['torch']['bwd_s']) / mx:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**total**", f"{total_gflop / 3:.2f}"]
    for fw in fws:
        cells += [f"**{totals[fw][0] * 1e3:.{digits - 1}f}**", f"**{totals[fw][1] * 1e3:.{digits - 1}f}**"]
    mx = sum(totals["minialex"])
    share = f" ({total_gflop / mx / gemm:.0%} of GEMM)" if gemm else ""
    cells.append(f"{total_gflop / mx:.0f}{share}")
    if "torch" in fws:
        cells.append(f"**{sum(totals['torch']) / mx:.2f}**")
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mb(mem: dict[str, Any], key: str) -> str:
    return f"{mem[key]:.0f}" if key in mem else "–"


def step_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| model | batch | framework | ms/step (median) | images/s | GFLOP/s | of GEMM rate | speed vs PyTorch (GPU: TF32 off) "
        "| peak MB (CPU: RSS; GPU: device) | step peak MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["steps"]:
        device = entry.get("device", "cpu")
        ref = entry["median_s"].get("torch-tf32-off" if device == "gpu" else "torch")
        rate = gemm_rate_for(results, device)
        digits = 1 if device == "gpu" else 0  # a GPU step takes milliseconds, a CPU step seconds
        model = entry["variant"] + (
            f" ({entry['optimizer'].capitalize()})" if entry.get("optimizer", "sgd") != "sgd" else ""
        )
        for fw, t in entry["median_s"].items():
            mem = entry.get("memory", {}).get(fw, {})
            frac = f"{entry['gflop_step'] / t / rate:.0%}" if rate else "–"
            lines.append(
                f"| {model} | {entry['batch']} | {_label(fw, device)} | {t * 1e3:.{digits}f} | "
                f"{entry['batch'] / t:.1f} | {entry['gflop_step'] / t:.0f} | {frac} | "
                f"{(ref / t if ref else float('nan')):.2f}× | {_mb(mem, 'peak_mb')} | {_mb(mem, 'step_peak_mb')} |"
            )
    return lines


def update_table(results: dict[str, Any]) -> list[str]:
    """One row per optimiser update: the model, its parameters, ms per update of each framework, the ratio."""
    lines = [
        "| optimiser | over | parameters | device | minialex ms | PyTorch ms | PyTorch ÷ minialex |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for e in results.get("updates", []):
        mx, th = e["median_s"]["minialex"], e["median_s"].get("torch")
        torch_cells = f"{th * 1e3:.1f} | {th / mx:.2f}" if th else "– | –"
        lines.append(
            f"| {e['optimizer']} | {e['variant']} | {e['params']:,} | {e.get('device', 'cpu')} | {mx * 1e3:.1f} | {torch_cells} |"
        )
    return lines


def numpy_steps(results: dict[str, Any]) -> tuple[dict[tuple[str, int], float], str]:
    """NumPy step medians by (variant, batch), and where they come from: this run's CPU rows, else the reference."""
    own = {
        (e["variant"], e["batch"]): e["median_s"]["minialex"]
        for e in results["steps"]
        if e.get("device", "cpu") == "cpu" and "minialex" in e["median_s"]
    }
    if own:
        return own, "this run's CPU rows"
    ref = results.get("cpu_reference")
    if not ref:
        return {}, ""
    steps = {(e["variant"], e["batch"]): e["median_s"]["minialex"] for e in ref["steps"] if "minialex" in e["median_s"]}
    return steps, f"`{ref['source']}` ({ref['machine_name']})"


def numpy_ratio_table(results: dict[str, Any]) -> list[str]:
    """CuPy beside NumPy for every GPU step that has a NumPy twin (empty when there is none)."""
    numpy_s, source = numpy_steps(results)
    rows = []
    for e in results["steps"]:
        key = (e["variant"], e["batch"])
        if e.get("device") == "gpu" and key in numpy_s and "minialex" in e["median_s"]:
            cupy_s = e["median_s"]["minialex"]
            rows.append(
                f"| {key[0]} | {key[1]} | {numpy_s[key] * 1e3:.0f} | {cupy_s * 1e3:.1f} | {numpy_s[key] / cupy_s:.1f}× |"
            )
    if not rows:
        return []
    head = [f"NumPy times from {source}.", "", "| model | batch | NumPy ms | CuPy ms | CuPy ÷ NumPy (speed-up) |"]
    return [*head, "|---|---:|---:|---:|---:|", *rows]


def targets_table(results: dict[str, Any]) -> list[str]:
    """The CPU and GPU targets, checked against this run's numbers."""
    gemm = results["gemm_gflops"]
    steps = {(e["variant"], e["batch"]): e for e in results["steps"] if e.get("device", "cpu") == "cpu"}
    gpu_steps = {(e["variant"], e["batch"]): e for e in results["steps"] if e.get("device") == "gpu"}
    rows = ["| target | measured | met? |", "|---|---|---|"]

    def add(name: str, value: str, ok: bool | None) -> None:
        rows.append(f"| {name} | {value} | {'yes' if ok else ('not measured' if ok is None else '**no**')} |")

    if steps or not gpu_steps:
        for n in (32, 128):
            e = steps.get(("paper", n))
            if e is None or "torch" not in e["median_s"]:
                add(f"paper, batch {n}: ≥ 1.5× PyTorch CPU throughput", "not run", None)
                add(f"paper, batch {n}: ≥ 65% of the GEMM rate", "not run", None)
                continue
            ratio = e["median_s"]["torch"] / e["median_s"]["minialex"]
            frac = e["gflop_step"] / e["median_s"]["minialex"] / gemm
            add(f"paper, batch {n}: ≥ 1.5× PyTorch CPU throughput", f"{ratio:.2f}×", ratio >= 1.5)
            add(f"paper, batch {n}: ≥ 65% of the GEMM rate", f"{frac:.0%} of {gemm:.0f} GFLOP/s", frac >= 0.65)
        e = steps.get(("torchvision", 128))
        if e is not None and "torch" in e["median_s"]:
            ratio = e["median_s"]["torch"] / e["median_s"]["minialex"]
            add("torchvision, batch 128: ≥ 1× PyTorch CPU", f"{ratio:.2f}×", ratio >= 1.0)
        else:
            add("torchvision, batch 128: ≥ 1× PyTorch CPU", "not run", None)
        e = steps.get(("paper", 128))
        mem = (e or {}).get("memory", {})
        if "minialex" in mem and "torch" in mem:
            a, b = mem["minialex"]["peak_mb"], mem["torch"]["peak_mb"]
            add("paper, batch 128: peak RSS ≤ PyTorch's", f"{a:.0f} MB vs {b:.0f} MB", a <= b)
        else:
            add("paper, batch 128: peak RSS ≤ PyTorch's", "not run", None)
    g = gpu_steps.get(("paper", 128))
    if g is None:
        add("GPU targets (CuPy ≥ PyTorch CUDA, ≥ 30× NumPy)", "no GPU in this run", None)
        return rows
    for key in [k for k in g["median_s"] if k.startswith("torch")]:
        ratio = g["median_s"][key] / g["median_s"]["minialex"]
        add(f"paper, batch 128, GPU: CuPy ≥ 1× {_label(key, 'gpu')}", f"{ratio:.2f}×", ratio >= 1.0)
    numpy_s, source = numpy_steps(results)
    if ("paper", 128) in numpy_s:
        ratio = numpy_s[("paper", 128)] / g["median_s"]["minialex"]
        add(f"paper, batch 128: CuPy ≥ 30× minialex NumPy ({source})", f"{ratio:.1f}×", ratio >= 30)
    else:
        add("paper, batch 128: CuPy ≥ 30× minialex NumPy", "no NumPy row (use --cpu-reference)", None)
    return rows


def markdown(results: dict[str, Any]) -> str:
    out = [f"# minialex benchmarks: {results['machine_name']}", ""]
    out += [f"Command: `{results['command']}`", f"Started {results['started']}, took {results['elapsed_s']:.0f} s.", ""]
    out += ["## Machine", "", *machine_section(results), ""]
    out += ["## Targets", "", *targets_table(results), ""]
    out += ["## Training steps (forward + loss + backward + SGD momentum/weight-decay update, or the Adam update "
            "where the model says so), float32", ""]  # fmt: skip
    out += [
        "GFLOP/s counts 3× the forward FLOPs of the convolutions and fully connected layers (2 × MACs each);"
        " medians over alternating rounds (minialex, PyTorch, minialex, ...) in one process; the GEMM rate is"
        " the device's own (NumPy's on CPU rows, CuPy's on GPU rows). Peak memory: on CPU rows the resident set"
        " of a fresh process per configuration and framework; on GPU rows device memory over one step (CuPy's"
        " pool high-water mark from an emptied pool; torch.cuda.max_memory_reserved after empty_cache).",
        "",
    ]
    out += [*step_table(results), ""]
    if results.get("updates"):
        out += ["## Optimiser updates alone (every parameter of the model, median of alternating rounds)", ""]
        out += [*update_table(results), ""]
    ratios = numpy_ratio_table(results)
    if ratios:
        out += ["## CuPy beside NumPy", "", *ratios, ""]
    for entry in results["per_layer"]:
        device = entry.get("device", "cpu")
        where = " on the GPU (PyTorch TF32 off)" if device == "gpu" else ""
        out += [f"## Per layer: {entry['variant']}, batch {entry['batch']}{where} (median of {entry['repeats']})", ""]
        out += [*per_layer_table(entry, gemm_rate_for(results, device)), ""]
    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    return "\n".join(out)


def _layer_group(name: str) -> str:
    for prefix, key in (("conv", "convs"), ("norm", "LRN"), ("pool", "max-pool"), ("relu", "ReLU"), ("fc", "fc")):
        if name.startswith(prefix):
            return key
    return "rest"


def readme_section(results: dict[str, Any], report_name: str) -> str:
    """A "latest results" part of benchmarks/README.md: command, machine, targets, steps, per-layer totals."""
    out = [f"Made by `{results['command']}` on {results['started']} ({results['elapsed_s']:.0f} s); full report:"]
    out += [f"[`results/{report_name}.md`](results/{report_name}.md), charts beside it.", ""]
    out += [*machine_section(results), "", "### Targets", "", *targets_table(results), ""]
    out += ["### Training steps", "", *step_table(results), ""]
    if results.get("updates"):
        out += ["## Optimiser updates alone (every parameter of the model, median of alternating rounds)", ""]
        out += [*update_table(results), ""]
    ratios = numpy_ratio_table(results)
    if ratios:
        out += ["### CuPy beside NumPy", "", *ratios, ""]
    out += ["### Per layer, paper model (ms, medians; forward + backward)", ""]
    out += [
        "| batch | framework | convs | LRN | max-pool | ReLU | fc6-fc8 | rest | total |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["per_layer"]:
        device = entry.get("device", "cpu")
        fws = [fw for fw in ("minialex", "torch") if fw in next(iter(entry["layers"].values()))]
        digits = 1 if device == "gpu" else 0
        for fw in fws:
            parts = {"convs": 0.0, "LRN": 0.0, "max-pool": 0.0, "ReLU": 0.0, "fc": 0.0, "rest": 0.0}
            for name, row in entry["layers"].items():
                parts[_layer_group(name)] += (row[fw]["fwd_s"] + row[fw]["bwd_s"]) * 1e3
            cells = [str(entry["batch"]), _label(fw, device)]
            cells += [f"{v:.{digits}f}" for v in parts.values()] + [f"**{sum(parts.values()):.{digits}f}**"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def update_readme(results: dict[str, Any], readme: Path, report_name: str) -> bool:
    """Replace the text between the results marks of ``readme`` for the run's device (CPU or GPU section)."""
    start, end = README_MARKS["gpu" if results.get("device") == "gpu" else "cpu"]
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{readme_section(results, report_name)}\n{end}{tail}", encoding="utf-8")
    return True


def write(results: dict[str, Any], folder: Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.json`` and the charts into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{stem}.md"
    md.write_text(markdown(results) + "\n", encoding="utf-8")
    js = folder / f"{stem}.json"
    js.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    out = {"markdown": md, "json": js}
    for path in charts(results, folder, stem):
        out[path.stem] = path
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render recorded benchmark results again: markdown, charts, README")
    parser.add_argument("json", type=Path, help="a results JSON written by python -m benchmarks.run")
    parser.add_argument("--readme", action="store_true", help="also rewrite its section of benchmarks/README.md")
    parser.add_argument("--no-charts", action="store_true", help="leave the charts as they are")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text(encoding="utf-8"))
    stem, folder = args.json.stem, args.json.parent
    (folder / f"{stem}.md").write_text(markdown(results) + "\n", encoding="utf-8")
    written = [folder / f"{stem}.md"]
    if not args.no_charts:
        written += charts(results, folder, stem)
    if args.readme:
        readme = Path(__file__).resolve().parent / "README.md"
        if not update_readme(results, readme, stem):
            print(f"{readme}: no results marks for a {results.get('device', 'cpu')} run", file=sys.stderr)
            return 1
        written.append(readme)
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
