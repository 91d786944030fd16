"""Training an AlexNet: the configuration, the loop, checkpoints, evaluation, records and plots of a run.

>>> from minialex.training import TrainConfig, Trainer
>>> result = Trainer(TrainConfig(epochs=1)).fit()
"""

from minialex.training.config import SCHEDULES, TrainConfig
from minialex.training.loop import RunResult, Trainer, fit, format_rate

__all__ = ["SCHEDULES", "RunResult", "TrainConfig", "Trainer", "fit", "format_rate"]
