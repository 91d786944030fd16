"""The Keras CIFAR-10 AlexNet, configurable widths and the normalisation option (LRN, BatchNorm or none).

The Keras model is checked three ways: its published parameter counts (9,638,474 trainable, 704
non-trainable), its layer sequence and padding, and an exact cross-check of a training-mode forward and
backward pass and of the running statistics against the same network written in PyTorch, on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import minialex
from minialex import backend
from minialex.cli import main
from minialex.errors import ConfigError
from minialex.layers import BatchNorm2d, LocalResponseNorm, SoftmaxCrossEntropy
from minialex.models import alexnet, layer_table


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """The CLI in-process: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


KERAS_LAYERS = [
    ("conv1", "Conv2d"), ("norm1", "BatchNorm2d"), ("relu1", "ReLU"), ("pool1", "MaxPool2d"),
    ("conv2", "Conv2d"), ("norm2", "BatchNorm2d"), ("relu2", "ReLU"), ("pool2", "MaxPool2d"),
    ("conv3", "Conv2d"), ("relu3", "ReLU"),
    ("conv4", "Conv2d"), ("relu4", "ReLU"),
    ("conv5", "Conv2d"), ("relu5", "ReLU"), ("pool5", "MaxPool2d"),
    ("flatten", "Flatten"),
    ("fc6", "Linear"), ("relu6", "ReLU"), ("drop6", "Dropout"),
    ("fc7", "Linear"), ("relu7", "ReLU"), ("drop7", "Dropout"),
    ("fc8", "Linear"),
]  # fmt: skip


@pytest.fixture(scope="module")
def keras():
    minialex.seed(0)
    return alexnet("keras-cifar10")


def test_keras_cifar10_has_the_tutorials_parameter_counts(keras):
    assert keras.num_params() == 9_638_474
    assert sum(int(v.size) for v in keras.buffers.values()) == 704  # Keras's "non-trainable params"
    assert set(keras.buffers) == {f"norm{i}.running_{s}" for i in (1, 2) for s in ("mean", "var")}
    assert keras.input_shape == (3, 32, 32) and keras.num_classes == 10


def test_keras_cifar10_layer_sequence_shapes_and_padding(keras):
    rows = layer_table(keras, keras.input_shape)
    assert [(r.name, r.kind) for r in rows] == KERAS_LAYERS
    shapes = {r.name: r.output_shape for r in rows}
    assert shapes["conv1"] == (96, 30, 30) and shapes["pool1"] == (96, 14, 14)  # valid: 32 − 2
    assert shapes["conv2"] == (256, 12, 12) and shapes["pool2"] == (256, 5, 5)
    assert shapes["conv3"] == shapes["conv4"] == (384, 5, 5) and shapes["conv5"] == (256, 5, 5)  # same
    assert shapes["flatten"] == (1024,)
    paddings = [keras[f"conv{i}"].padding for i in range(1, 6)]
    kernels = [tuple(keras[f"conv{i}"].params["weight"].shape[2:]) for i in range(1, 6)]
    assert paddings == [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1)] and kernels == [(3, 3)] * 5
    assert [keras[n].p for n in ("drop6", "drop7")] == [0.5, 0.5]
    norm = keras["norm1"]
    assert (norm.convention, norm.momentum, norm.eps, norm.running_weights) == ("keras", 0.99, 1e-3, (0.99, 1 - 0.99))
    assert [r.buffers for r in rows if r.buffers] == [192, 512]


def test_keras_cifar10_summary_shows_the_running_statistics_as_non_trainable(keras):
    text = keras.summary()
    assert "buffers" in text.splitlines()[2] and "9,638,474" in text and "704" in text
    assert "704 non-trainable" in text
    assert "buffers" not in alexnet("mini").summary()  # no BatchNorm: the table keeps its columns


def _torch_keras(torch, model):
    """The Keras tutorial's network in PyTorch, with the minialex model's weights and Keras's BatchNorm."""
    nn = torch.nn
    bn = {"eps": 1e-3, "momentum": 0.01}  # Keras's momentum 0.99 on the running value is PyTorch's 0.01
    net = nn.Sequential(
        nn.Conv2d(3, 96, 3), nn.BatchNorm2d(96, **bn), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 3), nn.BatchNorm2d(256, **bn), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(1024, 2048), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(2048, 10),
    ).double()  # fmt: skip
    ours = [layer for _, layer in model.named_layers()]
    with torch.no_grad():
        for theirs, mine in zip(net, ours, strict=True):
            for key, value in mine.params.items():
                getattr(theirs, key).copy_(torch.from_numpy(backend.to_numpy(value)))
    return net


def test_keras_cifar10_matches_torch_in_training_and_evaluation(torch):
    """Two training steps' forward and backward (BatchNorm on batch statistics; dropout off on both sides, its
    masks being random), the running statistics after them, and an evaluation forward, in float64."""
    minialex.seed(1)
    model = alexnet("keras-cifar10", dtype=np.float64)
    net = _torch_keras(torch, model)
    for name in ("drop6", "drop7"):
        model[name].eval()
    for module in net:
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    rng = np.random.default_rng(2)
    loss = SoftmaxCrossEntropy()
    for _ in range(2):
        x = rng.standard_normal((4, 3, 32, 32)) * 2 + 0.5
        labels = rng.integers(0, 10, 4)
        logits = model.forward(backend.asarray(x))
        loss.forward(logits, backend.asarray(labels))
        dx = model.backward(loss.backward())
        tx = torch.from_numpy(x).requires_grad_()
        tlogits = net(tx)
        torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(labels)).backward()
        np.testing.assert_allclose(backend.to_numpy(logits), tlogits.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.numpy(), rtol=1e-7, atol=1e-13)
        for ours, theirs in (("conv1", 0), ("norm1", 1), ("norm2", 5), ("fc6", 16)):
            for key, grad in model[ours].grads.items():
                expected = getattr(net[theirs], key).grad.numpy()
                np.testing.assert_allclose(backend.to_numpy(grad), expected, rtol=1e-7, atol=1e-12, err_msg=ours)
        net.zero_grad()
    for ours, theirs in (("norm1", 1), ("norm2", 5)):
        np.testing.assert_allclose(
            backend.to_numpy(model[ours].buffers["running_mean"]), net[theirs].running_mean.numpy(), rtol=1e-10
        )
        # PyTorch keeps the unbiased variance, Keras (and so this model) the biased one. After two steps from 1,
        # running − 0.99² = 0.01·(0.99·σ²₁ + σ²₂) for Keras, and M/(M − 1) times that for PyTorch.
        m = 4 * (30 * 30 if ours == "norm1" else 12 * 12)
        ours_var = backend.to_numpy(model[ours].buffers["running_var"]) - 0.99**2
        np.testing.assert_allclose(ours_var * m / (m - 1), net[theirs].running_var.numpy() - 0.99**2, rtol=1e-8)
    model.eval()
    net.eval()
    for ours, theirs in (("norm1", 1), ("norm2", 5)):  # give torch our running statistics, then compare eval
        with torch.no_grad():
            net[theirs].running_mean.copy_(torch.from_numpy(backend.to_numpy(model[ours].buffers["running_mean"])))
            net[theirs].running_var.copy_(torch.from_numpy(backend.to_numpy(model[ours].buffers["running_var"])))
    x = rng.standard_normal((3, 3, 32, 32))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(backend.to_numpy(model.forward(backend.asarray(x))), expected, rtol=1e-9, atol=1e-12)


def test_torchvision_widths_give_the_blog_variant():
    minialex.seed(0)
    model = alexnet("torchvision", widths=(64, 192, 384, 384, 256))
    assert model.num_params() == 61_838_248
    assert model.config["widths"] == [64, 192, 384, 384, 256, 4096, 4096]
    assert tuple(model["conv4"].params["weight"].shape) == (384, 384, 3, 3)
    assert tuple(model["conv5"].params["weight"].shape) == (256, 384, 3, 3)
    names = [name for name, _ in model.named_layers()]
    assert names[names.index("flatten") :] == ["flatten", "drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
    assert alexnet("torchvision").num_params() == 61_100_840  # the default is unchanged
    small = alexnet("torchvision", widths=(8, 8, 8, 8, 8, 16, 16), num_classes=3)
    assert tuple(small["fc7"].params["weight"].shape) == (16, 16)
    assert alexnet(**small.config).config == small.config


def test_keras_widths_and_three_mini_widths():
    model = alexnet("keras-cifar10", widths=(8, 16, 16, 16, 8, 32, 32))
    assert tuple(model["norm2"].buffers["running_mean"].shape) == (16,)
    assert alexnet("mini", widths=(8, 8, 8)).config["widths"] == [8, 8, 8, 256]


def _names(model):
    return [name for name, _ in model.named_layers()]


def test_batchnorm_goes_before_the_relu_where_lrn_would_go():
    model = alexnet("mini", norm="batchnorm")
    assert _names(model)[:9] == ["conv1", "norm1", "relu1", "pool1", "conv2", "norm2", "relu2", "pool2", "conv3"]
    assert isinstance(model["norm1"], BatchNorm2d) and model["norm1"].convention == "pytorch"
    assert model.config["norm"] == "batchnorm" and model.config["norm_at"] == "paper"
    assert alexnet(**model.config).config == model.config
    assert model.num_params() == alexnet("mini").num_params() + 2 * (32 + 64)


def test_norm_every_and_none_and_lrn_on_any_variant():
    every = alexnet("mini", norm="batchnorm", norm_at="every")
    assert [n for n in _names(every) if n.startswith("norm")] == ["norm1", "norm2", "norm3"]
    assert not [n for n in _names(alexnet("mini", norm="none")) if n.startswith("norm")]
    keras_lrn = alexnet("keras-cifar10", norm="lrn")
    assert _names(keras_lrn)[:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert isinstance(keras_lrn["norm1"], LocalResponseNorm) and not keras_lrn.buffers
    d2l = alexnet("d2l", norm="batchnorm", norm_at="every", image_size=67, num_classes=3)
    assert [n for n in _names(d2l) if n.startswith("norm")] == [f"norm{i}" for i in range(1, 6)]
    paper_bn = alexnet("paper", norm="batchnorm", image_size=67, num_classes=3)
    assert [type(paper_bn[n]).__name__ for n in ("norm1", "norm2")] == ["BatchNorm2d"] * 2
    assert alexnet("mini").config.get("norm") is None  # the variant's own layout records nothing new


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "bn"}, "alexnet: norm must be one of lrn, batchnorm, none, got 'bn'"),
        ({"norm": "lrn", "norm_at": "some"}, "alexnet: norm_at must be one of paper, every, got 'some'"),
        ({"norm_at": "every"}, "norm_at='every' needs norm="),
        ({"variant": "paper", "widths": (96, 256, 384, 384, 256)}, "applies to the 'mini', 'torchvision' and"),
        ({"variant": "torchvision", "widths": (64, 192, 384)}, r"must be 5 \(conv1, conv2, conv3, conv4, conv5\) or 7"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        alexnet(**{"variant": "mini", **kwargs})


def test_cli_summary_prints_every_variant(capsys):
    status, out, _ = run_main(capsys, "summary", "--model", "keras-cifar10")
    assert status == 0 and "9,638,474" in out and "704 non-trainable" in out
    status, out, _ = run_main(capsys, "summary", "--model", "torchvision", "--widths", "64,192,384,384,256")
    assert status == 0 and "61,838,248" in out
    status, out, _ = run_main(capsys, "summary", "--model", "mini", "--norm", "batchnorm", "--norm-at", "every")
    assert status == 0 and "BatchNorm2d" in out and "norm3" in out


def test_cli_summary_rejects_bad_widths(capsys):
    status, _, err = run_main(capsys, "summary", "--model", "torchvision", "--widths", "64,x")
    assert status != 0 and "--widths" in err and "'64,x'" in err
