"""AlexNet variants built from minialex's layers, their summaries, and torchvision weight loading.

>>> from minialex.models import alexnet
>>> model = alexnet("mini")            # 1×28×28 digits, 10 classes
>>> print(model.summary())             # per-layer shapes, parameters, MACs and FLOPs

* :mod:`~minialex.models.variants`: the four variants, declared as data (:class:`Variant`, :data:`REGISTRY`);
* :mod:`~minialex.models.build`: :func:`alexnet`, which assembles one with each weight drawn once, and the
  initialisation schemes;
* :mod:`~minialex.models.summary`: the per-layer table; :mod:`~minialex.models.pretrained`: torchvision weights.
"""

from minialex.models.build import AlexNet, alexnet, signal_ratio
from minialex.models.pretrained import TORCHVISION_NAMES, load_torchvision_safetensors
from minialex.models.summary import LayerRow, layer_table
from minialex.models.variants import (
    INITS,
    MINI_WIDTHS,
    REGISTRY,
    VARIANTS,
    ConvStage,
    Variant,
    variant_defaults,
)

__all__ = [
    "INITS",
    "MINI_WIDTHS",
    "REGISTRY",
    "TORCHVISION_NAMES",
    "VARIANTS",
    "AlexNet",
    "ConvStage",
    "LayerRow",
    "Variant",
    "alexnet",
    "layer_table",
    "load_torchvision_safetensors",
    "signal_ratio",
    "variant_defaults",
]
