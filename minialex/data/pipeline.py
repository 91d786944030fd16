"""The input pipeline: uint8 host images -> normalised, augmented float batches of the model's input on the device."""

from __future__ import annotations

from typing import Any

import numpy as np

from minialex.backend import xp
from minialex.errors import ConfigError


class InputPipeline:
    """Turns uint8 host images (N, C, H, W) into float batches of the model's input shape on the backend.

    Built on :mod:`minialex.data.augment`. Images whose size differs from the model's input are resized
    (bilinear; e.g. 28 -> 224 for ``d2l``). Training batches get the data set's augmentation
    (:meth:`~minialex.data.Augment.for_dataset`: pad-and-crop for small images, flips where a mirrored image
    keeps its class, PCA colour noise for RGB), drawn from :func:`minialex.backend.host_rng`; evaluation
    batches are the plain images. Normalisation uses the training split's per-channel mean and std.

    Ten-crop evaluation ([P] §4.1) takes the four corner crops and the centre crop of the input size from
    the image zero-padded as in training (by 1/8 of the side when training does not pad), plus their mirror
    images when training uses flips; for digits, which are not flipped, that is five views.
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
    ) -> None:
        from minialex.data import Augment

        self.image_shape = tuple(int(s) for s in image_shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        if self.image_shape[0] != self.input_shape[0]:
            raise ConfigError(
                f"the data set {dataset_name!r} has {self.image_shape[0]}-channel images but the model expects "
                f"{self.input_shape[0]} channels"
            )
        self.mean, self.std = tuple(mean), tuple(std)
        self.dtype = np.dtype(dtype)
        self.pca = pca
        resize = None if self.image_shape[1:] == self.input_shape[1:] else self.input_shape[1]
        self.eval_augment = Augment(resize=resize)
        try:
            defaults = Augment.for_dataset(dataset_name, resize=resize)
        except ConfigError:
            defaults = self.eval_augment
        self.train_augment = defaults if augment else self.eval_augment
        self._defaults = defaults

    def train(self, images: np.ndarray) -> Any:
        """Augmented, normalised training batch (N, *input_shape)."""
        from minialex.data import train_transform

        pca = self.pca if self.train_augment.pca_std > 0 else None
        return train_transform(images, self.train_augment, self.mean, self.std, pca=pca, dtype=self.dtype)

    def eval(self, images: np.ndarray) -> Any:
        """Normalised evaluation batch (N, *input_shape)."""
        from minialex.data import eval_transform

        return eval_transform(images, self.eval_augment, self.mean, self.std, dtype=self.dtype)

    def ten_crops(self, images: np.ndarray) -> list[Any]:
        """The test-time views (see the class docstring), each a normalised (N, *input_shape) batch."""
        from minialex.data import normalize, resize, ten_crop, to_device_float

        x = to_device_float(images, dtype=self.dtype)
        if self.eval_augment.resize is not None:
            x = resize(x, self.eval_augment.resize)
        pad = self._defaults.padding or max(1, self.input_shape[1] // 8)
        x = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        views = ten_crop(x, self.input_shape[1:])
        if not self._defaults.flip:
            views = views[:5]
        return [normalize(xp.ascontiguousarray(v), self.mean, self.std) for v in views]
