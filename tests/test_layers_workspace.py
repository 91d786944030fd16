"""The speed machinery of the layers (:mod:`minialex._engine`) must not change a single result.

* Conv2d cuts a batch into chunks of images whose columns fit in ``conv.column_budget()`` bytes
  (``CHUNK_BYTES`` on the CPU, a share of the free device memory on a GPU) and rebuilds the columns in the
  backward pass: any chunk size must give the same output and gradients as one chunk.
* Scratch buffers (``minialex._engine.workspace``) are reused between calls and layers: a layer run after
  another of a different shape, or twice in a row, must give the same result as a fresh one.
* ``minialex._engine.parallel`` cuts passes into pieces on the CPU only, and reads ``MINIALEX_THREADS``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, dev, host, randn

from minialex import backend
from minialex._engine import parallel
from minialex._engine import workspace as ws
from minialex.errors import ConfigError
from minialex.gradcheck import check_layer
from minialex.layers import Conv2d, conv

CONFIGS = {
    "conv1-like": dict(in_channels=3, out_channels=4, kernel_size=5, stride=2, padding=0, groups=1),
    "grouped-padded": dict(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=1, groups=2),
    "rect": dict(in_channels=2, out_channels=2, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), groups=1),
}


def run(layer: Conv2d, x, dy):
    y = layer.forward(x)
    dx = layer.backward(dy)
    return host(y), host(dx), {k: host(v) for k, v in layer.grads.items()}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_chunk_size_gives_the_same_result(name, dtype, monkeypatch):
    layer = Conv2d(**CONFIGS[name], dtype=dtype)
    layer.params["bias"] = randn(layer.params["bias"].shape, seed=3, dtype=dtype)
    x = randn((5, layer.in_channels, 9, 8), seed=1, dtype=dtype)
    dy = randn(layer.output_shape(x.shape), seed=2, dtype=dtype)
    monkeypatch.setattr(conv, "column_budget", lambda: 1 << 40)
    assert layer.batch_chunk(x.shape, x.dtype.itemsize) == 5
    y_ref, dx_ref, g_ref = run(layer, x, dy)
    for images in (1, 2, 4):  # 5 = 2 + 2 + 1 checks an uneven last chunk
        kh, kw = layer.kernel_size
        _, _, oh, ow = layer.output_shape(x.shape)
        per_image = layer.in_channels * kh * kw * oh * ow * x.dtype.itemsize
        monkeypatch.setattr(conv, "column_budget", lambda images=images, per_image=per_image: images * per_image)
        assert layer.batch_chunk(x.shape, x.dtype.itemsize) == images
        y, dx, g = run(layer, x, dy)
        tol = 1e-13 if dtype == np.float64 else 1e-6  # BLAS may sum in another order for another width
        np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol * np.abs(y_ref).max())
        np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol * np.abs(dx_ref).max())
        for key in g_ref:
            # Chunks add the weight gradient in another order: exact up to rounding.
            scale = np.abs(g_ref[key]).max()
            np.testing.assert_allclose(
                g[key], g_ref[key], rtol=0, atol=(1e-13 if dtype == np.float64 else 1e-5) * scale
            )


def test_gradcheck_with_one_image_per_chunk(monkeypatch):
    monkeypatch.setattr(conv, "column_budget", lambda: 1)  # every chunk is a single image
    layer = Conv2d(4, 4, 3, stride=2, padding=1, groups=2, dtype=np.float64)
    layer.params["bias"] = randn((4,), seed=5)
    x = randn((3, 4, 7, 6), seed=4)
    errors = check_layer(layer, x, seed=0)
    assert max(errors.values()) < GRADCHECK_BOUND, errors


def test_scratch_is_shared_and_results_do_not_depend_on_history():
    big = Conv2d(3, 8, 5, padding=2, dtype=np.float64)
    small = Conv2d(2, 3, 3, padding=1, dtype=np.float64)
    xs = randn((2, 2, 6, 6), seed=1)
    dys = randn((2, 3, 6, 6), seed=2)
    ws.release()
    fresh = run(small, xs, dys)
    run(big, randn((4, 3, 10, 10), seed=3), randn((4, 8, 10, 10), seed=4))  # leaves larger, dirty buffers
    again = run(small, xs, dys)
    for a, b in zip(fresh[:2], again[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fresh[2]["weight"], again[2]["weight"])
    assert ws.nbytes() > 0
    ws.release()
    assert ws.nbytes() == 0


def test_scratch_grows_and_keeps_dtype():
    a = ws.scratch("test.role", (2, 3), np.float32)
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    b = ws.scratch("test.role", (4, 5), np.float32)
    assert b.size == 20
    c = ws.scratch("test.role", (2, 2), np.float64)  # another dtype is another buffer
    assert c.dtype == np.float64
    d = ws.scratch("test.role", (3,), np.float32)
    assert np.shares_memory(host(b), host(d)) or not isinstance(b, np.ndarray)


def test_returned_gradients_are_not_scratch_views():
    layer = Conv2d(2, 2, 3, padding=1, dtype=np.float64)
    x = randn((2, 2, 5, 5), seed=1)
    dy = randn((2, 2, 5, 5), seed=2)
    y1 = layer.forward(x)
    dx1 = layer.backward(dy)
    keep_y, keep_dx = host(y1).copy(), host(dx1).copy()
    layer.forward(dev(host(x) * 2))
    layer.backward(dev(host(dy) * 3))
    np.testing.assert_array_equal(host(y1), keep_y)
    np.testing.assert_array_equal(host(dx1), keep_dx)


def test_first_layer_can_skip_its_input_gradient():
    layer = Conv2d(3, 4, 3, stride=2, padding=1, groups=1, dtype=np.float64)
    x = randn((2, 3, 7, 7), seed=1)
    dy = randn(layer.output_shape(x.shape), seed=2)
    layer.forward(x)
    assert layer.backward(dy) is not None
    want = {k: host(v).copy() for k, v in layer.grads.items()}
    layer.forward(x)
    assert layer.backward(dy, need_input_grad=False) is None
    for key, value in want.items():
        np.testing.assert_array_equal(host(layer.grads[key]), value)


def test_the_column_budget_is_the_cpu_constant_on_the_cpu_and_bounded_on_a_gpu():
    budget = conv.column_budget()
    if backend.on_gpu:
        assert 0 < budget <= conv.GPU_CHUNK_BYTES_MAX
        assert budget <= conv.GPU_MEMORY_FRACTION * ws.available_device_bytes() + 1
    else:
        assert budget == conv.CHUNK_BYTES and ws.available_device_bytes() == 0


@pytest.mark.gpu
def test_a_gpu_chunk_is_sized_by_the_device_not_by_the_cpu_constant():
    """128 MB of columns is a CPU choice: with a few GB free, conv2 of the paper model at batch 128 (896 MB of
    columns) goes through in one chunk instead of the CPU's 18 images at a time."""
    if ws.available_device_bytes() < 4 * 2**30:
        pytest.skip("needs at least 4 GB of free device memory")
    assert conv.column_budget() > conv.CHUNK_BYTES
    assert Conv2d(96, 256, 5, padding=2, groups=2).batch_chunk((128, 96, 27, 27), 4) == 128


@pytest.mark.parametrize(
    ("length", "elements", "pieces"),
    [(10, 100, 1), (8, 8 * parallel.PIECE_ELEMENTS, 8), (3, 10 * parallel.PIECE_ELEMENTS, 3), (0, 0, 0)],
)
def test_pieces_are_cpu_sized_on_the_cpu_and_one_on_a_gpu(length, elements, pieces):
    got = parallel.ranges(length, elements)
    if backend.on_gpu:
        assert got == ([(0, length)] if length else [])
        return
    assert len(got) == pieces
    assert [a for a, _ in got] == sorted(a for a, _ in got) and (not got or (got[0][0], got[-1][1]) == (0, length))
    assert all(b > a for a, b in got) and all(got[i][1] == got[i + 1][0] for i in range(len(got) - 1))


def test_split_covers_every_index_once():
    seen = []
    parallel.split(lambda a, b: seen.extend(range(a, b)), 1000, 4 * parallel.PIECE_ELEMENTS)
    assert sorted(seen) == list(range(1000))


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", "4 threads"])
def test_minialex_threads_must_be_a_positive_integer(text):
    with pytest.raises(ConfigError, match=r"^MINIALEX_THREADS .*must be an integer >= 1.*got"):
        parallel.threads_from_environment(text)


def test_minialex_threads_is_read_and_defaults_when_unset(monkeypatch):
    assert parallel.threads_from_environment(" 3 ") == 3
    monkeypatch.delenv("MINIALEX_THREADS", raising=False)
    assert 1 <= parallel.threads_from_environment() <= 4
