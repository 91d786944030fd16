"""What a run reports: the history row of an epoch, the outcome in ``metrics.json``, and the one-line messages.

The validation split decides, the test split reports. History rows carry the training and validation
figures of each epoch; ``metrics.json`` adds, once the run is complete, the test split's figures for the
final model (``test_*``) and for the best checkpoint (``best_test_*``), which took no part in any decision.
"""

from __future__ import annotations

from typing import Any

from minialex import backend
from minialex.training.evaluation import EvalResult
from minialex.training.progress import format_rate
from minialex.training.state import EpochTotals, RunState

TEST_KEYS = ("test_loss", "test_accuracy", "test_top5_accuracy", "test_error", "test_top5_error")


def start_messages(config: Any, state: RunState, data: Any, parts: Any, run_dir: Any, resumed: bool) -> list[str]:
    """What a run says when it starts: the model and data, the run directory, where a resumed run continues."""
    lines = [
        f"training {config.model} AlexNet ({parts.model.num_params():,} parameters) on {config.dataset}: "
        f"{len(data.train_labels)} train / {len(data.val_labels)} validation / {len(data.test_labels)} test "
        f"images, {backend.describe()}",
        *([data.summary] if getattr(data, "summary", None) else []),
        *([f"input: {parts.pipeline.describe()}"] if getattr(data, "summary", None) else []),
        f"run directory: {run_dir}",
    ]
    if resumed and state.epochs_done >= config.epochs:
        lines.append(f"the run already has {state.epochs_done} epochs: nothing to train (raise --epochs to continue)")
    elif resumed:
        where = f", step {state.step_in_epoch}" if state.step_in_epoch else ""
        lines.append(f"resuming at epoch {state.epochs_done + 1}{where} of {config.epochs} (lr {parts.optimizer.lr:g})")
    return lines


def epoch_row(
    epoch: int, lr: float, totals: EpochTotals, val: EvalResult, eval_seconds: float, data_wait_seconds: float = 0.0
) -> dict[str, Any]:
    """The history row of a finished epoch (flat numbers, for ``history.json``/``.csv`` and the plots).

    ``data_wait_seconds``: of the epoch's ``train_seconds``, the time its steps waited for their batches
    (:mod:`minialex.training.feed`; of a resumed epoch, the part after the resumption).
    """
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": totals.loss,
        "train_accuracy": totals.accuracy,
        **val.as_dict("val"),
        "train_seconds": totals.seconds,
        "eval_seconds": eval_seconds,
        "images_per_second": totals.rate,
        "data_wait_seconds": data_wait_seconds,
    }


def epoch_message(row: dict[str, Any], epochs: int) -> str:
    """``epoch 3/18: train loss … acc … | validation loss … top-1 … top-5 … | lr … | … img/s, … s``."""
    return (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.2%} | "
        f"validation loss {row['val_loss']:.4f} top-1 {row['val_accuracy']:.2%} top-5 {row['val_top5_accuracy']:.2%} | "
        f"lr {row['lr']:g} | {format_rate(row['images_per_second'])} img/s, {row['train_seconds']:.1f} s"
        + (f" ({row['data_wait_seconds']:.2f} s waiting for data)" if "data_wait_seconds" in row else "")
    )


def summary(
    status: str,
    state: RunState,
    run: dict[str, Any],
    final: EvalResult | None = None,
    best: EvalResult | None = None,
) -> dict[str, Any]:
    """The run's outcome as written to ``metrics.json``.

    Parameters
    ----------
    status : ``"running"``, ``"interrupted"`` or ``"complete"``
    state : the run's progress
    run : what describes the run: ``config``, ``model`` (its config), ``parameters``, ``dataset`` (DataInfo dict)
    final, best : the test split's results for the final model and for ``best.safetensors`` (complete runs)
    """
    last = state.history[-1] if state.history else {}
    dataset = {k: v for k, v in run["dataset"].items() if k not in ("mean", "std")}
    return {
        "status": status,
        **{key: last.get(key) for key in ("val_loss", "val_accuracy", "val_top5_accuracy", "val_error")},
        "val_top5_error": last.get("val_top5_error"),
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_val_accuracy,
        **(final.as_dict("test") if final is not None else dict.fromkeys(TEST_KEYS)),
        **{"best_" + k: v for k, v in (best.as_dict("test") if best else dict.fromkeys(TEST_KEYS)).items()},
        "epochs": state.epochs_done,
        "train_seconds": state.train_seconds,
        "images_per_second": state.images_per_second,
        "train_images": dataset["train_images"],
        "val_images": dataset["val_images"],
        "test_images": dataset["test_images"],
        "ten_crop": run["config"]["ten_crop"],
        "model": run["model"],
        "parameters": run["parameters"],
        "dataset": dataset,
        "config": run["config"],
        "backend": backend.describe(),
    }


def done_message(m: dict[str, Any]) -> str:
    """The final line of a complete run: test figures of the final model and of the best checkpoint."""
    epochs = m["epochs"]
    line = (
        f"done: test top-1 {m['test_accuracy']:.2%}, top-5 {m['test_top5_accuracy']:.2%} (top-1 error "
        f"{1 - m['test_accuracy']:.2%}, top-5 error {1 - m['test_top5_accuracy']:.2%}) after {epochs} "
        f"epoch{'s' if epochs != 1 else ''} ({'ten crops' if m.get('ten_crop') else 'centre crop'}; validation top-1 "
        f"{m['val_accuracy']:.2%})"
    )
    if m.get("best_test_accuracy") is not None:
        line += (
            f"; best.safetensors (epoch {m['best_epoch']}, validation top-1 {m['best_val_accuracy']:.2%}): "
            f"test top-1 {m['best_test_accuracy']:.2%}"
        )
    return line + f"; {m['train_seconds']:.1f} s of training, {format_rate(m['images_per_second'] or 0.0)} images/s"
