"""The image-folder layout: classes, files, splits (fixed, stratified hold-outs) and every structural error."""

from __future__ import annotations

import os

import numpy as np
import pytest
from photos import generated_folder

from minialex.data.folder import SPLITS, fingerprint, plan_splits, scan
from minialex.errors import DataError

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symbolic links")


def _touch(path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _labels(entries) -> np.ndarray:
    return np.array([e.label for e in entries])


def test_classes_are_the_sorted_folder_names_and_files_are_sorted(tmp_path):
    for cls in ("zebra", "ant", "Moth"):
        for name in ("b.jpg", "a.JPEG", "c.png"):
            _touch(tmp_path / "train" / cls / name)
    listing = scan(tmp_path)
    assert listing.classes == ["Moth", "ant", "zebra"]  # sorted as strings, like torchvision's ImageFolder
    paths = [e.path for e in listing.files["train"]]
    assert paths[:3] == ["train/Moth/a.JPEG", "train/Moth/b.jpg", "train/Moth/c.png"]
    np.testing.assert_array_equal(_labels(listing.files["train"]), np.repeat([0, 1, 2], 3))
    assert all(e.size == 1 and e.mtime_ns > 0 for e in listing.files["train"])


def test_three_folders_are_the_three_splits(tmp_path):
    for split in SPLITS:
        for cls in ("a", "b"):
            _touch(tmp_path / split / cls / f"{split}.jpg")
    plan = plan_splits(scan(tmp_path))
    for split in SPLITS:
        assert [e.path for e in plan.files[split]] == [f"{split}/a/{split}.jpg", f"{split}/b/{split}.jpg"]
        assert plan.origin[split] == f"{split}/"


def test_train_and_val_make_val_the_test_split_and_hold_out_a_tenth_of_train(tmp_path):
    generated_folder(tmp_path, {"a": 30, "b": 20, "c": 7}, size=(8, 8))
    generated_folder(tmp_path, {"a": 2, "b": 2, "c": 2}, size=(8, 8), split="val")
    listing = scan(tmp_path)
    plan = plan_splits(listing)
    assert [e.path for e in plan.files["test"]] == [e.path for e in listing.files["val"]]
    assert plan.origin["test"] == "val/" and plan.origin["val"].startswith("10% of train/")
    np.testing.assert_array_equal(np.bincount(_labels(plan.files["val"])), [3, 2, 1])  # round(n/10), at least 1
    train, val = {e.path for e in plan.files["train"]}, {e.path for e in plan.files["val"]}
    assert not train & val and train | val == {e.path for e in listing.files["train"]}
    assert plan_splits(scan(tmp_path)) == plan  # a pure function of the listing


def test_train_only_holds_out_validation_and_test(tmp_path):
    generated_folder(tmp_path, {"a": 40, "b": 20}, size=(8, 8))
    plan = plan_splits(scan(tmp_path))
    counts = {s: np.bincount(_labels(plan.files[s]), minlength=2).tolist() for s in SPLITS}
    assert counts == {"train": [32, 16], "val": [4, 2], "test": [4, 2]}
    sets = [{e.path for e in plan.files[s]} for s in SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_train_and_test_hold_out_validation(tmp_path):
    generated_folder(tmp_path, {"a": 10, "b": 10}, size=(8, 8))
    generated_folder(tmp_path, {"a": 1, "b": 1}, size=(8, 8), split="test")
    plan = plan_splits(scan(tmp_path))
    assert plan.origin["test"] == "test/" and len(plan.files["val"]) == 2 and len(plan.files["train"]) == 18


def test_missing_train_folder(tmp_path):
    _touch(tmp_path / "cats" / "a.jpg")
    with pytest.raises(DataError, match=r"expected a train/ folder with one sub-folder of images per class"):
        scan(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        scan(tmp_path / "nowhere")


def test_no_class_folders(tmp_path):
    _touch(tmp_path / "train" / "a.jpg")
    with pytest.raises(DataError, match="no class folders"):
        scan(tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    _touch(tmp_path / "train" / "cat" / "a.jpg")
    (tmp_path / "train" / "dog").mkdir()
    _touch(tmp_path / "train" / "dog" / "readme.txt")
    with pytest.raises(DataError, match=r"train/dog: empty class folder"):
        scan(tmp_path)


def test_classes_that_differ_between_splits_are_named(tmp_path):
    for cls in ("cat", "dog", "eel"):
        _touch(tmp_path / "train" / cls / "a.jpg")
    for cls in ("cat", "dog", "fox"):
        _touch(tmp_path / "val" / cls / "a.jpg")
    with pytest.raises(
        DataError, match=r"val/ and train/ must have the same class folders; missing in val/: eel; not in train/: fox"
    ):
        scan(tmp_path)


def test_hidden_entries_other_extensions_and_stray_files(tmp_path):
    _touch(tmp_path / "train" / "cat" / "a.jpg")
    _touch(tmp_path / "train" / "cat" / ".DS_Store")
    _touch(tmp_path / "train" / "cat" / "._a.jpg")  # a macOS resource fork: not an image, and hidden
    _touch(tmp_path / "train" / "cat" / "notes.txt")
    _touch(tmp_path / "train" / ".hidden-class" / "b.jpg")
    _touch(tmp_path / "train" / "stray.jpg")
    _touch(tmp_path / ".minialex-cache" / "x.jpg")
    listing = scan(tmp_path)
    assert listing.classes == ["cat"] and [e.path for e in listing.files["train"]] == ["train/cat/a.jpg"]
    assert sorted(listing.ignored) == ["train/cat/notes.txt", "train/stray.jpg"]
    assert listing.problems == []


def test_sub_folders_are_read_recursively(tmp_path):
    _touch(tmp_path / "train" / "cat" / "2019" / "summer" / "a.jpg")
    _touch(tmp_path / "train" / "cat" / "b.jpg")
    assert [e.path for e in scan(tmp_path).files["train"]] == ["train/cat/2019/summer/a.jpg", "train/cat/b.jpg"]


@needs_symlinks
def test_symbolic_links_loops_and_broken_links(tmp_path):
    outside = tmp_path / "elsewhere"
    _touch(outside / "linked.jpg")
    _touch(tmp_path / "train" / "cat" / "a.jpg")
    cat = tmp_path / "train" / "cat"
    (cat / "loop").symlink_to(cat, target_is_directory=True)  # a folder link back to its own parent
    (cat / "up").symlink_to(tmp_path / "train", target_is_directory=True)  # the parent of the class folder
    (cat / "self.jpg").symlink_to(cat / "self.jpg")  # a link to itself
    (cat / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (cat / "ext").symlink_to(outside, target_is_directory=True)  # a link to images elsewhere: followed
    listing = scan(tmp_path)
    paths = [e.path for e in listing.files["train"]]
    assert paths == ["train/cat/a.jpg", "train/cat/ext/linked.jpg"]
    problems = {p.file: p.kind for p in listing.problems}
    assert problems["train/cat/loop"] == "folder already included"
    assert problems["train/cat/self.jpg"] == "symbolic link loop"
    assert problems["train/cat/gone.jpg"] == "broken symbolic link"
    assert problems["train/cat/up/cat"] == "folder already included"  # reached through the link to train/


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_like_an_image_is_a_problem_not_a_hang(tmp_path):
    _touch(tmp_path / "train" / "cat" / "a.jpg")
    os.mkfifo(tmp_path / "train" / "cat" / "pipe.jpg")
    listing = scan(tmp_path)
    assert [(p.file, p.kind) for p in listing.problems] == [("train/cat/pipe.jpg", "not a regular file")]


def test_fingerprint_follows_every_change(tmp_path):
    generated_folder(tmp_path, {"a": 3, "b": 3}, size=(8, 8))
    settings = {"size": 256}

    def current() -> str:
        listing = scan(tmp_path)
        return fingerprint(listing, plan_splits(listing), settings)

    first = current()
    assert current() == first
    path = tmp_path / "train" / "a" / "0000.jpg"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = current()
    assert touched != first
    path.rename(path.with_name("renamed.jpg"))
    renamed = current()
    assert renamed not in (first, touched)
    _touch(tmp_path / "train" / "b" / "new.jpg")
    assert current() not in (first, touched, renamed)
    listing = scan(tmp_path)
    assert fingerprint(listing, plan_splits(listing), {"size": 224}) != current()
