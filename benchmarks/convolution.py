"""Convolution algorithms side by side: im2col, Winograd F(2×2, 3×3), F(4×4, 3×3) and PyTorch, per AlexNet layer.

    python -m benchmarks.convolution                    # paper at batch 32, the 3×3 layers of the others
    python -m benchmarks.convolution --batch 128 --rounds 5 --variants paper
    python -m benchmarks.convolution --tiny --out /tmp/x  # seconds: the harness on small shapes

For every convolution of each variant (its own input shape, float32) one *round* runs forward + backward once
with each algorithm and with PyTorch, one after another in one process; the table shows the medians over the
rounds and the ratios between the medians of the same run. conv1 skips dX (its input is the data), as in a
training step. Also per layer: the multiplications of the GEMMs (direct: 9·K·C/G·N·OH·OW per pass; Winograd:
α²·K·C/G·N·TH·TW), the GFLOP/s of the direct convolution's FLOPs over the time, and for Winograd the rate its
batched GEMM (U·V alone, timed on its own) reaches as a fraction of the machine's GEMM rate (NumPy 2048³, best of
5, measured in the same run), with where the forward's time goes (input transform, GEMM, output transform).
Results: ``benchmarks/results/convolution-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import machine
from minialex import atomic, backend
from minialex.layers import Conv2d, MaxPool2d, winograd
from minialex.models import alexnet

RESULTS = Path(__file__).resolve().parent / "results"
ALGORITHMS = ("im2col", "winograd2", "winograd4")


def conv_layers(variant: str, n: int, only_3x3: bool) -> list[dict[str, Any]]:
    """The convolutions of ``variant`` with their input shapes at batch ``n``."""
    model = alexnet(variant, dtype=np.float32)
    shape = (n, *model.input_shape)
    found = []
    for name, layer in model.named_layers():
        if isinstance(layer, Conv2d) and (not only_3x3 or winograd_ok(layer)):
            found.append({"variant": variant, "name": name, "layer": layer, "shape": shape, "first": not found})
        shape = layer.output_shape(shape)
    return found


def winograd_ok(layer: Conv2d) -> bool:
    return layer.kernel_size == (3, 3) and layer.stride == (1, 1)


def multiplications(layer: Conv2d, shape: tuple[int, ...], algorithm: str) -> int:
    """Multiplications of one pass's GEMMs (forward; dX and dW have as many)."""
    n, c_out, oh, ow = layer.output_shape(shape)
    per_group = layer.in_channels // layer.groups
    if algorithm == "im2col":
        return 9 * c_out * per_group * n * oh * ow if winograd_ok(layer) else layer.macs(shape)
    m = int(algorithm[-1])
    return (m + 2) ** 2 * c_out * per_group * n * winograd.tile_count(oh, m) * winograd.tile_count(ow, m)


def _clone(layer: Conv2d, algorithm: str) -> Conv2d:
    copy = Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.groups,
        algorithm=algorithm,
    )
    copy.params = {k: v.copy() for k, v in layer.params.items()}
    return copy


def _seconds(fn) -> float:
    backend.synchronize()
    start = time.perf_counter()
    fn()
    backend.synchronize()
    return time.perf_counter() - start


def forward_parts(layer: Conv2d, x: Any, m: int, repeats: int) -> dict[str, float]:
    """Median seconds of the forward's parts: input transform, batched GEMM U·V, output transform + scatter."""
    xp = backend.xp
    u = winograd.transform_kernel(layer.params["weight"], layer.groups, m)
    alpha2, g, kg, cg = u.shape
    n, c_out, oh, ow = layer.output_shape(x.shape)
    out = xp.empty((c_out, n, oh, ow), dtype=x.dtype)
    v, th, tw = winograd.transform_input(x, layer.padding, m)
    v = v.copy()  # the scratch buffer is reused by the next transform
    prod = xp.empty((alpha2, g, kg, v.shape[2]), dtype=x.dtype)
    at_kron = winograd.kron_matrices(m, x.dtype)[0]

    def output() -> None:
        winograd.scatter_tiles(xp.matmul(at_kron, prod.reshape(alpha2, -1)), out, m, th, tw)

    parts = {
        "input transform": lambda: winograd.transform_input(x, layer.padding, m),
        "GEMM U·V": lambda: xp.matmul(u, v.reshape(alpha2, g, cg, -1), out=prod),
        "output transform": output,
    }
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(repeats):
        for key, fn in parts.items():
            times[key].append(_seconds(fn))
    return {k: float(np.median(v)) for k, v in times.items()}


def measure(entry: dict[str, Any], rounds: int, torch: Any, gemm_gflops: float) -> dict[str, Any]:
    layer, shape, first = entry["layer"], entry["shape"], entry["first"]
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.standard_normal(shape).astype(np.float32))
    out_shape = layer.output_shape(shape)
    n, c_out, oh, ow = out_shape  # dy channel-major, as the layer above a convolution hands it back
    dy = backend.asarray(rng.standard_normal((c_out, n, oh, ow)).astype(np.float32)).transpose(1, 0, 2, 3)
    algorithms = ALGORITHMS if winograd_ok(layer) else ("im2col",)
    runs = {}
    for algorithm in algorithms:
        conv = _clone(layer, algorithm)
        runs[algorithm] = lambda conv=conv: (conv.forward(x), conv.backward(dy, need_input_grad=not first))
    if torch is not None:
        f = torch.nn.functional
        xt = torch.tensor(backend.to_numpy(x), requires_grad=not first)
        wt = torch.tensor(backend.to_numpy(layer.params["weight"]), requires_grad=True)
        bt = torch.tensor(backend.to_numpy(layer.params["bias"]), requires_grad=True)
        dyt = torch.tensor(np.ascontiguousarray(backend.to_numpy(dy)))

        def torch_pass() -> None:
            f.conv2d(xt, wt, bt, layer.stride, layer.padding, groups=layer.groups).backward(dyt)

        runs["pytorch"] = torch_pass
    for fn in runs.values():  # warm-up: buffers allocated, threads started
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(_seconds(fn))
    med = {k: float(np.median(v)) for k, v in times.items()}
    passes = 2 if first else 3
    direct_flops = 2 * passes * multiplications(layer, shape, "im2col")
    row: dict[str, Any] = {
        "variant": entry["variant"],
        "layer": entry["name"],
        "input": list(shape),
        "groups": layer.groups,
        "median_s": med,
        "rounds": rounds,
        "gflops_direct_equivalent": {k: direct_flops / v / 1e9 for k, v in med.items()},
        "multiplications": {a: multiplications(layer, shape, a) for a in algorithms},
    }
    if "pytorch" in med:
        row["speed_vs_pytorch"] = {a: med["pytorch"] / med[a] for a in algorithms}
    if winograd_ok(layer):
        row["forward_parts_s"], row["winograd_gemm_fraction"] = {}, {}
        for a in algorithms[1:]:
            m = int(a[-1])
            parts = forward_parts(layer, x, m, max(3, rounds))
            row["forward_parts_s"][a] = parts
            row["winograd_gemm_fraction"][a] = (
                2 * multiplications(layer, shape, a) / parts["GEMM U·V"] / 1e9 / gemm_gflops
            )
    return row


def step_rows(variants: list[str], n: int, rounds: int, torch: Any) -> list[dict[str, Any]]:
    """The whole training step (forward, loss, backward, SGD) of each variant with every convolution on im2col,
    with ``algorithm="auto"`` (the default), and in PyTorch on the same weights: alternating rounds, medians."""
    from benchmarks import bench

    rows = []
    for variant in variants:
        models = {"im2col": bench.make_minialex(variant), "auto": bench.make_minialex(variant)}
        for _, layer in models["im2col"].named_layers():
            if isinstance(layer, Conv2d):
                layer.algorithm = "im2col"
        x, labels = bench.batch(models["auto"], n)
        steps = {k: bench.minialex_step_fn(m, backend.asarray(x), backend.asarray(labels)) for k, m in models.items()}
        if torch is not None:
            tmodel = bench.torch_mirror(models["auto"], torch)
            steps["pytorch"] = bench.torch_step_fn(tmodel, torch, torch.tensor(x), torch.tensor(labels))
        for fn in steps.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(rounds):
            for key, fn in steps.items():
                times[key].append(_seconds(fn))
        med = {k: float(np.median(v)) for k, v in times.items()}
        row = {"variant": variant, "batch": n, "rounds": rounds, "median_s": med}
        if "pytorch" in med:
            row["speed_vs_pytorch"] = {k: med["pytorch"] / med[k] for k in ("im2col", "auto")}
        rows.append(row)
        print("step", variant, n, {k: round(1000 * v) for k, v in med.items()}, flush=True)
    return rows


def pool_rows(variant: str, n: int, rounds: int, torch: Any) -> list[dict[str, Any]]:
    """Max-pooling forward and backward of each pool layer of ``variant`` (channel-major input, as after a
    convolution) beside PyTorch's forward + backward, alternating rounds, medians."""
    model = alexnet(variant, dtype=np.float32)
    shape, rows = (n, *model.input_shape), []
    rng = np.random.default_rng(0)
    for name, layer in model.named_layers():
        if isinstance(layer, MaxPool2d):
            c_first = (shape[1], shape[0], *shape[2:])
            x = backend.asarray(rng.standard_normal(c_first).astype(np.float32)).transpose(1, 0, 2, 3)
            out = layer.output_shape(shape)
            dy = backend.asarray(rng.standard_normal((out[1], out[0], *out[2:])).astype(np.float32))
            dy = dy.transpose(1, 0, 2, 3)
            runs = {
                "forward": lambda layer=layer, x=x: layer.forward(x),
                "backward": lambda layer=layer, dy=dy: layer.backward(dy),
            }
            if torch is not None:
                xt = torch.tensor(np.ascontiguousarray(backend.to_numpy(x)), requires_grad=True)
                dyt = torch.tensor(np.ascontiguousarray(backend.to_numpy(dy)))
                k, st = layer.kernel_size, layer.stride
                runs["pytorch"] = lambda xt=xt, dyt=dyt, k=k, st=st: torch.nn.functional.max_pool2d(xt, k, st).backward(
                    dyt
                )
            for fn in runs.values():
                fn()
            times: dict[str, list[float]] = {key: [] for key in runs}
            for _ in range(rounds):
                for key, fn in runs.items():
                    times[key].append(_seconds(fn))
            med = {key: float(np.median(v)) for key, v in times.items()}
            row = {"variant": variant, "layer": name, "input": list(shape), "median_s": med}
            if "pytorch" in med:
                row["speed_vs_pytorch"] = med["pytorch"] / (med["forward"] + med["backward"])
            rows.append(row)
            print("pool", name, {key: round(1000 * v, 1) for key, v in med.items()}, flush=True)
        shape = layer.output_shape(shape)
    return rows


SWEEP_CHANNELS = (32, 64, 128, 192, 256)


def channel_sweep(n: int, rounds: int, channels: tuple[int, ...] = SWEEP_CHANNELS) -> list[dict[str, Any]]:
    """The evidence for ``auto``'s channel cut: C → C channels, 3×3, padding 1, on 13×13 maps at batch ``n``,
    forward + backward with im2col, F(2×2) and F(4×4), alternating rounds, medians."""
    rows = []
    rng = np.random.default_rng(0)
    for c in channels:
        x = backend.asarray(rng.standard_normal((c, n, 13, 13)).astype(np.float32)).transpose(1, 0, 2, 3)
        dy = backend.asarray(rng.standard_normal((c, n, 13, 13)).astype(np.float32)).transpose(1, 0, 2, 3)
        base = Conv2d(c, c, 3, padding=1)
        runs = {}
        for algorithm in ALGORITHMS:
            conv = _clone(base, algorithm)
            runs[algorithm] = lambda conv=conv, x=x, dy=dy: (conv.forward(x), conv.backward(dy))
        for fn in runs.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(rounds):
            for key, fn in runs.items():
                times[key].append(_seconds(fn))
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"channels": c, "batch": n, "median_s": med})
        print("sweep", c, {k: round(1000 * v, 1) for k, v in med.items()}, flush=True)
    return rows


def _ratio(ratios: dict[str, float], key: str) -> str:
    return f"{ratios[key]:.2f}" if key in ratios else "–"


def _layer_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Forward + backward (conv1 without dX), medians over alternating rounds in one process, ms. `×PT` is",
        "PyTorch's median ÷ ours (> 1: faster than PyTorch). Multiplications of one pass's GEMMs, and the factor",
        "Winograd saves against the direct convolution (the tiles' overhang included).",
        "",
        "| variant | layer | input | im2col ms | F(2×2) ms | F(4×4) ms | PyTorch ms | im2col ×PT | F(2×2) ×PT "
        "| F(4×4) ×PT | mults im2col (G) | saved F(2×2) | saved F(4×4) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["layers"]:
        med, ratio, mults = r["median_s"], r.get("speed_vs_pytorch", {}), r["multiplications"]

        def ms(key: str, med=med) -> str:
            return f"{1000 * med[key]:.1f}" if key in med else "–"

        def x(key: str, ratio=ratio) -> str:
            return f"{ratio[key]:.2f}" if key in ratio else "–"

        def saved(key: str, mults=mults) -> str:
            return f"{mults['im2col'] / mults[key]:.2f}×" if key in mults else "–"

        lines.append(
            f"| {r['variant']} | {r['layer']} | {'×'.join(map(str, r['input']))} | {ms('im2col')} | {ms('winograd2')} "
            f"| {ms('winograd4')} | {ms('pytorch')} | {x('im2col')} | {x('winograd2')} | {x('winograd4')} "
            f"| {mults['im2col'] / 1e9:.2f} | {saved('winograd2')} | {saved('winograd4')} |"
        )
    lines += [
        "",
        "Where a Winograd forward's time goes (ms, medians), and the rate of its batched GEMM U·V alone as a",
        "fraction of the GEMM rate:",
        "",
        "| variant | layer | algorithm | input transform | GEMM U·V | output transform | GEMM U·V of GEMM rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["layers"]:
        for a, parts in r.get("forward_parts_s", {}).items():
            lines.append(
                f"| {r['variant']} | {r['layer']} | {a} | {1000 * parts['input transform']:.1f} "
                f"| {1000 * parts['GEMM U·V']:.1f} | {1000 * parts['output transform']:.1f} "
                f"| {100 * r['winograd_gemm_fraction'][a]:.0f}% |"
            )
    return lines


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Convolution algorithms, {results['machine_name']}",
        "",
        f"- `{results['command']}`, started {results['started']}; {results['note']}",
        f"- float32 GEMM rate (NumPy 2048³, best of 5, in this run): {results['gemm_gflops']:.1f} GFLOP/s",
        f"- BLAS: {results['blas']}",
    ]
    if results["layers"]:
        lines += _layer_lines(results)
    if results.get("sweep"):
        lines += [
            "",
            "C → C channels, 3×3, padding 1, 13×13 maps (the rule of `auto`), forward + backward, ms, medians:",
            "",
            "| channels | batch | im2col | F(2×2) | F(4×4) | F(4×4) ÷ im2col speed-up |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["sweep"]:
            med = r["median_s"]
            lines.append(
                f"| {r['channels']} | {r['batch']} | {1000 * med['im2col']:.1f} | {1000 * med['winograd2']:.1f} "
                f"| {1000 * med['winograd4']:.1f} | {med['im2col'] / med['winograd4']:.2f} |"
            )
    if results.get("pools"):
        lines += [
            "",
            "Max-pooling (channel-major input, as after a convolution), ms, medians over alternating rounds:",
            "",
            "| variant | layer | input | forward | backward | PyTorch forward + backward | ×PT |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["pools"]:
            med = r["median_s"]
            pt = f"{1000 * med['pytorch']:.1f}" if "pytorch" in med else "–"
            ratio = f"{r['speed_vs_pytorch']:.2f}" if "speed_vs_pytorch" in r else "–"
            lines.append(
                f"| {r['variant']} | {r['layer']} | {'×'.join(map(str, r['input']))} | {1000 * med['forward']:.1f} "
                f"| {1000 * med['backward']:.1f} | {pt} | {ratio} |"
            )
    if results.get("steps"):
        lines += [
            "",
            "Whole training steps (forward, loss, backward, SGD; float32), ms, medians over alternating rounds:",
            "every convolution on im2col, the default `auto`, and PyTorch on the same weights.",
            "",
            "| variant | batch | im2col ms | auto ms | PyTorch ms | auto ÷ im2col speed-up | im2col ×PT | auto ×PT |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["steps"]:
            med, ratio = r["median_s"], r.get("speed_vs_pytorch", {})
            pt = f"{1000 * med['pytorch']:.0f}" if "pytorch" in med else "–"
            lines.append(
                f"| {r['variant']} | {r['batch']} | {1000 * med['im2col']:.0f} | {1000 * med['auto']:.0f} | {pt} "
                f"| {med['im2col'] / med['auto']:.2f} | {_ratio(ratio, 'im2col')} | {_ratio(ratio, 'auto')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="im2col vs Winograd vs PyTorch, per AlexNet convolution")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="paper,torchvision,d2l", help="comma-separated; paper gets every conv")
    parser.add_argument("--tiny", action="store_true", help="the mini model at batch 2, one round (a smoke test)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--steps", default="", help="also whole training steps of these variants (comma-separated)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    parser.add_argument("--sweep", action="store_true", help="also the channel sweep behind the auto rule")
    parser.add_argument("--pools", action="store_true", help="also the max-pool layers of paper (or mini with --tiny)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads (default 2)")
    parser.add_argument("--note", default="", help="a line on the conditions (load, other jobs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default=None, help="machine name for the file names (default: from the CPU)")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    if args.tiny:
        args.batch, args.rounds = 2, 1
        entries = conv_layers("mini", 2, only_3x3=False)
    elif args.no_layers:
        entries = []
    else:
        entries = []
        for variant in args.variants.split(","):
            entries += conv_layers(variant.strip(), args.batch, only_3x3=variant.strip() != "paper")
    gemm = machine.gemm_rate(n=256 if args.tiny else 2048)
    name = args.name or "-".join(machine.cpu_model().lower().split()[:3]) or platform.machine()
    results: dict[str, Any] = {
        "machine_name": name,
        "command": " ".join(["python -m benchmarks.convolution", *(sys.argv[1:] if argv is None else argv)]),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "note": args.note or "no note on the load",
        "blas": machine.blas_line(),
        "gemm_gflops": gemm,
        "layers": [],
    }
    for entry in entries:
        row = measure(entry, args.rounds, torch, gemm)
        results["layers"].append(row)
        print(entry["variant"], entry["name"], {k: round(1000 * v, 1) for k, v in row["median_s"].items()}, flush=True)
    if args.sweep:
        results["sweep"] = channel_sweep(args.batch, args.rounds, (8, 16) if args.tiny else SWEEP_CHANNELS)
    if args.pools:
        results["pools"] = pool_rows("mini" if args.tiny else "paper", args.batch, args.rounds, torch)
    if args.steps:
        results["steps"] = step_rows([v.strip() for v in args.steps.split(",")], args.batch, args.rounds, torch)
    text = report(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"convolution-{name}" + ("-tiny" if args.tiny else f"-batch{args.batch}")
    if args.no_layers:
        stem += "-steps" if args.steps else "-sweep" if args.sweep else "-pools"
    atomic.write_text(args.out / f"{stem}.json", json.dumps(results, indent=1) + "\n", what="benchmark results")
    atomic.write_text(args.out / f"{stem}.md", text, what="benchmark report")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
