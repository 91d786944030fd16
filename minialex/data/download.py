"""Downloading data files on demand: mirrors, sha256 verification, a cache folder, clear errors.

Files are fetched with :func:`pooch.retrieve` (a progress bar when tqdm is installed) into the cache folder

    ``data_dir`` argument (the CLI's ``--data-dir``)  >  ``$MINIALEX_DATA``  >  ``pooch.os_cache("minialex")``

A file already in the cache with the published sha256 is used without touching the network. Otherwise the
mirrors are tried in order; a download whose hash differs is deleted and tried once more, and a second
mismatch raises :class:`~minialex.errors.ChecksumError` naming the file, the expected and the actual hash.
Network failures become a :class:`~minialex.errors.DataError` naming the URL and how to work offline.

Nothing hangs. An HTTP(S) download connects within :data:`CONNECT_TIMEOUT_S`, waits at most
:data:`READ_TIMEOUT_S` for each piece of data (a server that accepts and never answers), and the file takes at
most :data:`TOTAL_TIMEOUT_S` in all, over every mirror and retry (a server that drips a byte at a time); the
connect and read limits make a mirror fail, named in the error, and the next one is tried; the total limit ends
the download. A cache entry that is not a regular file (a FIFO,
a device, a link to ``/dev/zero``), which reading would block on or never finish, is refused by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minialex.errors import ChecksumError, DataError, MinialexError

ENV_VAR = "MINIALEX_DATA"
CONNECT_TIMEOUT_S = 15.0
"""Seconds to open the connection to a mirror."""
READ_TIMEOUT_S = 30.0
"""Seconds to wait for the next piece of data."""
TOTAL_TIMEOUT_S = 900.0
"""Seconds one file may take in all, every mirror and retry included (CIFAR-10's 163 MB in that time: 1.5 Mbit/s)."""


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name in the cache, its sha256 and the URLs it can be fetched from, in order."""

    name: str
    sha256: str
    urls: tuple[str, ...]


def cache_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding downloaded files: ``data_dir`` > ``$MINIALEX_DATA`` > ``pooch.os_cache("minialex")``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("minialex"))


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _progressbar() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


_POOCH_MISMATCH = re.compile(r"expected\s+(?:sha256:)?([0-9a-fA-F]+)\s+but got\s+([0-9a-fA-F]+)")


class DownloadTimeout(OSError):
    """A mirror was too slow: no connection, no data for too long, or too long in all."""


def http_download(url: str, output_file: str | Any, _pooch: Any = None, deadline: float | None = None) -> None:
    """Fetch ``url`` into ``output_file`` (a path or a binary file) within the time limits; pooch's downloader protocol.

    Each read returns what has arrived (``read1``), so that the total limit is checked however slowly the data
    comes. ``deadline`` is a :func:`time.monotonic` time to be done by (default: :data:`TOTAL_TIMEOUT_S` from
    now). Raises :class:`DownloadTimeout` or the network's own errors (``urllib.error.URLError``, ``OSError``).
    """
    import urllib.request

    deadline = time.monotonic() + TOTAL_TIMEOUT_S if deadline is None else deadline
    request = urllib.request.Request(url, headers={"User-Agent": "minialex"})
    try:
        response = urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise DownloadTimeout(f"no answer within {CONNECT_TIMEOUT_S:g} s") from exc
    handle = open(output_file, "wb") if isinstance(output_file, str | os.PathLike) else output_file
    try:
        with response:
            with contextlib.suppress(AttributeError, OSError):
                response.fp.raw._sock.settimeout(READ_TIMEOUT_S)  # the connection's limit becomes the read limit
            while True:
                if time.monotonic() > deadline:
                    raise DownloadTimeout(f"not complete after {TOTAL_TIMEOUT_S:g} s (too slow)")
                try:
                    chunk = response.read1(1 << 16)
                except TimeoutError as exc:
                    raise DownloadTimeout(f"no data for {READ_TIMEOUT_S:g} s") from exc
                if not chunk:
                    return
                handle.write(chunk)
    finally:
        if handle is not output_file:
            handle.close()


def _download(url: str, remote: RemoteFile, folder: Path, deadline: float | None = None) -> None:
    """One pooch download of ``url`` into ``folder/remote.name``; pooch checks the hash before moving it in."""
    import functools

    import pooch

    downloader = functools.partial(http_download, deadline=deadline) if url.startswith("http") else None
    pooch.retrieve(url, known_hash=f"sha256:{remote.sha256}", fname=remote.name, path=folder, downloader=downloader)


def _check_regular(target: Path) -> None:
    """DataError if the cache entry exists and is not a regular file (reading it would block or never end)."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        if os.path.islink(target):
            raise DataError(f"{target}: a broken symbolic link in the data cache; remove it") from None
        return
    except OSError as exc:
        raise DataError(f"{target}: cannot be examined ({exc.strerror}); remove it") from exc
    if stat.S_ISDIR(mode):
        raise DataError(f"{target}: is a directory, expected the data file {target.name}; remove it")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special"
        )
        link = f" (a link to {os.path.realpath(target)})" if os.path.islink(target) else ""
        raise DataError(f"{target}: not a regular file but {kind}{link}; remove it, then download again")


def fetch(remote: RemoteFile, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the local path of ``remote``, downloading it into the cache if needed.

    Parameters
    ----------
    remote : RemoteFile
    data_dir : path-like, optional
        Cache folder (see :func:`cache_dir`).
    download : bool
        When False, only a file already in the cache is accepted.

    Raises
    ------
    ChecksumError
        Every mirror served a file with the wrong sha256 twice (the bad files are deleted).
    DataError
        No network, HTTP errors, a folder in the file's place, or ``download=False`` and no cached file.
    """
    folder = cache_dir(data_dir)
    target = folder / remote.name
    _check_regular(target)
    if target.is_file():
        actual = sha256_of(target)
        if actual == remote.sha256:
            return target
        target.unlink()  # a stale or half-written file: never trust it
        if not download:
            raise ChecksumError(
                f"{target}: sha256 expected {remote.sha256}, got {actual}; the bad file was deleted, download it again"
            )
    if not download:
        raise DataError(f"{target}: not found and downloads are disabled; place the file there or allow downloads")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the data folder ({exc}); pass another --data-dir") from exc

    failures: list[str] = []
    mismatch: ChecksumError | None = None
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    for url in remote.urls:
        for attempt in (1, 2):  # a hash mismatch is retried once
            if time.monotonic() > deadline:
                break
            try:
                _download(url, remote, folder, deadline)
            except MinialexError:
                raise
            except ValueError as exc:
                match = _POOCH_MISMATCH.search(str(exc))
                if match is None:
                    failures.append(f"{url}: {exc}")
                    break
                if target.exists():
                    target.unlink()
                mismatch = ChecksumError(
                    f"{remote.name} from {url}: sha256 expected {remote.sha256}, got {match.group(2)} "
                    f"(twice; the bad download was deleted)"
                )
                if attempt == 2:
                    failures.append(f"{url}: wrong sha256 {match.group(2)}")
                continue
            except Exception as exc:  # requests' ConnectionError/HTTPError/Timeout, OSError from the disk
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                break
            if target.is_file():
                return target
            failures.append(f"{url}: pooch reported success but {target} is missing")
            break
    if mismatch is not None and all("wrong sha256" in f for f in failures):
        raise mismatch
    raise DataError(
        f"could not download {remote.name} ({'; '.join(failures)}). No network? Use the embedded data set "
        f"(--dataset mnist5k), or place {remote.name} (sha256 {remote.sha256}) in {folder}"
    )
