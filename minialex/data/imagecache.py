"""The decoded-image cache of an image folder: every photo decoded once, then memory-mapped for every epoch.

Decoding a JPEG costs far more than a training step can wait for, so :func:`open_cache` decodes each file
once (:func:`minialex.data.photo.decode`: 256×256 RGB) into one uint8 ``.npy`` array per split, which later
runs memory-map (``np.load(path, mmap_mode="r", allow_pickle=False)``): a 10,000-image split (1.8 GiB) is
never read into memory as a whole, only the rows a batch needs.

A cache is a folder ``v1-<fingerprint>/`` holding ``train.npy``, ``val.npy``, ``test.npy`` (N, 3, 256, 256),
``mean_image.npy`` (the training split's mean image, float64 (3, 256, 256), [0, 1] units) and
``index.json``: the classes, for every split the files (path, size, mtime) and labels row by row, the
skipped files with their reasons, and the training split's statistics (per-channel mean and std, the RGB
PCA eigen-pairs). The fingerprint hashes the listing (every file's path, label, size and modification time)
and the settings, so adding, removing or changing a file selects a new cache; the old one is deleted once
the new one is complete.

Where: ``<folder>/.minialex-cache/`` when the data set folder is writable, else
``<data cache dir>/image-folders/<folder name>-<hash of its path>/`` (:func:`minialex.data.cache_dir`).

Safety: a cache is built in a temporary folder ``.building-<pid>-<random>`` beside its final place, each
array written sequentially and fsynced, ``index.json`` written last (:mod:`minialex.atomic`), and the folder
renamed into place only when all is complete. An interrupted build (Ctrl-C, a full disk, a crash) leaves
no folder that a later run would trust; its leftovers are removed by the next build. A cache whose index or
arrays disagree with each other is rebuilt.

Speed and memory: files are decoded on a thread pool (Pillow releases the GIL) through a
:class:`~minialex.data.prefetch.Prefetcher`, so results come back in file order with a bounded number in
flight; the main thread appends each to its split's file with plain writes (no memory map), so the
process's memory stays flat however many images there are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minialex import atomic, validate
from minialex.data import photo
from minialex.data.download import cache_dir
from minialex.data.folder import SPLITS, Entry, Listing, SkippedFile, SplitPlan, fingerprint, plan_splits, scan
from minialex.data.npyfile import RowWriter, fsync_folder, save_npy
from minialex.data.prefetch import Prefetcher, default_workers
from minialex.data.stats import PixelStats
from minialex.errors import DataError, MinialexError

FORMAT = "minialex-image-cache"
VERSION = 1
CACHE_FOLDER = ".minialex-cache"

Log = Callable[[str], None]


@dataclass
class ImageCache:
    """An opened cache: memory-mapped images and labels per split, the index and the training statistics."""

    path: Path
    index: dict[str, Any]
    images: dict[str, np.ndarray]  # split -> uint8 (N, 3, S, S), memory-mapped, read-only
    labels: dict[str, np.ndarray]  # split -> int64 (N,)
    mean_image: np.ndarray  # float64 (3, S, S), [0, 1] units


# -- where ------------------------------------------------------------------------------------------------------
def locations(root: Path, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the cache of ``root`` may live, in order of preference: inside the folder, then the data cache dir."""
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name) or "root"
    return [root / CACHE_FOLDER, cache_dir(data_dir) / "image-folders" / f"{name}-{digest}"]


def _version_name(fp: str) -> str:
    return f"v{VERSION}-{fp}"


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_leftovers(base: Path, keep: str | None) -> None:
    """Delete other versions (when a new one is complete) and the temporaries of builds that died."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        building = re.match(r"^\.building-(\d+)-[0-9a-f]+$", name)
        stale = (
            building is not None and int(building.group(1)) != os.getpid() and not _pid_alive(int(building.group(1)))
        )
        old = keep is not None and name != keep and re.match(r"^v\d+-[0-9a-f]+$", name) is not None
        if stale or old:
            shutil.rmtree(base / name, ignore_errors=True)


# -- reading ----------------------------------------------------------------------------------------------------
def read_cache(path: Path, expected_fingerprint: str | None = None) -> ImageCache:
    """Open a complete cache folder, checking that its index and its arrays agree.

    Raises
    ------
    DataError
        Missing files, a foreign or older format, another fingerprint, or arrays whose shapes differ from
        the index.
    """
    try:
        index = json.loads((path / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: no readable index.json ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{path}: not a version-{VERSION} {FORMAT} index")
    if expected_fingerprint is not None and index.get("fingerprint") != expected_fingerprint:
        raise DataError(f"{path}: fingerprint {index.get('fingerprint')} differs from {expected_fingerprint}")
    size = int(index["size"])
    images, labels = {}, {}
    try:
        for split in SPLITS:
            info = index["splits"][split]
            array = np.load(path / f"{split}.npy", mmap_mode="r", allow_pickle=False)
            if array.dtype != np.uint8 or array.shape != (len(info["files"]), 3, size, size):
                raise DataError(
                    f"{path / f'{split}.npy'}: uint8 ({len(info['files'])}, 3, {size}, {size}) expected, "
                    f"got {array.dtype} {array.shape}"
                )
            images[split] = array
            labels[split] = np.asarray(info["labels"], dtype=np.int64).reshape(-1)
            if labels[split].shape != (array.shape[0],):
                raise DataError(f"{path}: {split} has {array.shape[0]} images but {labels[split].size} labels")
        mean_image = np.load(path / "mean_image.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: incomplete cache ({type(exc).__name__}: {exc})") from exc
    if mean_image.shape != (3, size, size) or mean_image.dtype != np.float64:
        raise DataError(f"{path / 'mean_image.npy'}: float64 (3, {size}, {size}) expected, got {mean_image.shape}")
    return ImageCache(path, index, images, labels, mean_image)


# -- building ---------------------------------------------------------------------------------------------------
def _decode_job(root: Path, size: int, stats: PixelStats | None) -> Callable[[Entry], tuple]:
    """The work of one file, on a worker thread: decode it, and add it to ``stats`` (exact, so in any order)."""

    def job(entry: Entry) -> tuple[Entry, np.ndarray | None, SkippedFile | None]:
        try:
            image = photo.decode(root / entry.path, size)
        except photo.ImageFileError as exc:
            return entry, None, SkippedFile(entry.path, exc.kind, exc.detail)
        except MemoryError:
            return entry, None, SkippedFile(entry.path, "out of memory while decoding")
        if stats is not None:
            stats.add(image[None])
        return entry, image, None

    return job


def _entry_record(entry: Entry) -> list:
    return [entry.path, entry.size, entry.mtime_ns]


def _build(base: Path, fp: str, listing: Listing, plan: SplitPlan, size: int, workers: int, log: Log) -> Path:
    """Decode every planned file into a new cache folder under ``base``; return the final folder."""
    temp = base / f".building-{os.getpid()}-{os.urandom(4).hex()}"
    temp.mkdir()
    started = time.perf_counter()
    stats = PixelStats(3, (3, size, size))
    skipped: list[SkippedFile] = list(listing.problems)
    splits: dict[str, dict[str, list]] = {}
    total = sum(len(plan.files[s]) for s in SPLITS)
    done, next_report = 0, max(1, total // 10)
    try:
        for split in SPLITS:
            writer = RowWriter(temp / f"{split}.npy", (3, size, size))
            kept: dict[str, list] = {"files": [], "labels": []}
            try:
                decode = _decode_job(listing.root, size, stats if split == "train" else None)
                jobs = Prefetcher(decode, plan.files[split], ahead=4 * workers, workers=workers)
                with jobs:
                    for entry, image, reason in jobs:
                        done += 1
                        if image is None:
                            skipped.append(reason)
                        else:
                            writer.append(image)
                            kept["files"].append(_entry_record(entry))
                            kept["labels"].append(entry.label)
                        if done >= next_report:
                            rate = done / max(time.perf_counter() - started, 1e-9)
                            log(f"image cache: decoded {done:,} / {total:,} files ({rate:,.0f} files/s)")
                            next_report += max(1, total // 10)
                writer.finish()
            except BaseException:
                writer.abort()
                raise
            splits[split] = kept
        _check_usable(listing, plan, splits, skipped)
        mean_image = stats.mean_image()
        atomic.write_atomic(temp / "mean_image.npy", lambda path: save_npy(path, mean_image), "image cache mean image")
        mean, std = stats.channel_mean_std()
        eigvals, eigvecs = stats.pca()
        index = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": fp,
            "root": os.fspath(listing.root),
            "size": size,
            "classes": listing.classes,
            "splits": {s: {**splits[s], "origin": plan.origin[s]} for s in SPLITS},
            "skipped": [list(s) for s in skipped],
            "ignored": listing.ignored,
            "stats": {
                "images": stats.count,
                "mean": list(mean),
                "std": list(std),
                "pca_eigvals": eigvals.tolist(),
                "pca_eigvecs": eigvecs.tolist(),
            },
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        text = json.dumps(index, separators=(",", ":")) + "\n"  # compact: ImageNet lists 1.3 M files
        atomic.write_text(temp / "index.json", text, "image cache index")
        final = base / _version_name(fp)
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / "index.json").is_file():  # not another process's complete cache: a real failure
                raise
            shutil.rmtree(temp, ignore_errors=True)  # another process finished the same cache first
        fsync_folder(base)  # the rename itself survives a power cut
        return final
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _check_usable(
    listing: Listing, plan: SplitPlan, splits: dict[str, dict[str, list]], skipped: list[SkippedFile]
) -> None:
    """A data set with no readable training image of some class (or none at all) is an error."""
    if not splits["train"]["labels"]:
        reasons = "; ".join(f"{s.file}: {s.kind}" for s in skipped[:3])
        raise DataError(
            f"{listing.root}: none of the {len(plan.files['train'])} training images could be decoded ({reasons})"
        )
    present = np.bincount(np.asarray(splits["train"]["labels"]), minlength=len(listing.classes))
    empty = [listing.classes[c] for c in np.flatnonzero(present == 0)]
    if empty:
        raise DataError(
            f"{listing.root}: no decodable training image in class{'es' if len(empty) > 1 else ''} {', '.join(empty)}"
            " (see the skipped files)"
        )


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def open_cache(
    root: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    log: Log | None = None,
    size: int = photo.SIZE,
) -> ImageCache:
    """The cache of an image folder, built (or rebuilt, after a change in the folder) when needed.

    Parameters
    ----------
    root : path-like
        The image folder (train/<class>/..., optional val/, test/).
    data_dir : path-like, optional
        The data cache dir for folders that are not writable (see :func:`locations`).
    workers : int, optional
        Decoding threads (default: the CPUs available).
    log : callable str -> None, optional
        Receives progress lines while a cache is built (nothing is printed otherwise).
    size : int
        Side of the cached images (256, the paper's).

    Returns
    -------
    ImageCache

    Raises
    ------
    DataError
        A folder that breaks the layout (:func:`minialex.data.folder.scan`), no readable training image of
        some class, no writable place for the cache, or not enough disk space.
    """
    workers = validate.integer(workers, "image cache: workers", low=1, allow_none=True)
    size = validate.integer(size, "image cache: size", low=1)
    log = log or (lambda message: None)
    listing = scan(root)
    plan = plan_splits(listing)
    fp = fingerprint(listing, plan, {"version": VERSION, "size": size})
    candidates = locations(listing.root, data_dir)
    for base in candidates:
        folder = base / _version_name(fp)
        if (folder / "index.json").is_file():
            try:
                return read_cache(folder, fp)
            except DataError as exc:
                log(f"image cache: rebuilding {folder} ({exc})")
                shutil.rmtree(folder, ignore_errors=True)
    needed = sum(len(plan.files[s]) for s in SPLITS) * 3 * size * size + (1 << 20)
    failures = []
    for base in candidates:
        try:
            base.mkdir(parents=True, exist_ok=True)
            free = _free_bytes(base)
            if free is not None and free < needed:
                failures.append(f"{base}: {needed / 2**30:.2f} GiB needed, {free / 2**30:.2f} GiB free")
                continue
            _remove_leftovers(base, keep=None)
            log(f"image cache: decoding {listing.root} into {base} (once; later runs read the cache)")
            final = _build(base, fp, listing, plan, size, workers or default_workers(), log)
        except MinialexError:
            raise
        except OSError as exc:
            failures.append(f"{base}: {exc.strerror or exc}")
            continue
        _remove_leftovers(base, keep=final.name)
        return read_cache(final, fp)
    raise DataError(f"{listing.root}: cannot write an image cache anywhere ({'; '.join(failures)})")
