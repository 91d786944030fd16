"""Classification metrics and the run directory's text records (history, metrics), written atomically.

* :func:`topk_hits` and :func:`confusion_matrix` score a batch of class scores against integer labels.
* :func:`write_text_atomic` / :func:`write_json` write a file through a temporary file and a rename, so a
  crash or a full disk leaves either the old file or the new one, never half of one; they raise
  :class:`~minialex.errors.WriteError` naming the file and the operating system's reason.
* :func:`history_csv` turns the per-epoch history (a list of flat dicts) into CSV text.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minialex import atomic, backend
from minialex.backend import xp

__all__ = ["confusion_matrix", "history_csv", "topk_hits", "write_json", "write_text_atomic"]


def topk_hits(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[int, Any]:
    """For each k, a boolean (N,) array: is the label among the k highest scores?

    Parameters
    ----------
    scores : (N, K) array of logits or probabilities (on the backend)
    labels : (N,) integer array
    ks : the values of k (capped at K)
    """
    labels = backend.asarray(labels)
    order = xp.argsort(-scores, axis=1)
    k_max = scores.shape[1]
    return {k: (order[:, : min(k, k_max)] == labels[:, None]).any(axis=1) for k in ks}


def confusion_matrix(labels: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = how many images of true class i were predicted as class j; an int64 (K, K) host array."""
    t = np.asarray(backend.to_numpy(labels), dtype=np.int64).ravel()
    p = np.asarray(backend.to_numpy(predictions), dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.size} labels but {p.size} predictions")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a run record (``history.csv``, ``metrics.json``, ...) atomically (see :mod:`minialex.atomic`)."""
    atomic.write_text(path, text, "record")


def _jsonable(value: Any) -> Any:
    # NaN and infinity are not JSON: write them as null so that every JSON reader can load the file.
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any) -> str:
    """``obj`` as indented, valid JSON: NaN and infinity become null (never the invalid ``NaN``)."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, dumps(obj) + "\n")


def history_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """The history as CSV text: one header row (the union of keys, in first-seen order), one row per epoch."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _jsonable(row.get(k)) for k in columns})
    return out.getvalue()
