"""The paper's input pipeline for photographs, against its definition computed plainly in float64.

Training (the paper, §2 and §4.1): subtract the training set's mean image from the 256×256 image, take a
random 227×227 (or 224×224) crop, mirror it with probability ½, add the PCA colour noise P (α ⊙ λ) with
α ~ N(0, 0.1²); minialex then divides by the per-channel std. Evaluation: the centre crop, or the ten crops
(four corners, the centre and their mirrors). The references below replay the same random draws
(offsets, then flips, then α) from the seeded generator and do every step in the obvious order on whole
float64 images.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import host
from photos import needs_photos, photo_folder

import minialex
from minialex import backend
from minialex.data import Augment, InputPipeline, load_dataset
from minialex.errors import ConfigError, DataError

SIDE = 256


def _batch(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, SIDE, SIDE), dtype=np.uint8)


def _stats(seed: int = 1):
    rng = np.random.default_rng(seed)
    mean_image = rng.uniform(0.2, 0.7, size=(3, SIDE, SIDE))
    std = (0.23, 0.22, 0.26)
    eigvals = np.array([0.05, 0.006, 0.002])
    eigvecs, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return mean_image, std, (eigvals, eigvecs)


def _pipeline(crop: int, mean_image, std, pca, augment: bool = True) -> InputPipeline:
    means = tuple(mean_image.mean(axis=(1, 2)))
    return InputPipeline(
        "my-photos", (3, SIDE, SIDE), (3, crop, crop), means, std, augment, np.float64, pca, mean_image=mean_image
    )


def _reference_train(batch, crop, mean_image, std, pca, seed):
    """The definition, step by step on whole images, with the draws replayed in the pipeline's order."""
    minialex.seed(seed)
    rng = backend.host_rng()
    n = len(batch)
    top = rng.integers(0, SIDE - crop + 1, size=n)
    left = rng.integers(0, SIDE - crop + 1, size=n)
    flips = rng.random(n) < 0.5
    alpha = host(backend.normal((n, 3), std=0.1, dtype=np.float64))
    centred = batch / 255.0 - mean_image[None]  # the paper, §2: minus the mean image, pixel by pixel
    out = np.empty((n, 3, crop, crop))
    for i in range(n):
        window = centred[i, :, top[i] : top[i] + crop, left[i] : left[i] + crop]
        out[i] = window[:, :, ::-1] if flips[i] else window
    eigvals, eigvecs = pca
    out += ((alpha * eigvals) @ eigvecs.T)[:, :, None, None]  # every pixel + P (α ⊙ λ)
    return out / np.asarray(std)[None, :, None, None], flips


@pytest.mark.parametrize("crop", [227, 224])
def test_training_batch_is_the_paper_definition(crop):
    mean_image, std, pca = _stats()
    batch = _batch()
    pipeline = _pipeline(crop, mean_image, std, pca)
    assert pipeline.mode == "crop" and pipeline.train_augment == Augment.paper(crop)
    minialex.seed(7)
    got = host(pipeline.train(batch))
    expected, flips = _reference_train(batch, crop, mean_image, std, pca, seed=7)
    assert got.shape == (5, 3, crop, crop) and got.dtype == np.float64
    assert 0 < flips.sum() < 5  # both branches are exercised
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_training_in_float32_agrees_with_float64():
    mean_image, std, pca = _stats()
    batch = _batch(3)
    crops_and_flips = Augment(crop=227, flip=True)  # the colour noise's draws differ between float32 and float64
    options = {"mean_image": mean_image, "policy": crops_and_flips}
    p64 = InputPipeline("p", (3, SIDE, SIDE), (3, 227, 227), (0.5,) * 3, std, True, np.float64, pca, **options)
    p32 = InputPipeline("p", (3, SIDE, SIDE), (3, 227, 227), (0.5,) * 3, std, True, np.float32, pca, **options)
    minialex.seed(3)
    a = host(p64.train(batch))
    minialex.seed(3)
    b = host(p32.train(batch))
    assert b.dtype == np.float32 and b.flags.c_contiguous
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_per_channel_mean_is_an_option():
    std = _stats()[1]
    batch = _batch(2)
    means = (0.41, 0.45, 0.5)
    pipeline = InputPipeline("p", (3, SIDE, SIDE), (3, 227, 227), means, std, False, np.float64)
    got = host(pipeline.eval(batch))
    expected = (batch / 255.0 - np.asarray(means)[None, :, None, None]) / np.asarray(std)[None, :, None, None]
    np.testing.assert_allclose(got, expected[:, :, 14:241, 14:241], rtol=1e-12, atol=1e-13)


def test_evaluation_is_the_centre_crop_of_the_standardised_image():
    mean_image, std, pca = _stats()
    batch = _batch(3)
    pipeline = _pipeline(227, mean_image, std, pca)
    full = (batch / 255.0 - mean_image[None]) / np.asarray(std)[None, :, None, None]
    state = backend.get_rng_state()
    np.testing.assert_allclose(host(pipeline.eval(batch)), full[:, :, 14:241, 14:241], rtol=1e-12, atol=1e-12)
    assert backend.get_rng_state() == state  # evaluation draws nothing


@pytest.mark.parametrize("crop", [227, 224])
def test_ten_crops_are_the_corners_the_centre_and_their_mirrors(crop):
    mean_image, std, pca = _stats()
    batch = _batch(2)
    pipeline = _pipeline(crop, mean_image, std, pca, augment=False)
    full = (batch / 255.0 - mean_image[None]) / np.asarray(std)[None, :, None, None]
    far, mid = SIDE - crop, (SIDE - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]
    expected = [full[:, :, r : r + crop, c : c + crop] for r, c in corners]
    expected += [v[..., ::-1] for v in expected]
    views = pipeline.ten_crops(batch)
    assert len(views) == 10
    for got, want in zip(views, expected, strict=True):
        np.testing.assert_allclose(host(got), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(views[4]), host(pipeline.eval(batch)), rtol=1e-12, atol=1e-12)


def test_small_models_get_the_photos_resized_with_the_mean_image():
    mean_image, std, pca = _stats()
    batch = _batch(2)
    pipeline = InputPipeline(
        "p", (3, SIDE, SIDE), (3, 32, 32), (0.5,) * 3, std, True, np.float64, pca, mean_image=mean_image
    )
    assert pipeline.mode == "resize" and pipeline.train_augment.flip and pipeline.train_augment.pca_std == 0.1
    from minialex.data import resize

    expected = (
        host(resize(backend.asarray(batch / 255.0 - mean_image[None]), 32)) / np.asarray(std)[None, :, None, None]
    )
    np.testing.assert_allclose(host(pipeline.eval(batch)), expected, rtol=1e-10, atol=1e-12)
    assert host(pipeline.train(batch)).shape == (2, 3, 32, 32)
    assert [v.shape for v in pipeline.ten_crops(batch)] == [(2, 3, 32, 32)] * 10


def test_images_larger_than_the_input_are_cropped_not_resized():
    # CIFAR-sized images for a 28-pixel input: the paper's crops, not a blurring resize.
    pipeline = InputPipeline(
        "cifar10", (3, 32, 32), (3, 28, 28), (0.5,) * 3, (0.25,) * 3, True, np.float32, _stats()[2]
    )
    assert pipeline.mode == "crop" and pipeline.train_augment == Augment.paper(28)


def test_bad_options_are_refused():
    mean_image, std, pca = _stats()
    with pytest.raises(ConfigError, match="PCA colour noise, which needs pca"):
        InputPipeline("p", (3, SIDE, SIDE), (3, 227, 227), (0.5,) * 3, std, True, np.float32)
    with pytest.raises(DataError, match=r"mean_image must have shape \(3, 256, 256\)"):
        InputPipeline(
            "p", (3, SIDE, SIDE), (3, 227, 227), (0.5,) * 3, std, True, np.float32, pca, mean_image=mean_image[:, :8]
        )
    with pytest.raises(ConfigError, match="augment must be True or False"):
        InputPipeline("p", (3, SIDE, SIDE), (3, 227, 227), (0.5,) * 3, std, 1, np.float32, pca)
    with pytest.raises(ConfigError, match="mean must be one of image, channel"):
        InputPipeline.for_dataset(load_dataset("mnist5k"), (1, 28, 28), mean="pixel")


# -- with a real photo folder ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return load_dataset(photo_folder(tmp_path_factory.mktemp("photos")))


@needs_photos
@pytest.mark.parametrize("size, mode", [(227, "crop"), (224, "crop"), (32, "resize")])
def test_for_dataset_builds_the_paper_pipeline_for_a_photo_folder(photos, size, mode):
    pipeline = InputPipeline.for_dataset(photos, (3, size, size))
    assert pipeline.mode == mode and pipeline.pca is photos.pca
    assert "minus the mean image" in pipeline.describe()
    batch = np.asarray(photos.train_images[:3])
    x = pipeline.train(batch)
    assert x.shape == (3, 3, size, size) and x.dtype == np.float32
    # Standardised with the training split's own statistics, its pixels are centred with unit-scale spread.
    assert abs(float(x.mean())) < 0.5 and 0.3 < float(x.std()) < 2.0
    channel = InputPipeline.for_dataset(photos, (3, size, size), mean="channel", augment=False)
    assert channel.mean_image is None and "minus the channel means" in channel.describe()


@needs_photos
def test_photos_flow_through_the_prefetcher_into_a_training_step(photos):
    # The small model (32×32 RGB input) keeps this quick; the paper-size crops are checked above.
    from minialex.data import Prefetcher
    from minialex.layers import SoftmaxCrossEntropy
    from minialex.models import alexnet
    from minialex.optim import SGD

    model = alexnet("mini", num_classes=photos.num_classes, in_channels=3)
    pipeline = InputPipeline.for_dataset(photos, model.input_shape)
    loss_fn, optimizer = SoftmaxCrossEntropy(), SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    order = backend.host_rng().permutation(len(photos.train_labels))[:4]
    with Prefetcher.gather(photos.train_images, [order[:2], order[2:]], labels=photos.train_labels) as batches:
        for images, labels in batches:
            loss = float(loss_fn.forward(model.forward(pipeline.train(images)), backend.asarray(labels)))
            model.backward(loss_fn.backward(), need_input_grad=False)
            optimizer.step()
            assert np.isfinite(loss) and loss > 0
    model.eval()
    views = pipeline.ten_crops(np.asarray(photos.test_images[:2]))
    probs = np.mean([host(model.forward(v)) for v in views], axis=0)
    assert probs.shape == (2, photos.num_classes) and np.all(np.isfinite(probs))


def test_for_dataset_on_digits_is_the_usual_pipeline():
    digits = load_dataset("mnist5k")
    pipeline = InputPipeline.for_dataset(digits, (1, 28, 28))
    direct = InputPipeline("mnist5k", (1, 28, 28), (1, 28, 28), digits.mean, digits.std, True, np.float32)
    assert pipeline.mode == "same" and pipeline.mean_image is None and pipeline.pca is None
    assert pipeline.train_augment == direct.train_augment == Augment.for_dataset("mnist5k")
    batch = digits.train_images[:8]
    minialex.seed(5)
    a = host(pipeline.train(batch))
    minialex.seed(5)
    np.testing.assert_array_equal(a, host(direct.train(batch)))
    assert len(pipeline.ten_crops(batch)) == 5  # digits are not mirrored
