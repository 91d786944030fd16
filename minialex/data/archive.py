"""Safe extraction of tar archives: no path traversal, no links pointing outside, no device files.

A downloaded archive is untrusted input. Before anything is written, every member is checked:

* its name is relative and has no ``..`` component (so it lands inside the destination);
* a symbolic or hard link must point inside the destination (links are then *not* extracted: minialex only
  needs regular files and folders);
* character/block devices and FIFOs are refused.

Then only regular files and folders are extracted, with ``filter="data"`` as a second line of defence where
the running Python has it (3.11.4+, 3.12+). Any violation or a corrupt archive raises :class:`DataError`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from minialex.errors import DataError


def _inside(name: str) -> bool:
    """Whether a member path, taken relative to the destination, stays inside it."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    parts = name.replace("\\", "/").split("/")
    return ".." not in parts


def check_members(tar: tarfile.TarFile, source: str) -> list[tarfile.TarInfo]:
    """Validate every member of an open archive; return the regular files and folders to extract."""
    keep = []
    for member in tar.getmembers():
        name = member.name
        if not _inside(name):
            raise DataError(f"{source}: unsafe member {name!r}: absolute path or '..' would escape the destination")
        if member.issym() or member.islnk():
            target = member.linkname
            # A symlink resolves relative to its folder; a hard link's target is relative to the archive root.
            resolved = posixpath.join(posixpath.dirname(name), target) if member.issym() else target
            if target.startswith("/") or not _inside(posixpath.normpath(resolved)):
                raise DataError(f"{source}: unsafe link {name!r} -> {target!r} points outside the destination")
            continue  # links inside are harmless but not needed: skip them
        if member.isdev() or member.isfifo():
            raise DataError(f"{source}: refusing device or FIFO member {name!r}")
        if member.isfile() or member.isdir():
            keep.append(member)
    return keep


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract a (possibly gzipped) tar archive into ``destination`` after checking every member.

    The archive is extracted into a temporary folder beside ``destination`` and its top-level entries are
    then moved into place, so an interrupted extraction never leaves a half-written folder that looks done.

    Parameters
    ----------
    archive : path-like
    destination : path-like
        Created if missing.

    Returns
    -------
    Path
        ``destination``.
    """
    archive, destination = Path(archive), Path(destination)
    source = os.fspath(archive)
    if not archive.is_file():
        raise DataError(f"{source}: expected a tar archive, found {'a directory' if archive.is_dir() else 'nothing'}")
    try:
        destination.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination))
    except OSError as exc:
        raise DataError(f"{destination}: cannot create the extraction folder ({exc}); pass another --data-dir") from exc
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = check_members(tar, source)
                for member in members:
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(member, tmp, set_attrs=False, filter="data")
                    else:  # pragma: no cover - Python < 3.11.4; our own checks above already ran
                        tar.extract(member, tmp, set_attrs=False)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{source}: corrupt or unreadable tar archive ({type(exc).__name__}: {exc})") from exc
        for entry in tmp.iterdir():
            final = destination / entry.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            entry.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return destination
