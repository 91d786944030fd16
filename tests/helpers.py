"""Test-only helpers: backend conversion, a relative difference and shared grids.

Every test builds its data on the host with NumPy and moves it to the active backend with :func:`dev`;
results come back with :func:`host`. The suite therefore runs unchanged under ``MINIALEX_BACKEND=cupy``.

The naive loop references the layers are tested against live in the package, :mod:`minialex.reference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend
from minialex.gradcheck import tie_free as _tie_free

Array = Any

# The bound for every float64 finite-difference check (relative error per array).
GRADCHECK_BOUND = 1e-6
# Agreement with PyTorch on identical weights.
TORCH_BOUND = {np.float64: 1e-10, np.float32: 1e-4}


RUN_DIRECTORY_FILES = frozenset(
    {
        "config.json",
        "history.json",
        "history.csv",
        "metrics.json",
        "last.safetensors",
        "best.safetensors",
        "curves.png",
        "conv1_filters.png",
        "confusion_matrix.png",
    }
)
"""What a finished ``minialex train`` leaves in its run directory."""


def host(a: Array) -> np.ndarray:
    """Any backend array (or scalar) as a host NumPy array."""
    return np.asarray(backend.to_numpy(a))


def dev(a: Any, dtype: Any = None) -> Array:
    """A host array (or list) as an array of the active backend."""
    return backend.asarray(a, dtype=dtype)


def rel_diff(actual: Array, expected: Array) -> float:
    """``max|a − b| / max|b|``: the worst difference relative to the reference's scale (0 when both are 0)."""
    a = host(actual).astype(np.float64)
    b = host(expected).astype(np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    if scale == 0.0:
        return diff
    return diff / scale


def tie_free(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0, dtype: Any = np.float64) -> Array:
    """:func:`minialex.gradcheck.tie_free` on the backend, scaled, in ``dtype``."""
    return (_tie_free(shape, -scale, scale, gap=1e-3 * scale, seed=seed)).astype(dtype)


def randn(shape: tuple[int, ...], seed: int, dtype: Any = np.float64) -> Array:
    """N(0, 1) draws from a private generator (never the library's), on the backend."""
    return dev(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def randomize_bias(layer: Any, seed: int = 7) -> None:
    """Give a layer's bias non-zero values, so that forward comparisons see it."""
    if "bias" in layer.params:
        b = layer.params["bias"]
        layer.params["bias"] = randn(b.shape, seed, b.dtype) * 0.1


# -- shared grids ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvCase:
    """One convolution configuration: input (N, C_in, H, W) and the layer's hyper-parameters."""

    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    bias: bool = True

    @property
    def kernel_pair(self) -> tuple[int, int]:
        return (self.kernel, self.kernel) if isinstance(self.kernel, int) else tuple(self.kernel)

    @property
    def id(self) -> str:
        return (
            f"n{self.n}-c{self.c_in}to{self.c_out}-{self.h}x{self.w}-k{self.kernel}-s{self.stride}-p{self.padding}"
            f"-g{self.groups}" + ("" if self.bias else "-nobias")
        ).replace(" ", "")

    def build(self, dtype: Any = np.float64) -> Any:
        from minialex.layers import Conv2d

        layer = Conv2d(self.c_in, self.c_out, self.kernel, self.stride, self.padding, self.groups, self.bias, dtype)
        randomize_bias(layer)
        return layer


# Covers kernels 1/3/5/11, strides 1/2/4 (incl. shapes the stride does not tile), padding 0/1/2, groups 1/2/4,
# non-square inputs, kernels and strides, and batches of 1 and more, without the full product.
CONV_GRID = [
    ConvCase(1, 1, 2, 5, 4, kernel=1),
    ConvCase(2, 3, 4, 6, 7, kernel=1, stride=2, padding=1),
    ConvCase(2, 3, 4, 7, 6, kernel=3, padding=1),
    ConvCase(2, 4, 4, 8, 7, kernel=3, stride=2, groups=2),
    ConvCase(3, 4, 2, 5, 6, kernel=3, stride=4, padding=2, groups=2),
    ConvCase(1, 4, 8, 9, 11, kernel=5, stride=2, padding=2, groups=4),
    ConvCase(2, 2, 3, 7, 5, kernel=5, padding=1, bias=False),
    ConvCase(1, 2, 4, 6, 9, kernel=(3, 5), stride=(1, 2), padding=(2, 1), groups=2),
    ConvCase(2, 2, 2, 17, 16, kernel=11, stride=4),  # 17 = 4·1 + 11 + 2: the last 2 rows are never visited
    ConvCase(1, 2, 2, 15, 19, kernel=11, stride=4, padding=2, groups=2),
    ConvCase(1, 4, 4, 6, 5, kernel=(2, 1), stride=(2, 3), padding=(0, 2), groups=4),
]

# Max-pooling: (input shape, kernel, stride, padding). 3/2 and 2/2 on odd and even sizes, with padding.
POOL_GRID = [
    ((2, 2, 7, 7), 3, 2, 0),
    ((1, 3, 8, 6), 3, 2, 0),
    ((2, 2, 8, 8), 2, 2, 0),
    ((1, 2, 7, 9), 2, 2, 0),
    ((2, 2, 7, 8), 3, 2, 1),
    ((1, 2, 6, 6), 2, 2, 1),
    ((1, 2, 6, 7), 3, 1, 1),
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 0)),
]

# LRN: (channels, size, alpha, beta, k). A large alpha makes an off-by-one window change the result at O(1).
LRN_GRID = [
    (7, 3, 1.0, 0.75, 2.0),
    (7, 4, 1.0, 0.75, 2.0),
    (9, 5, 1.0, 0.75, 2.0),
    (9, 7, 1.0, 0.75, 2.0),
    (3, 7, 1.0, 0.75, 2.0),  # a window wider than the channels
    (6, 5, 0.5, 0.5, 1.0),
    (6, 2, 2.0, 1.3, 0.5),
    (8, 5, 1e-4, 0.75, 2.0),  # the paper's constants
]


def lrn_id(case: tuple) -> str:
    c, size, alpha, beta, k = case
    return f"C{c}-n{size}-a{alpha}-b{beta}-k{k}"


def pool_id(case: tuple) -> str:
    shape, k, s, p = case
    return f"{'x'.join(map(str, shape))}-k{k}-s{s}-p{p}".replace(" ", "")


TINY_TRAIN = [
    *("--epochs", "1", "--limit-train", "64", "--limit-val", "32", "--limit-test", "32"),
    *("--batch-size", "32", "--no-progress"),
]
"""``minialex train`` options for a one-epoch run on 64 digits: a real run directory and checkpoint in seconds."""


def peak_mib(call) -> float:
    """The peak of Python-traced allocations (NumPy's included) while ``call()`` runs, in MiB."""
    import tracemalloc

    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def cifar_archive(per_batch: int, seed: int = 6) -> bytes:
    """A ``cifar-10-binary.tar.gz`` in the official layout with ``per_batch`` random images in each of its six
    batches, the class-names file and the readme the real archive has."""
    import io
    import tarfile

    from minialex.data import cifar

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
            images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
            add(name, cifar.encode_cifar_batch(images, np.arange(per_batch) % 10))
        add(cifar.META_FILE, ("\n".join(names) + "\n").encode())
        add("readme.html", b"<html></html>")
    return buffer.getvalue()
