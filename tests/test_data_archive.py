"""Safe tar extraction: regular files and folders only, nothing may land outside the destination."""

from __future__ import annotations

import io
import tarfile

import pytest

from minialex.data.archive import safe_extract
from minialex.errors import DataError


def make_tar(path, members: list[tuple[str, str, bytes | str]], mode: str = "w:gz"):
    """Write a tar archive; each member is (kind, name, payload): kind file/dir/sym/lnk/chr/fifo."""
    with tarfile.open(path, mode) as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "lnk": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("sym", "lnk"):
                info.linkname = payload
            tar.addfile(info)
    return path


def test_regular_archive_is_extracted(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [
            ("dir", "top", b""),
            ("file", "top/a.bin", b"abc"),
            ("file", "top/sub/b.txt", b"xyz"),
            ("sym", "top/l", "a.bin"),
        ],
    )
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "top" / "a.bin").read_bytes() == b"abc"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"xyz"
    assert not (dest / "top" / "l").exists()  # links inside are skipped, not followed
    assert [p.name for p in dest.iterdir()] == ["top"]  # no temporary folder left behind


@pytest.mark.parametrize(
    "member, message",
    [
        (("file", "../evil.txt", b"x"), "unsafe member"),
        (("file", "top/../../evil.txt", b"x"), "unsafe member"),
        (("file", "/tmp/evil.txt", b"x"), "unsafe member"),
        (("sym", "top/link", "../../outside"), "unsafe link"),
        (("sym", "top/link", "/etc/passwd"), "unsafe link"),
        (("lnk", "top/hard", "../outside"), "unsafe link"),
        (("lnk", "top/hard", "/etc/passwd"), "unsafe link"),
        (("chr", "top/dev", b""), "device"),
        (("fifo", "top/pipe", b""), "FIFO"),
    ],
)
def test_hostile_members_are_rejected_before_anything_is_written(tmp_path, member, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [("file", "top/a.bin", b"abc"), member])
    dest = tmp_path / "deep" / "out"
    with pytest.raises(DataError, match=message) as info:
        safe_extract(archive, dest)
    assert "bad.tar.gz" in str(info.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert list(dest.iterdir()) == []  # nothing extracted, temporary folder removed


@pytest.mark.parametrize("content", [b"", b"not a tar archive at all" * 40, b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_archives_are_rejected(tmp_path, content):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz"):
        safe_extract(archive, tmp_path / "out")


def test_truncated_archive_is_rejected(tmp_path):
    archive = make_tar(tmp_path / "t.tar.gz", [("file", "top/a.bin", bytes(range(256)) * 200)])
    archive.write_bytes(archive.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"t\.tar\.gz: corrupt"):
        safe_extract(archive, tmp_path / "out")


def test_directory_instead_of_archive(tmp_path):
    (tmp_path / "a.tar.gz").mkdir()
    with pytest.raises(DataError, match="a directory"):
        safe_extract(tmp_path / "a.tar.gz", tmp_path / "out")
