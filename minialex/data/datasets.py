"""The data-set registry: :func:`load_dataset` by name or by folder, :func:`available_datasets`.

==================  =========================  ====================  ==================================
name                images (train / test)      source                needs
==================  =========================  ====================  ==================================
``mnist5k``         1×28×28, 4,000 / 1,000     inside minialex       nothing (the offline default)
``mnist``           1×28×28, 60,000 / 10,000   IDX gz, 4 files       a download of ~11.6 MB, once
``fashion-mnist``   1×28×28, 60,000 / 10,000   IDX gz, 4 files       a download of ~30.9 MB, once
``cifar10``         3×32×32, 50,000 / 10,000   binary tar.gz         a download of ~170 MB, once
a folder path       3×256×256, any             JPEG/PNG files        decoding once into a cache
==================  =========================  ====================  ==================================

The mirrors are those torchvision, TensorFlow Datasets and Keras download from (MNIST: its Amazon S3 and
Google Cloud mirrors and Yann LeCun's page; Fashion-MNIST: Zalando Research's S3 bucket, Keras's Google
Cloud copy and the GitHub repository; CIFAR-10: Alex Krizhevsky's page). The sha256 values are those
TensorFlow Datasets publishes for the same files (its ``url_checksums``); the CIFAR-10 archive is the
*binary* version, so no pickle is ever read.

An image folder (train/<class>/*.jpg, optional val/ and test/; :mod:`minialex.data.folder`) is decoded once
into a memory-mapped cache (:mod:`minialex.data.imagecache`) and returned as a :class:`PhotoDataset`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minialex.data import cifar, embedded, idx
from minialex.data.archive import safe_extract
from minialex.data.download import RemoteFile, cache_dir, fetch
from minialex.data.record import Dataset, PhotoDataset
from minialex.data.splits import VALIDATION_FRACTION, VALIDATION_SEED, stratified_holdout
from minialex.data.stats import channel_stats
from minialex.errors import ConfigError, DataError

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx_files(prefix: str, mirrors: tuple[str, ...], hashes: tuple[str, ...]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(f"{prefix}-{name}", sha, tuple(m + name for m in mirrors))
        for name, sha in zip(_IDX_NAMES, hashes, strict=True)
    )


@dataclass(frozen=True)
class Source:
    """How to get one downloadable data set: its files, expected record counts and class names."""

    kind: str  # "idx" (train images, train labels, test images, test labels) or "cifar" (one archive)
    files: tuple[RemoteFile, ...]
    train_count: int
    test_count: int
    classes: tuple[str, ...] | None = None  # None: read from the data (CIFAR's batches.meta.txt)


SOURCES: dict[str, Source] = {
    "mnist": Source(
        "idx",
        _idx_files(
            "mnist",
            _MNIST_MIRRORS,
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        60_000,
        10_000,
        tuple(DIGITS),
    ),
    "fashion-mnist": Source(
        "idx",
        _idx_files(
            "fashion-mnist",
            _FASHION_MIRRORS,
            (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
        60_000,
        10_000,
        tuple(FASHION),
    ),
    "cifar10": Source(
        "cifar",
        (
            RemoteFile(
                "cifar-10-binary.tar.gz",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            ),
        ),
        50_000,
        10_000,
    ),
}
"""Downloadable data sets. Tests substitute small files here (with their own hashes) to run the real code."""

EMBEDDED = "mnist5k"

VALIDATION_FRACTIONS = {EMBEDDED: 1 / 8}
"""The fraction of each class's training images held out for validation: the embedded digits' 4,000 become
3,500 train / 500 validation (the 1,000 test digits stay as they are). Every other data set:
:data:`~minialex.data.splits.VALIDATION_FRACTION` (a tenth)."""
DEFAULT = EMBEDDED


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (the offline default first); a folder path is accepted as well."""
    return [EMBEDDED, *SOURCES]


def _load_idx(name: str, source: Source, data_dir: str | os.PathLike | None, download: bool):
    paths = [fetch(f, data_dir, download) for f in source.files]
    n = len(source.classes or ())
    x_train, y_train = idx.read_idx_pair(paths[0], paths[1], source.train_count, n)
    x_test, y_test = idx.read_idx_pair(paths[2], paths[3], source.test_count, n)
    where = ", ".join(str(p) for p in paths)
    return x_train, y_train, x_test, y_test, list(source.classes or ()), f"{name}: IDX files {where}"


def _load_cifar(name: str, source: Source, data_dir: str | os.PathLike | None, download: bool):
    archive = fetch(source.files[0], data_dir, download)
    root = cache_dir(data_dir) / f"{name}-extracted"
    folder = root / cifar.FOLDER
    stamp = root / ".extracted-from"
    # Re-extract whenever the archive changed (its verified hash is the stamp).
    try:
        done = folder.is_dir() and stamp.is_file() and stamp.read_text().strip() == source.files[0].sha256
        if not done:
            safe_extract(archive, root)
            stamp.write_text(source.files[0].sha256 + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{root}: cannot extract {archive.name} there ({exc}); remove the folder and retry") from exc
    per_batch = source.test_count
    if source.train_count != per_batch * len(cifar.TRAIN_BATCHES):
        raise ConfigError(f"{name}: train_count {source.train_count} must be 5 × test_count {per_batch}")
    x_train, y_train, x_test, y_test, classes = cifar.read_cifar_folder(folder, per_batch)
    return x_train, y_train, x_test, y_test, classes, f"{name}: binary batches in {folder}"


def is_folder_path(name_or_path: str | os.PathLike) -> bool:
    """Whether :func:`load_dataset` reads ``name_or_path`` as an image folder (not a registered name)."""
    if not isinstance(name_or_path, str):
        return True  # a Path (or other os.PathLike) is always a path
    return name_or_path.strip().lower() not in available_datasets() and os.path.isdir(os.path.expanduser(name_or_path))


def load_image_folder(
    root: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> PhotoDataset:
    """An image folder as a :class:`PhotoDataset`, its images memory-mapped from the decoded-image cache.

    The folder layout and the splits are described in :mod:`minialex.data.folder` (no val/: a stratified
    tenth of train/ is the validation split), the cache in :mod:`minialex.data.imagecache`. ``workers``
    decoding threads (default: every CPU) and ``log`` (progress lines) only matter when the cache is built.
    """
    from minialex.data import imagecache

    cache = imagecache.open_cache(root, data_dir, workers=workers, log=log)
    index = cache.index
    stats = index["stats"]
    pca = (np.asarray(stats["pca_eigvals"], dtype=np.float64), np.asarray(stats["pca_eigvecs"], dtype=np.float64))
    origin = ", ".join(f"{s} {index['splits'][s]['origin']}" for s in ("train", "val", "test"))
    dataset = PhotoDataset(
        Path(index["root"]).name,
        train_images=cache.images["train"],
        train_labels=cache.labels["train"],
        val_images=cache.images["val"],
        val_labels=cache.labels["val"],
        test_images=cache.images["test"],
        test_labels=cache.labels["test"],
        classes=list(index["classes"]),
        mean=tuple(stats["mean"]),
        std=tuple(stats["std"]),
        source="",
        root=index["root"],
        mean_image=cache.mean_image,
        pca=pca,
        files={s: tuple(f[0] for f in index["splits"][s]["files"]) for s in ("train", "val", "test")},
        skipped=tuple(tuple(s) for s in index["skipped"]),
        ignored=tuple(index["ignored"]),
        cache=os.fspath(cache.path),
        fingerprint=str(index["fingerprint"]),
    )
    # ``source`` holds the summary (counts, skipped files) and the origin of each split.
    return dataclasses.replace(dataset, source=f"{dataset.summary}; {origin}; cache {cache.path}")


def load_dataset(
    name: str | os.PathLike = DEFAULT,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Dataset:
    """Load a data set by name (downloading it into the cache on first use) or an image folder by its path.

    Parameters
    ----------
    name : str or path-like
        One of :func:`available_datasets` (``"mnist5k"``, the default, needs no network), or the path of an
        image folder (train/<class>/*.jpg, optional val/ and test/; see :func:`load_image_folder`). A
        registered name wins over a folder of the same name in the working directory: write ``./mnist``.
    data_dir : path-like, optional
        Cache folder; default ``$MINIALEX_DATA``, else ``pooch.os_cache("minialex")``.
    download : bool
        Allow network downloads (False: use only files already in the cache). An image folder needs none.
    workers, log
        For an image folder, see :func:`load_image_folder`; ignored otherwise.

    Returns
    -------
    Dataset
        uint8 (N, C, H, W) images, int64 labels, class names, train-split per-channel mean/std; a
        :class:`PhotoDataset` for an image folder.
    """
    if is_folder_path(name):
        return load_image_folder(name, data_dir, workers=workers, log=log)
    key = str(name).strip().lower()
    if key == EMBEDDED:
        x_train, y_train, x_test, y_test = embedded.load_mnist5k()
        classes, where = (
            list(DIGITS),
            (
                f"mnist5k: {embedded.locate()} (sha256 {embedded.SHA256[:12]}…), fixed stratified split "
                f"seed {embedded.SPLIT_SEED}: 4000 train / 1000 test"
            ),
        )
    elif key in SOURCES:
        source = SOURCES[key]
        loader = _load_idx if source.kind == "idx" else _load_cifar
        x_train, y_train, x_test, y_test, classes, where = loader(key, source, data_dir, download)
    else:
        raise ConfigError(
            f"unknown dataset {name!r}: expected one of {', '.join(available_datasets())}, or the path of an "
            "existing image folder (train/<class>/*.jpg)"
        )
    fraction = VALIDATION_FRACTIONS.get(key, VALIDATION_FRACTION)
    train_idx, val_idx = stratified_holdout(y_train, fraction, VALIDATION_SEED)
    x_train, y_train, x_val, y_val = x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx]
    where += f"; validation: {len(val_idx)} of the training images, stratified, seed {VALIDATION_SEED}"
    mean, std = channel_stats(x_train)
    return Dataset(
        key,
        train_images=np.ascontiguousarray(x_train),
        train_labels=y_train,
        val_images=np.ascontiguousarray(x_val),
        val_labels=y_val,
        test_images=np.ascontiguousarray(x_test),
        test_labels=y_test,
        classes=classes,
        mean=mean,
        std=std,
        source=where,
    )
