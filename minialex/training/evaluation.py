"""Evaluation and inference: held-out loss, top-1/top-5 accuracy and confusion matrix; models restored from
training checkpoints for ``minialex evaluate`` and ``minialex predict``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.data.pipeline import InputPipeline
from minialex.errors import CheckpointError
from minialex.layers import log_softmax
from minialex.models import AlexNet, alexnet
from minialex.training import checkpoint, metrics
from minialex.training.config import CHECKPOINT_FORMAT, TrainConfig


@dataclass
class EvalResult:
    """Held-out performance: mean loss, top-1 and top-5 accuracy (fractions), and the confusion matrix."""

    loss: float
    accuracy: float
    top5_accuracy: float
    count: int
    confusion: np.ndarray = field(repr=False)

    @property
    def error(self) -> float:
        """Top-1 error, 1 - accuracy."""
        return 1.0 - self.accuracy


def evaluate_model(
    model: AlexNet,
    pipeline: InputPipeline,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    ten_crop: bool = False,
) -> EvalResult:
    """Loss, top-1/top-5 accuracy and confusion matrix of ``model`` on uint8 ``images`` (eval mode, batched)."""
    was_training = model.training
    model.eval()
    k = model.num_classes
    loss_sum, hits1, hits5 = 0.0, 0, 0
    predictions = []
    try:
        for start in range(0, len(labels), batch_size):
            batch, y = images[start : start + batch_size], backend.asarray(labels[start : start + batch_size])
            logp = log_probabilities(model, pipeline, batch, ten_crop)
            loss_sum += float(-logp[xp.arange(len(y)), y].sum())
            hits = metrics.topk_hits(logp, y, (1, 5))
            hits1 += int(hits[1].sum())
            hits5 += int(hits[5].sum())
            predictions.append(backend.to_numpy(xp.argmax(logp, axis=1)))
    finally:
        model.train(was_training)
    n = len(labels)
    pred = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return EvalResult(
        loss=loss_sum / max(n, 1),
        accuracy=hits1 / max(n, 1),
        top5_accuracy=hits5 / max(n, 1),
        count=n,
        confusion=metrics.confusion_matrix(labels, pred, k),
    )


def log_probabilities(model: AlexNet, pipeline: InputPipeline, images: np.ndarray, ten_crop: bool = False) -> Any:
    """log softmax of the model's output, (N, classes); with ten crops, the log of the mean of ten softmaxes.

    log mean_c p_c = logsumexp_c(log p_c) − log 10, computed without leaving log space.
    """
    if not ten_crop:
        return log_softmax(model.forward(pipeline.eval(images)))
    views = xp.stack([log_softmax(model.forward(v)) for v in pipeline.ten_crops(images)])  # (10, N, K)
    top = views.max(axis=0)
    return top + xp.log(xp.exp(views - top).mean(axis=0))


@dataclass
class TrainedModel:
    """A model restored from a training checkpoint, with what inference needs to know about its data."""

    model: AlexNet
    config: TrainConfig
    classes: list[str]
    pipeline: InputPipeline
    image_shape: tuple[int, int, int]
    metadata: dict[str, Any]

    def predict(self, images: np.ndarray, ten_crop: bool = False) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 images (N, *image_shape), as a host array."""
        self.model.eval()
        logp = log_probabilities(self.model, self.pipeline, images, ten_crop)
        return backend.to_numpy(xp.exp(logp))

    def evaluate(
        self, images: np.ndarray, labels: np.ndarray, ten_crop: bool = False, batch_size: int = 500
    ) -> EvalResult:
        """See :func:`evaluate_model`."""
        return evaluate_model(self.model, self.pipeline, images, labels, batch_size, ten_crop)


def load_trained(path: str | os.PathLike[str]) -> TrainedModel:
    """Rebuild the model of a training checkpoint and load its weights (for ``evaluate`` and ``predict``)."""
    ckpt = checkpoint.load_checkpoint(path)
    meta = ckpt.metadata
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a minialex training checkpoint (no '{CHECKPOINT_FORMAT}' metadata)")
    try:
        config = TrainConfig.from_dict(dict(meta["config"]), source=str(path))
        model_cfg = dict(meta["model"])
        info = dict(meta["dataset"])
        classes = [str(c) for c in info["classes"]]
        image_shape = tuple(int(s) for s in info["image_shape"])
        mean, std = tuple(info["mean"]), tuple(info["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete training metadata ({type(exc).__name__}: {exc})") from exc
    model = alexnet(
        model_cfg.get("variant", config.model),
        num_classes=model_cfg.get("num_classes", len(classes)),
        in_channels=model_cfg.get("in_channels", image_shape[0]),
        init=model_cfg.get("init"),
        dtype=model_cfg.get("dtype", config.dtype),
        image_size=model_cfg.get("image_size"),
        **({"widths": tuple(model_cfg["widths"])} if model_cfg.get("widths") else {}),
    )
    checkpoint.restore(ckpt, model, rng=False)  # inference draws nothing: leave the caller's RNG alone
    model.eval()
    pipeline = InputPipeline(config.dataset, image_shape, model.input_shape, mean, std, False, config.dtype)
    return TrainedModel(model, config, classes, pipeline, image_shape, meta)
