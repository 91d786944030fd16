"""Atomic file writes: the one way minialex writes a file that must never be seen half-written.

A crash, a full disk or a SIGKILL in the middle of a write must never destroy the previous version of a
checkpoint, a record or a cache. So every file is written next to its target under a temporary name,
flushed to the disk (``fsync``), then renamed over the target (``os.replace``, atomic on POSIX and
Windows), and finally the directory is fsynced so that the rename itself survives a power cut. At every
moment the target holds either the old complete file or the new complete file.

The temporary is ``.<name>.tmp-<pid>-<random>`` in the target's directory. If the write fails it is
removed and :class:`~minialex.errors.WriteError` names the file and the reason; a temporary left by a
writer that was killed is removed by the next write of the same target (POSIX: once that process is gone).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from minialex.errors import MinialexError, WriteError


def _fsync(path: str, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms (Windows) cannot open a directory; the rename is still atomic there
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_pattern(target: Path) -> re.Pattern[str]:
    """The names of the temporaries of ``target``: ``.<name>.tmp-<pid>-<hex>``."""
    return re.compile(rf"^\.{re.escape(target.name)}\.tmp-(\d+)-[0-9a-f]+$")


def remove_stale_temps(target: Path) -> None:
    """Delete temporaries of ``target`` left by writers that no longer run (e.g. killed mid-write).

    POSIX only: liveness is probed with ``os.kill(pid, 0)``, which on Windows would end the process.
    """
    if os.name != "posix":
        return
    pattern = temp_pattern(target)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # that writer still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.remove(target.parent / name)
        except OSError:
            pass


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None], what: str = "file") -> Path:
    """Call ``write(temporary_path)`` to produce the file, then move it into place atomically.

    Parameters
    ----------
    path : the target; its directory must exist
    write : writes the whole content to the path it is given (e.g. ``lambda p: fig.savefig(p)``)
    what : what the file is, for the error message ("checkpoint", "record", ...)

    Raises
    ------
    WriteError
        naming the file and the reason (full disk, permissions, a directory in the way); the previous
        version of the file is then unchanged and no temporary is left. An exception of ``write`` that is
        already a minialex error passes through unchanged (after the clean-up).
    """
    target = Path(path)
    if target.is_dir():
        raise WriteError(f"cannot write {what} {target}: it is a directory")
    remove_stale_temps(target)
    temp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        write(os.fspath(temp))
        _fsync(os.fspath(temp))
        os.replace(temp, target)
        _fsync(os.fspath(target.parent) or ".", directory=True)
    except BaseException as exc:
        try:
            os.remove(temp)
        except OSError:
            pass
        if isinstance(exc, MinialexError) or not isinstance(exc, Exception):
            raise  # our own errors, and KeyboardInterrupt/SystemExit, unchanged
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            raise WriteError(
                f"cannot write {what} {target}: {reason}{hint}; the previous version of the file, if any, is "
                "unchanged"
            ) from exc
        raise WriteError(f"cannot write {what} {target}: {type(exc).__name__}: {exc}") from exc
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""

    def write(temp: str) -> None:
        with open(temp, "wb") as handle:
            handle.write(data)

    return write_atomic(path, write, what)


def write_text(path: str | os.PathLike[str], text: str, what: str = "file") -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`write_atomic`)."""
    return write_bytes(path, text.encode("utf-8"), what)
