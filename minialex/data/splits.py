"""Fixed, stratified hold-outs: how a test or validation split is cut from labelled data, identically everywhere.

In each class, the rows are ranked by a key drawn from ``np.random.default_rng(seed).random(n)`` (one key per
row; the raw-bits-to-double draw that NumPy keeps stable across versions), and the ``round(fraction · rows)``
rows with the smallest keys are held out (at least one row of every class that has two or more, so that a
small data set still gets a hold-out of every class). The result depends only on the labels, the fraction and the seed:
not on :func:`minialex.seed`, the machine or the NumPy version.

Three splits, three jobs:

* **train**: the weights are fitted on it;
* **validation**: the decisions of a run are taken on it (the learning-rate schedule, ``best.safetensors``);
* **test**: evaluated and reported, never used for a decision, so the reported figure is not chosen on the
  data it is reported on.
"""

from __future__ import annotations

import numpy as np

from minialex.errors import DataError

VALIDATION_SEED = 2013
"""Seed of the validation hold-out (the embedded digits' test split uses 2012)."""
VALIDATION_FRACTION = 1 / 10
"""The share of the training split held out for validation where a data set has no validation split of its own
(MNIST 54,000 / 6,000, CIFAR-10 45,000 / 5,000, an image folder without val/). The embedded digits use 1/8."""


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (kept, held out), holding out ``round(fraction · n_c)`` rows of every class c
    (at least 1 where n_c ≥ 2).

    Parameters
    ----------
    labels : (N,) integer array
    fraction : in (0, 1)
    seed : the key generator's seed

    Returns
    -------
    kept, held : sorted int64 index arrays that partition ``range(N)``
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"stratified_holdout: fraction must lie in (0, 1), got {fraction!r}")
    keys = np.random.default_rng(seed).random(len(labels))
    held = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        count = max(round(fraction * len(rows)), 1 if len(rows) >= 2 else 0)
        held.append(rows[np.argsort(keys[rows], kind="stable")[:count]])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return kept_idx.astype(np.int64), held_idx.astype(np.int64)
