"""The input pipeline: uint8 host images -> standardised, augmented float batches of the model's input shape.

:class:`Augment` says which transforms a training batch gets; :func:`train_transform` and
:func:`eval_transform` compose the steps of :mod:`minialex.data.augment`; :class:`InputPipeline` chooses
them for a data set and a model and is what the trainer calls. Everything runs on the backend's device.

Training, for images as large as the model's input or larger::

    uint8 (N, C, H, W) on the host -> the device, still uint8
      -> zero padding (pad-and-crop of small images)
      -> random crop offsets and flips drawn for the batch      draw_crops, draw_flips
      -> each image cropped, mirrored, (x / 255 − mean) / std   crop_flip_standardize; mean: per channel,
                                                                or the mean image, cropped and mirrored alike
      -> PCA colour noise, / std_c, over the batch              (the paper, §4.1; RGB)

The mean image (the paper, §2) is cropped and flipped exactly like each image, so the result equals
subtracting it from the 256×256 image first; only the pixels kept are converted to floats. Images smaller
than the input (28×28 digits for the ``d2l`` model, 32×32 CIFAR for ``paper``) are resized up first,
bilinearly, in floats, then cropped and flipped over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend, validate
from minialex.data import augment as ops
from minialex.data.resize import resize
from minialex.errors import ConfigError, DataError

PCA_STD = 0.1
"""σ of the PCA colour noise's α (the paper, §4.1)."""
DATASET_DEFAULTS = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "imagenet")
"""The data sets :meth:`Augment.for_dataset` knows."""
CROP_MIN_SHARE = 0.75
"""An image is cropped to the model's input, not resized, when the input is at least this share of its side."""


@dataclass(frozen=True)
class Augment:
    """Which transforms apply to a training batch.

    Attributes
    ----------
    resize : int, optional
        Resize images to ``resize × resize`` first (the d2l variant: 28 -> 224).
    crop : int, optional
        Random crop side for training, centre/ten crop side for evaluation (None: no crop).
    padding : int
        Zero padding on every side before the random crop (pad-and-crop for small images).
    flip : bool
        Random horizontal flips (p = 0.5) in training.
    pca_std : float
        σ of the PCA colour noise (0 disables; the paper: 0.1; RGB only).
    """

    resize: int | None = None
    crop: int | None = None
    padding: int = 0
    flip: bool = False
    pca_std: float = 0.0

    def __post_init__(self) -> None:
        validate.integer(self.resize, "Augment.resize", low=1, allow_none=True)
        validate.integer(self.crop, "Augment.crop", low=1, allow_none=True)
        validate.integer(self.padding, "Augment.padding", low=0)
        validate.flag(self.flip, "Augment.flip")
        validate.number(self.pca_std, "Augment.pca_std", low=0)

    @classmethod
    def paper(cls, crop: int = 227) -> Augment:
        """The paper's (§4.1): random ``crop``×``crop`` crops of 256×256 images, flips, PCA noise σ = 0.1."""
        return cls(crop=crop, flip=True, pca_std=PCA_STD)

    @classmethod
    def for_dataset(cls, name: str, resize: int | None = None) -> Augment:
        """Defaults per data set.

        ==================  ===================================================================
        digits (mnist*)     pad 2, random 28×28 crop, no flip (a mirrored 2 is not a 2)
        fashion-mnist       pad 2, random 28×28 crop, flips (clothes are mirror-symmetric)
        cifar10             pad 4, random 32×32 crop, flips, PCA colour noise σ = 0.1
        imagenet-like       the paper: random 227×227 of 256×256, flips, PCA σ = 0.1
        ==================  ===================================================================

        With ``resize`` (e.g. 224 for the d2l variant) the images are resized and not cropped.
        """
        key = name.strip().lower()
        if key not in DATASET_DEFAULTS:
            raise ConfigError(f"Augment.for_dataset: no defaults for {name!r}")
        if resize is not None:
            return cls(resize=resize, flip=key in ("fashion-mnist", "cifar10"))
        if key in ("mnist5k", "mnist"):
            return cls(crop=28, padding=2)
        if key == "fashion-mnist":
            return cls(crop=28, padding=2, flip=True)
        if key == "cifar10":
            return cls(crop=32, padding=4, flip=True, pca_std=PCA_STD)
        return cls.paper(227)  # imagenet


def _pca_noise(x: Any, augment: Augment, pca, std) -> Any:
    if augment.pca_std > 0 and x.shape[1] == 3:
        if pca is None:
            raise ConfigError("train_transform: pca_std > 0 needs the (eigvals, eigvecs) of rgb_pca(train_images)")
        ops.pca_lighting(x, pca[0], pca[1], augment.pca_std, scale=std)
    return x


def train_transform(
    batch: np.ndarray,
    augment: Augment,
    mean,
    std,
    pca: tuple[np.ndarray, np.ndarray] | None = None,
    dtype=np.float32,
    mean_image: Any = None,
) -> Any:
    """Device float batch, augmented for training and standardised (see the module docstring for the order).

    Parameters
    ----------
    batch : np.ndarray of uint8, shape (N, C, H, W)
    augment : Augment
    mean, std : per-channel statistics in [0, 1] units (the train split's)
    pca : (eigvals, eigvecs) from :func:`~minialex.data.stats.rgb_pca`; required when ``augment.pca_std`` > 0
        and C = 3
    dtype : float32 or float64
    mean_image : array in [0, 1] units, optional
        Subtracted pixel by pixel instead of ``mean`` (the paper, §2), before any crop or flip: of shape
        (C, H, W), or (C, r, r) with ``augment.resize = r`` (resized like the images); not with ``padding``
        unless with ``resize``.

    Returns
    -------
    xp.ndarray of ``dtype``, shape (N, C, h, w), C-contiguous
    """
    xp = backend.xp
    if augment.resize is not None:  # resize in floats, subtract the mean, then the steps below on floats
        x = resize(ops.to_device_float(batch, dtype=dtype), augment.resize)
        if mean_image is not None:
            x -= xp.asarray(mean_image, dtype=x.dtype)[None]
            mean = (0.0,) * x.shape[1]
        if augment.crop is not None:
            x = ops.random_crop(x, augment.crop, augment.padding)
        if augment.flip:
            x = ops.random_flip(x)
        x = _pca_noise(xp.ascontiguousarray(x), augment, pca, None)
        return ops.normalize(x, mean, std)
    x = backend.asarray(batch)
    if mean_image is not None:
        if augment.padding:
            raise ConfigError("train_transform: a mean image cannot be combined with padding")
        mean = xp.asarray(mean_image)
    if augment.padding:
        x = xp.pad(x, ((0, 0), (0, 0), (augment.padding,) * 2, (augment.padding,) * 2))
    n, _, height, width = x.shape
    if augment.crop is not None:
        size = augment.crop
        top, left = ops.draw_crops(n, height, width, size)
    else:
        size, top, left = (height, width), np.zeros(n, np.int64), np.zeros(n, np.int64)
    flips = ops.draw_flips(n) if augment.flip else np.zeros(n, bool)
    x = ops.crop_flip_standardize(x, top, left, flips, size, mean, std, dtype)
    return _pca_noise(x, augment, pca, std)


def eval_transform(batch: np.ndarray, augment: Augment, mean, std, dtype=np.float32, mean_image: Any = None) -> Any:
    """Device float batch for evaluation: resize, centre crop, standardise; no randomness.

    ``mean_image`` as in :func:`train_transform`.

    Returns
    -------
    xp.ndarray (N, C, h, w), C-contiguous
    """
    xp = backend.xp
    if augment.resize is not None:
        x = resize(ops.to_device_float(batch, dtype=dtype), augment.resize)
        if mean_image is not None:
            x -= xp.asarray(mean_image, dtype=x.dtype)[None]
            mean = (0.0,) * x.shape[1]
        crop = augment.crop if augment.crop is not None else x.shape[2]
        return ops.normalize(xp.ascontiguousarray(ops.center_crop(x, crop)), mean, std)
    x = backend.asarray(batch)
    crop = augment.crop if augment.crop is not None else x.shape[2]
    if mean_image is not None:
        mean = ops.center_crop(xp.asarray(mean_image)[None], crop)
    return ops.standardize(ops.center_crop(x, crop), mean, std, dtype)


class InputPipeline:
    """Turns uint8 host images (N, C, H, W) into float batches of the model's input shape on the backend.

    How an image reaches the model's input size (C, h, w) depends on the two sizes:

    * **crop** (images larger than the input, the input at least 3/4 of their side: the 256×256 photos of an
      image folder for ``paper``'s 227 or ``torchvision``'s 224): training takes random crops of the input
      size with flips and PCA colour noise, the paper's augmentation (:meth:`Augment.paper`); evaluation takes
      the centre crop, and ten-crop evaluation the four corners, the centre and their mirrors.
    * **same size**: training uses the data set's defaults (:meth:`Augment.for_dataset`: pad-and-crop for
      small images, flips where a mirrored image keeps its class, PCA colour noise for RGB); ten-crop
      evaluation takes the corners and the centre of the image zero-padded as in training (by 1/8 of the side
      when training does not pad), plus their mirror images when training flips; for digits, five views.
    * **resize** (any other pair: 28×28 digits for ``d2l``'s 224, 256×256 photos for the small ``mini``):
      the image is resized bilinearly to the input size, then as for the same size.

    Standardisation subtracts the training split's per-channel mean, or with ``mean_image`` its mean image
    pixel by pixel (the paper, §2), and divides by its per-channel std. Random draws come from
    :func:`minialex.backend.host_rng` and :func:`minialex.backend.normal` (:func:`minialex.seed`).
    :meth:`for_dataset` builds the pipeline from a :class:`~minialex.data.Dataset`.

    Parameters
    ----------
    dataset_name : str
        Selects the defaults of the same-size case (:meth:`Augment.for_dataset`).
    image_shape, input_shape : (C, H, W) of the data and (C, h, w) of the model
    mean, std : per-channel statistics in [0, 1] units
    augment : bool
        Augment training batches (False: training batches are prepared like evaluation ones).
    dtype : float32 or float64
    pca : (eigvals, eigvecs), optional
        The training pixels' RGB PCA; needed for RGB data whose augmentation has PCA noise.
    mean_image : np.ndarray (C, H, W), optional
        The training split's mean image in [0, 1] units; subtracted instead of ``mean``.
    policy : Augment, optional
        The training augmentation, instead of the one chosen as above.
    """

    def __init__(
        self,
        dataset_name: str,
        image_shape: tuple[int, int, int],
        input_shape: tuple[int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool,
        dtype: Any,
        pca: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        mean_image: np.ndarray | None = None,
        policy: Augment | None = None,
    ) -> None:
        self.image_shape = tuple(int(s) for s in image_shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        if self.image_shape[0] != self.input_shape[0]:
            raise ConfigError(
                f"the data set {dataset_name!r} has {self.image_shape[0]}-channel images but the model expects "
                f"{self.input_shape[0]} channels"
            )
        self.mean, self.std = tuple(mean), tuple(std)
        self.dtype = ops.float_dtype(dtype)
        self.pca = pca
        validate.flag(augment, "InputPipeline: augment")
        (_, height, width), (_, h, w) = self.image_shape, self.input_shape
        if (height, width) == (h, w):
            self.mode = "same"
        elif h <= height and w <= width and min(h / height, w / width) >= CROP_MIN_SHARE:
            self.mode = "crop"
        else:
            self.mode = "resize"
        resize_to = self.input_shape[1] if self.mode == "resize" else None
        self.eval_augment = Augment(resize=resize_to, crop=h if self.mode == "crop" else None)
        if policy is not None:
            defaults = policy
        elif self.mode == "crop":
            defaults = Augment.paper(h)
        else:
            try:
                defaults = Augment.for_dataset(dataset_name, resize=resize_to)
            except ConfigError:  # a data set without defaults (a folder of photos): flips and PCA noise for RGB
                rgb = self.image_shape[0] == 3
                defaults = Augment(resize=resize_to, flip=rgb, pca_std=PCA_STD if rgb else 0.0)
        self.train_augment = defaults if augment else self.eval_augment
        self._defaults = defaults
        if self.train_augment.pca_std > 0 and self.image_shape[0] == 3 and pca is None:
            raise ConfigError(
                f"InputPipeline: the augmentation of {dataset_name!r} adds PCA colour noise, which needs "
                "pca=(eigvals, eigvecs) of the training images (minialex.data.rgb_pca)"
            )
        self.mean_image = None
        if mean_image is not None:
            if tuple(np.shape(mean_image)) != self.image_shape:
                raise DataError(
                    f"InputPipeline: mean_image must have shape {self.image_shape}, got {np.shape(mean_image)}"
                )
            image = backend.asarray(np.asarray(mean_image, dtype=self.dtype))
            # In the resize case the mean image is resized once, like the images (resizing is linear).
            self.mean_image = resize(image[None], self.input_shape[1])[0] if self.mode == "resize" else image

    @classmethod
    def for_dataset(
        cls,
        dataset: Any,
        input_shape: tuple[int, int, int],
        *,
        augment: bool = True,
        dtype: Any = np.float32,
        mean: str = "image",
        policy: Augment | None = None,
    ) -> InputPipeline:
        """The pipeline for a :class:`~minialex.data.Dataset` and a model's ``input_shape``.

        Parameters
        ----------
        mean : "image" or "channel"
            Subtract the training split's mean image, pixel by pixel, where the data set has one
            (:class:`~minialex.data.PhotoDataset`: the paper's choice), or the per-channel mean.

        Uses the data set's stored PCA eigen-pairs when it has them, else computes them (RGB data only).
        """
        validate.choice(mean, "InputPipeline.for_dataset: mean", ("image", "channel"))
        pca = getattr(dataset, "pca", None)
        if pca is None and augment and dataset.image_shape[0] == 3:
            from minialex.data.stats import rgb_pca

            pca = rgb_pca(dataset.train_images)
        mean_image = getattr(dataset, "mean_image", None) if mean == "image" else None
        return cls(
            dataset.name,
            dataset.image_shape,
            input_shape,
            dataset.mean,
            dataset.std,
            augment,
            dtype,
            pca,
            mean_image=mean_image,
            policy=policy,
        )

    def describe(self) -> str:
        """One line for logs: how images become model inputs."""
        a = self.train_augment
        steps = [f"{self.image_shape[1]}×{self.image_shape[2]} -> {self.input_shape[1]}×{self.input_shape[2]}"]
        steps += [f"resize to {a.resize}"] if a.resize else []
        steps += (
            [f"random {a.crop}×{a.crop} crops" + (f" after padding {a.padding}" if a.padding else "")] if a.crop else []
        )
        steps += ["flips"] if a.flip else []
        steps += [f"PCA colour noise σ = {a.pca_std:g}"] if a.pca_std and self.image_shape[0] == 3 else []
        steps += [
            "minus the mean image" if self.mean_image is not None else "minus the channel means",
            "/ channel stds",
        ]
        return ", ".join(steps)

    def train(self, images: np.ndarray) -> Any:
        """Augmented, standardised training batch (N, *input_shape)."""
        pca = self.pca if self.train_augment.pca_std > 0 else None
        return train_transform(
            images, self.train_augment, self.mean, self.std, pca=pca, dtype=self.dtype, mean_image=self.mean_image
        )

    def eval(self, images: np.ndarray) -> Any:
        """Standardised evaluation batch (N, *input_shape): the centre crop, or the resized image."""
        return eval_transform(images, self.eval_augment, self.mean, self.std, self.dtype, mean_image=self.mean_image)

    def ten_crops(self, images: np.ndarray) -> list[Any]:
        """The test-time views (see the class docstring), each a standardised (N, *input_shape) batch."""
        xp = backend.xp
        size = self.input_shape[1:]
        x = ops.to_device_float(images, dtype=self.dtype)
        mean = None if self.mean_image is None else self.mean_image[None]
        if self.mode == "resize":
            x = resize(x, size)
        if self.mode != "crop":  # views of the image padded with black, as pad-and-crop training sees it
            pad = self._defaults.padding or max(1, self.input_shape[1] // 8)
            widths = ((0, 0), (0, 0), (pad, pad), (pad, pad))
            x = xp.pad(x, widths)
            mean = None if mean is None else xp.pad(mean, widths)
        count = 10 if self._defaults.flip else 5
        views = ops.ten_crop(x, size)[:count]
        if mean is None:
            return [ops.normalize(xp.ascontiguousarray(v), self.mean, self.std) for v in views]
        zero = (0.0,) * len(self.std)
        return [
            ops.normalize(v - m, zero, self.std) for v, m in zip(views, ops.ten_crop(mean, size)[:count], strict=True)
        ]
