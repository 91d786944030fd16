"""Optimisers and learning-rate schedules.

* :class:`SGD` (:mod:`minialex.optim.sgd`): the paper's momentum and weight-decay rule.
* :class:`Adam`, :class:`AdamW` (:mod:`minialex.optim.adam`): Adam with bias correction, its epsilon-hat form.
* :class:`ReduceLROnPlateau`, :class:`StepLR` (:mod:`minialex.optim.schedules`): the learning rate per epoch.
"""

from minialex.optim.adam import Adam, AdamW
from minialex.optim.schedules import ReduceLROnPlateau, StepLR
from minialex.optim.sgd import CHUNK, SGD

__all__ = ["CHUNK", "SGD", "Adam", "AdamW", "ReduceLROnPlateau", "StepLR"]
