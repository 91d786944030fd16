"""The measurements: per-layer forward/backward times and whole training steps, minialex beside PyTorch.

Protocol (the machine is shared and noisy, see PERF-NOTES):

* both frameworks run in the same process on identical shapes and identical weights;
* every repeat runs minialex, then PyTorch (A B A B ...), after one warm-up of each, and the
  reported figure is the median over repeats;
* on a GPU every time is taken between device events after a synchronisation, never from the host
  clock around asynchronous calls.

A training step is forward + loss + backward + SGD update (momentum 0.9, weight decay 5e-4). Its
nominal work is 3× the forward FLOPs (forward GEMMs, then the two backward GEMMs per layer: dW and dX).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from minialex import backend
from minialex.layers import (
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    SoftmaxCrossEntropy,
)
from minialex.models import alexnet, layer_table
from minialex.optim import SGD

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


# -- timers ----------------------------------------------------------------------------------------------


class Timer:
    """Times a callable in seconds: host clock on the CPU, device events on a GPU (CuPy or torch CUDA)."""

    def __init__(self, kind: str = "cpu", torch_module: Any = None) -> None:
        self.kind, self.torch = kind, torch_module

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if self.kind == "cupy":
            start, stop = backend.xp.cuda.Event(), backend.xp.cuda.Event()
            backend.synchronize()
            start.record()
            out = fn()
            stop.record()
            stop.synchronize()
            return backend.xp.cuda.get_elapsed_time(start, stop) / 1e3, out
        if self.kind == "torch-cuda":
            start = self.torch.cuda.Event(enable_timing=True)
            stop = self.torch.cuda.Event(enable_timing=True)
            self.torch.cuda.synchronize()
            start.record()
            out = fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop) / 1e3, out
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- models with identical weights -------------------------------------------------------------------------


def make_minialex(variant: str, seed: int = 0) -> Any:
    """The minialex model in float32, training mode, seeded.

    Its backward pass skips the gradient of the images (``need_input_grad=False``), exactly as PyTorch does
    for an input that does not require grad: both frameworks do the same work.
    """
    backend.seed(seed)
    return alexnet(variant, dtype=np.float32).train()


def torch_mirror(model: Any, torch: Any, device: str = "cpu", inplace_relu: bool = True) -> Any:
    """A ``torch.nn.Sequential`` with the same layers and the same weights as the minialex ``model``.

    The paper's LRN (alpha multiplies the window sum) is PyTorch's ``LocalResponseNorm`` with alpha × size.
    ReLUs are in place in the training-step model, as in torchvision; the per-layer timing uses
    out-of-place ReLUs so that every layer can be run on its own.
    """
    nn = torch.nn
    modules = []
    for name, layer in model.named_layers():
        if isinstance(layer, Conv2d):
            mod = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                layer.stride,
                layer.padding,
                groups=layer.groups,
                bias="bias" in layer.params,
            )
        elif isinstance(layer, Linear):
            mod = nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params)
        elif isinstance(layer, ReLU):
            mod = nn.ReLU(inplace=inplace_relu)
        elif isinstance(layer, LocalResponseNorm):
            mod = nn.LocalResponseNorm(layer.size, alpha=layer.alpha * layer.size, beta=layer.beta, k=layer.k)
        elif isinstance(layer, MaxPool2d):
            mod = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, Dropout):
            mod = nn.Dropout(layer.p)
        elif isinstance(layer, Flatten):
            mod = nn.Flatten()
        else:
            raise TypeError(f"no PyTorch twin for layer {name} ({type(layer).__name__})")
        with torch.no_grad():
            for key, value in layer.params.items():
                getattr(mod, key).copy_(torch.from_numpy(np.ascontiguousarray(backend.to_numpy(value))))
        modules.append((name, mod))
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(modules)).to(device).train()


def batch(variant_model: Any, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random float32 batch (N, C, H, W) and integer labels for the model's input shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *variant_model.input_shape), dtype=np.float32)
    labels = rng.integers(0, variant_model.num_classes, size=n)
    return x, labels


def forward_flops(model: Any) -> dict[str, int]:
    """Forward FLOPs per image of every leaf layer (2 × MACs), by layer name."""
    return {row.name: 2 * row.macs for row in layer_table(model, model.input_shape)}


# -- per-layer times -------------------------------------------------------------------------------------


def minialex_layer_pass(model: Any, loss: Any, x: Any, labels: Any, timer: Timer) -> dict[str, tuple[float, float]]:
    """One forward and backward through ``model`` timing each layer: ``{name: (forward s, backward s)}``."""
    fwd: dict[str, float] = {}
    bwd: dict[str, float] = {}
    layers = list(model.named_layers())
    h = x
    for name, layer in layers:
        fwd[name], h = timer(lambda layer=layer, h=h: layer.forward(h))
    fwd["loss"], _ = timer(lambda: loss.forward(h, labels))
    bwd["loss"], g = timer(loss.backward)
    for index, (name, layer) in reversed(list(enumerate(layers))):
        bwd[name], g = timer(lambda layer=layer, g=g, first=index == 0: layer.backward(g, need_input_grad=not first))
    return {name: (fwd[name], bwd[name]) for name in fwd}


def torch_layer_pass(tmodel: Any, torch: Any, x: Any, labels: Any, timer: Timer) -> dict[str, tuple[float, float]]:
    """The same per-layer pass in PyTorch: every module on a detached input, backward by autograd per module."""
    fwd: dict[str, float] = {}
    bwd: dict[str, float] = {}
    inputs, outputs = [], []
    h = x
    for index, (name, mod) in enumerate(tmodel.named_children()):
        inp = h.detach().requires_grad_(index > 0)  # the images need no gradient (as in minialex)
        fwd[name], out = timer(lambda mod=mod, inp=inp: mod(inp))
        inputs.append((name, inp))
        outputs.append(out)
        h = out
    logits = h.detach().requires_grad_(True)
    fwd["loss"], loss = timer(lambda: torch.nn.functional.cross_entropy(logits, labels))
    bwd["loss"], _ = timer(lambda: loss.backward())
    g = logits.grad
    for (name, inp), out in zip(reversed(inputs), reversed(outputs), strict=True):
        bwd[name], _ = timer(lambda out=out, g=g: out.backward(g))
        g = inp.grad
    return {name: (fwd[name], bwd[name]) for name in fwd}


def per_layer(
    variant: str, n: int, repeats: int, torch: Any = None, device: str = "cpu", log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Median forward/backward time per layer of ``variant`` at batch ``n``, minialex and (if given) PyTorch."""
    model = make_minialex(variant)
    loss = SoftmaxCrossEntropy()
    x_host, labels_host = batch(model, n)
    x, labels = backend.asarray(x_host), backend.asarray(labels_host)
    timer = Timer("cupy" if backend.on_gpu else "cpu")
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"minialex": []}
    tmodel = tx = tlabels = ttimer = None
    if torch is not None:
        tmodel = torch_mirror(model, torch, device, inplace_relu=False)
        tx = torch.from_numpy(x_host).to(device)
        tlabels = torch.from_numpy(labels_host).to(device)
        ttimer = Timer("torch-cuda" if device != "cpu" else "cpu", torch)
        runs["torch"] = []
    for r in range(repeats + 1):  # the first round is a warm-up
        mx = minialex_layer_pass(model, loss, x, labels, timer)
        if r:
            runs["minialex"].append(mx)
        if torch is not None:
            tt = torch_layer_pass(tmodel, torch, tx, tlabels, ttimer)
            if r:
                runs["torch"].append(tt)
        log(f"  per-layer {variant} batch {n}: round {r}/{repeats} done" + (" (warm-up)" if not r else ""))
    flops = forward_flops(model)
    result: dict[str, Any] = {"variant": variant, "batch": n, "repeats": repeats, "layers": {}}
    for name in runs["minialex"][0]:
        row: dict[str, Any] = {"gflop_fwd": flops.get(name, 0) * n / 1e9}
        for fw, fw_runs in runs.items():
            row[fw] = {
                "fwd_s": median([run[name][0] for run in fw_runs]),
                "bwd_s": median([run[name][1] for run in fw_runs]),
            }
        result["layers"][name] = row
    return result


# -- whole training steps --------------------------------------------------------------------------------


def minialex_step_fn(model: Any, x: Any, labels: Any) -> Callable[[], Any]:
    loss = SoftmaxCrossEntropy()
    opt = SGD(model, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step() -> Any:
        value = loss.forward(model.forward(x), labels)
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()
        return value

    return step


def torch_step_fn(tmodel: Any, torch: Any, x: Any, labels: Any) -> Callable[[], Any]:
    opt = torch.optim.SGD(tmodel.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        value = torch.nn.functional.cross_entropy(tmodel(x), labels)
        value.backward()
        opt.step()
        return value

    return step


def _with_tf32(torch: Any, device: str, tf32: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with PyTorch's TF32 switch set to ``tf32`` (on CUDA; a no-op on the CPU)."""

    def run() -> Any:
        if device != "cpu":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        return fn()

    return run


def train_steps(
    variant: str,
    n: int,
    repeats: int,
    torch: Any = None,
    device: str = "cpu",
    tf32_modes: tuple[bool, ...] = (False,),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Median time of a training step of ``variant`` at batch ``n`` for minialex and PyTorch, alternated."""
    model = make_minialex(variant)
    x_host, labels_host = batch(model, n)
    fns: dict[str, tuple[Timer, Callable[[], Any]]] = {
        "minialex": (
            Timer("cupy" if backend.on_gpu else "cpu"),
            minialex_step_fn(model, backend.asarray(x_host), backend.asarray(labels_host)),
        )
    }
    if torch is not None:
        tmodel = torch_mirror(model, torch, device)
        tx, tl = torch.from_numpy(x_host).to(device), torch.from_numpy(labels_host).to(device)
        ttimer = Timer("torch-cuda" if device != "cpu" else "cpu", torch)
        for tf32 in tf32_modes:
            key = "torch" if device == "cpu" else f"torch-tf32-{'on' if tf32 else 'off'}"

            fns[key] = (ttimer, _with_tf32(torch, device, tf32, torch_step_fn(tmodel, torch, tx, tl)))
    times: dict[str, list[float]] = {key: [] for key in fns}
    for r in range(repeats + 1):
        for key, (timer, fn) in fns.items():
            elapsed, _ = timer(fn)
            if r:
                times[key].append(elapsed)
        log(
            f"  step {variant} batch {n}: round {r}/{repeats} "
            + " ".join(f"{k}={v[-1]:.3f}s" for k, v in times.items() if v)
        )
    flops = sum(forward_flops(model).values())
    out = {
        "variant": variant,
        "batch": n,
        "repeats": repeats,
        "gflop_step": 3 * flops * n / 1e9,
        "times_s": times,
        "median_s": {key: median(v) for key, v in times.items()},
    }
    if backend.on_gpu:  # device memory: CuPy's pool (bytes it holds) and PyTorch's peak allocation
        out["memory"] = {"minialex": {"peak_mb": backend.xp.get_default_memory_pool().total_bytes() / 1e6}}
        if torch is not None and device != "cpu":
            for key in fns:
                if key != "minialex":
                    out["memory"][key] = {"peak_mb": torch.cuda.max_memory_allocated() / 1e6}
        out["memory_kind"] = "GPU memory (CuPy pool total / torch.cuda.max_memory_allocated)"
    return out
