"""The progress bar of an epoch (tqdm), shown only on a terminal unless asked otherwise."""

from __future__ import annotations

import os
from typing import Any

from minialex.training.state import EpochTotals


def format_rate(per_second: float) -> str:
    """A rate with as many digits as it needs: 1234, 56.7, 0.36."""
    return f"{per_second:.0f}" if per_second >= 100 else f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2f}"


class ProgressBar:
    """One bar per epoch: steps done out of the epoch's steps, and the running loss, accuracy and speed.

    Parameters
    ----------
    total, initial : steps of the epoch, steps already done (a resumed epoch starts part-way)
    description : shown before the bar, e.g. ``"epoch 3/18"``
    enabled : True or False to force it; None shows it only on a terminal, and never when the environment
        sets ``TQDM_DISABLE``
    """

    def __init__(self, total: int, initial: int, description: str, enabled: bool | None = None) -> None:
        from tqdm import tqdm

        options: dict[str, Any] = {}
        if enabled is not None:
            options["disable"] = not enabled
        elif "TQDM_DISABLE" not in os.environ:
            options["disable"] = None  # tqdm's rule: only when the output is a terminal
        self._bar = tqdm(
            total=total, initial=initial, desc=description, unit="batch", leave=False, dynamic_ncols=True, **options
        )

    def advance(self) -> None:
        """One more step done (host bookkeeping only: nothing is read from the device)."""
        self._bar.update(1)

    def show(self, totals: EpochTotals) -> None:
        """Show the running loss, accuracy and images per second (call after the totals were read back)."""
        if totals.seen:
            self._bar.set_postfix(
                loss=f"{totals.loss:.4f}", acc=f"{totals.accuracy:.2%}", img_s=format_rate(totals.rate), refresh=False
            )

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
