"""AlexNet variants built from minialex's layers, their summaries, and torchvision weight loading.

>>> from minialex.models import alexnet
>>> model = alexnet("mini")            # 1×28×28 digits, 10 classes
>>> print(model.summary())             # per-layer shapes, parameters, MACs and FLOPs

See :mod:`minialex.models.variants` for the variants and their initialisation.
"""

from minialex.models.pretrained import TORCHVISION_NAMES, load_torchvision_safetensors
from minialex.models.summary import LayerRow, layer_table
from minialex.models.variants import (
    INITS,
    MINI_WIDTHS,
    VARIANTS,
    AlexNet,
    alexnet,
    initialise,
    signal_ratio,
    variant_defaults,
)

__all__ = [
    "INITS",
    "MINI_WIDTHS",
    "TORCHVISION_NAMES",
    "VARIANTS",
    "AlexNet",
    "LayerRow",
    "alexnet",
    "initialise",
    "layer_table",
    "load_torchvision_safetensors",
    "signal_ratio",
    "variant_defaults",
]
