"""Optimisers and learning-rate schedules.

* :class:`SGD` (:mod:`minialex.optim.sgd`): the paper's momentum and weight-decay rule.
* :class:`ReduceLROnPlateau`, :class:`StepLR` (:mod:`minialex.optim.schedules`): the learning rate per epoch.
"""

from minialex.optim.schedules import ReduceLROnPlateau, StepLR
from minialex.optim.sgd import CHUNK, SGD

__all__ = ["CHUNK", "SGD", "ReduceLROnPlateau", "StepLR"]
