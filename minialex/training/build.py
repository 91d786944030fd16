"""Building a run's parts from its configuration: the model, the optimiser, the schedule, the input pipeline.

Every choice an option makes between implementations is made here and nowhere else, so that a new
optimiser, model family or input pipeline is one more branch in one function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex.data.pipeline import InputPipeline
from minialex.errors import CheckpointError, ConfigError
from minialex.layers import Dropout, SoftmaxCrossEntropy
from minialex.models import AlexNet, alexnet
from minialex.optim import SGD, Adam, AdamW, ReduceLROnPlateau, StepLR
from minialex.training.config import TrainConfig
from minialex.training.data import DataInfo, RunData
from minialex.training.padding import PaddedPipeline, check_padding, input_padding

Schedule = ReduceLROnPlateau | StepLR
Optimizer = SGD | Adam


@dataclass
class Parts:
    """What trains: the model, the loss, the optimiser, the schedule (None: constant lr), the input pipeline."""

    model: AlexNet
    loss: SoftmaxCrossEntropy
    optimizer: Optimizer
    scheduler: Schedule | None
    pipeline: InputPipeline | PaddedPipeline


def build_model(config: TrainConfig, num_classes: int, in_channels: int) -> AlexNet:
    """The model ``config`` describes (variant, widths, normalisation, init, dtype) for the data's classes and
    channels, at the variant's default image size."""
    return alexnet(
        config.model, num_classes=num_classes, in_channels=in_channels, init=config.init, dtype=config.dtype,
        widths=config.widths, norm=config.norm, norm_at=config.norm_at,
    )  # fmt: skip


def build_parts(config: TrainConfig, data: RunData, wrap: Callable[[AlexNet], Any] | None = None) -> Parts:
    """Every part of a new run, drawn from minialex's generator (seed it first for a reproducible run).

    ``config.pad`` None is set to the padding the data needs (:func:`~minialex.training.padding.input_padding`),
    so that ``config.json`` and the checkpoints record it. ``wrap`` turns the model into what trains before the
    optimiser is made for it (model parallelism: this rank's column, :class:`minialex.distributed.ModelParallel`).
    """
    model = build_model(config, len(data.classes), data.image_shape[0])
    if config.pad is None:
        config.pad = input_padding(data.image_shape, model.input_shape) if data.mean_image is None else 0
    check_padding(config.pad, data.image_shape, model.input_shape)
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    if wrap is not None:
        model = wrap(model)
    optimizer = build_optimizer(config, model)
    return Parts(
        model, SoftmaxCrossEntropy(), optimizer, build_schedule(config, optimizer), build_pipeline(config, data, model)
    )


def set_dropout(model: AlexNet, p: float) -> None:
    """Set the drop probability of every :class:`~minialex.layers.Dropout` of ``model`` to ``p`` (0: off)."""
    for _, layer in model.named_layers():
        if isinstance(layer, Dropout):
            layer.p = validate.number(p, "dropout", low=0.0, high=1.0, high_open=True, error=ConfigError)


def build_optimizer(config: TrainConfig, model: AlexNet) -> Optimizer:
    """``config.optimizer``: SGD with momentum, Adam (L2 decay, PyTorch's form, ε = 1e-8) or AdamW."""
    if config.optimizer == "adam":
        return Adam(model, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return AdamW(model, lr=config.lr, weight_decay=config.weight_decay)
    return SGD(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build_schedule(config: TrainConfig, optimizer: Optimizer) -> Schedule | None:
    """The learning-rate schedule ``config.schedule`` names (None for ``"none"``)."""
    if config.schedule == "plateau":
        return ReduceLROnPlateau(
            optimizer, factor=config.lr_factor, patience=config.patience, max_reductions=config.max_reductions
        )
    if config.schedule == "step":
        return StepLR(optimizer, step_size=config.step_size, gamma=config.lr_factor)
    return None


def build_pipeline(config: TrainConfig, data: RunData, model: AlexNet) -> InputPipeline | PaddedPipeline:
    """uint8 images -> the model's input; the paper's colour noise needs the RGB eigenvectors of the data.

    A photo folder gets the paper's pipeline (:meth:`InputPipeline.for_dataset`: random crops of the model's
    input size from the 256×256 images, flips, the mean image, PCA noise from the data set's own
    eigen-pairs, which its cache stores: no pass over the images); other data sets their defaults.
    """
    if data.mean_image is not None:
        return InputPipeline.for_dataset(
            data, model.input_shape, augment=config.augment, dtype=config.dtype, mean=config.mean
        )
    pca = None
    if config.augment and data.image_shape[0] == 3:
        from minialex.data import rgb_pca

        pca = rgb_pca(data.train_images)
    info = data.info
    if config.pad:
        return PaddedPipeline(
            config.dataset, data.image_shape, model.input_shape, config.pad, info.mean, info.std, config.augment,
            config.dtype, pca,
        )  # fmt: skip
    return InputPipeline(
        config.dataset, data.image_shape, model.input_shape, info.mean, info.std, config.augment, config.dtype, pca
    )


def inference_parts(
    config: TrainConfig, info: DataInfo, model_config: dict[str, Any], arrays: dict[str, Any] | None = None
) -> tuple[AlexNet, InputPipeline | PaddedPipeline]:
    """The model a checkpoint describes (untrained: load its state next) and its evaluation pipeline.

    ``arrays`` are the checkpoint's data arrays; a model trained with the mean image subtracted needs its
    ``"mean_image"`` (:class:`~minialex.errors.CheckpointError` when it is missing or of the wrong shape).

    Building draws initial weights; the caller's random state is restored afterwards, so that loading a
    model for inference changes no random draw of the caller.
    """
    state = backend.get_rng_state()
    try:
        model = alexnet(**model_config)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's model {model_config} cannot be built: {exc}") from exc
    finally:
        backend.set_rng_state(state)
    channels, height, width = info.image_shape
    shape = (channels, height, width)
    dtype = np.dtype(model.config.get("dtype", config.dtype))
    mean_image = None
    if info.mean_image:
        mean_image = (arrays or {}).get("mean_image")
        if mean_image is None or tuple(mean_image.shape) != shape or mean_image.dtype.kind != "f":
            got = "none" if mean_image is None else f"{mean_image.dtype} {tuple(mean_image.shape)}"
            raise CheckpointError(
                f"the checkpoint's model subtracts the mean image, so it needs a float data.mean_image of shape "
                f"{shape}; it holds {got}"
            )
    if config.pad and mean_image is None:
        return model, PaddedPipeline(
            config.dataset, shape, model.input_shape, config.pad, info.mean, info.std, False, dtype
        )
    pipeline = InputPipeline(
        config.dataset, shape, model.input_shape, info.mean, info.std, False, dtype, mean_image=mean_image
    )
    return model, pipeline
