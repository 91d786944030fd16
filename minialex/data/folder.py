"""An image folder in the ImageNet layout: finding its files, its classes, and which split each file goes to.

The layout (that of ImageNet, Imagenette, torchvision's ``ImageFolder`` and Keras's
``image_dataset_from_directory``)::

    root/train/<class>/**/*.jpg|jpeg|png     required
    root/val/<class>/...                      optional
    root/test/<class>/...                     optional

Class names are the folder names of ``train/``, sorted; label = index in that list. Every split must have
exactly the same class folders (otherwise :class:`~minialex.errors.DataError` names the difference), and no
class folder may be empty. Files are found recursively (symbolic links followed, each real folder visited
once, so a link loop cannot recurse forever), sorted by (class, path). Names starting with "." are not part
of the data set (``.DS_Store``, macOS ``._*`` files, minialex's own ``.minialex-cache``).

What is found but cannot be used is never dropped silently: files with another extension are counted as
*ignored*, entries that cannot be used at all (a broken link, a link loop, a FIFO, an unreadable folder) as
*problems*; both lists are kept and summarised.

The three splits of the :class:`~minialex.data.Dataset` (train fits, validation decides, test reports):

=====================  ========================  =================================  ==================
folders present        train                     validation (decisions)             test (reported)
=====================  ========================  =================================  ==================
train, val, test       train/                    val/                               test/
train, val             train/ minus 1/10         1/10 of train/, stratified         val/
train, test            train/ minus 1/10         1/10 of train/, stratified         test/
train                  train/ minus 2/10         1/10 of train/, stratified         1/10 of train/
=====================  ========================  =================================  ==================

With train/ and val/ only (Imagenette, ImageNet), val/ is the split results are reported on, so it becomes
the test split and the decisions are taken on a held-out tenth of train/: a figure chosen on the data it is
reported on would be optimistic. The hold-outs are :func:`~minialex.data.splits.stratified_holdout` of the
file labels (seed :data:`~minialex.data.splits.VALIDATION_SEED`; the test hold-out seed
:data:`TEST_SEED`), so they depend only on the listing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minialex.data.photo import EXTENSIONS
from minialex.data.splits import VALIDATION_FRACTION, VALIDATION_SEED, stratified_holdout
from minialex.errors import DataError

SPLITS = ("train", "val", "test")
TEST_SEED = 2012
"""Seed of the test hold-out when the folder has no test/ and no val/."""


@dataclass(frozen=True)
class Entry:
    """One image file: its path relative to the root (``/``-separated), label, size and modification time."""

    path: str
    label: int
    size: int
    mtime_ns: int


class SkippedFile(NamedTuple):
    """A file (or folder) found in the image folder but not used: its path relative to the root, why in a few
    words (``kind``, e.g. "truncated or corrupt image", "broken symbolic link"), and the details."""

    file: str
    kind: str
    detail: str = ""


@dataclass
class Listing:
    """What :func:`scan` found: classes, the image files of each split folder, and what it could not use."""

    root: Path
    classes: list[str]
    files: dict[str, list[Entry]]  # split folder ("train", "val", "test") -> files, sorted by (label, path)
    ignored: list[str] = field(default_factory=list)  # relative paths: other extensions, files outside classes
    problems: list[SkippedFile] = field(default_factory=list)  # entries that cannot be used at all


def _walk_class(root: Path, folder: Path, label: int, listing: Listing, seen: set[tuple[int, int]]) -> list[Entry]:
    """Every image file under ``folder`` (recursively, links followed, each real folder once)."""
    found: list[Entry] = []
    info = folder.stat()
    seen.add((info.st_dev, info.st_ino))
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            listing.problems.append(
                SkippedFile(_rel(root, current), "folder cannot be listed", exc.strerror or str(exc))
            )
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            rel = _rel(root, path)
            try:
                info = entry.stat()  # follows symbolic links
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    why = "symbolic link loop"
                elif entry.is_symlink():
                    why = "broken symbolic link"
                else:
                    why = "cannot be read"
                listing.problems.append(SkippedFile(rel, why, exc.strerror or str(exc)))
                continue
            if entry.is_dir():
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    listing.problems.append(
                        SkippedFile(rel, "folder already included", "a symbolic link loop, or a second link to it")
                    )
                else:
                    seen.add(key)
                    stack.append(path)
            elif not entry.is_file():
                listing.problems.append(SkippedFile(rel, "not a regular file"))
            elif path.suffix.lower() in EXTENSIONS:
                found.append(Entry(rel, label, int(info.st_size), int(info.st_mtime_ns)))
            else:
                listing.ignored.append(rel)
    return sorted(found, key=lambda e: e.path)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _class_folders(split_dir: Path) -> list[Path]:
    try:
        with os.scandir(split_dir) as it:
            return sorted((Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir()), key=lambda p: p.name)
    except OSError as exc:
        raise DataError(f"{split_dir}: cannot be listed ({exc.strerror or exc})") from exc


def scan(root: str | os.PathLike) -> Listing:
    """List an image folder (see the module docstring) and check its structure.

    Raises
    ------
    DataError
        No ``train/``, no class folders, a class folder without images, or splits whose classes differ.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if not (root / "train").is_dir():
        raise DataError(
            f"{root}: expected a train/ folder with one sub-folder of images per class (train/<class>/*.jpg), "
            "optionally val/ and test/ alike"
        )
    present = [s for s in SPLITS if (root / s).is_dir()]
    per_split = {s: _class_folders(root / s) for s in present}
    classes = [p.name for p in per_split["train"]]
    if not classes:
        raise DataError(f"{root / 'train'}: no class folders; expected train/<class>/*.jpg")
    for split in present[1:]:
        names = [p.name for p in per_split[split]]
        if names != classes:
            missing = sorted(set(classes) - set(names))
            extra = sorted(set(names) - set(classes))
            parts = [f"missing in {split}/: {', '.join(missing)}"] if missing else []
            parts += [f"not in train/: {', '.join(extra)}"] if extra else []
            raise DataError(f"{root}: {split}/ and train/ must have the same class folders; {'; '.join(parts)}")
    listing = Listing(root, classes, {})
    for split in present:
        seen: set[tuple[int, int]] = set()
        files: list[Entry] = []
        for label, folder in enumerate(per_split[split]):
            entries = _walk_class(root, folder, label, listing, seen)
            if not entries:
                raise DataError(f"{folder}: empty class folder: no {'/'.join(EXTENSIONS)} files in it")
            files += entries
        listing.files[split] = files
        for entry in os.scandir(root / split):
            if not entry.name.startswith(".") and not entry.is_dir():
                listing.ignored.append(_rel(root, Path(entry.path)))  # a file outside every class folder
    return listing


@dataclass(frozen=True)
class SplitPlan:
    """Which files make each split of the data set (see the table in the module docstring)."""

    files: dict[str, list[Entry]]  # "train", "val", "test" -> files, in cache row order
    origin: dict[str, str]  # "train" -> "train/", "val" -> "1/10 of train/ (stratified, seed 2013)", ...


def _hold_out(entries: list[Entry], fraction: float, seed: int) -> tuple[list[Entry], list[Entry]]:
    labels = np.array([e.label for e in entries], dtype=np.int64)
    kept, held = stratified_holdout(labels, fraction, seed)
    return [entries[i] for i in kept], [entries[i] for i in held]


def plan_splits(listing: Listing, fraction: float = VALIDATION_FRACTION) -> SplitPlan:
    """Assign every listed file to train, validation or test (a pure function of the listing)."""
    files = dict(listing.files)
    origin = {s: f"{s}/" for s in files}
    train = files["train"]
    share = fraction  # of the files in train/
    if "test" not in files and "val" not in files:
        train, files["test"] = _hold_out(train, fraction, TEST_SEED)
        origin["test"] = f"{fraction:.0%} of train/ (stratified, seed {TEST_SEED})"
        share = fraction / (1.0 - fraction)  # of what is left, so that both hold-outs are a tenth of train/
    elif "test" not in files:
        files["test"], origin["test"] = files.pop("val"), "val/"
    if "val" not in files:
        train, files["val"] = _hold_out(train, share, VALIDATION_SEED)
        origin["val"] = f"{fraction:.0%} of train/ (stratified, seed {VALIDATION_SEED})"
    files["train"] = train
    return SplitPlan({s: files[s] for s in SPLITS}, {s: origin[s] for s in SPLITS})


def fingerprint(listing: Listing, plan: SplitPlan, settings: dict) -> str:
    """A hash of everything the cache depends on: classes, each split's files (path, size, mtime), settings."""
    content = {
        "settings": settings,
        "classes": listing.classes,
        "splits": {s: [(e.path, e.label, e.size, e.mtime_ns) for e in plan.files[s]] for s in SPLITS},
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]
