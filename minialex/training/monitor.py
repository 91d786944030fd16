"""Watching the training steps with few host-device synchronisations: running sums and divergence checks.

Reading a number computed on a GPU back to the host waits for all the work queued before it. A loop that
reads the loss, the correct count and a finiteness flag after every step therefore keeps the GPU idle while
Python prepares the next batch. :class:`StepMonitor` instead keeps, for every step, one small row on the
device::

    [ loss, correct predictions, Σ dL/dw for each parameter w ]        (float64)

and reads all rows pending in one transfer when it is *flushed*: every ``every_steps`` steps or
``every_seconds`` seconds, at the end of an epoch and before any checkpoint. The flush then adds the rows
to the epoch's totals in step order (the same sums, bit for bit, as reading every step) and looks for the
first row holding NaN or infinity: a non-finite loss, or a gradient whose sum is not finite (a float32
gradient summed in float64 cannot overflow, so its sum is finite exactly when every element is).

The guarantee is kept: the step where a run diverged is named exactly, and since every checkpoint is
preceded by a flush and by a check of the weights themselves (:func:`first_non_finite`), no checkpoint
with a non-finite weight is ever written as a good one. Steps after a divergence and before the next
flush run on non-finite numbers and are thrown away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from minialex import backend
from minialex.backend import xp
from minialex.errors import TrainingDivergedError
from minialex.training.state import EpochTotals

FLUSH_STEPS = 16
"""Steps between two read-backs at most."""
FLUSH_SECONDS = 1.0
"""Seconds between two read-backs at most (slow steps are read back after each one)."""


@dataclass
class Divergence:
    """The first step whose loss or gradient was not finite."""

    step: int
    """Step within its epoch (1-based)."""
    global_step: int
    """Step since the start of the run (1-based)."""
    what: str
    """"the loss became nan", "the gradient of conv1.weight became NaN or infinite"..."""

    def error(self, epoch: int, lr: float, last: Any, saved_at: str) -> TrainingDivergedError:
        """The error to raise: where, at which learning rate, a hint, and the checkpoint that is kept."""
        return TrainingDivergedError(
            f"training diverged: {self.what} at epoch {epoch}, step {self.step} (global step {self.global_step}) "
            f"with learning rate {lr:g}. Hint: lower the learning rate (e.g. --lr {lr / 10:g}), check the input "
            f"scaling and the initialisation. The last good checkpoint, {last} ({saved_at}), is kept."
        )


def first_non_finite(arrays: dict[str, Any]) -> str | None:
    """The name of the first array holding NaN or ±inf, or None; one synchronisation for all of them."""
    if not arrays:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf in a sum is the NaN looked for, not a warning
        sums = backend.to_numpy(xp.stack([xp.sum(a, dtype=xp.float64) for a in arrays.values()]))
    bad = np.flatnonzero(~np.isfinite(sums))
    return list(arrays)[bad[0]] if bad.size else None


class StepMonitor:
    """Per-step rows kept on the device, folded into :class:`EpochTotals` at each flush.

    Parameters
    ----------
    totals : the epoch's running sums (updated in place by :meth:`flush`)
    every_steps, every_seconds : :meth:`due` becomes true after this many unread steps or seconds
        (default :data:`FLUSH_STEPS`, :data:`FLUSH_SECONDS`)
    """

    def __init__(self, totals: EpochTotals, every_steps: int | None = None, every_seconds: float | None = None) -> None:
        self.totals = totals
        self.every_steps = FLUSH_STEPS if every_steps is None else every_steps
        self.every_seconds = FLUSH_SECONDS if every_seconds is None else every_seconds
        self._rows: list[Any] = []
        self._steps: list[tuple[int, int, int]] = []  # (step, global step, batch size) of each pending row
        self._grad_names: list[str] = []
        self.restart_clock()

    def restart_clock(self) -> None:
        """Start timing here (after evaluation, saving or anything else that is not training)."""
        self._since = time.perf_counter()

    def observe(self, step: int, global_step: int, loss: Any, logits: Any, labels: Any, grads: dict[str, Any]) -> None:
        """Queue the row of one step: its loss (0-d), top-1 hits of ``logits`` (N, K) on host ``labels`` (N,),
        and the sum of every gradient, all left on the device."""
        self._grad_names = list(grads)
        hits = xp.argmax(logits, axis=1) == backend.asarray(labels)
        values = [xp.asarray(loss, dtype=xp.float64), hits.sum(dtype=xp.float64)]
        values += [xp.sum(g, dtype=xp.float64) for g in grads.values()]
        self._rows.append(xp.stack(values))
        self._steps.append((step, global_step, len(labels)))

    def due(self) -> bool:
        """Whether enough steps or time have gone by since the last flush."""
        return len(self._rows) >= self.every_steps or time.perf_counter() - self._since >= self.every_seconds

    def flush(self) -> Divergence | None:
        """Read the pending rows back (one synchronisation), add them to the totals; the first divergence or None.

        The rows before a divergence are added; the diverged one and those after it are dropped.
        """
        if self._rows:
            rows = backend.to_numpy(xp.stack(self._rows))
        else:
            backend.synchronize()
            rows = np.zeros((0, 2))
        now = time.perf_counter()
        self.totals.seconds += now - self._since
        self._since = now
        pending, self._rows, self._steps = self._steps, [], []
        for (step, global_step, count), row in zip(pending, rows, strict=True):
            if not np.isfinite(row).all():
                return Divergence(step, global_step, self._describe(row))
            self.totals.add(float(row[0]), int(row[1]), count)
        return None

    def _describe(self, row: np.ndarray) -> str:
        if not np.isfinite(row[0]):
            return f"the loss became {float(row[0])}"
        bad = np.flatnonzero(~np.isfinite(row[2:]))
        names = [self._grad_names[i] for i in bad[:3]]
        return f"the gradient of {', '.join(names)}{' and others' if bad.size > 3 else ''} became NaN or infinite"
