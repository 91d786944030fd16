"""The speed machinery of the layers must not change a single result.

* Conv2d cuts a batch into chunks of images whose columns fit in ``conv.CHUNK_BYTES`` and rebuilds the
  columns in the backward pass: any chunk size must give the same output and gradients as one chunk.
* Scratch buffers (``minialex._engine.workspace``) are reused between calls and layers: a layer run after
  another of a different shape, or twice in a row, must give the same result as a fresh one.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, dev, host, randn

from minialex._engine import workspace as ws
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
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1 << 40)
    assert layer.batch_chunk(x.shape, x.dtype.itemsize) == 5
    y_ref, dx_ref, g_ref = run(layer, x, dy)
    for images in (1, 2, 4):  # 5 = 2 + 2 + 1 checks an uneven last chunk
        kh, kw = layer.kernel_size
        _, _, oh, ow = layer.output_shape(x.shape)
        per_image = layer.in_channels * kh * kw * oh * ow * x.dtype.itemsize
        monkeypatch.setattr(conv, "CHUNK_BYTES", images * per_image)
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
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)  # every chunk is a single image
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
