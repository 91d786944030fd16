"""The measurements: per-layer forward/backward times and whole training steps, minialex beside PyTorch.

Protocol (the machine is shared and noisy, see PERF-NOTES):

* both frameworks run in the same process on identical shapes and identical weights;
* every repeat runs minialex, then PyTorch (A B A B ...), after one warm-up of each, and the
  reported figure is the median over repeats;
* on a GPU every time is taken between device events after a synchronisation, never from the host
  clock around asynchronous calls;
* between configurations, every cached block is handed back (CuPy's memory pools, minialex's scratch
  buffers, PyTorch's caching allocator) and PyTorch's peak counters are reset, so that one
  configuration's memory is never counted as the next one's;
* PyTorch CUDA runs with TF32 off as the reference (the same float32 arithmetic as CuPy's) and, in the
  training steps, with TF32 on as a second row.

A training step is forward + loss + backward + SGD update (momentum 0.9, weight decay 5e-4), or with
``optimizer="adam"`` an Adam update (lr 1e-3, β 0.9/0.999, ε 1e-8, no decay, as ``torch.optim.Adam``'s
defaults). Its nominal work is 3× the forward FLOPs (forward GEMMs, then the two backward GEMMs per layer: dW
and dX). :func:`optimizer_updates` times the update alone, for every parameter of a model.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from minialex import backend
from minialex._engine import workspace
from minialex.layers import (
    BatchNorm2d,
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
from minialex.optim import SGD, Adam

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
ADAM_LR = 1e-3
OPTIMIZERS = ("sgd", "adam")


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


def alternate(
    fns: dict[str, tuple[Any, Callable[[], Any]]],
    repeats: int,
    after_round: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Time every ``(timer, fn)`` of ``fns`` once per round, one after another, for a warm-up round and then
    ``repeats`` rounds; the seconds of the timed rounds by key. ``after_round(r, times)`` follows each round."""
    times: dict[str, list[float]] = {key: [] for key in fns}
    for r in range(repeats + 1):
        for key, (timer, fn) in fns.items():
            elapsed, _ = timer(fn)
            if r:
                times[key].append(elapsed)
        if after_round is not None:
            after_round(r, times)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- device memory ---------------------------------------------------------------------------------------


def fresh_memory(torch: Any = None) -> None:
    """Forget every cached block before a configuration: minialex's scratch buffers, CuPy's pools, and
    PyTorch's caching allocator and peak counters (on CUDA). Objects still referenced stay alive."""
    gc.collect()
    workspace.release()
    backend.release_cached_memory()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def device_step_memory(fns: dict[str, tuple[Timer, Callable[[], Any]]], torch: Any = None) -> dict[str, Any]:
    """Peak device memory of one more training step of every framework in ``fns``, in MB.

    minialex: CuPy's pool is emptied of cached blocks, then one step runs; ``peak_mb`` is what the pool holds
    afterwards. The pool never returns memory by itself, so that is its high-water mark over the step (the
    model, optimiser state and kept activations included), at least the peak of the bytes in use.
    PyTorch: the caching allocator is emptied and its peaks reset; ``peak_mb`` is ``max_memory_reserved``
    (the same measure: bytes held by the allocator) and ``allocated_peak_mb`` ``max_memory_allocated``.
    """
    memory: dict[str, Any] = {}
    for key, (_, fn) in fns.items():
        if key == "minialex":
            gc.collect()
            backend.release_cached_memory()
            pool = backend.xp.get_default_memory_pool()
            resident = pool.used_bytes()
            fn()
            backend.synchronize()
            memory[key] = {"peak_mb": pool.total_bytes() / 1e6, "resident_mb": resident / 1e6}
        elif torch is not None and torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            memory[key] = {
                "peak_mb": torch.cuda.max_memory_reserved() / 1e6,
                "allocated_peak_mb": torch.cuda.max_memory_allocated() / 1e6,
            }
    return memory


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
        elif isinstance(layer, BatchNorm2d):  # PyTorch's momentum weighs the batch: Keras's 0.99 is its 0.01
            weight = layer.running_weights[1]
            mod = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=weight, affine=layer.affine)
            with torch.no_grad():
                for key, value in layer.buffers.items():
                    getattr(mod, key).copy_(torch.from_numpy(np.ascontiguousarray(backend.to_numpy(value))))
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


def _mirror_or_reason(model: Any, torch: Any, device: str, inplace_relu: bool) -> tuple[Any, str]:
    """The PyTorch twin of ``model`` and ``""``, or None and why there is none (a layer with no twin)."""
    try:
        return torch_mirror(model, torch, device, inplace_relu=inplace_relu), ""
    except TypeError as exc:
        return None, str(exc)


def set_tf32(torch: Any, device: str, enabled: bool) -> None:
    """PyTorch's TF32 switches for matmul and cuDNN (a no-op on the CPU). cuDNN's is on by default in PyTorch."""
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def per_layer(
    variant: str, n: int, repeats: int, torch: Any = None, device: str = "cpu", log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Median forward/backward time per layer of ``variant`` at batch ``n``, minialex and (if given) PyTorch.

    On CUDA, PyTorch runs with TF32 off: the same float32 arithmetic as minialex's.
    """
    fresh_memory(torch)
    model = make_minialex(variant)
    loss = SoftmaxCrossEntropy()
    x_host, labels_host = batch(model, n)
    x, labels = backend.asarray(x_host), backend.asarray(labels_host)
    timer = Timer("cupy" if backend.on_gpu else "cpu")
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"minialex": []}
    tmodel = tx = tlabels = ttimer = None
    result: dict[str, Any] = {"variant": variant, "batch": n, "repeats": repeats, "layers": {}}
    if torch is not None:
        tmodel, why_not = _mirror_or_reason(model, torch, device, inplace_relu=False)
        if tmodel is None:
            result["torch_skipped"] = why_not
            log(f"  per-layer {variant}: PyTorch skipped ({why_not})")
    if tmodel is not None:
        set_tf32(torch, device, False)
        result["torch_tf32"] = False if device != "cpu" else None
        tx = torch.from_numpy(x_host).to(device)
        tlabels = torch.from_numpy(labels_host).to(device)
        ttimer = Timer("torch-cuda" if device != "cpu" else "cpu", torch)
        runs["torch"] = []
    for r in range(repeats + 1):  # the first round is a warm-up
        mx = minialex_layer_pass(model, loss, x, labels, timer)
        if r:
            runs["minialex"].append(mx)
        if tmodel is not None:
            tt = torch_layer_pass(tmodel, torch, tx, tlabels, ttimer)
            if r:
                runs["torch"].append(tt)
        log(f"  per-layer {variant} batch {n}: round {r}/{repeats} done" + (" (warm-up)" if not r else ""))
    flops = forward_flops(model)
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


def minialex_optimizer(model: Any, optimizer: str = "sgd") -> Any:
    """SGD (lr 0.01, momentum 0.9, decay 5e-4) or Adam (lr 1e-3, PyTorch's defaults) over ``model``."""
    return (
        Adam(model, lr=ADAM_LR)
        if optimizer == "adam"
        else SGD(model, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    )


def torch_optimizer(tmodel: Any, torch: Any, optimizer: str = "sgd") -> Any:
    """The same optimiser in PyTorch (its default implementation for the device)."""
    if optimizer == "adam":
        return torch.optim.Adam(tmodel.parameters(), lr=ADAM_LR)
    return torch.optim.SGD(tmodel.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def minialex_step_fn(model: Any, x: Any, labels: Any, optimizer: str = "sgd") -> Callable[[], Any]:
    loss = SoftmaxCrossEntropy()
    opt = minialex_optimizer(model, optimizer)

    def step() -> Any:
        value = loss.forward(model.forward(x), labels)
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()
        return value

    return step


def torch_step_fn(tmodel: Any, torch: Any, x: Any, labels: Any, optimizer: str = "sgd") -> Callable[[], Any]:
    opt = torch_optimizer(tmodel, torch, optimizer)

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
        set_tf32(torch, device, tf32)
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
    optimizer: str = "sgd",
) -> dict[str, Any]:
    """Median time of a training step of ``variant`` at batch ``n`` for minialex and PyTorch, alternated.

    ``optimizer`` is ``"sgd"`` or ``"adam"`` (:func:`minialex_optimizer`), the same in both frameworks.

    On CUDA every mode in ``tf32_modes`` is its own PyTorch row (``torch-tf32-off``, ``torch-tf32-on``), and
    the peak device memory of one more step of each is measured afterwards (:func:`device_step_memory`).
    """
    fresh_memory(torch)
    model = make_minialex(variant)
    x_host, labels_host = batch(model, n)
    fns: dict[str, tuple[Timer, Callable[[], Any]]] = {
        "minialex": (
            Timer("cupy" if backend.on_gpu else "cpu"),
            minialex_step_fn(model, backend.asarray(x_host), backend.asarray(labels_host), optimizer),
        )
    }
    out: dict[str, Any] = {"variant": variant, "batch": n, "repeats": repeats, "optimizer": optimizer}
    if torch is not None:
        tmodel, why_not = _mirror_or_reason(model, torch, device, inplace_relu=True)
        if tmodel is None:
            out["torch_skipped"] = why_not
            log(f"  step {variant}: PyTorch skipped ({why_not})")
        else:
            tx, tl = torch.from_numpy(x_host).to(device), torch.from_numpy(labels_host).to(device)
            ttimer = Timer("torch-cuda" if device != "cpu" else "cpu", torch)
            for tf32 in tf32_modes:
                key = "torch" if device == "cpu" else f"torch-tf32-{'on' if tf32 else 'off'}"
                step = torch_step_fn(tmodel, torch, tx, tl, optimizer)
                fns[key] = (ttimer, _with_tf32(torch, device, tf32, step))
    times = alternate(
        fns,
        repeats,
        lambda r, times: log(
            f"  step {variant} batch {n}: round {r}/{repeats} "
            + " ".join(f"{k}={v[-1]:.4f}s" for k, v in times.items() if v)
        ),
    )
    flops = sum(forward_flops(model).values())
    out.update(
        {
            "gflop_step": 3 * flops * n / 1e9,
            "times_s": times,
            "median_s": {key: median(v) for key, v in times.items()},
        }
    )
    if backend.on_gpu:
        out["memory"] = device_step_memory(fns, torch)
        out["memory_kind"] = (
            "GPU memory: CuPy pool high-water mark over one step from an emptied pool / "
            "torch.cuda.max_memory_reserved over one step after empty_cache"
        )
    return out


# -- the optimiser update alone ---------------------------------------------------------------------------


def optimizer_updates(
    variant: str, optimizer: str, repeats: int, torch: Any = None, device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Median time of one ``optimizer`` update of every parameter of ``variant``, minialex and PyTorch alternated.

    Both start from the same weights and the same random gradients (set once; an update does not change
    them), so each round does the same arithmetic.
    """
    fresh_memory(torch)
    model = make_minialex(variant)
    rng = np.random.default_rng(3)
    grads = {k: rng.standard_normal(v.shape, dtype=np.float32) * 1e-2 for k, v in model.params.items()}
    for name, layer in model.named_layers():
        for key in layer.params:
            layer.grads[key] = backend.asarray(grads[f"{name}.{key}"])
    opt = minialex_optimizer(model, optimizer)
    fns: dict[str, tuple[Timer, Callable[[], Any]]] = {
        "minialex": (Timer("cupy" if backend.on_gpu else "cpu"), opt.step)
    }
    if torch is not None:
        tmodel, _ = _mirror_or_reason(model, torch, device, inplace_relu=True)
        if tmodel is not None:
            for name, mod in tmodel.named_children():
                for key, param in mod.named_parameters(recurse=False):
                    param.grad = torch.from_numpy(grads[f"{name}.{key}"]).to(device)
            topt = torch_optimizer(tmodel, torch, optimizer)
            fns["torch"] = (Timer("torch-cuda" if device != "cpu" else "cpu", torch), topt.step)
    times = alternate(fns, repeats)
    log(f"  {optimizer} update {variant}: " + " ".join(f"{k}={median(v):.4f}s" for k, v in times.items()))
    return {
        "variant": variant,
        "optimizer": optimizer,
        "params": model.num_params(),
        "repeats": repeats,
        "median_s": {key: median(v) for key, v in times.items()},
    }
