"""Learning-rate schedules: call ``step()`` once per epoch; they set ``optimizer.lr``.

* :class:`ReduceLROnPlateau`: the paper's rule, divide by 10 when the validation error stops improving.
* :class:`StepLR`: multiply by ``gamma`` every ``step_size`` epochs (Caffe's ``"step"`` policy).

Both keep their state as a JSON-able dict (``state_dict``/``load_state_dict``) for checkpoints.
"""

from __future__ import annotations

from typing import Any

from minialex import validate
from minialex.errors import CheckpointError, ConfigError
from minialex.optim.sgd import SGD


class ReduceLROnPlateau:
    """The paper's schedule: divide the learning rate by 10 when the validation error stops improving.

    "The heuristic which we followed was to divide the learning rate by 10 when the validation error rate
    stopped improving with the current learning rate ... reduced three times prior to termination" (the
    paper, §5).

    After each epoch call ``step(metric)`` with the validation error (``mode="min"``) or accuracy
    (``mode="max"``). An epoch *improves* when its metric beats the best so far by more than
    ``threshold``. After ``patience`` epochs in a row without improvement, the next one without
    improvement multiplies ``optimizer.lr`` by ``factor`` (the count starts again), at most
    ``max_reductions`` times. :attr:`exhausted` then tells a trainer that the paper would stop: the
    reductions are spent and the metric has plateaued once more.
    """

    def __init__(
        self,
        optimizer: SGD,
        factor: float = 0.1,
        patience: int = 2,
        max_reductions: int = 3,
        mode: str = "min",
        threshold: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.factor = _factor(factor, "ReduceLROnPlateau: factor")
        self.patience = validate.integer(patience, "ReduceLROnPlateau: patience", low=0)
        self.max_reductions = validate.integer(max_reductions, "ReduceLROnPlateau: max_reductions", low=0)
        self.mode = validate.choice(mode, "ReduceLROnPlateau: mode", ("min", "max"))
        self.threshold = validate.number(threshold, "ReduceLROnPlateau: threshold", low=0.0)
        self.best: float | None = None
        self.bad_epochs = 0
        self.num_reductions = 0
        self.exhausted = False
        self.epochs = 0

    def _improves(self, metric: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return metric < self.best - self.threshold
        return metric > self.best + self.threshold

    def step(self, metric: float | None = None) -> bool:
        """Record one epoch's ``metric``; returns True when the learning rate was reduced."""
        if metric is None:
            raise ConfigError("ReduceLROnPlateau.step: needs the epoch's validation metric, got None")
        value = validate.number(metric, "ReduceLROnPlateau.step: metric")
        self.epochs += 1
        if self._improves(value):
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs <= self.patience:
            return False
        self.bad_epochs = 0
        if self.num_reductions >= self.max_reductions:
            self.exhausted = True
            return False
        self.optimizer.lr = self.optimizer.lr * self.factor
        self.num_reductions += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the settings too, so a resumed run can check them)."""
        return {
            "kind": "ReduceLROnPlateau",
            "factor": self.factor,
            "patience": self.patience,
            "max_reductions": self.max_reductions,
            "mode": self.mode,
            "threshold": self.threshold,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "num_reductions": self.num_reductions,
            "exhausted": self.exhausted,
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "scheduler state") -> None:
        """Restore a :meth:`state_dict`; a state of another schedule raises :class:`CheckpointError`."""
        _check_schedule_state(state, "ReduceLROnPlateau", source)
        try:  # parse everything first, so that a malformed state changes nothing
            values = {
                "factor": float(state["factor"]),
                "patience": int(state["patience"]),
                "max_reductions": int(state["max_reductions"]),
                "mode": str(state["mode"]),
                "threshold": float(state["threshold"]),
                "best": None if state["best"] is None else float(state["best"]),
                "bad_epochs": int(state["bad_epochs"]),
                "num_reductions": int(state["num_reductions"]),
                "exhausted": bool(state["exhausted"]),
                "epochs": int(state["epochs"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: malformed ReduceLROnPlateau state ({type(exc).__name__}: {exc})") from exc
        if values["mode"] not in ("min", "max") or not 0.0 < values["factor"] < 1.0:
            raise CheckpointError(
                f"{source}: malformed ReduceLROnPlateau state (mode {values['mode']!r}, factor {values['factor']})"
            )
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(factor={self.factor:g}, patience={self.patience}, "
            f"max_reductions={self.max_reductions}, mode={self.mode!r})"
        )


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (Caffe's ``lr_policy: "step"``).

    After ``e`` calls of :meth:`step`, ``optimizer.lr = base_lr · gamma ** (e // step_size)``, computed from
    ``base_lr`` (the optimiser's lr when the schedule was made), not by repeated multiplication.
    """

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.step_size = validate.integer(step_size, "StepLR: step_size (epochs)", low=1)
        self.gamma = _factor(gamma, "StepLR: gamma")
        self.base_lr = optimizer.lr
        self.epochs = 0

    def step(self, metric: float | None = None) -> bool:
        """End of one epoch (``metric`` is ignored); returns True when the learning rate changed."""
        self.epochs += 1
        old = self.optimizer.lr
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epochs // self.step_size)
        return self.optimizer.lr != old

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "StepLR",
            "step_size": self.step_size,
            "gamma": self.gamma,
            "base_lr": self.base_lr,
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "scheduler state") -> None:
        _check_schedule_state(state, "StepLR", source)
        try:
            values = {
                "step_size": int(state["step_size"]),
                "gamma": float(state["gamma"]),
                "base_lr": float(state["base_lr"]),
                "epochs": int(state["epochs"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: malformed StepLR state ({type(exc).__name__}: {exc})") from exc
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma:g})"


def _factor(value: Any, what: str) -> float:
    """A multiplier of the learning rate: a number in (0, 1)."""
    return validate.number(value, what, low=0.0, high=1.0, low_open=True, high_open=True)


def _check_schedule_state(state: Any, kind: str, source: str) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{source}: expected a {kind} state, got {got!r}")
