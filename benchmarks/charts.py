"""The two charts of a benchmark report: where the time goes per layer, and training-step throughput.

Every bar and series is labelled by its own device (``minialex (NumPy)`` on CPU rows, ``minialex (CuPy)`` on
GPU rows), so a report with CPU and GPU rows never shows one under the other's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def framework_label(fw: str, device: str) -> str:
    """The name of a framework's rows: minialex (NumPy|CuPy), PyTorch CPU, PyTorch CUDA TF32 off/on."""
    if fw == "minialex":
        return "minialex (CuPy)" if device == "gpu" else "minialex (NumPy)"
    if fw == "torch":
        return "PyTorch CUDA TF32 off" if device == "gpu" else "PyTorch CPU"
    return fw.replace("torch-", "PyTorch CUDA ").replace("tf32-", "TF32 ")


LAYER_GROUPS = {
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


def layer_bars(results: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """One bar per (per-layer entry, framework): its label and ms per image of every layer group."""
    bars = []
    for entry in results["per_layer"]:
        device = entry.get("device", "cpu")
        for fw in ("minialex", "torch"):
            if fw not in next(iter(entry["layers"].values())):
                continue
            grouped = {name for names in LAYER_GROUPS.values() for name in names}
            heights = {}
            for group, names in [
                *LAYER_GROUPS.items(),
                ("other layers", [n for n in entry["layers"] if n not in grouped]),
            ]:
                seconds = sum(
                    entry["layers"][n][fw]["fwd_s"] + entry["layers"][n][fw]["bwd_s"]
                    for n in names
                    if n in entry["layers"]
                )
                heights[group] = seconds / entry["batch"] * 1e3
            bars.append((f"{framework_label(fw, device)}\nbatch {entry['batch']}", heights))
    return bars


def step_series(results: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """The throughput chart's groups (model and batch) and its series: one per device and framework.

    A CPU and a GPU row of the same framework are different series (``minialex (NumPy)``, ``minialex
    (CuPy)``), each labelled by its own device; a group a series did not run shows 0.
    """
    groups: list[tuple[str, int]] = []
    for e in results["steps"]:
        if (e["variant"], e["batch"]) not in groups:
            groups.append((e["variant"], e["batch"]))
    keys: list[tuple[str, str]] = []
    for e in results["steps"]:
        for fw in e["median_s"]:
            if (e.get("device", "cpu"), fw) not in keys:
                keys.append((e.get("device", "cpu"), fw))
    series = []
    for device, fw in keys:
        ys = []
        for group in groups:
            match = [
                e
                for e in results["steps"]
                if (e["variant"], e["batch"]) == group and e.get("device", "cpu") == device and fw in e["median_s"]
            ]
            ys.append(match[0]["batch"] / match[0]["median_s"][fw] if match else 0.0)
        series.append((framework_label(fw, device), ys))
    return [f"{v}\nbatch {n}" for v, n in groups], series


def charts(results: dict[str, Any], folder: Path, stem: str) -> list[Path]:
    """Per-layer stacked bars (one bar per framework and batch) and training-step throughput bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    paths = []
    bars = layer_bars(results)
    if bars:
        fig = Figure(figsize=(11, 6), layout="constrained")
        ax = fig.add_subplot()
        colors = matplotlib.colormaps["tab20"].colors
        bottoms = [0.0] * len(bars)
        for gi, group in enumerate([*LAYER_GROUPS, "other layers"]):
            heights = [h[group] for _, h in bars]
            ax.bar(range(len(bars)), heights, bottom=bottoms, label=group, color=colors[gi % len(colors)])
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.set_xticks(range(len(bars)), [label for label, _ in bars])
        ax.set_ylabel("ms per image (forward + backward)")
        variants = ", ".join(dict.fromkeys(entry["variant"] for entry in results["per_layer"]))
        ax.set_title(f"Where the time goes: {variants} AlexNet, float32 — {results['machine_name']}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        path = folder / f"{stem}-layers.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    if results["steps"]:
        fig = Figure(figsize=(10, 5), layout="constrained")
        ax = fig.add_subplot()
        names, series = step_series(results)
        width = 0.8 / len(series)
        for k, (label, ys) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("training images / s (higher is better)")
        ax.set_yscale("log")
        ax.set_title(f"Training step throughput, float32 — {results['machine_name']}")
        ax.legend()
        path = folder / f"{stem}-steps.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
