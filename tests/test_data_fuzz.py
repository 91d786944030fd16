"""Property tests: random bytes and random mutations of valid files never escape as anything but MinialexError.

A parser either returns arrays of the declared shape or raises one of minialex's own exceptions; an
``IndexError``, ``struct.error``, ``zlib.error``, ``MemoryError`` or ``UnicodeDecodeError`` escaping would fail.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minialex.data import cifar, embedded, idx
from minialex.data.archive import safe_extract
from minialex.errors import MinialexError

FUZZ = settings(max_examples=100)


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    images = idx.encode_idx(rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8))
    labels = idx.encode_idx(np.array([1, 2, 3], np.uint8))
    batch = cifar.encode_cifar_batch(rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8), [4, 9])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in ((f"{cifar.FOLDER}/test_batch.bin", batch), (f"{cifar.FOLDER}/{cifar.META_FILE}", b"a\nb\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {
        "images": images,
        "images.gz": gzip.compress(images),
        "labels": labels,
        "labels.gz": gzip.compress(labels),
        "cifar": batch,
        "meta": b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n",
        "tar": buffer.getvalue(),
    }


VALID = _valid_files()


def _parse(kind: str, path, tmp_path) -> None:
    """Run the parser that reads files of ``kind`` on ``path``."""
    if kind.startswith("images"):
        x = idx.read_idx_images(path)
        assert x.dtype == np.uint8 and x.shape[1:] == (1, 28, 28)
    elif kind.startswith("labels"):
        y = idx.read_idx_labels(path)
        assert y.dtype == np.int64 and y.ndim == 1
    elif kind == "cifar":
        x, y = cifar.read_cifar_batch(path, expected_records=None)
        assert x.shape[1:] == (3, 32, 32) and len(x) == len(y)
    elif kind == "meta":
        assert len(cifar.read_cifar_meta(path)) == 10
    elif kind == "tar":
        safe_extract(path, tmp_path / "out")
    else:
        raise AssertionError(kind)


def _run(kind: str, data: bytes, tmp_path) -> None:
    path = tmp_path / f"file-{kind}"
    path.write_bytes(data)
    try:
        _parse(kind, path, tmp_path)
    except MinialexError:
        pass


mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, position, value in mutations:
        at = position % (len(buf) + 1)
        if op == "set" and buf:
            buf[min(at, len(buf) - 1)] = value
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = bytes([value])
    return bytes(buf)


@FUZZ
@given(kind=st.sampled_from(sorted(VALID)), data=st.binary(max_size=4000))
def test_random_bytes(tmp_path, kind, data):
    _run(kind, data, tmp_path)


@FUZZ
@given(
    kind=st.sampled_from(sorted(VALID)),
    prefix=st.sampled_from([b"", b"\x1f\x8b", b"\x00\x00\x08\x03", b"\x00\x00\x08\x01"]),
    data=st.binary(max_size=64),
)
def test_random_bytes_behind_plausible_magic(tmp_path, kind, prefix, data):
    _run(kind, prefix + data, tmp_path)


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(VALID)), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutations_of_valid_files(tmp_path, kind, mutations):
    _run(kind, _mutate(VALID[kind], mutations), tmp_path)


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=3))
def test_mutations_of_idx_headers(tmp_path, mutations):
    # Concentrate the mutations on the 16 header bytes, where a bad size could ask for a huge allocation.
    header_only = [(op, pos % 17, value) for op, pos, value in mutations]
    _run("images", _mutate(VALID["images"], header_only), tmp_path)


@settings(max_examples=40)
@given(data=st.binary(max_size=300))
def test_embedded_npz_parser(data):
    for blob in (data, gzip.compress(data)):
        try:
            embedded.parse(blob, "mnist5k.npz")
        except MinialexError:
            pass


EMBEDDED_HEAD = embedded.locate().read_bytes()[:400]  # zip headers and the start of the images' .npy header


@settings(max_examples=60)
@given(mutations=st.lists(mutation, min_size=1, max_size=3))
def test_mutations_of_the_embedded_file(mutations):
    # Mutate the zip and .npy headers of the real file (mutations past them would only break the deflate stream).
    raw = embedded.locate().read_bytes()
    head = _mutate(EMBEDDED_HEAD, [(op, pos % 400, value) for op, pos, value in mutations])
    try:
        embedded.parse(head + raw[400:], "mnist5k.npz")
    except MinialexError:
        pass


def test_valid_files_parse(tmp_path):
    # The mutation tests above start from files that are really valid.
    for kind, data in VALID.items():
        path = tmp_path / f"valid-{kind}"
        path.write_bytes(data)
        _parse(kind, path, tmp_path)
