"""What the 2-rank scripts compute, shared with the tests that compute the same thing on one process.

The scripts (``model_parallel_run.py``, ``data_parallel_run.py``) run these functions on a
:class:`~minialex.distributed.ModelParallel` or with a :class:`~minialex.distributed.DataParallel`; the tests
run them on the plain model in the test process, and compare. Everything is float64 unless asked otherwise,
tiny, and seeded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

import minialex
from minialex import backend
from minialex.layers import SoftmaxCrossEntropy
from minialex.models import alexnet
from minialex.optim import SGD

HERE = Path(__file__).resolve().parent
MODEL_SEED = 3
LR = 0.05


def start_rank() -> None:
    """Record this rank's process id where the launcher can kill it after a timeout."""
    pid_dir = os.environ.get("MINIALEX_TEST_PID_DIR")
    if pid_dir:
        Path(pid_dir, f"{os.getpid()}.pid").write_text(str(os.getpid()))


def build(variant: str, dtype: Any = np.float64, seed: int = MODEL_SEED, dropout: bool = True) -> Any:
    """A small model of ``variant``: ``mini`` with widths (8, 8, 8, 16), ``paper`` at 67×67 with 10 classes."""
    minialex.seed(seed)
    if variant == "mini":
        model = alexnet("mini", dtype=dtype, widths=(8, 8, 8, 16))
    else:
        model = alexnet(variant, dtype=dtype, image_size=67, num_classes=10)
    if not dropout:
        for _, layer in model.named_layers():
            if hasattr(layer, "p"):
                layer.p = 0.0
    return model


def batch(model: Any, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n images of the model's input shape and labels, from a private generator (host arrays)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *model.input_shape)).astype(model.params["conv1.weight"].dtype)
    return x, rng.integers(0, model.num_classes, n)


def train_steps(
    model: Any, x: np.ndarray, y: np.ndarray, steps: int, full: Any = None, traffic: list | None = None
) -> dict[str, np.ndarray]:
    """``steps`` SGD steps on one batch; records step 1's logits, loss, image gradient and every gradient, and
    the final weights and velocities. ``full`` turns a dict of this model's tensors into full ones (a
    ModelParallel's ``gather``; the identity by default). ``traffic`` (a split model only) receives, per step,
    the bytes sent per operation by its forward and backward pass (step 1 computes the image gradient too)."""
    full = full or (lambda tensors: {k: np.array(backend.to_numpy(v)) for k, v in tensors.items()})
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model, lr=LR, momentum=0.9, weight_decay=5e-4)
    xd, yd = backend.asarray(x), backend.asarray(y)
    out: dict[str, np.ndarray] = {}
    for step in range(steps):
        if traffic is not None:
            model.comm.stats.reset()
        logits = model.forward(xd)
        loss = loss_fn(logits, yd)
        dx = model.backward(loss_fn.backward(), need_input_grad=step == 0)
        if traffic is not None:
            traffic.append({op: s.bytes_sent for op, s in model.comm.stats.ops.items()})
        if step == 0:
            out["logits"], out["loss"], out["dx"] = (
                backend.to_numpy(logits),
                np.array(float(loss)),
                backend.to_numpy(dx),
            )
            out.update({f"grad.{k}": v for k, v in full(model.grads).items()})
        opt.step()
    out.update({f"weight.{k}": v for k, v in model.state_dict().items()})
    velocity = opt.state_dict()["velocity"]
    if hasattr(model, "full_optimizer_state"):
        velocity = model.full_optimizer_state(opt.state_dict())["velocity"]
    out.update({f"velocity.{k}": np.asarray(v) for k, v in velocity.items()})
    return out


def epochs(model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int, count: int, dp: Any = None) -> None:
    """``count`` epochs of SGD in a (seed, epoch) order; with ``dp`` each rank trains on its shard of each batch."""
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model, lr=LR, momentum=0.9, weight_decay=5e-4)
    for epoch in range(count):
        order = np.random.default_rng([MODEL_SEED, epoch]).permutation(len(labels))
        for start in range(0, len(labels), batch_size):
            idx = order[start : start + batch_size]
            mine = idx if dp is None else dp.shard(idx)
            dy = None
            if len(mine):
                loss_fn(model.forward(backend.asarray(images[mine])), backend.asarray(labels[mine]))
                dy = loss_fn.backward()
            if dp is None:
                model.backward(dy, need_input_grad=False)
            else:
                dp.backward(dy, len(mine), len(idx))
            opt.step()


def save(path: str, arrays: dict[str, Any]) -> None:
    """Write host arrays to an .npz file (read back with allow_pickle=False)."""
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def load(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
