"""Turn a results dict into the markdown table, the JSON file and the charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FRAMEWORK_LABEL = {"minialex": "minialex (NumPy)", "torch": "PyTorch CPU"}


def _label(fw: str, device: str) -> str:
    if fw == "minialex":
        return "minialex (CuPy)" if device == "gpu" else "minialex (NumPy)"
    if fw == "torch":
        return "PyTorch CPU"
    return fw.replace("torch-", "PyTorch CUDA ").replace("tf32-", "TF32 ")


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
        lines.append(f"- GPU: {m['gpu']}")
    return lines


def per_layer_table(entry: dict[str, Any], gemm: float) -> list[str]:
    fws = [fw for fw in ("minialex", "torch") if fw in next(iter(entry["layers"].values()))]
    head = "| layer | GFLOP fwd | " + " | ".join(
        f"{_label(fw, entry.get('device', 'cpu'))} fwd ms | bwd ms" for fw in fws
    )
    head += " | minialex GFLOP/s | PyTorch ÷ minialex |" if "torch" in fws else " | minialex GFLOP/s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    totals = {fw: [0.0, 0.0] for fw in fws}
    total_gflop = 0.0
    for name, row in entry["layers"].items():
        cells = [name, f"{row['gflop_fwd']:.2f}"]
        for fw in fws:
            cells += [f"{row[fw]['fwd_s'] * 1e3:.1f}", f"{row[fw]['bwd_s'] * 1e3:.1f}"]
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
        cells += [f"**{totals[fw][0] * 1e3:.0f}**", f"**{totals[fw][1] * 1e3:.0f}**"]
    mx = sum(totals["minialex"])
    cells.append(f"{total_gflop / mx:.0f} ({total_gflop / mx / gemm:.0%} of GEMM)")
    if "torch" in fws:
        cells.append(f"**{sum(totals['torch']) / mx:.2f}**")
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mb(mem: dict[str, Any], key: str) -> str:
    return f"{mem[key]:.0f}" if key in mem else "–"


def step_table(results: dict[str, Any]) -> list[str]:
    gemm = results["gemm_gflops"]
    lines = [
        "| model | batch | framework | ms/step (median) | images/s | GFLOP/s | of GEMM rate | speed vs PyTorch (GPU: TF32 off) "
        "| peak RSS MB | step peak MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["steps"]:
        on_gpu = entry.get("device") == "gpu"
        ref = entry["median_s"].get("torch-tf32-off" if on_gpu else "torch")
        rate = results.get("gemm_gflops_gpu") if on_gpu else gemm
        for fw, t in entry["median_s"].items():
            mem = entry.get("memory", {}).get(fw, {})
            frac = f"{entry['gflop_step'] / t / rate:.0%}" if rate else "–"
            lines.append(
                f"| {entry['variant']} | {entry['batch']} | {_label(fw, entry.get('device', 'cpu'))} | {t * 1e3:.0f} | "
                f"{entry['batch'] / t:.1f} | {entry['gflop_step'] / t:.0f} | {frac} | "
                f"{(ref / t if ref else float('nan')):.2f}× | {_mb(mem, 'peak_mb')} | {_mb(mem, 'step_peak_mb')} |"
            )
    return lines


def targets_table(results: dict[str, Any]) -> list[str]:
    """The issue's CPU targets, checked against this run's numbers."""
    gemm = results["gemm_gflops"]
    steps = {(e["variant"], e["batch"]): e for e in results["steps"] if e.get("device", "cpu") == "cpu"}
    gpu_steps = {(e["variant"], e["batch"]): e for e in results["steps"] if e.get("device") == "gpu"}
    rows = ["| target | measured | met? |", "|---|---|---|"]

    def add(name: str, value: str, ok: bool | None) -> None:
        rows.append(f"| {name} | {value} | {'yes' if ok else ('not measured' if ok is None else '**no**')} |")

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
    cpu = steps.get(("paper", 128))
    if cpu is not None:
        ratio = cpu["median_s"]["minialex"] / g["median_s"]["minialex"]
        add("paper, batch 128: CuPy ≥ 30× minialex NumPy", f"{ratio:.1f}×", ratio >= 30)
    return rows


def markdown(results: dict[str, Any]) -> str:
    out = [f"# minialex benchmarks: {results['machine_name']}", ""]
    out += [f"Command: `{results['command']}`", f"Started {results['started']}, took {results['elapsed_s']:.0f} s.", ""]
    out += ["## Machine", "", *machine_section(results), ""]
    out += ["## Targets (issue 6)", "", *targets_table(results), ""]
    out += ["## Training steps (forward + loss + backward + SGD momentum/weight-decay update), float32", ""]
    out += [
        "GFLOP/s counts 3× the forward FLOPs of the convolutions and fully connected layers (2 × MACs each);"
        " medians over alternating rounds (minialex, PyTorch, minialex, ...) in one process; peak memory from a"
        " fresh process per configuration and framework (on GPU rows: device memory, CuPy's pool and"
        " torch.cuda.max_memory_allocated).",
        "",
    ]
    out += [*step_table(results), ""]
    for entry in results["per_layer"]:
        out += [f"## Per layer: {entry['variant']}, batch {entry['batch']} (median of {entry['repeats']})", ""]
        out += [*per_layer_table(entry, results["gemm_gflops"]), ""]
    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    return "\n".join(out)


def charts(results: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """Per-layer stacked bars (one bar per framework and batch) and training-step throughput bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    paths = []
    if results["per_layer"]:
        fig = Figure(figsize=(11, 6), layout="constrained")
        ax = fig.add_subplot()
        bars, labels = [], []
        for entry in results["per_layer"]:
            for fw in ("minialex", "torch"):
                if fw in next(iter(entry["layers"].values())):
                    bars.append((entry, fw))
                    labels.append(f"{_label(fw, entry.get('device', 'cpu'))}\nbatch {entry['batch']}")
        groups = {
            "conv1": ["conv1"],
            "conv2": ["conv2"],
            "conv3": ["conv3"],
            "conv4": ["conv4"],
            "conv5": ["conv5"],
            "LRN": ["norm1", "norm2"],
            "max-pool": ["pool1", "pool2", "pool5"],
            "ReLU": [f"relu{i}" for i in range(1, 9)],
            "fc6": ["fc6"],
            "fc7": ["fc7"],
            "fc8": ["fc8"],
            "dropout + flatten + loss": ["drop6", "drop7", "flatten", "loss"],
        }
        colors = matplotlib.colormaps["tab20"].colors
        bottoms = [0.0] * len(bars)
        for gi, (group, names) in enumerate(groups.items()):
            heights = []
            for entry, fw in bars:
                per_image = sum(
                    entry["layers"][n][fw]["fwd_s"] + entry["layers"][n][fw]["bwd_s"]
                    for n in names
                    if n in entry["layers"]
                )
                heights.append(per_image / entry["batch"] * 1e3)
            ax.bar(range(len(bars)), heights, bottom=bottoms, label=group, color=colors[gi % len(colors)])
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.set_xticks(range(len(bars)), labels)
        ax.set_ylabel("ms per image (forward + backward)")
        ax.set_title(f"Where the time goes: paper AlexNet, float32 — {results['machine_name']}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        path = folder / f"{stem}-layers.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    if results["steps"]:
        fig = Figure(figsize=(10, 5), layout="constrained")
        ax = fig.add_subplot()
        fws = []
        for entry in results["steps"]:
            for fw in entry["median_s"]:
                if fw not in fws:
                    fws.append(fw)
        width = 0.8 / len(fws)
        names = [f"{e['variant']}\nbatch {e['batch']}" for e in results["steps"]]
        for k, fw in enumerate(fws):
            xs = [i + (k - (len(fws) - 1) / 2) * width for i in range(len(names))]
            ys = [e["batch"] / e["median_s"][fw] if fw in e["median_s"] else 0.0 for e in results["steps"]]
            ax.bar(xs, ys, width, label=_label(fw, results["steps"][0].get("device", "cpu")))
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("training images / s (higher is better)")
        ax.set_yscale("log")
        ax.set_title(f"Training step throughput, float32 — {results['machine_name']}")
        ax.legend()
        path = folder / f"{stem}-steps.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def readme_section(results: dict[str, Any], report_name: str) -> str:
    """The "latest results" part of benchmarks/README.md: command, machine, targets, steps, per-layer totals."""
    out = [f"Made by `{results['command']}` on {results['started']} ({results['elapsed_s']:.0f} s); full report:"]
    out += [f"[`results/{report_name}.md`](results/{report_name}.md), charts beside it.", ""]
    out += [*machine_section(results), "", "### Targets (issue 6)", "", *targets_table(results), ""]
    out += ["### Training steps", "", *step_table(results), ""]
    out += ["### Per layer, paper model (ms, medians; forward + backward)", ""]
    out += [
        "| batch | framework | convs | LRN | max-pool | ReLU | fc6-fc8 | rest | total |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["per_layer"]:
        fws = [fw for fw in ("minialex", "torch") if fw in next(iter(entry["layers"].values()))]
        for fw in fws:
            parts = {"convs": 0.0, "LRN": 0.0, "max-pool": 0.0, "ReLU": 0.0, "fc": 0.0, "rest": 0.0}
            for name, row in entry["layers"].items():
                t = (row[fw]["fwd_s"] + row[fw]["bwd_s"]) * 1e3
                key = (
                    "convs"
                    if name.startswith("conv")
                    else "LRN"
                    if name.startswith("norm")
                    else "max-pool"
                    if name.startswith("pool")
                    else "ReLU"
                    if name.startswith("relu")
                    else "fc"
                    if name.startswith("fc")
                    else "rest"
                )
                parts[key] += t
            cells = [str(entry["batch"]), _label(fw, entry.get("device", "cpu"))]
            cells += [f"{v:.0f}" for v in parts.values()] + [f"**{sum(parts.values()):.0f}**"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def update_readme(results: dict[str, Any], readme: Path, report_name: str) -> bool:
    """Replace the text between the ``<!-- results:start -->`` and ``<!-- results:end -->`` marks of ``readme``."""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
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
