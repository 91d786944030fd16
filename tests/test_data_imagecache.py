"""The decoded-image cache: built once from real photographs, memory-mapped, exact statistics, skipped files
counted, invalidated by any change, never trusted half-built, and placed elsewhere when the folder is read-only."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from photos import PHOTO_CLASSES, generated_folder, jpeg_bytes, needs_photos, photo_folder, png_bomb, smooth_rgb

from minialex.data import PhotoDataset, imagecache, load_dataset, photo
from minialex.data.imagecache import CACHE_FOLDER, open_cache
from minialex.data.npyfile import HEADER_BYTES, RowWriter, npy_header
from minialex.errors import DataError


def _versions(root):
    base = root / CACHE_FOLDER
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


@pytest.fixture
def photos_root(tmp_path):
    return photo_folder(tmp_path / "photos")


@needs_photos
def test_cache_holds_every_photo_decoded_once_and_memory_mapped(photos_root):
    ds = load_dataset(photos_root)
    assert isinstance(ds, PhotoDataset) and ds.classes == sorted(PHOTO_CLASSES)
    total = sum(len(v) for v in PHOTO_CLASSES.values())
    assert len(ds.test_labels) == total  # val/ is the reported split when there is no test/
    assert len(ds.train_labels) + len(ds.val_labels) == total
    assert len(ds.val_labels) == 2  # one tenth of each class, at least one
    for split in ("train", "val", "test"):
        images = getattr(ds, f"{split}_images")
        assert isinstance(images, np.memmap) and images.dtype == np.uint8 and images.shape[1:] == (3, 256, 256)
        assert not images.flags.writeable
        for row, rel in enumerate(ds.files[split]):
            np.testing.assert_array_equal(images[row], photo.decode(photos_root / rel))
            assert getattr(ds, f"{split}_labels")[row] == ds.classes.index(rel.split("/")[1])
    assert ds.skipped == () and ds.ignored == ()
    assert ds.cache.startswith(str(photos_root / CACHE_FOLDER))


@needs_photos
def test_statistics_are_those_of_the_training_split_exactly(photos_root):
    ds = load_dataset(photos_root)
    train = np.asarray(ds.train_images).astype(np.float64) / 255.0  # the held-out validation rows are excluded
    np.testing.assert_allclose(ds.mean_image, train.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ds.mean, train.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(ds.std, train.std(axis=(0, 2, 3)), rtol=1e-9)
    pixels = train.transpose(1, 0, 2, 3).reshape(3, -1)
    eigvals, eigvecs = ds.pca
    np.testing.assert_allclose(eigvecs @ np.diag(eigvals) @ eigvecs.T, np.cov(pixels, bias=True), rtol=1e-9, atol=1e-14)
    assert np.all(np.diff(eigvals) <= 0)


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = generated_folder(tmp_path / "set", {"a": 4, "b": 4})
    first = load_dataset(root)
    lines: list[str] = []

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(photo, "decode", no_decoding)
    again = load_dataset(root, log=lines.append)
    assert lines == [] and again.cache == first.cache
    np.testing.assert_array_equal(again.train_images, first.train_images)


def test_a_changed_folder_gets_a_new_cache_and_the_old_one_goes(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 4, "b": 4})
    first = load_dataset(root)
    (root / "train" / "a" / "extra.jpg").write_bytes(jpeg_bytes(smooth_rgb(50, 70, seed=99)))
    second = load_dataset(root)
    assert second.cache != first.cache and sum(len(f) for f in second.files.values()) == 9
    assert _versions(root) == [os.path.basename(second.cache)]
    path = root / "train" / "b" / "0001.jpg"
    old = photo.decode(path)
    path.write_bytes(jpeg_bytes(smooth_rgb(50, 70, seed=7)))  # same name, new content
    third = load_dataset(root)
    assert third.cache not in (first.cache, second.cache)
    (split,) = [s for s, files in third.files.items() if "train/b/0001.jpg" in files]
    row = third.files[split].index("train/b/0001.jpg")
    np.testing.assert_array_equal(getattr(third, f"{split}_images")[row], photo.decode(path))
    assert not np.array_equal(getattr(third, f"{split}_images")[row], old)


def test_bad_files_are_skipped_counted_and_listed(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 5, "b": 5})
    cut = jpeg_bytes(smooth_rgb(300, 400))
    (root / "train" / "a" / "cut.jpg").write_bytes(cut[: len(cut) // 3])
    (root / "train" / "b" / "fake.png").write_bytes(b"no image here")
    (root / "train" / "b" / "bomb.png").write_bytes(png_bomb(60_000, 60_000))
    (root / "train" / "b" / "notes.txt").write_text("not a photo")
    if hasattr(os, "symlink") and os.name != "nt":
        (root / "train" / "a" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    ds = load_dataset(root)
    kinds = {s[0]: s[1] for s in ds.skipped}
    assert kinds["train/a/cut.jpg"] == "truncated or corrupt image"
    assert kinds["train/b/fake.png"] == "not an image"
    assert kinds["train/b/bomb.png"] == "image too large"
    assert ds.ignored == ("train/b/notes.txt",)
    used = set(ds.files["train"]) | set(ds.files["val"]) | set(ds.files["test"])
    assert not used & set(kinds) and len(used) == 10
    assert (
        "skipped (" in ds.summary
        and "1 truncated or corrupt image" in ds.summary
        and "1 other file ignored" in ds.summary
    )
    assert ds.summary in ds.source
    index = json.loads((root / CACHE_FOLDER / os.path.basename(ds.cache) / "index.json").read_text())
    assert {entry[0] for entry in index["skipped"]} == set(kinds)


def test_a_data_set_of_only_bad_files_is_an_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "x.jpg").write_bytes(b"junk")
    with pytest.raises(
        DataError, match=r"none of the 2 training images could be decoded \(train/a/x\.jpg: not an image"
    ):
        load_dataset(tmp_path)
    assert _versions(tmp_path) == []  # nothing half-built remains


def test_a_class_without_any_decodable_training_image_is_an_error(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 3})
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="no decodable training image in class b"):
        load_dataset(root)


def test_an_interrupted_build_leaves_nothing_a_later_run_would_trust(tmp_path, monkeypatch):
    root = generated_folder(tmp_path / "set", {"a": 6, "b": 6})
    real, calls = photo.decode, []

    def interrupted(path, size=256):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path, size)

    monkeypatch.setattr(photo, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_cache(root, workers=2)
    assert _versions(root) == []  # neither a version folder nor the temporary build folder
    monkeypatch.setattr(photo, "decode", real)
    assert len(load_dataset(root).train_labels) > 0


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 3, "b": 3})
    stale = root / CACHE_FOLDER / ".building-999999999-0123abcd"  # a pid that does not run
    stale.mkdir(parents=True)
    (stale / "train.npy").write_bytes(b"half")
    load_dataset(root)
    assert not stale.exists() and len(_versions(root)) == 1


def test_a_damaged_cache_is_rebuilt(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 4, "b": 4})
    ds = load_dataset(root)
    train = os.path.join(ds.cache, "train.npy")
    expected = np.array(ds.train_images)
    del ds
    with open(train, "r+b") as f:
        f.truncate(HEADER_BYTES + 1000)
    lines: list[str] = []
    again = load_dataset(root, log=lines.append)
    assert any("rebuilding" in line for line in lines)
    np.testing.assert_array_equal(again.train_images, expected)


def test_an_unwritable_folder_gets_its_cache_in_the_data_dir(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 3, "b": 3})
    (root / CACHE_FOLDER).write_text("a file where the cache folder would go")  # mkdir fails, as read-only would
    data_dir = tmp_path / "data-dir"
    ds = load_dataset(root, data_dir=data_dir)
    assert ds.cache.startswith(str(data_dir / "image-folders")) and "set-" in ds.cache
    assert load_dataset(root, data_dir=data_dir).cache == ds.cache


def test_two_processes_building_at_once_agree(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 5, "b": 5})
    results, errors = [], []

    def build():
        try:
            results.append(open_cache(root, workers=1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2
    assert results[0].path == results[1].path and _versions(root) == [results[0].path.name]
    np.testing.assert_array_equal(results[0].images["train"], results[1].images["train"])


def test_npy_header_is_fixed_length_and_read_by_numpy(tmp_path):
    for shape in [(0, 3, 256, 256), (7, 3, 4, 4), (1_281_167, 3, 256, 256)]:
        assert len(npy_header(shape)) == HEADER_BYTES
    path = tmp_path / "x.npy"
    data = np.arange(7 * 3 * 4 * 4, dtype=np.uint8).reshape(7, 3, 4, 4)
    path.write_bytes(npy_header(data.shape) + data.tobytes())
    np.testing.assert_array_equal(np.load(path, mmap_mode="r", allow_pickle=False), data)


def test_unicode_and_spaces_in_names(tmp_path):
    root = tmp_path / "Fotos mit Umlauten"
    for cls in ("Käfer", "été"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(2):
            (root / "train" / cls / f"Bild {i} ✓.jpg").write_bytes(jpeg_bytes(smooth_rgb(40, 60, seed=i)))
    ds = load_dataset(root)
    assert (
        ds.classes == ["Käfer", "été"]
        and "train/été/Bild 0 ✓.jpg" in ds.files["train"] + ds.files["val"] + ds.files["test"]
    )


def test_workers_do_not_change_the_result(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 6, "b": 5})
    one = open_cache(root, workers=1)
    shutil_rm = __import__("shutil").rmtree
    shutil_rm(root / CACHE_FOLDER)
    three = open_cache(root, workers=3)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(one.images[split], three.images[split])
    assert one.index["stats"] == three.index["stats"] and one.index["splits"] == three.index["splits"]
    np.testing.assert_array_equal(one.mean_image, three.mean_image)


def test_log_reports_progress_of_a_build(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 10, "b": 10})
    lines: list[str] = []
    imagecache.open_cache(root, log=lines.append)
    assert lines[0].startswith("image cache: decoding") and lines[-1].startswith("image cache: decoded 20 / 20 files")


def test_a_tiny_folder_can_have_empty_validation_and_test_splits(tmp_path):
    root = generated_folder(tmp_path / "set", {"a": 1, "b": 1})  # one image per class: nothing to hold out
    ds = load_dataset(root)
    assert len(ds.train_labels) == 2 and ds.val_images.shape == (0, 3, 256, 256) and ds.test_images.shape[0] == 0
    assert "2 train, 0 val, 0 test" in ds.summary


def test_row_writer_refuses_rows_of_another_shape_or_dtype(tmp_path):
    writer = RowWriter(tmp_path / "rows.npy", (3, 4, 4))
    writer.append(np.ones((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"expected a C-contiguous uint8 row \(3, 4, 4\)"):
        writer.append(np.ones((3, 4, 5), np.uint8))
    with pytest.raises(DataError, match="uint8 row"):
        writer.append(np.ones((3, 4, 4), np.float32))
    writer.finish()
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy", allow_pickle=False), np.ones((1, 3, 4, 4), np.uint8))
