"""Zero padding that brings small images to a model's larger input: 28×28 digits for a 32×32 network.

A model built for 32×32 CIFAR-10 images (``keras-cifar10``) trains on the embedded 28×28 digits when every
image is first padded with ``pad`` = 2 black pixels on each side, so that the digit sits in the centre of a
32×32 canvas, as it sits in the centre of MNIST's 28×28 one (its 20×20 box with a margin). The images are
padded on the host, as uint8, before anything else; the pipeline then treats them as images of the model's
size: training augments with the data set's own pad-and-crop (digits: a further 2 pixels and a random crop of
the input size), evaluation sees the padded image whole. The data set's statistics are those of the unpadded
images, so a padded pixel is standardised like any black pixel of the original.

:func:`input_padding` decides the padding of a run (recorded in its ``config.json`` and checkpoints);
:class:`PaddedPipeline` applies it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from minialex.data.pipeline import Augment, InputPipeline
from minialex.errors import ConfigError

MAX_SHARE = 0.25
"""Images are padded only when the padding is at most this share of the input's side (32 for 28 is 1/8);
larger gaps (28×28 digits for a 224×224 network) are resized instead."""


def input_padding(image_shape: tuple[int, int, int], input_shape: tuple[int, int, int]) -> int:
    """The zero padding per side that turns square images of ``image_shape`` into ``input_shape``, else 0.

    Non-zero only for images smaller than the input by an even margin of at most :data:`MAX_SHARE` of it.
    """
    (_, height, width), (_, h, w) = image_shape, input_shape
    margin = h - height
    if height == width and h == w and 0 < margin <= MAX_SHARE * h and margin % 2 == 0:
        return margin // 2
    return 0


def check_padding(pad: int, image_shape: tuple[int, int, int], input_shape: tuple[int, int, int]) -> None:
    """ConfigError unless images of ``image_shape`` padded by ``pad`` are no larger than ``input_shape``."""
    (_, height, width), (_, h, w) = image_shape, input_shape
    if pad and (height + 2 * pad > h or width + 2 * pad > w):
        raise ConfigError(
            f"pad {pad} makes the {height}×{width} images {height + 2 * pad}×{width + 2 * pad}, larger than the "
            f"model's {h}×{w} input"
        )


class PaddedPipeline:
    """An :class:`~minialex.data.pipeline.InputPipeline` for images zero-padded by ``pad`` on each side first.

    ``train``, ``eval`` and ``ten_crops`` take the unpadded uint8 images (N, C, H, W); every other attribute is
    the inner pipeline's, which sees images of (C, H + 2·pad, W + 2·pad).
    """

    def __init__(
        self, dataset_name: str, image_shape: tuple[int, int, int], input_shape: tuple[int, int, int], pad: int,
        mean: tuple[float, ...], std: tuple[float, ...], augment: bool, dtype: Any, pca: Any = None,
    ) -> None:  # fmt: skip
        c, height, width = image_shape
        self.pad = pad
        padded = (c, height + 2 * pad, width + 2 * pad)
        policy = None
        if padded[1:] == tuple(input_shape[1:]):
            try:  # the data set's own augmentation, at the padded size (digits: pad 2 and crop 32)
                policy = dataclasses.replace(Augment.for_dataset(dataset_name), crop=input_shape[1])
            except ConfigError:
                policy = None
        self.inner = InputPipeline(dataset_name, padded, input_shape, mean, std, augment, dtype, pca, policy=policy)

    def _padded(self, images: np.ndarray) -> np.ndarray:
        p = self.pad
        return np.pad(np.asarray(images), ((0, 0), (0, 0), (p, p), (p, p)))

    def train(self, images: np.ndarray) -> Any:
        """See :meth:`InputPipeline.train`."""
        return self.inner.train(self._padded(images))

    def eval(self, images: np.ndarray) -> Any:
        """See :meth:`InputPipeline.eval`."""
        return self.inner.eval(self._padded(images))

    def ten_crops(self, images: np.ndarray) -> list[Any]:
        """See :meth:`InputPipeline.ten_crops`."""
        return self.inner.ten_crops(self._padded(images))

    def describe(self) -> str:
        """One line for logs, starting with the padding."""
        return f"zero padding {self.pad} on each side, then " + self.inner.describe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)
