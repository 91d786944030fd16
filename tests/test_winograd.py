"""Winograd convolution F(2×2, 3×3) and F(4×4, 3×3): the transforms, forward, dX and dW, and the accuracy contract.

* The matrices satisfy the bilinear identity of F(m, 3) exactly (in rational arithmetic).
* Forward and backward equal the loop reference (:mod:`minialex.reference`) in float64 to rounding, with padding
  0–3, groups, sizes that the tiles do not divide, and chunked batches; central differences at the bound every
  layer meets; PyTorch at the bounds every layer meets.
* float32 accuracy against float64 for AlexNet's conv3–conv5 shapes and value ranges. Measured (relative to the
  largest output, worst of y, dX, dW over conv3, conv4, conv5 with the paper's N(0, 0.01²) and He's weights,
  inputs |N(0, 9)| as after a ReLU): im2col 3.7e-7, F(2×2) 6.9e-7, F(4×4) 1.2e-5 (about 1.5 decimal digits
  fewer than im2col). The bounds below are those figures with a margin of about 3.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from helpers import GRADCHECK_BOUND, TORCH_BOUND, dev, host, randn, rel_diff, tie_free

from minialex import reference
from minialex.errors import LayerInputError
from minialex.gradcheck import check_layer
from minialex.layers import Conv2d, conv
from minialex.layers.winograd_transforms import exact_matrices, kron_matrices, matrices

ALGORITHMS = ["winograd2", "winograd4"]
F32_BOUND = {"im2col": 1.2e-6, "winograd2": 2e-6, "winograd4": 3.5e-5}

# (N, C_in, C_out, H, W, padding, groups): tiling and non-tiling sizes for m = 2 and 4, padding 0..3, groups 1..3.
CASES = [
    (2, 3, 4, 7, 6, 1, 1),
    (1, 2, 2, 8, 8, 0, 1),  # 6×6 outputs: tiles of 2 fit, tiles of 4 do not
    (2, 4, 6, 9, 10, 0, 2),
    (1, 2, 3, 5, 5, 2, 1),
    (1, 2, 2, 4, 6, 3, 1),  # padding 3 > 2: dX crops dy
    (2, 6, 3, 6, 5, 1, 3),
    (1, 1, 1, 3, 3, 0, 1),  # a single output
]
IDS = ["n{}-c{}to{}-{}x{}-p{}-g{}".format(*c) for c in CASES]


def build(case, algorithm: str, dtype=np.float64, seed: int = 7) -> Conv2d:
    _, c_in, c_out, _, _, p, g = case
    layer = Conv2d(c_in, c_out, 3, 1, p, g, dtype=dtype, algorithm=algorithm)
    layer.params["bias"] = randn((c_out,), seed, dtype) * 0.1
    return layer


@pytest.mark.parametrize("m", [2, 4])
def test_the_matrices_satisfy_the_bilinear_identity_exactly(m):
    # y_i = Σ_ξ Aᵀ[i, ξ] (G g)_ξ (Bᵀ d)_ξ must equal Σ_k g_k d_{i+k} for every g and d:
    # Σ_ξ Aᵀ[i, ξ] G[ξ, k] Bᵀ[ξ, t] = [t = i + k].
    at, g, bt = exact_matrices(m)
    alpha = m + 2
    for i in range(m):
        for k in range(3):
            for t in range(alpha):
                total = sum((at[i][xi] * g[xi][k] * bt[xi][t] for xi in range(alpha)), Fraction(0))
                assert total == (1 if t == i + k else 0), (m, i, k, t, total)
    assert all(v.denominator == 1 for row in bt for v in row)  # the input transform is integer


def test_f2_matrices_are_lavin_and_grays():
    at, g, bt = matrices(2)
    np.testing.assert_array_equal(bt, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_array_equal(at, [[1, 1, 1, 0], [0, 1, -1, 1]])


@pytest.mark.parametrize("m", [2, 4])
def test_kronecker_matrices_transform_a_tile_like_the_sandwich(m):
    at, g, bt = matrices(m)
    at2, g2, bt2 = (host(a) for a in kron_matrices(m, np.float64))
    rng = np.random.default_rng(0)
    d, w, prod = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3)), rng.standard_normal((m + 2, m + 2))
    np.testing.assert_allclose(bt2 @ d.ravel(), (bt @ d @ bt.T).ravel(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(g2 @ w.ravel(), (g @ w @ g.T).ravel(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(at2 @ prod.ravel(), (at @ prod @ at.T).ravel(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_equal_the_loop_reference(case, algorithm):
    n, c_in, _, h, w, p, g = case
    layer = build(case, algorithm)
    x, dy = randn((n, c_in, h, w), seed=1), randn(layer.output_shape((n, c_in, h, w)), seed=2)
    x_before, dy_before = host(x).copy(), host(dy).copy()
    weight = host(layer.params["weight"])
    y = layer.forward(x)
    assert rel_diff(y, reference.conv2d_forward(x, weight, host(layer.params["bias"]), 1, p, g)) <= 1e-13
    dx = layer.backward(dy)
    dx_ref, dw_ref, db_ref = reference.conv2d_backward(dy, x, weight, 1, p, g)
    assert rel_diff(dx, dx_ref) <= 1e-13
    assert rel_diff(layer.grads["weight"], dw_ref) <= 1e-13
    assert rel_diff(layer.grads["bias"], db_ref) <= 1e-13
    np.testing.assert_array_equal(host(x), x_before)  # inputs are not modified
    np.testing.assert_array_equal(host(dy), dy_before)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[5]], ids=[IDS[0], IDS[4], IDS[5]])
def test_gradients_against_central_differences(case, algorithm):
    n, c_in, _, h, w, _, _ = case
    layer = build(case, algorithm)
    errors = check_layer(layer, tie_free((n, c_in, h, w), seed=1))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) <= GRADCHECK_BOUND, errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]], ids=[IDS[0], IDS[2], IDS[3]])
def test_against_pytorch(case, algorithm, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: it is the independent oracle")
    n, c_in, _, h, w, p, g = case
    layer = build(case, algorithm, dtype)
    x = host(randn((n, c_in, h, w), seed=1, dtype=dtype))
    dy = host(randn(layer.output_shape(x.shape), seed=2, dtype=dtype))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(host(layer.params["weight"]), requires_grad=True)
    bt = torch.tensor(host(layer.params["bias"]), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, 1, p, groups=g)
    yt.backward(torch.tensor(dy))
    y = layer.forward(dev(x))
    dx = layer.backward(dev(dy))
    for name, ours, theirs in [
        ("y", y, yt),
        ("dx", dx, xt.grad),
        ("dweight", layer.grads["weight"], wt.grad),
        ("dbias", layer.grads["bias"], bt.grad),
    ]:
        assert host(ours).dtype == np.dtype(dtype), name
        assert rel_diff(ours, theirs.detach().numpy()) <= TORCH_BOUND[dtype], name


# AlexNet's conv3, conv4, conv5 (the paper's widths and two columns) on their 13×13 maps.
ALEXNET_3X3 = {"conv3": (256, 384, 1), "conv4": (384, 384, 2), "conv5": (384, 256, 2)}


@pytest.mark.parametrize("weight_std", [0.01, None], ids=["paper-init", "he-init"])
@pytest.mark.parametrize("name", list(ALEXNET_3X3))
def test_float32_error_against_float64_for_alexnet_shapes(name, weight_std):
    c_in, c_out, groups = ALEXNET_3X3[name]
    exact = Conv2d(c_in, c_out, 3, 1, 1, groups, dtype=np.float64, weight_std=weight_std, algorithm="im2col")
    x = np.abs(host(randn((1, c_in, 13, 13), seed=3))) * 3.0  # non-negative, as after a ReLU
    dy = host(randn((1, c_out, 13, 13), seed=4))
    y64, dx64 = exact.forward(dev(x)), exact.backward(dev(dy))
    dw64 = exact.grads["weight"]
    for algorithm, bound in F32_BOUND.items():
        layer = Conv2d(c_in, c_out, 3, 1, 1, groups, algorithm=algorithm)
        layer.params["weight"] = exact.params["weight"].astype(np.float32)
        y = layer.forward(dev(x, np.float32))
        dx = layer.backward(dev(dy, np.float32))
        for what, ours, truth in [("y", y, y64), ("dx", dx, dx64), ("dW", layer.grads["weight"], dw64)]:
            assert host(ours).dtype == np.float32
            err = rel_diff(ours, truth)
            assert err <= bound, f"{algorithm} {what}: float32 error {err:.2e} > {bound:.1e}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_chunks_give_the_same_result(algorithm, monkeypatch):
    case = (5, 4, 6, 9, 7, 1, 2)
    layer = build(case, algorithm)
    x, dy = randn((5, 4, 9, 7), seed=1), randn((5, 6, 9, 7), seed=2)
    y_one, dx_one = host(layer.forward(x)), host(layer.backward(dy))
    dw_one = host(layer.grads["weight"])
    m = int(algorithm[-1])
    per_image = conv.winograd.bytes_per_image(4, 6, 9, 7, (1, 1), m, 8)
    monkeypatch.setattr(conv, "column_budget", lambda: 2 * per_image)  # chunks of 2, 2, 1 images
    assert layer._winograd_chunk(x.shape, 8, m) == 2
    assert rel_diff(layer.forward(x), y_one) <= 1e-14
    assert rel_diff(layer.backward(dy), dx_one) <= 1e-14
    assert rel_diff(layer.grads["weight"], dw_one) <= 1e-14


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_first_layer_skips_dx_with_the_same_weight_gradient(algorithm):
    layer = build(CASES[0], algorithm)
    x, dy = randn((2, 3, 7, 6), seed=1), randn((2, 4, 7, 6), seed=2)
    layer.forward(x)
    layer.backward(dy)
    dw = host(layer.grads["weight"])
    layer.forward(x)
    assert layer.backward(dy, need_input_grad=False) is None
    np.testing.assert_array_equal(host(layer.grads["weight"]), dw)


def test_channel_major_and_c_order_inputs_agree():
    layer = build((2, 4, 6, 8, 8, 1, 2), "winograd4")
    x = randn((4, 2, 8, 8), seed=1).transpose(1, 0, 2, 3)  # channel-major in memory, as conv outputs are
    y = layer.forward(x)
    assert rel_diff(y, layer.forward(x.copy())) <= 1e-15


def test_auto_rule_on_the_cpu(monkeypatch):
    # The paper's conv1, conv2 and the mini model's convolutions stay on im2col; 3×3, stride 1 with wide groups
    # goes to F(4×4, 3×3).
    monkeypatch.setattr(conv.backend, "on_gpu", False)
    assert Conv2d(3, 96, 11, stride=4).chosen_algorithm == "im2col"
    assert Conv2d(96, 256, 5, padding=2, groups=2).chosen_algorithm == "im2col"
    assert Conv2d(256, 384, 3, padding=1).chosen_algorithm == "winograd4"
    assert Conv2d(384, 384, 3, padding=1, groups=2).chosen_algorithm == "winograd4"
    assert Conv2d(384, 256, 3, padding=1, groups=2).chosen_algorithm == "winograd4"
    assert Conv2d(256, 256, 3, stride=2, padding=1).chosen_algorithm == "im2col"
    assert Conv2d(32, 64, 3, padding=1, groups=2).chosen_algorithm == "im2col"  # mini's conv2
    assert Conv2d(64, 96, 3, padding=1).chosen_algorithm == "im2col"  # mini's conv3
    narrow = conv.AUTO_MIN_CHANNELS - 1
    assert Conv2d(narrow, 512, 3, padding=1).chosen_algorithm == "im2col"
    assert Conv2d(512, 2 * narrow, 3, padding=1, groups=2).chosen_algorithm == "im2col"
    assert Conv2d(256, 384, 3, padding=1, algorithm="im2col").chosen_algorithm == "im2col"
    assert Conv2d(8, 8, 3, algorithm="winograd2").chosen_algorithm == "winograd2"


def test_auto_rule_keeps_im2col_on_a_gpu(monkeypatch):
    wide = (256, 384, 1, (3, 3), (1, 1))
    assert conv.auto_algorithm(*wide, on_cpu=True) == "winograd4"
    assert conv.auto_algorithm(*wide, on_cpu=False) == "im2col"
    wide_layer, explicit = Conv2d(256, 384, 3, padding=1), Conv2d(8, 8, 3, algorithm="winograd4")
    monkeypatch.setattr(conv.backend, "on_gpu", True)  # the rule alone: these layers never run here
    assert wide_layer.chosen_algorithm == "im2col"
    assert explicit.chosen_algorithm == "winograd4"  # an explicit choice stands


def test_bad_algorithms_are_one_line_errors():
    with pytest.raises(LayerInputError, match="algorithm must be one of auto, im2col, winograd2, winograd4, got 'fft'"):
        Conv2d(3, 4, 3, algorithm="fft")
    with pytest.raises(LayerInputError, match=r"'winograd4' needs a 3x3 kernel at stride 1, got kernel_size=\(5, 5\)"):
        Conv2d(3, 4, 5, algorithm="winograd4")
    with pytest.raises(LayerInputError, match=r"stride=\(2, 2\)"):
        Conv2d(3, 4, 3, stride=2, algorithm="winograd2")


def test_the_convolution_benchmark_runs_and_writes_its_report(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import convolution

    assert (
        convolution.main(
            ["--tiny", "--no-torch", "--steps", "mini", "--pools", "--sweep", "--out", str(tmp_path), "--name", "smoke"]
        )
        == 0
    )
    md = (tmp_path / "convolution-smoke-tiny.md").read_text(encoding="utf-8")
    assert "| mini | conv3 |" in md and "GEMM U·V" in md and "| mini | 2 |" in md
    assert "| mini | pool1 |" in md and "| 16 | 2 |" in md
    layers = json.loads((tmp_path / "convolution-smoke-tiny.json").read_text(encoding="utf-8"))["layers"]
    conv3 = next(row for row in layers if row["layer"] == "conv3")
    assert set(conv3["median_s"]) == {"im2col", "winograd2", "winograd4"}
    assert conv3["multiplications"]["im2col"] == 9 * 96 * 64 * 2 * 6 * 6  # N·OH·OW·K·C·9
    assert conv3["multiplications"]["winograd4"] == 36 * 96 * 64 * 2 * 2 * 2  # α²·K·C·N·TH·TW


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_kept_and_rebuilt_transformed_input_give_the_same_gradients(algorithm):
    # A training-mode forward of one chunk keeps V for dW; in eval mode V is rebuilt in the backward pass.
    layer = build(CASES[2], algorithm)
    x, dy = randn((2, 4, 9, 10), seed=1), randn((2, 6, 7, 8), seed=2)
    layer.forward(x)
    dx_kept = host(layer.backward(dy))
    dw_kept = host(layer.grads["weight"])
    layer.eval()
    layer.forward(x)
    assert rel_diff(layer.backward(dy), dx_kept) == 0.0
    assert rel_diff(layer.grads["weight"], dw_kept) <= 1e-15
