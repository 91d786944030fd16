"""``minialex convert``: torchvision AlexNet weights (a PyTorch ``.pth`` read with ``weights_only=True``, or
safetensors) into a checkpoint that ``predict`` and ``evaluate`` read, with the class names and torchvision's
preprocessing; compared with PyTorch on the same weights and the same photograph.

The torchvision model is written out from ``torch.nn`` layers (the same module indices as torchvision's; no
torchvision needed) and randomly initialised, with 5 classes to keep the files small (fc8 is then 4096×5).
"""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
from photos import generated_folder, needs_photos, photo

from minialex import backend
from minialex.cli import main
from minialex.data.photo import decode
from minialex.errors import CheckpointError, ConfigError, DataError
from minialex.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_NAMES,
    imagenet_classes,
    read_torchvision_weights,
)
from minialex.training.convert import convert_torchvision
from minialex.training.evaluation import load_trained

CLASSES = 5
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread(one_blas_thread_per_xdist_worker):
    """These tests run AlexNet forward passes: see ``one_blas_thread_per_xdist_worker`` in conftest.py."""


def torchvision_alexnet(torch, classes: int = CLASSES):
    """torchvision's ``AlexNet`` (features / avgpool / classifier, the same indices) from plain torch.nn layers."""
    nn = torch.nn

    class AlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )  # fmt: skip
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, classes),
            )  # fmt: skip

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, torch):
    """(torch model in eval mode, its .pth file saved by torch.save, a --classes file with WordNet ids)."""
    torch.manual_seed(0)
    model = torchvision_alexnet(torch).eval()
    folder = tmp_path_factory.mktemp("weights")
    weights = folder / "alexnet-random.pth"
    torch.save(model.state_dict(), weights)
    classes = folder / "synsets.txt"
    classes.write_text("".join(f"{w} {n}, other names\n" for w, n in zip(WNIDS, NAMES, strict=True)))
    return model, weights, classes


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    _, weights, classes = reference
    out = tmp_path_factory.mktemp("converted") / "alexnet.safetensors"
    assert main(["convert", str(weights), "-o", str(out), "--classes", str(classes)]) == 0
    return out


def torchvision_preprocess(path) -> np.ndarray:
    """torchvision's ImageNet evaluation transform written with PIL and NumPy: Resize(256), CenterCrop(224),
    ToTensor, Normalize; float64 (3, 224, 224)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    image = image.resize(size, Image.Resampling.BILINEAR)
    top, left = round((size[1] - 224) / 2.0), round((size[0] - 224) / 2.0)  # Python's round: half to even
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255.0
    return ((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


@needs_photos
@pytest.mark.parametrize("name", ["rocket.jpg", "chelsea.png", "motorcycle_left.png"])
def test_the_converted_model_gives_torchs_logits_on_a_photo(converted, reference, torch, name):
    model, *_ = reference
    trained = load_trained(converted)
    image = decode(photo(name), 256, rule="torchvision")[None]
    ours = backend.to_numpy(trained.model.forward(trained.pipeline.eval(image))).astype(np.float64)
    x = torch.from_numpy(torchvision_preprocess(photo(name))[None].astype(np.float32))
    with torch.no_grad():
        theirs = model(x).double().numpy()
    assert ours.shape == theirs.shape == (1, CLASSES)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-4  # float32 on both sides


@needs_photos
def test_predict_applies_torchvisions_preprocessing_exactly(converted):
    trained = load_trained(converted)
    for name in ("rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"):
        image = decode(photo(name), 256, rule="torchvision")[None]
        x = backend.to_numpy(trained.pipeline.eval(image))[0].astype(np.float64)
        np.testing.assert_allclose(x, torchvision_preprocess(photo(name)), rtol=0, atol=1e-6)  # float32 rounding


@needs_photos
def test_predict_prints_the_class_names(converted, reference, torch, capsys):
    model, *_ = reference
    assert main(["predict", str(converted), str(photo("coffee.png"))]) == 0
    out = capsys.readouterr().out
    x = torch.from_numpy(torchvision_preprocess(photo("coffee.png"))[None].astype(np.float32))
    with torch.no_grad():
        p = torch.softmax(model(x).double(), dim=1).numpy()[0]
    best = int(np.argmax(p))
    assert f"1. {NAMES[best]}" in out and f"{100 * p[best]:.2f}%" in out
    assert out.count("%") == CLASSES


def test_the_checkpoint_records_the_classes_and_the_preprocessing(converted, reference):
    trained = load_trained(converted)
    info = trained.info
    assert trained.classes == NAMES and info.folders == WNIDS
    assert info.image_rule == "torchvision" and info.image_shape == [3, 256, 256] and not info.mean_image
    assert info.mean == list(IMAGENET_MEAN) and info.std == list(IMAGENET_STD)
    assert trained.pipeline.mode == "crop" and trained.pipeline.input_shape == (3, 224, 224)
    source = trained.saved.converted_from
    assert source["file"] == reference[1].name and len(source["sha256"]) == 64 and "PyTorch" in source["format"]


def test_a_converted_checkpoint_is_not_resumable_and_evaluate_needs_a_dataset(converted, capsys):
    assert main(["train", "--resume", str(converted)]) == 2
    assert "holds no training run to resume" in capsys.readouterr().err
    assert main(["evaluate", str(converted)]) == 2
    assert "give one with --dataset FOLDER" in capsys.readouterr().err


def test_evaluate_on_a_folder_of_some_of_its_classes(converted, tmp_path, capsys):
    root = generated_folder(tmp_path / "subset", {WNIDS[3]: 3, WNIDS[1]: 3}, size=(120, 160))
    generated_folder(root, {WNIDS[3]: 2, WNIDS[1]: 2}, size=(120, 160), split="val")
    assert main(["evaluate", str(converted), "--dataset", str(root), "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 4 and 0.0 <= result["test_error"] <= 1.0 and result["test_top5_error"] == 0.0
    root2 = generated_folder(tmp_path / "other", {"n09999999": 2}, size=(120, 160))
    assert main(["evaluate", str(converted), "--dataset", str(root2)]) == 2
    assert "classes n09999999 are not among the model's 5 classes" in capsys.readouterr().err


def test_safetensors_weights_convert_to_the_same_weights(reference, tmp_path, torch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model, _, classes = reference
    weights = tmp_path / "alexnet.safetensors"
    # Saved as torch.nn.DataParallel names them: module.features.0.weight, ...
    safetensors_torch.save_file({f"module.{k}": v for k, v in model.state_dict().items()}, str(weights))
    out = convert_torchvision(weights, tmp_path / "out.safetensors", classes_file=classes)
    ours, theirs = load_trained(out).model.state_dict(), model.state_dict()
    assert set(ours) == set(TORCHVISION_NAMES.values())
    for tv_name, name in TORCHVISION_NAMES.items():
        np.testing.assert_array_equal(ours[name], theirs[tv_name].numpy())


# -- what is refused, each before anything is written ------------------------------------------------------------


class Payload:
    """A pickle that would run code when loaded: torch.load(weights_only=True) must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path, torch):
    marker, weights = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"features.0.weight": Payload(marker)}, weights)
    with pytest.raises(CheckpointError, match=r"torch.load\(weights_only=True\) accepts"):
        read_torchvision_weights(weights)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": Payload(marker)}))
    with pytest.raises(CheckpointError):
        read_torchvision_weights(plain)
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_a_whole_pickled_model_is_refused(tmp_path, torch):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_torchvision_weights(path)


def test_without_pytorch_a_pth_file_is_one_clear_error(reference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ConfigError, match=r"needs PyTorch, for this step only \(pip install torch\)"):
        read_torchvision_weights(reference[1])


def test_class_names_from_torchvision_else_a_file_else_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ConfigError, match=r"install torchvision .* or give --classes FILE with 1000 lines"):
        imagenet_classes(1000)
    fake = types.ModuleType("torchvision.models")
    weights = types.SimpleNamespace(IMAGENET1K_V1=types.SimpleNamespace(meta={"categories": NAMES}))
    fake.AlexNet_Weights = weights
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.models", fake)
    assert imagenet_classes(CLASSES) == (NAMES, None, "torchvision AlexNet_Weights.IMAGENET1K_V1.meta['categories']")
    with pytest.raises(ConfigError, match="the weights have 1000 classes, torchvision's ImageNet list 5"):
        imagenet_classes(1000)
    plain = tmp_path / "names.txt"
    plain.write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n\n")
    assert imagenet_classes(CLASSES, plain)[:2] == ([f"class {i}" for i in range(CLASSES)], None)  # the file wins


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a\nb\n", "2 class names, but the weights have 5 classes"),
        ("a\n\nb\nc\nd\ne\n", "line 2 is empty"),
        ("".join(f"n0144076{i % 2} x\n" for i in range(5)), "the WordNet id n01440760 appears twice"),
    ],
)
def test_a_bad_classes_file_is_refused(tmp_path, text, fragment):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment):
        imagenet_classes(CLASSES, path)
    with pytest.raises(DataError, match="cannot be read as UTF-8"):
        imagenet_classes(CLASSES, tmp_path / "absent.txt")


def test_damaged_or_foreign_weights_are_refused_before_writing(reference, tmp_path, torch):
    model, _, classes = reference
    state = model.state_dict()
    out = tmp_path / "out.safetensors"
    broken = dict(state, **{"classifier.1.bias": torch.full((4096,), float("nan"))})
    torch.save(broken, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match=r"classifier\.1\.bias holds NaN or infinite values"):
        convert_torchvision(tmp_path / "nan.pth", out, classes_file=classes)
    torch.save({"fc.weight": torch.zeros(5, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"no classifier\.6\.weight"):
        convert_torchvision(tmp_path / "other.pth", out, classes_file=classes)
    wrong = dict(state, **{"features.3.weight": torch.zeros(192, 64, 3, 3)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"features.3.weight \[conv2.weight\]: model has \(192, 64, 5, 5\)"):
        convert_torchvision(tmp_path / "wrong.pth", out, classes_file=classes)
    assert not out.exists()


def test_the_output_is_never_clobbered(reference, converted, capsys):
    _, weights, classes = reference
    assert main(["convert", str(weights), "-o", str(converted), "--classes", str(classes)]) == 2
    assert "exists; remove it, choose another with -o, or give --force" in capsys.readouterr().err
    assert main(["convert", str(weights), "-o", str(weights), "--classes", str(classes), "--force"]) == 2
    assert "is the weights file itself" in capsys.readouterr().err
