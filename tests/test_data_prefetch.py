"""The background prefetcher: results in job order whatever the timing, bounded look-ahead, errors re-raised
where they happened, and a prompt, clean shutdown on an error, a Ctrl-C or an early exit of the consumer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from minialex.data import Prefetcher
from minialex.errors import ConfigError, DataError


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("minialex-prefetch")]


@pytest.fixture(autouse=True)
def no_threads_left():
    yield
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _prefetch_threads() == [], "a prefetch thread outlived its Prefetcher"


def test_results_come_in_job_order_whatever_the_timing():
    delays = np.random.default_rng(0).uniform(0, 0.01, size=40)

    def produce(i):
        time.sleep(delays[i])  # later jobs often finish first
        return i * i

    with Prefetcher(produce, range(40), ahead=6, workers=4) as results:
        assert list(results) == [i * i for i in range(40)]
    assert results.closed


def test_look_ahead_is_bounded():
    lock = threading.Lock()
    started, running, peak = [0], [0], [0]

    def produce(i):
        with lock:
            started[0] += 1
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return i

    consumed = 0
    for value in Prefetcher(produce, range(30), ahead=3, workers=3):
        time.sleep(0.004)  # a slow consumer: the producers must wait, not run ahead
        consumed += 1
        assert value == consumed - 1
        assert started[0] <= consumed + 3
    assert peak[0] <= 3 and started[0] == 30


def test_jobs_are_drawn_lazily():
    drawn = []

    def jobs():
        for i in range(1000):
            drawn.append(i)
            yield i

    with Prefetcher(lambda i: i, jobs(), ahead=4) as results:
        assert next(results) == 0
        assert len(drawn) <= 1 + 4
    assert len(drawn) <= 1 + 4


def test_an_error_in_a_job_is_raised_in_the_consumer_at_its_place():
    calls = []

    def produce(i):
        calls.append(i)
        if i == 5:
            raise OSError(f"disk error reading batch {i}")
        return i

    got = []
    with pytest.raises(OSError, match="disk error reading batch 5"):
        for value in Prefetcher(produce, range(100), ahead=2, workers=2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert max(calls) <= 5 + 2  # the jobs after the failing one are cancelled, not run to the end


@pytest.mark.parametrize("exception", [KeyboardInterrupt, RuntimeError])
def test_a_consumer_that_stops_abruptly_ends_the_pool_promptly(exception):
    def produce(i):
        time.sleep(0.05)
        return i

    start = time.monotonic()
    with pytest.raises(exception), Prefetcher(produce, range(1000), ahead=4, workers=2) as results:
        for value in results:
            if value == 2:
                raise exception
    # Shutdown waits only for the jobs already running (one per worker), never for the queue.
    assert time.monotonic() - start < 2.0


def test_breaking_out_and_closing_twice():
    results = Prefetcher(lambda i: i, range(100), ahead=3)
    for value in results:
        if value == 3:
            break
    results.close()
    results.close()
    assert results.closed and list(results) == []


def test_a_stalled_job_times_out_instead_of_hanging():
    release = threading.Event()

    def produce(i):
        release.wait(5)
        return i

    results = Prefetcher(produce, range(3), ahead=1, timeout_s=0.05)
    with pytest.raises(DataError, match=r"result 0 not ready after 0\.05 s"):
        try:
            next(results)
        finally:
            release.set()
    assert results.closed


def test_gather_copies_rows_of_a_memory_mapped_array(tmp_path):
    images = np.arange(20 * 3 * 4 * 4, dtype=np.uint8).reshape(20, 3, 4, 4)
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    labels = np.arange(20, dtype=np.int64) % 3
    order = np.random.default_rng(1).permutation(20)
    batches = [order[i : i + 6] for i in range(0, 20, 6)]
    with Prefetcher.gather(mapped, batches, labels=labels, ahead=2) as results:
        for idx, (batch, y) in zip(batches, results, strict=True):
            assert type(batch) is np.ndarray and batch.flags.c_contiguous and batch.dtype == np.uint8
            np.testing.assert_array_equal(batch, images[idx])
            np.testing.assert_array_equal(y, labels[idx])
    with Prefetcher.gather(mapped, batches[:1]) as results:
        np.testing.assert_array_equal(next(results), images[batches[0]])


def test_gather_rejects_bad_indices():
    images = np.zeros((5, 1, 2, 2), np.uint8)
    with pytest.raises(DataError, match="expected a 1-D integer index array"):
        list(Prefetcher.gather(images, [np.array([0.5, 1.0])]))
    with pytest.raises(IndexError):
        list(Prefetcher.gather(images, [np.array([7])]))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ahead": 0}, "ahead must be an integer >= 1"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"ahead": True}, "ahead"),
        ({"timeout_s": -1.0}, "timeout_s"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(ConfigError, match=message):
        Prefetcher(lambda i: i, range(3), **options)
