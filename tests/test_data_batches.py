"""The epoch order (a function of the seed and the epoch alone), its batches, and the mini-batch iterator."""

from __future__ import annotations

import numpy as np
import pytest

import minialex
from minialex.data import iterate_batches, num_batches
from minialex.data.batches import epoch_batches, epoch_order
from minialex.errors import ConfigError, DataError


def data(n: int = 10):
    images = np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)
    return images, np.arange(n, dtype=np.int64)


@pytest.mark.parametrize(
    "n, batch, drop_last, sizes",
    [(10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]), (3, 8, False, [3]), (3, 8, True, [])],
)
def test_batch_sizes_and_last_batch(n, batch, drop_last, sizes):
    images, labels = data(n)
    got = list(iterate_batches(images, labels, batch, shuffle=True, drop_last=drop_last))
    assert [len(y) for _, y in got] == sizes == [len(x) for x, _ in got]
    assert len(got) == num_batches(n, batch, drop_last)


def test_unshuffled_order_and_pairing():
    images, labels = data()
    got = list(iterate_batches(images, labels, 3, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)
    for x, y in got:
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, images[y])


def test_shuffled_epoch_is_a_permutation_with_pairs_kept():
    images, labels = data(50)
    got = list(iterate_batches(images, labels, 7, shuffle=True))
    seen = np.concatenate([y for _, y in got])
    assert not np.array_equal(seen, labels)
    np.testing.assert_array_equal(np.sort(seen), labels)
    for x, y in got:
        np.testing.assert_array_equal(x, images[y])


def test_order_is_reproducible_from_the_seed_and_differs_between_epochs():
    images, labels = data(50)

    def epoch():
        return np.concatenate([y for _, y in iterate_batches(images, labels, 8, shuffle=True)])

    minialex.seed(7)
    first, second = epoch(), epoch()
    minialex.seed(7)
    np.testing.assert_array_equal(epoch(), first)
    assert not np.array_equal(first, second)


def test_explicit_generator():
    images, labels = data(50)
    a = [y for _, y in iterate_batches(images, labels, 8, True, rng=np.random.default_rng(3))]
    b = [y for _, y in iterate_batches(images, labels, 8, True, rng=np.random.default_rng(3))]
    for ya, yb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("batch", [0, -1, 2.5, True])
def test_bad_batch_size(batch):
    images, labels = data()
    with pytest.raises(ConfigError, match="batch_size"):
        next(iterate_batches(images, labels, batch, shuffle=False))


def test_mismatched_lengths():
    images, labels = data()
    with pytest.raises(DataError, match="10 images but 9 labels"):
        next(iterate_batches(images, labels[:9], 2, shuffle=False))


# -- the epoch order and its batches -------------------------------------------------------------------------------


def test_epoch_order_is_a_function_of_seed_and_epoch_alone():
    expected = np.random.default_rng([3, 7]).permutation(50)
    minialex.seed(123)
    first = epoch_order(50, 3, 7)
    np.random.default_rng(0).random(10)  # other draws, anywhere, change nothing
    minialex.backend.host_rng().random(10)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(epoch_order(50, 3, 7), expected)
    np.testing.assert_array_equal(np.sort(first), np.arange(50))
    assert not np.array_equal(epoch_order(50, 3, 8), first)  # another epoch
    assert not np.array_equal(epoch_order(50, 4, 7), first)  # another seed


@pytest.mark.parametrize(("n", "batch"), [(10, 4), (12, 4), (3, 8), (1, 1)])
def test_epoch_batches_cut_the_order_into_batches_and_resume_part_way(n, batch):
    order = epoch_order(n, 5, 2)
    full = list(epoch_batches(n, batch, seed=5, epoch=2))
    assert len(full) == num_batches(n, batch)
    np.testing.assert_array_equal(np.concatenate(full), order)
    assert [len(b) for b in full[:-1]] == [batch] * (len(full) - 1) and 0 < len(full[-1]) <= batch
    for start in range(len(full) + 1):  # a resumed epoch takes exactly the batches not yet done
        rest = list(epoch_batches(n, batch, seed=5, epoch=2, start=start))
        assert len(rest) == len(full) - start
        for got, want in zip(rest, full[start:], strict=True):
            np.testing.assert_array_equal(got, want)


def test_unseeded_batches_are_slices_so_indexing_gives_views():
    images, _ = data(10)
    batches = list(epoch_batches(10, 4))
    assert batches == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert np.shares_memory(images[batches[0]], images)
    assert list(epoch_batches(10, 4, drop_last=True)) == [slice(0, 4), slice(4, 8)]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"start": 4}, "start (batches already done) must be an integer in [0, 3]"),
        ({"start": -1}, "start (batches already done)"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1, "epoch": 1.5}, "epoch must be an integer >= 0"),
    ],
)
def test_epoch_batches_reject_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        next(epoch_batches(10, 4, **kwargs))
    assert fragment in str(info.value)
