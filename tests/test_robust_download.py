"""Downloads never hang: a silent server, a slow-drip server, a FIFO or a device in the cache.

The servers run on 127.0.0.1 in threads of the test, and the time limits are made small, so that each case
takes a second or two.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from minialex.data import download
from minialex.data.download import RemoteFile, fetch
from minialex.errors import DataError

PAYLOAD = b"minialex test payload " * 100
REMOTE = RemoteFile("payload.bin", hashlib.sha256(PAYLOAD).hexdigest(), ())


@contextmanager
def server(behaviour: str):
    """A one-thread TCP server: 'silent' accepts and never answers, 'drip' sends a byte every 0.05 s, 'good' serves."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()
    connections = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(1)
            with conn:
                try:
                    conn.recv(4096)
                    if behaviour == "silent":
                        stop.wait(30)
                    elif behaviour == "drip":
                        head = f"HTTP/1.1 200 OK\r\nContent-Length: {10**6}\r\n\r\n".encode()
                        conn.sendall(head)
                        while not stop.is_set():
                            conn.sendall(b"x")
                            time.sleep(0.05)
                    else:
                        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\n\r\n".encode() + PAYLOAD)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/payload.bin", connections
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 1.0)
    monkeypatch.setattr(download, "TOTAL_TIMEOUT_S", 2.0)


def remote(*urls: str) -> RemoteFile:
    return RemoteFile(REMOTE.name, REMOTE.sha256, urls)


def test_a_silent_server_fails_within_the_time_limit(quick, tmp_path):
    with server("silent") as (url, _):
        with pytest.raises(DataError, match=r"no answer within 1 s"):
            fetch(remote(url), tmp_path)


def test_a_slow_drip_server_fails_at_the_total_limit(quick, tmp_path):
    with server("drip") as (url, _), server("drip") as (second, tried):
        with pytest.raises(DataError, match=r"not complete after 2 s \(too slow\)"):
            fetch(remote(url, second), tmp_path)
    assert not (tmp_path / REMOTE.name).exists()
    assert tried == []  # the limit is per file: the first mirror used it all, the second was never asked


def test_a_slow_mirror_falls_back_to_a_good_one(quick, tmp_path):
    with server("silent") as (slow, _), server("good") as (good, _):
        path = fetch(remote(slow, good), tmp_path)
    assert path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link", "broken-link"])
def test_a_cache_entry_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    target = tmp_path / REMOTE.name
    if kind == "fifo":
        os.mkfifo(target)
        fragment = "not a regular file but a FIFO"
    elif kind == "dev-zero-link":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        target.symlink_to("/dev/zero")
        fragment = "a device (a link to /dev/zero)"
    else:
        target.symlink_to(tmp_path / "gone")
        fragment = "broken symbolic link"
    for allowed in (False, True):
        with pytest.raises(DataError, match=re.escape(fragment)):
            fetch(remote("http://127.0.0.1:9/never-used"), tmp_path, download=allowed)
