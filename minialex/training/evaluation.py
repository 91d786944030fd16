"""Evaluation and inference: loss, top-1/top-5 accuracy and confusion matrix of a split; models restored from
training checkpoints for ``minialex evaluate`` and ``minialex predict``; the initial-loss sanity check.

Top-k error is the fraction of images whose true class is not among the model's k most probable classes
(the paper reports top-1 and top-5 error); accuracy is 1 − error. With ten crops the probabilities are the
mean of the softmax over the ten views (the paper, §4.1), otherwise those of the centre view.

A model can be evaluated on a data set whose classes are a subset of, or in another order than, its own
(a converted ImageNet model on Imagenette's ten class folders): :func:`class_mapping` maps each of the
data set's class folders to the model's output of the same name, and the scores are over all the model's
outputs, as on the full data set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.data.pipeline import InputPipeline
from minialex.errors import CheckpointError, DataError
from minialex.layers import log_softmax
from minialex.models import AlexNet
from minialex.training import checkpoint, metrics
from minialex.training.build import inference_parts
from minialex.training.config import TrainConfig
from minialex.training.data import DataInfo
from minialex.training.saved_run import SavedRun


@dataclass
class EvalResult:
    """Performance on one split: mean loss, top-1 and top-5 accuracy (fractions), and the confusion matrix."""

    loss: float
    accuracy: float
    top5_accuracy: float
    count: int
    confusion: np.ndarray = field(repr=False)

    @property
    def error(self) -> float:
        """Top-1 error, 1 - accuracy."""
        return 1.0 - self.accuracy

    def as_dict(self, prefix: str) -> dict[str, float]:
        """``{prefix}_loss``, ``_accuracy``, ``_top5_accuracy``, ``_error``, ``_top5_error`` (history and metrics)."""
        values = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            "error": self.error,
            "top5_error": 1.0 - self.top5_accuracy,
        }
        return {f"{prefix}_{key}": value for key, value in values.items()}


def host_labels(labels: Any, count: int, classes: int) -> np.ndarray:
    """``labels`` as a host int64 (N,) array, checked *before* any indexing: integers, one per image, in [0, K).

    CuPy, like NumPy, wraps a negative index silently; an out-of-range label must be an error instead.
    """
    y = np.asarray(backend.to_numpy(labels))
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"evaluate: labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    if len(y) != count:
        raise DataError(f"evaluate: {count} images but {len(y)} labels: expected one label per image")
    if y.size and (y.min() < 0 or y.max() >= classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise DataError(f"evaluate: labels must lie in [0, {classes}) for a {classes}-class model, found {bad}")
    return y.astype(np.int64, copy=False)


def evaluate_model(
    model: AlexNet,
    pipeline: InputPipeline,
    images: np.ndarray,
    labels: Any,
    batch_size: int,
    ten_crop: bool = False,
) -> EvalResult:
    """Loss, top-1/top-5 accuracy and confusion matrix of ``model`` on uint8 ``images`` (eval mode, batched).

    The sums stay on the device until the end: one synchronisation per evaluation, not per batch.
    """
    k = model.num_classes
    y = host_labels(labels, len(images), k)
    if len(y) == 0:
        raise DataError("evaluate: no images to evaluate")
    was_training = model.training
    model.eval()
    loss_sum, hits1, hits5 = xp.zeros((), xp.float64), xp.zeros((), xp.int64), xp.zeros((), xp.int64)
    predictions = []
    try:
        for start in range(0, len(y), batch_size):
            batch, target = images[start : start + batch_size], backend.asarray(y[start : start + batch_size])
            logp = log_probabilities(model, pipeline, batch, ten_crop)
            loss_sum = loss_sum - logp[xp.arange(len(target)), target].sum().astype(xp.float64)
            hits = metrics.topk_hits(logp, target, (1, 5))
            hits1, hits5 = hits1 + hits[1].sum(), hits5 + hits[5].sum()
            predictions.append(xp.argmax(logp, axis=1))
    finally:
        model.train(was_training)
    n = len(y)
    totals = backend.to_numpy(xp.stack([loss_sum, hits1.astype(xp.float64), hits5.astype(xp.float64)]))
    return EvalResult(
        loss=float(totals[0]) / n,
        accuracy=int(totals[1]) / n,
        top5_accuracy=int(totals[2]) / n,
        count=n,
        confusion=metrics.confusion_matrix(y, backend.to_numpy(xp.concatenate(predictions)), k),
    )


def log_probabilities(model: AlexNet, pipeline: InputPipeline, images: np.ndarray, ten_crop: bool = False) -> Any:
    """log softmax of the model's output, (N, classes); with ten crops, the log of the mean of the views' softmaxes.

    log mean_c p_c = logsumexp_c(log p_c) − log V over the V views, computed without leaving log space
    (the paper, §4.1, averages the softmax of ten crops).
    """
    if not ten_crop:
        return log_softmax(model.forward(pipeline.eval(images)))
    views = xp.stack([log_softmax(model.forward(v)) for v in pipeline.ten_crops(images)])  # (V, N, K)
    top = views.max(axis=0)
    return top + xp.log(xp.exp(views - top).mean(axis=0))


def check_initial_loss(loss: float, classes: int, log: Callable[[str], None]) -> None:
    """Log the initial loss against ln K, the loss of a uniform guess over K classes; warn when it is far off.

    An untrained network should be unsure of every class, so its loss is near ln K: minialex's
    initialisations draw the output layer at N(0, 0.01²), so its logits start near 0. A full-scale output
    layer gives 1–3 ln K; un-normalised pixels give tens of ln K, a broken initialisation more. Far off
    means outside [0.5, 3] ln K; above 1.5 ln K a note says the logits start large.
    """
    expected = math.log(classes)
    log(f"initial loss {loss:.4f} (a uniform guess over {classes} classes gives ln {classes} = {expected:.4f})")
    if not math.isfinite(loss) or not 0.5 * expected < loss < 3.0 * expected:
        log(
            f"WARNING: the initial loss {loss:.4f} is far from ln {classes} = {expected:.4f} (expected within "
            f"[{0.5 * expected:.2f}, {3 * expected:.2f}]): check the input normalisation, the labels and the "
            "initialisation before trusting this run"
        )
    elif loss > 1.5 * expected:
        log("  (well above ln K: the untrained network makes confident random guesses; its logits start large)")


def evenly_spaced(n: int, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(n)``: a sample that a data set sorted by label cannot bias."""
    return np.linspace(0, n - 1, min(count, n)).round().astype(np.int64)


@dataclass
class TrainedModel:
    """A model restored from a training checkpoint, with what inference needs to know about its data."""

    model: AlexNet
    config: TrainConfig
    classes: list[str]
    pipeline: InputPipeline
    image_shape: tuple[int, int, int]
    metadata: dict[str, Any]
    saved: SavedRun | None = None
    """The checked run record (progress is None for a checkpoint of format 1)."""

    @property
    def info(self) -> DataInfo | None:
        """What the checkpoint records about its data (class names, image rule, statistics)."""
        return None if self.saved is None else self.saved.dataset

    @property
    def image_rule(self) -> str:
        """How an image file becomes an image: ``"paper"``, ``"torchvision"`` (:func:`minialex.data.photo.decode`'s
        rules: shorter side, central square) or ``"resize"`` (to the training images' shape)."""
        return "resize" if self.info is None else self.info.image_rule

    def predict(self, images: np.ndarray, ten_crop: bool = False) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 images (N, *image_shape), as a host array."""
        if getattr(images, "ndim", None) != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise DataError(
                f"predict: expected uint8 images (N, {', '.join(map(str, self.image_shape))}), "
                f"got shape {getattr(images, 'shape', None)}"
            )
        self.model.eval()
        return backend.to_numpy(xp.exp(log_probabilities(self.model, self.pipeline, images, ten_crop)))

    def evaluate(self, images: np.ndarray, labels: Any, ten_crop: bool = False, batch_size: int = 500) -> EvalResult:
        """See :func:`evaluate_model`."""
        return evaluate_model(self.model, self.pipeline, images, labels, batch_size, ten_crop)


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: Any,
    ten_crop: bool,
    batch_size: int,
    log: Callable[[str], None],
) -> EvalResult | None:
    """The result of the checkpoint at ``path`` on a split, or None (with a warning logged) if it cannot load."""
    try:
        trained = load_trained(path)
    except CheckpointError as exc:
        log(f"WARNING: {path} cannot be evaluated: {exc}")
        return None
    return trained.evaluate(images, labels, ten_crop=ten_crop, batch_size=batch_size)


def load_trained(path: str | os.PathLike[str]) -> TrainedModel:
    """Rebuild the model of a training checkpoint and load its weights (for ``evaluate`` and ``predict``).

    The checkpoint's metadata is checked before anything is built; the caller's random state is unchanged.
    """
    ckpt = checkpoint.load_checkpoint(path)
    saved = SavedRun.from_checkpoint(ckpt)
    model, pipeline = inference_parts(saved.config, saved.dataset, saved.model_config, ckpt.data)
    checkpoint.restore(ckpt, model, rng=False)  # inference draws nothing: leave the caller's RNG alone
    model.eval()
    channels, height, width = saved.dataset.image_shape
    shape = (channels, height, width)
    return TrainedModel(model, saved.config, list(saved.dataset.classes), pipeline, shape, ckpt.metadata, saved)


def class_mapping(info: DataInfo, data_classes: list[str], where: str) -> np.ndarray | None:
    """The model output of each of a data set's classes; None when they are the model's classes in its order.

    A data set class (a folder name) matches the model class whose folder name (:attr:`DataInfo.folder_names`:
    WordNet ids for a converted ImageNet model) or whose class name is the same. Raises
    :class:`~minialex.errors.DataError` naming the classes the model does not know.
    """
    data_classes = [str(c) for c in data_classes]
    if data_classes == list(info.classes) or data_classes == info.folder_names:
        return None
    index = {name: k for k, name in enumerate(info.classes)}
    index.update({name: k for k, name in enumerate(info.folder_names)})
    unknown = [c for c in data_classes if c not in index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DataError(
            f"{where}: the data set's classes {shown} are not among the model's {len(info.classes)} classes "
            f"(e.g. {', '.join(info.folder_names[:3])}): evaluate it on data of the classes it was trained on"
        )
    return np.array([index[c] for c in data_classes], dtype=np.int64)


def evaluate_split(
    trained: TrainedModel,
    source: str | os.PathLike[str],
    dataset: str | None,
    split: str,
    limit: int | None,
    *,
    ten_crop: bool = False,
    batch_size: int = 500,
    data_dir: str | None = None,
    download: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[EvalResult, str, bool]:
    """``minialex evaluate``: a checkpoint's model on a split of its data set, or of ``dataset`` (a folder).

    The split is cut to ``limit`` as the run itself cut it (:func:`~minialex.training.data.split_subset`, the
    run's seed); a data set with other or fewer classes is scored through :func:`class_mapping`. A model
    converted from other weights has no data set of its own and needs ``dataset``.

    Returns
    -------
    (the result, the data set's name or folder, whether its classes were mapped onto the model's)
    """
    from minialex.data import load_dataset
    from minialex.training.data import split_subset

    config, info = trained.config, trained.info
    if dataset is None and trained.saved is not None and trained.saved.converted_from is not None:
        raise DataError(
            f"{source} was converted from torchvision weights and has no data set of its own: give one with "
            "--dataset FOLDER (an ImageNet or Imagenette folder, train/<wnid>/*.JPEG and val/<wnid>/*.JPEG)"
        )
    name = config.dataset if dataset is None else dataset
    data = load_dataset(name, data_dir=data_dir if data_dir is not None else config.data_dir, download=download,
                        log=log)  # fmt: skip
    if tuple(data.image_shape) != trained.image_shape:
        raise DataError(
            f"{source} was trained on {config.dataset} with {len(trained.classes)} classes of "
            f"{trained.image_shape} images; the data set loaded now ({name}) has {len(data.classes)} classes of "
            f"{tuple(data.image_shape)} images"
        )
    mapping = class_mapping(info, list(data.classes), f"{source} on {name}")
    images, labels = split_subset(data, split, limit, config.seed)  # the subset the run itself used
    if mapping is not None:
        labels = mapping[labels]  # the data set's classes -> the model's outputs of the same names
    result = trained.evaluate(images, labels, ten_crop=ten_crop, batch_size=batch_size)
    return result, str(name), mapping is not None
