"""Data sets, parsers, image folders, batching and augmentation.

Data flows one way: files -> uint8 arrays on the host (:class:`Dataset`) -> mini-batches
(:func:`iterate_batches`, or ahead of time on threads: :class:`Prefetcher`) -> device floats, augmented and
standardised (:class:`InputPipeline`).

* :mod:`~minialex.data.embedded` — the 5,000 MNIST digits shipped inside minialex (offline default, fixed split)
* :mod:`~minialex.data.idx`, :mod:`~minialex.data.cifar` — parsers for the official file formats (no pickle)
* :mod:`~minialex.data.download`, :mod:`~minialex.data.archive` — cached, hash-checked downloads; safe tar extraction
* :mod:`~minialex.data.datasets` — the registry: :func:`load_dataset` by name or folder, :func:`available_datasets`
* :mod:`~minialex.data.folder`, :mod:`~minialex.data.photo`, :mod:`~minialex.data.imagecache` — image folders:
  the layout and splits, decoding one photo (the paper's 256×256), the memory-mapped decoded-image cache
  (written row by row by :mod:`~minialex.data.npyfile`)
* :mod:`~minialex.data.stats` — exact training-set statistics: channel mean/std, mean image, RGB PCA
* :mod:`~minialex.data.splits` — the fixed, stratified validation and test hold-outs
* :mod:`~minialex.data.batches`, :mod:`~minialex.data.prefetch` — batching; batches prepared ahead on threads
* :mod:`~minialex.data.augment`, :mod:`~minialex.data.resize`, :mod:`~minialex.data.pipeline` — on-device
  augmentation and resizing, and their composition
"""

from minialex.data.augment import (
    center_crop,
    normalize,
    pca_lighting,
    random_crop,
    random_flip,
    standardize,
    ten_crop,
    to_device_float,
)
from minialex.data.batches import iterate_batches, num_batches
from minialex.data.datasets import DEFAULT, SOURCES, available_datasets, load_dataset, load_image_folder
from minialex.data.download import RemoteFile, cache_dir, fetch
from minialex.data.pipeline import Augment, InputPipeline, eval_transform, train_transform
from minialex.data.prefetch import Prefetcher
from minialex.data.record import Dataset, PhotoDataset
from minialex.data.resize import resize
from minialex.data.stats import channel_stats, rgb_pca

__all__ = [
    "DEFAULT",
    "SOURCES",
    "Augment",
    "Dataset",
    "InputPipeline",
    "PhotoDataset",
    "Prefetcher",
    "RemoteFile",
    "available_datasets",
    "cache_dir",
    "center_crop",
    "channel_stats",
    "eval_transform",
    "fetch",
    "iterate_batches",
    "load_dataset",
    "load_image_folder",
    "normalize",
    "num_batches",
    "pca_lighting",
    "random_crop",
    "random_flip",
    "resize",
    "rgb_pca",
    "standardize",
    "ten_crop",
    "to_device_float",
    "train_transform",
]
