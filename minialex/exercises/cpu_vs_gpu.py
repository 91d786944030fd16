"""Graders of notebook 7 (CPU vs GPU): the size of the im2col matrix and the arithmetic intensity of a GEMM."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from minialex.exercises._grading import Fail, grade
from minialex.layers import im2col


def check_im2col_bytes(fn: Callable[..., Any]) -> None:
    """``fn(n, c, h, w, k, stride, padding, itemsize) -> bytes`` of the im2col matrix, compared with real
    buffers and with the paper's conv1 and conv2 at batch 128."""

    def body() -> str:
        rng = np.random.default_rng(12)
        for _ in range(8):
            n, c, k, s = (
                int(rng.integers(1, 4)),
                int(rng.integers(1, 5)),
                int(rng.integers(1, 6)),
                int(rng.integers(1, 4)),
            )
            p, h, w = int(rng.integers(0, 3)), int(rng.integers(k, 15)), int(rng.integers(k, 15))
            for dtype in (np.float32, np.float64):
                real = im2col(np.zeros((n, c, h, w), dtype=dtype), k, s, p).nbytes
                got = fn(n, c, h, w, k, s, p, np.dtype(dtype).itemsize)
                if got != real:
                    raise Fail(
                        f"im2col_bytes(n={n}, c={c}, h={h}, w={w}, k={k}, stride={s}, padding={p}, "
                        f"itemsize={np.dtype(dtype).itemsize}) = {got}, but the real buffer has {real} bytes"
                    )
        conv1 = fn(128, 3, 227, 227, 11, 4, 0, 4)
        conv2 = fn(128, 96, 27, 27, 5, 1, 2, 4)
        if conv1 != 363 * 128 * 55 * 55 * 4 or conv2 != 2400 * 128 * 27 * 27 * 4:
            raise Fail(
                "the paper's conv1/conv2 at batch 128 should need 562,161,600 and 895,795,200 bytes, "
                f"got {conv1:,} and {conv2:,}"
            )
        return "matches real im2col buffers; conv1 and conv2 at batch 128 need 562 MB and 896 MB"

    grade("im2col_bytes", body)


def check_gemm_intensity(fn: Callable[..., Any]) -> None:
    """``fn(m, k, n, itemsize) -> FLOPs per byte`` = 2mkn / (itemsize·(mk + kn + mn))."""

    def body() -> str:
        cases = [(128, 1200, 93312, 4), (1, 9216, 4096, 4), (64, 64, 64, 8), (4096, 4096, 128, 4), (3, 5, 7, 2)]
        for m, k, n, size in cases:
            expected = 2 * m * k * n / (size * (m * k + k * n + m * n))
            got = fn(m, k, n, size)
            is_number = isinstance(got, (int, float, np.integer, np.floating))
            if not is_number or not math.isclose(got, expected, rel_tol=1e-12):
                hint = " Count 2 FLOPs per multiply-add." if is_number and math.isclose(got * 2, expected) else ""
                raise Fail(f"gemm_intensity({m}, {k}, {n}, {size}) = {got!r}, expected {expected:.6g}.{hint}")
        return "right, e.g. conv2's grouped GEMM at batch 128: 58 FLOP/byte; a batch-1 fc6 product: 0.5 FLOP/byte"

    grade("gemm_intensity", body)
