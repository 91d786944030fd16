"""IDX and CIFAR-10 binary parsers on small files written in the exact official formats, and every bad file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from minialex.data import cifar, idx
from minialex.errors import DataError


def idx_images(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def write(path, data: bytes, gz: bool):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# ----------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(1)
    images, labels = idx_images(7, rng), rng.integers(0, 10, size=7).astype(np.uint8)
    ipath = write(tmp_path / "train-images-idx3-ubyte.gz", idx.encode_idx(images), gz)
    lpath = write(tmp_path / "train-labels-idx1-ubyte.gz", idx.encode_idx(labels), gz)
    x, y = idx.read_idx_pair(ipath, lpath, expected_count=7)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.uint8 and x.flags.writeable
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, labels)


def test_idx_header_layout_is_the_official_one():
    data = idx.encode_idx(np.zeros((3, 28, 28), np.uint8))
    assert data[:4] == bytes.fromhex("00000803")  # 2051
    assert data[4:16] == (3).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(data) == 16 + 3 * 784
    assert idx.encode_idx(np.zeros(5, np.uint8))[:8] == bytes.fromhex("00000801") + (5).to_bytes(4, "big")


def _valid_images() -> bytes:
    return idx.encode_idx(idx_images(3, np.random.default_rng(0)))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:-1], "truncated"),
        (lambda d: d[:10], "truncated IDX header"),
        (lambda d: d + b"\0", "trailing bytes"),
        (lambda d: b"\x00\x00\x08\x01" + d[4:], r"expected magic 0x00000803 \(2051\), got 0x00000801"),
        (lambda d: b"\x01" + d[1:], "expected magic"),
        (lambda d: d[:2], "expected magic"),
        (lambda d: d[:4] + (4).to_bytes(4, "big") + d[8:], "truncated"),
        (lambda d: idx.encode_idx(np.zeros((3, 27, 28), np.uint8)), r"image size: expected \(28, 28\), got \(27, 28\)"),
    ],
)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_bad_image_files_name_the_file(tmp_path, mutate, message, gz):
    path = write(tmp_path / "bad-images-idx3-ubyte", mutate(_valid_images()), gz)
    with pytest.raises(DataError, match=message) as info:
        idx.read_idx_images(path)
    assert str(path) in str(info.value)


def test_idx_wrong_type_byte_and_dims(tmp_path):
    data = bytearray(idx.encode_idx(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="0x08"):
        idx.parse_idx(bytes(data[:2] + b"\x0d" + data[3:]), "f")
    with pytest.raises(DataError, match="number of dimensions"):
        idx.parse_idx(bytes(data[:3] + b"\x00"), "f")


def test_idx_record_counts(tmp_path):
    rng = np.random.default_rng(2)
    ipath = write(tmp_path / "i.gz", idx.encode_idx(idx_images(4, rng)), True)
    lpath = write(tmp_path / "l.gz", idx.encode_idx(np.arange(5, dtype=np.uint8)), True)
    with pytest.raises(DataError, match=r"number of images: expected 60000, got 4"):
        idx.read_idx_images(ipath, expected_count=60000)
    with pytest.raises(DataError, match=r"holds 4 images but .*l\.gz holds 5 labels"):
        idx.read_idx_pair(ipath, lpath)


def test_idx_label_range(tmp_path):
    path = write(tmp_path / "labels", idx.encode_idx(np.array([0, 10], np.uint8)), False)
    with pytest.raises(DataError, match=r"\[0, 10\), found 10"):
        idx.read_idx_labels(path)


@pytest.mark.parametrize("case", ["empty", "directory", "missing", "broken-gzip", "truncated-gzip"])
def test_unreadable_files_name_the_file(tmp_path, case):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    elif case == "broken-gzip":
        path.write_bytes(b"\x1f\x8b" + b"not a gzip stream at all")
    elif case == "truncated-gzip":
        path.write_bytes(gzip.compress(_valid_images())[:200])
    with pytest.raises(DataError) as info:
        idx.read_idx_images(path)
    assert str(path) in str(info.value)
    for reader in (idx.read_idx_labels, cifar.read_cifar_batch):
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
            reader(path)


# ------------------------------------------------------------------------------------------------- CIFAR


def cifar_records(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n)


def test_cifar_record_layout(tmp_path):
    images, labels = cifar_records(2, np.random.default_rng(3))
    data = cifar.encode_cifar_batch(images, labels)
    assert len(data) == 2 * 3073
    # <label><1024 R><1024 G><1024 B>, each channel row-major: byte 1 is red (0, 0), byte 33 is red (1, 0).
    assert data[0] == labels[0] and data[1] == images[0, 0, 0, 0] and data[33] == images[0, 0, 1, 0]
    assert data[1 + 1024] == images[0, 1, 0, 0] and data[3073] == labels[1]
    x, y = cifar.read_cifar_batch(write(tmp_path / "data_batch_1.bin", data, False), expected_records=2)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert x.dtype == np.uint8 and y.dtype == np.int64


def test_cifar_official_file_size_is_the_record_count():
    assert cifar.RECORD_BYTES * cifar.RECORDS_PER_BATCH == 30_730_000


@pytest.mark.parametrize(
    "mutate, expected, message",
    [
        (lambda d: d[:-1], 3, "not a whole number"),
        (lambda d: d + b"\0", 3, "not a whole number"),
        (lambda d: d, 10_000, "expected 10000, got 3"),
        (lambda d: b"\x0a" + d[1:], 3, r"\[0, 10\), found 10"),
    ],
)
def test_cifar_bad_batches(tmp_path, mutate, expected, message):
    images, labels = cifar_records(3, np.random.default_rng(4))
    path = write(tmp_path / "data_batch_2.bin", mutate(cifar.encode_cifar_batch(images, labels)), False)
    with pytest.raises(DataError, match=message) as info:
        cifar.read_cifar_batch(path, expected)
    assert str(path) in str(info.value)


def test_cifar_meta(tmp_path):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    path = tmp_path / "batches.meta.txt"
    path.write_text("\n".join(names) + "\n\n")
    assert cifar.read_cifar_meta(path) == names
    path.write_text("\n".join(names[:9]))
    with pytest.raises(DataError, match="expected 10 class names, got 9"):
        cifar.read_cifar_meta(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="non-ASCII"):
        cifar.read_cifar_meta(path)


def test_cifar_folder_missing_file(tmp_path):
    folder = tmp_path / cifar.FOLDER
    folder.mkdir()
    with pytest.raises(DataError, match=r"data_batch_1\.bin: no such file"):
        cifar.read_cifar_folder(folder, 2)
    with pytest.raises(DataError, match="expected the extracted CIFAR-10 folder"):
        cifar.read_cifar_folder(tmp_path / "nowhere", 2)
