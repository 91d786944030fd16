"""Downloading data files on demand: mirrors, sha256 verification, a cache folder, clear errors.

Files are fetched with :func:`pooch.retrieve` (a progress bar when tqdm is installed) into the cache folder

    ``data_dir`` argument (the CLI's ``--data-dir``)  >  ``$MINIALEX_DATA``  >  ``pooch.os_cache("minialex")``

A file already in the cache with the published sha256 is used without touching the network. Otherwise the
mirrors are tried in order; a download whose hash differs is deleted and tried once more, and a second
mismatch raises :class:`~minialex.errors.ChecksumError` naming the file, the expected and the actual hash.
Network failures become a :class:`~minialex.errors.DataError` naming the URL and how to work offline.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from minialex.errors import ChecksumError, DataError, MinialexError

ENV_VAR = "MINIALEX_DATA"
TIMEOUT_S = 60


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


def _download(url: str, remote: RemoteFile, folder: Path) -> None:
    """One pooch download of ``url`` into ``folder/remote.name``; pooch checks the hash before moving it in."""
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=_progressbar(), timeout=TIMEOUT_S) if url.startswith("http") else None
    pooch.retrieve(url, known_hash=f"sha256:{remote.sha256}", fname=remote.name, path=folder, downloader=downloader)


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
    if target.is_dir():
        raise DataError(f"{target}: is a directory, expected the data file {remote.name}; remove it")
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
    for url in remote.urls:
        for attempt in (1, 2):  # a hash mismatch is retried once
            try:
                _download(url, remote, folder)
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
