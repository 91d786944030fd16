"""The AlexNet variants: parameter counts, shapes, summaries, initialisation, gradients, torchvision weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minialex
from minialex import backend
from minialex.errors import CheckpointError, ConfigError, LayerInputError
from minialex.gradcheck import check_model
from minialex.layers import Conv2d, Linear, SoftmaxCrossEntropy
from minialex.models import VARIANTS, alexnet, layer_table, load_torchvision_safetensors, variant_defaults

# Reference numbers (computed by hand, cross-checked against Caffe's, torchvision's and torchinfo's tables).
PARAMS = {"paper": 60_965_224, "d2l": 46_764_746, "torchvision": 61_100_840}
MACS = {"paper": 724_406_816, "d2l": 938_146_176, "torchvision": 714_188_480}
PAPER_PER_LAYER = {  # name: (params, MACs), Caffe grouped model at 227 input
    "conv1": (34_944, 105_415_200),
    "conv2": (307_456, 223_948_800),
    "conv3": (885_120, 149_520_384),
    "conv4": (663_936, 112_140_288),
    "conv5": (442_624, 74_760_192),
    "fc6": (37_752_832, 37_748_736),
    "fc7": (16_781_312, 16_777_216),
    "fc8": (4_097_000, 4_096_000),
}
SHAPES = {  # output of every conv and pool layer, then the flattened size
    "paper": ["96×55×55", "96×27×27", "256×27×27", "256×13×13", "384×13×13", "384×13×13", "256×13×13", "256×6×6"],
    "d2l": ["96×54×54", "96×26×26", "256×26×26", "256×12×12", "384×12×12", "384×12×12", "256×12×12", "256×5×5"],
    "torchvision": ["64×55×55", "64×27×27", "192×27×27", "192×13×13", "384×13×13", "256×13×13", "256×13×13", "256×6×6"],
}
FLAT = {"paper": 9216, "d2l": 6400, "torchvision": 9216}


@pytest.fixture(scope="module")
def big_models():
    """The three large variants, built once (about 1.5 s each); the paper one with the paper's init."""
    minialex.seed(0)
    return {
        "paper": alexnet("paper", init="paper"),
        "d2l": alexnet("d2l"),
        "torchvision": alexnet("torchvision"),
    }


def _shape_str(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


@pytest.mark.parametrize("variant", ["paper", "d2l", "torchvision"])
def test_parameter_counts_and_macs(big_models, variant):
    model = big_models[variant]
    assert model.num_params() == PARAMS[variant]
    rows = layer_table(model, model.input_shape)
    assert sum(r.params for r in rows) == PARAMS[variant]
    assert sum(r.macs for r in rows) == MACS[variant]
    assert all(r.flops == 2 * r.macs for r in rows)
    text = model.summary()
    assert f"{PARAMS[variant]:,}" in text and f"{MACS[variant]:,}" in text and f"{2 * MACS[variant]:,}" in text
    assert "2 FLOPs" in text  # the convention is stated


def test_paper_per_layer_params_and_macs(big_models):
    rows = {r.name: r for r in layer_table(big_models["paper"], (3, 227, 227))}
    for name, (params, macs) in PAPER_PER_LAYER.items():
        assert (rows[name].params, rows[name].macs) == (params, macs), name


@pytest.mark.parametrize("variant", ["paper", "d2l", "torchvision"])
def test_published_output_shapes(big_models, variant):
    rows = layer_table(big_models[variant], big_models[variant].input_shape)
    spatial = [_shape_str(r.output_shape) for r in rows if r.kind in ("Conv2d", "MaxPool2d")]
    assert spatial == SHAPES[variant]
    assert [r.output_shape for r in rows if r.name == "flatten"] == [(FLAT[variant],)]
    assert rows[-1].output_shape == (big_models[variant].num_classes,)


@pytest.mark.parametrize("variant", VARIANTS)
def test_summary_shapes_are_the_real_shapes(big_models, variant):
    """The analytic table agrees with an actual forward, layer by layer (batch 1, float32)."""
    model = big_models.get(variant) or alexnet(variant)
    model.eval()
    x = backend.asarray(np.random.default_rng(0).standard_normal((1, *model.input_shape)).astype(np.float32))
    rows = layer_table(model, model.input_shape)
    for row, (name, layer) in zip(rows, model.named_layers(), strict=True):
        x = layer.forward(x)
        assert row.name == name and tuple(x.shape) == (1, *row.output_shape), name
    assert x.dtype == np.float32 and np.isfinite(backend.to_numpy(x)).all()
    model.train()


def test_paper_forward_batch_1(big_models):
    model = big_models["paper"].eval()
    x = backend.asarray(np.random.default_rng(1).standard_normal((1, 3, 227, 227)).astype(np.float32))
    logits = backend.to_numpy(model.forward(x))
    model.train()
    assert logits.shape == (1, 1000) and logits.dtype == np.float32 and np.isfinite(logits).all()


def test_layer_names_and_order():
    names = [name for name, _ in alexnet("mini").named_layers()]
    assert names[:4] == ["conv1", "relu1", "norm1", "pool1"] and names[-1] == "fc5"
    assert "drop4" in names


def test_dropout_placement(big_models):
    """Paper, Caffe and d2l drop after each hidden ReLU; torchvision drops the inputs of fc6 and fc7."""
    tail = {v: [n for n, _ in big_models[v].named_layers()][-8:] for v in big_models}
    assert tail["paper"] == ["flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    assert tail["d2l"] == tail["paper"]
    assert tail["torchvision"] == ["flatten", "drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]


def test_paper_groups_and_lrn(big_models):
    layers = dict(big_models["paper"].named_layers())
    assert [layers[f"conv{i}"].groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    for name in ("norm1", "norm2"):
        lrn = layers[name]
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert layers["pool1"].kernel_size == (3, 3) and layers["pool1"].stride == (2, 2)


def _std_bound(n: int) -> float:
    """Five standard errors of a sample std's relative deviation (≈ 1/√(2n)): a false alarm is ~1e-6 likely."""
    return 5.0 / math.sqrt(2 * n)


def _weights(layer) -> np.ndarray:
    """The layer's weights as float64, at most the first 10⁶ of them (enough for a 0.5 % bound on the std)."""
    return backend.to_numpy(layer.params["weight"]).reshape(-1)[: 10**6].astype(np.float64)


def test_paper_initialisation(big_models):
    layers = dict(big_models["paper"].named_layers())
    for name, layer in layers.items():
        if not isinstance(layer, (Conv2d, Linear)):
            continue
        w = _weights(layer)
        assert abs(w.std() / 0.01 - 1) < _std_bound(w.size), name
        assert abs(w.mean()) < 5 * 0.01 / math.sqrt(w.size), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert np.all(backend.to_numpy(layer.params["bias"]) == expected_bias), name


@pytest.mark.parametrize("variant", ["torchvision", "mini"])
def test_he_initialisation(big_models, variant):
    model = big_models.get(variant) or alexnet(variant)
    weighted = [(name, layer) for name, layer in model.named_layers() if isinstance(layer, (Conv2d, Linear))]
    for name, layer in weighted:
        shape = layer.params["weight"].shape
        fan_in = math.prod(shape[1:])
        w = _weights(layer)
        # He for every hidden layer; the output layer small (0.01) so that the initial loss is ≈ ln(classes).
        expected_std = 0.01 if name == weighted[-1][0] else math.sqrt(2 / fan_in)
        assert abs(w.std() / expected_std - 1) < _std_bound(w.size), name
        assert np.all(backend.to_numpy(layer.params["bias"]) == 0), name


def test_he_initial_loss_is_near_ln_classes():
    """The sanity check the trainer prints: an untrained net gives every class about the same probability."""
    from minialex.layers import SoftmaxCrossEntropy

    minialex.seed(0)
    model = alexnet("mini").eval()
    x = backend.asarray(np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32))
    labels = np.arange(64) % 10
    loss = float(SoftmaxCrossEntropy().forward(model.forward(x), labels))
    assert abs(loss - math.log(10)) < 0.05 * math.log(10), loss


def test_seed_reproduces_a_model():
    minialex.seed(7)
    a = alexnet("mini").state_dict()
    minialex.seed(7)
    b = alexnet("mini").state_dict()
    minialex.seed(8)
    c = alexnet("mini").state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_mini_shapes_and_counts():
    digits, cifar = alexnet("mini"), alexnet("mini", in_channels=3)
    assert digits.input_shape == (1, 28, 28) and cifar.input_shape == (3, 32, 32)

    def count(c, flat):  # conv1 32@5×5, conv2 64@3×3 groups 2, conv3 96@3×3, fc4 flat→256, fc5 256→10
        return (c * 25 * 32 + 32) + (16 * 9 * 64 + 64) + (64 * 9 * 96 + 96) + (flat * 256 + 256) + (256 * 10 + 10)

    assert digits.num_params() == count(1, 96 * 2 * 2)
    assert cifar.num_params() == count(3, 96 * 3 * 3)
    for model in (digits, cifar):
        x = backend.asarray(np.zeros((2, *model.input_shape), np.float32))
        assert model.forward(x).shape == (2, 10)
    assert alexnet("mini", num_classes=3).forward(backend.asarray(np.zeros((1, 1, 28, 28), np.float32))).shape == (1, 3)


def test_mini_gradcheck_float64():
    """The whole (shrunken) mini network, every layer type, against central differences in float64."""
    minialex.seed(3)
    model = alexnet("mini", widths=(4, 4, 4, 6), image_size=15, num_classes=3, dtype=np.float64)
    assert model.num_params() < 400
    x = backend.asarray(np.random.default_rng(0).standard_normal((2, 1, 15, 15)))
    labels = backend.asarray(np.array([0, 2]))
    errors = check_model(model, SoftmaxCrossEntropy(), x, labels, h=1e-6, seed=11)
    assert set(errors) == {"x", *model.params}
    assert max(errors.values()) < 1e-6, errors


def test_dtype_float64_end_to_end():
    model = alexnet("mini", dtype=np.float64)
    assert all(v.dtype == np.float64 for v in model.params.values())
    y = model.forward(backend.asarray(np.zeros((1, 1, 28, 28))))
    assert y.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "vgg"}, "model variant must be one of mini, paper, d2l, torchvision, keras-cifar10, got 'vgg'"),
        ({"variant": "mini", "init": "xavier"}, "init must be one of"),
        ({"variant": "mini", "num_classes": 0}, "num_classes must be an integer >= 1, got 0"),
        ({"variant": "mini", "in_channels": 2.5}, "in_channels must be an integer >= 1, got 2.5"),
        ({"variant": "mini", "dtype": np.float16}, "float32 or float64"),
        ({"variant": "mini", "image_size": 8}, "too small"),
        ({"variant": "torchvision", "image_size": 227}, "needs 224"),
        ({"variant": "paper", "widths": (1, 2, 3, 4)}, "mini"),
    ],
)
def test_bad_configurations(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        alexnet(**kwargs)


def test_wrong_input_shape_names_the_expected_one():
    model = alexnet("mini")
    with pytest.raises(LayerInputError, match=r"expected images of shape \(N, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        model.forward(backend.asarray(np.zeros((2, 1, 32, 32), np.float32)))


def test_variant_defaults():
    assert variant_defaults("paper")["input_shape"] == (3, 227, 227)
    assert variant_defaults("d2l")["input_shape"] == (1, 224, 224)
    assert variant_defaults("mini", in_channels=3)["input_shape"] == (3, 32, 32)
    config = alexnet("mini", num_classes=5).config
    rebuilt = alexnet(**config)
    assert rebuilt.config == config and rebuilt.num_params() == alexnet("mini", num_classes=5).num_params()


# -- torchvision weights --------------------------------------------------------------------------------------


def _torch_alexnet(torch):
    """torchvision's AlexNet layout written out in plain torch (the same module indices, no torchvision)."""
    nn = torch.nn

    class TorchvisionAlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, 1000),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return TorchvisionAlexNet()


def test_torchvision_weights_give_the_same_logits(tmp_path, big_models):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    reference = _torch_alexnet(torch).eval()
    path = tmp_path / "alexnet.safetensors"
    safetensors_torch.save_file(reference.state_dict(), str(path))  # float32, as torchvision's are

    model = big_models["torchvision"].astype(np.float64).eval()
    try:
        load_torchvision_safetensors(model, path)
        x = np.random.default_rng(2).standard_normal((2, 3, 224, 224))
        ours = backend.to_numpy(model.forward(backend.asarray(x)))
        with torch.no_grad():
            theirs = reference.double()(torch.from_numpy(x)).numpy()
    finally:
        model.astype(np.float32).train()
    assert ours.dtype == np.float64
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-10


def test_torchvision_mismatches_are_listed(tmp_path, big_models):
    from safetensors.numpy import save_file

    model = big_models["torchvision"]
    before = model.state_dict()
    state = {tv: np.zeros(1, np.float32) for tv in ("features.0.weight", "features.3.bias", "classifier.9.weight")}
    state["features.0.weight"] = np.zeros((64, 3, 11, 11), np.float32)
    state["classifier.6.bias"] = np.zeros(10, np.float32)  # 10 classes, the model has 1000
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_torchvision_safetensors(model, path)
    message = str(info.value)
    assert str(path) in message
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing was copied
    assert "missing tensors: features.0.bias" in message and "classifier.1.weight" in message
    assert "unexpected tensors: classifier.9.weight" in message
    assert "features.3.bias [conv2.bias]: model has (192,), file has (1,)" in message
    assert "classifier.6.bias [fc8.bias]: model has (1000,), file has (10,)" in message


def test_torchvision_unreadable_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{junk")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_torchvision_safetensors(alexnet("mini"), path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_torchvision_safetensors(alexnet("mini"), tmp_path / "absent.safetensors")


# -- how the models are built: declared variants, each weight drawn once, shapes without running ------------------------


@pytest.mark.parametrize("variant", ["mini", "paper"])
def test_each_weight_is_drawn_exactly_once(variant, monkeypatch):
    """Building a model draws as many normals as it has weights: no layer draws and is then drawn again."""
    drawn = []
    normal = backend.normal

    def counting_normal(shape, *args, **kwargs):
        drawn.append(math.prod(shape))
        return normal(shape, *args, **kwargs)

    monkeypatch.setattr(backend, "normal", counting_normal)
    model = alexnet(variant, init="paper")
    weights = [v for k, v in model.params.items() if k.endswith(".weight")]
    assert sum(drawn) == sum(int(w.size) for w in weights)
    assert len(drawn) == len(weights)


def test_building_runs_no_layer(monkeypatch):
    """The flattened size comes from ``output_shape``, not from a forward pass."""
    from minialex.layers import Layer, Sequential

    def no_forward(self, x):
        raise AssertionError(f"{self.name}.forward ran while the model was built")

    monkeypatch.setattr(Layer, "forward", no_forward)
    monkeypatch.setattr(Sequential, "forward", no_forward)
    for name in ("MaxPool2d", "Conv2d", "ReLU", "LocalResponseNorm"):
        monkeypatch.setattr(getattr(minialex.layers, name), "forward", no_forward)
    assert alexnet("mini", in_channels=3).num_params() > 0
    assert alexnet("d2l", image_size=227).params["fc6.weight"].shape == (4096, 256 * 6 * 6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_models_report_their_output_shape_and_macs(big_models, variant):
    model = big_models.get(variant) or alexnet(variant)
    assert model.output_shape((8, *model.input_shape)) == (8, model.num_classes)
    macs = sum(r.macs for r in layer_table(model, model.input_shape))
    assert model.macs((1, *model.input_shape)) == macs
    if variant in MACS:
        assert macs == MACS[variant]
    expected = r"AlexNet '[\w-]+': expected images of shape \(N, \d, \d+, \d+\), got \(1, 7,"
    with pytest.raises(LayerInputError, match=expected):
        model.output_shape((1, 7, *model.input_shape[1:]))
    with pytest.raises(LayerInputError, match="a shape must be a tuple of non-negative ints"):
        model.output_shape((1, "3", 4, 4))
    first = model["conv1"]  # one layer alone has the same protocol as the model
    assert layer_table(first, model.input_shape)[0].macs == first.macs((1, *model.input_shape))


def test_the_summary_folds_over_any_layer_with_the_shape_protocol():
    """No list of known layer types: a new layer that reports its shape and MACs appears in the table."""
    from minialex.layers import Layer, Sequential

    class Doubling(Layer):
        def output_shape(self, input_shape):
            n, c, h, w = self._check_shape(input_shape, 4, "(N, C, H, W)")
            return n, 2 * c, h, w

        def macs(self, input_shape):
            return math.prod(self.output_shape(input_shape))

    model = Sequential(("conv", Conv2d(1, 2, 3)), ("twice", Doubling()))
    rows = layer_table(model, (1, 5, 5))
    assert [(r.name, r.kind, r.output_shape, r.macs) for r in rows] == [
        ("conv", "Conv2d", (2, 3, 3), 9 * 2 * 9),
        ("twice", "Doubling", (4, 3, 3), 36),
    ]


def test_every_lrn_uses_the_paper_constants_once_declared():
    from minialex.layers import PAPER_LRN, LocalResponseNorm

    assert tuple(PAPER_LRN) == (5, 1e-4, 0.75, 2.0)
    for variant in ("mini", "paper"):
        norms = [layer for _, layer in alexnet(variant).named_layers() if isinstance(layer, LocalResponseNorm)]
        assert len(norms) == 2
        assert all((n.size, n.alpha, n.beta, n.k) == tuple(PAPER_LRN) for n in norms)
    default = LocalResponseNorm()
    assert (default.size, default.alpha, default.beta, default.k) == tuple(PAPER_LRN)


def test_mini_paper_initialisation_uses_its_declared_one_biases():
    model = alexnet("mini", init="paper")
    for name, layer in model.named_layers():
        if isinstance(layer, (Conv2d, Linear)):
            expected_bias = 1.0 if name in ("conv2", "fc4") else 0.0
            assert np.all(backend.to_numpy(layer.params["bias"]) == expected_bias), name
            w = _weights(layer)
            assert abs(w.std() / 0.01 - 1) < _std_bound(w.size), name


def test_a_new_variant_is_one_declaration(monkeypatch):
    from minialex.models import REGISTRY, ConvStage, Variant

    tiny = Variant(
        "tiny",
        in_channels=2,
        image_size=12,
        num_classes=4,
        stages=(ConvStage(4, 3, padding=1, norm="lrn", pool=(2, 2)), ConvStage(6, 3, groups=2)),
        hidden=(5,),
        dropout_first=True,
        paper_one_biases=("fc3",),
    )
    monkeypatch.setitem(REGISTRY, "tiny", tiny)
    model = alexnet("tiny", init="paper")
    assert [name for name, _ in model.named_layers()] == [
        "conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "flatten", "drop3", "fc3", "relu3", "fc4",
    ]
    assert model.output_shape((3, 2, 12, 12)) == (3, 4)
    assert model["fc3"].params["weight"].shape == (5, 6 * 4 * 4)
    assert float(model["fc3"].params["bias"][0]) == 1.0 and float(model["conv2"].params["bias"][0]) == 0.0
    assert alexnet(**model.config).config == model.config


@pytest.mark.parametrize(
    ("widths", "match"),
    [
        ((4, 4), r"widths for 'mini' must be 3 \(conv1, conv2, conv3\) or 4 positive integers \(conv1, .*, fc4\)"),
        ((4, 5, 4, 6), "the conv2 width must be divisible by its groups=2, got 5"),
        ((4, 4, 0, 6), "the conv3 width must be an integer >= 1, got 0"),
        ((4, 4, 4.0, 6), "the conv3 width must be an integer >= 1, got 4.0"),
        ("4446", "or 4 positive integers"),
    ],
)
def test_bad_widths(widths, match):
    with pytest.raises(ConfigError, match=match):
        alexnet("mini", widths=widths)


def test_signal_ratio_shows_the_flat_start_of_the_paper_initialisation():
    """With the paper's N(0, 0.01²) and 1-biases the logits hardly depend on the image; with He's they do."""
    from minialex.models import signal_ratio

    minialex.seed(0)
    paper = signal_ratio(alexnet("mini", init="paper"), batch=4)
    minialex.seed(0)
    he = signal_ratio(alexnet("mini", init="he"), batch=4)
    assert paper < 1e-3 < 1e-2 < he, (paper, he)


def test_layers_take_their_initial_scale_from_the_builder():
    minialex.seed(0)
    conv = Conv2d(8, 64, 5, weight_std=0.05, bias_value=0.25)
    w = backend.to_numpy(conv.params["weight"]).astype(np.float64).ravel()
    assert abs(w.std() / 0.05 - 1) < _std_bound(w.size)
    assert np.all(backend.to_numpy(conv.params["bias"]) == 0.25)
    he = backend.to_numpy(Linear(400, 300).params["weight"]).astype(np.float64).ravel()
    assert abs(he.std() / math.sqrt(2 / 400) - 1) < _std_bound(he.size)
    assert np.all(backend.to_numpy(Linear(3, 2, weight_std=0.0).params["weight"]) == 0)
    with pytest.raises(LayerInputError, match="Conv2d: weight_std must be a finite number >= 0, got -1"):
        Conv2d(1, 1, 1, weight_std=-1)
    with pytest.raises(LayerInputError, match=r"Linear: bias_value=1\.0 was given but bias=False"):
        Linear(2, 2, bias=False, bias_value=1.0)
    with pytest.raises(LayerInputError, match="Linear: dtype must be float32 or float64, got int32"):
        Linear(2, 2, dtype=np.int32)
