"""The download cache: pre-seeded files, a loopback HTTP server, hash mismatches, offline errors, end to end.

No test touches the network: files are served by an ``http.server`` on 127.0.0.1 started here, in a thread.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from helpers import cifar_archive

from minialex.data import datasets, download, idx, load_dataset
from minialex.data.download import RemoteFile, cache_dir, fetch
from minialex.errors import ChecksumError, DataError


class Server:
    """Serves ``files[path] = bytes`` on 127.0.0.1 and counts the requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    s = Server()
    yield s
    s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = b"minialex test payload\n" * 100


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIALEX_DATA", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("MINIALEX_DATA")
    assert cache_dir().name == "minialex"


def test_cached_file_is_used_without_network(tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    remote = RemoteFile("f.bin", sha(PAYLOAD), ("http://127.0.0.1:9/unreachable",))
    assert fetch(remote, tmp_path) == tmp_path / "f.bin"
    assert fetch(remote, tmp_path, download=False) == tmp_path / "f.bin"


def test_env_var_selects_the_cache(tmp_path, monkeypatch):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("MINIALEX_DATA", str(tmp_path))
    assert fetch(RemoteFile("f.bin", sha(PAYLOAD), ()), download=False) == tmp_path / "f.bin"


def test_download_then_cache_hit(tmp_path, server):
    server.files["/a/f.bin"] = PAYLOAD
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/a/f.bin",))
    path = fetch(remote, tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD
    fetch(remote, tmp_path / "cache")
    assert server.hits == {"/a/f.bin": 1}


def test_mirrors_are_tried_in_order(tmp_path, server):
    server.files["/second/f.bin"] = PAYLOAD
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/first/f.bin", server.url + "/second/f.bin"))
    assert fetch(remote, tmp_path).read_bytes() == PAYLOAD
    assert server.hits == {"/first/f.bin": 1, "/second/f.bin": 1}


def test_corrupted_download_is_retried_once_then_rejected(tmp_path, server):
    bad = PAYLOAD[:-1] + b"!"
    server.files["/f.bin"] = bad
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/f.bin",))
    with pytest.raises(ChecksumError) as info:
        fetch(remote, tmp_path)
    message = str(info.value)
    assert "f.bin" in message and sha(PAYLOAD) in message and sha(bad) in message
    assert server.hits == {"/f.bin": 2}
    assert list(tmp_path.iterdir()) == []  # the bad file (and pooch's temporary file) are gone


def test_corrupted_mirror_falls_back_to_a_good_one(tmp_path, server):
    server.files["/bad/f.bin"] = b"corrupt"
    server.files["/good/f.bin"] = PAYLOAD
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/bad/f.bin", server.url + "/good/f.bin"))
    assert fetch(remote, tmp_path).read_bytes() == PAYLOAD
    assert server.hits == {"/bad/f.bin": 2, "/good/f.bin": 1}


def test_stale_cached_file_is_deleted_and_downloaded_again(tmp_path, server):
    (tmp_path / "f.bin").write_bytes(PAYLOAD[:10])  # a half-written earlier download
    server.files["/f.bin"] = PAYLOAD
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/f.bin",))
    assert fetch(remote, tmp_path).read_bytes() == PAYLOAD


def test_stale_cached_file_without_download_is_a_checksum_error(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"stale")
    with pytest.raises(ChecksumError, match=f"expected {sha(PAYLOAD)}, got {sha(b'stale')}"):
        fetch(RemoteFile("f.bin", sha(PAYLOAD), ()), tmp_path, download=False)
    assert not (tmp_path / "f.bin").exists()


def test_http_errors_and_no_network_name_the_url_and_the_way_out(tmp_path, server):
    remote = RemoteFile("f.bin", sha(PAYLOAD), (server.url + "/missing/f.bin", "http://127.0.0.1:9/f.bin"))
    with pytest.raises(DataError) as info:
        fetch(remote, tmp_path)
    message = str(info.value)
    assert "/missing/f.bin" in message and "404" in message and "127.0.0.1:9/f.bin" in message
    assert "mnist5k" in message and str(tmp_path) in message
    assert not isinstance(info.value, ChecksumError)


def test_download_disabled_and_missing(tmp_path):
    with pytest.raises(DataError, match="downloads are disabled"):
        fetch(RemoteFile("f.bin", sha(PAYLOAD), ()), tmp_path, download=False)


def test_directory_in_place_of_the_file(tmp_path):
    (tmp_path / "f.bin").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        fetch(RemoteFile("f.bin", sha(PAYLOAD), ()), tmp_path)


def test_pooch_mismatch_message_is_parsed():
    message = (
        "SHA256 hash of downloaded file (f.bin) does not match the known hash: expected sha256:"
        + "a" * 64
        + " but got "
        + "b" * 64
        + ". Deleted download for safety."
    )
    assert download._POOCH_MISMATCH.search(message).group(2) == "b" * 64


# ------------------------------------------------------------------------------------------ end to end


def _idx_source(n_train=20, n_test=10) -> tuple[datasets.Source, dict[str, bytes]]:
    rng = np.random.default_rng(5)
    blobs = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        blobs[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(
            idx.encode_idx(rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        )
        blobs[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(idx.encode_idx(np.arange(n, dtype=np.uint8) % 10))
    files = tuple(
        RemoteFile(f"mnist-{name}", sha(blobs[name]), (f"http://127.0.0.1:9/{name}",)) for name in datasets._IDX_NAMES
    )
    return datasets.Source("idx", files, n_train, n_test, tuple(datasets.DIGITS)), blobs


def test_load_mnist_from_a_preseeded_cache(tmp_path, monkeypatch):
    source, blobs = _idx_source()
    monkeypatch.setitem(datasets.SOURCES, "mnist", source)
    for name, blob in blobs.items():
        (tmp_path / f"mnist-{name}").write_bytes(blob)
    ds = load_dataset("mnist", data_dir=tmp_path, download=False)
    # Two of each digit: one is held out for validation (at least one per class), one is trained on.
    assert ds.train_images.shape == (10, 1, 28, 28) and ds.val_images.shape == (10, 1, 28, 28)
    assert ds.test_images.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(np.sort(ds.train_labels), np.arange(10))
    np.testing.assert_array_equal(np.sort(ds.val_labels), np.arange(10))
    assert ds.classes == [str(d) for d in range(10)]


def test_load_mnist_with_the_wrong_record_count(tmp_path, monkeypatch):
    source, blobs = _idx_source()
    monkeypatch.setitem(datasets.SOURCES, "mnist", datasets.Source("idx", source.files, 60_000, 10, source.classes))
    for name, blob in blobs.items():
        (tmp_path / f"mnist-{name}").write_bytes(blob)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: number of images: expected 60000, got 20"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_load_cifar10_downloaded_from_the_loopback_server(tmp_path, monkeypatch, server):
    archive = cifar_archive(per_batch=4)
    server.files["/cifar-10-binary.tar.gz"] = archive
    remote = RemoteFile("cifar-10-binary.tar.gz", sha(archive), (server.url + "/cifar-10-binary.tar.gz",))
    monkeypatch.setitem(datasets.SOURCES, "cifar10", datasets.Source("cifar", (remote,), 20, 4))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert len(ds.train_labels) + len(ds.val_labels) == 20 and ds.test_images.shape == (4, 3, 32, 32)
    assert ds.train_images.shape[1:] == ds.val_images.shape[1:] == (3, 32, 32) and len(ds.val_labels) > 0
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert len(ds.mean) == 3 and len(ds.std) == 3
    again = load_dataset("cifar10", data_dir=tmp_path)  # cached archive, already extracted
    np.testing.assert_array_equal(again.train_images, ds.train_images)
    assert server.hits == {"/cifar-10-binary.tar.gz": 1}


def test_unknown_dataset():
    from minialex.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'.*mnist5k"):
        load_dataset("imagenet")
    assert datasets.available_datasets() == ["mnist5k", "mnist", "fashion-mnist", "cifar10"]
