"""AlexNet's layers, each with a forward and a hand-written backward pass.

Every layer follows the protocol of :class:`~minialex.layers.base.Layer`: ``forward(x)``,
``backward(dy)``, ``params``/``grads`` dicts, ``train()``/``eval()``.
"""

from minialex.layers.base import Layer
from minialex.layers.batchnorm import BatchNorm1d, BatchNorm2d
from minialex.layers.container import Sequential
from minialex.layers.conv import Conv2d
from minialex.layers.dropout import Dropout
from minialex.layers.flatten import Flatten
from minialex.layers.im2col import col2im, conv_output_size, im2col
from minialex.layers.linear import Linear
from minialex.layers.loss import SoftmaxCrossEntropy, accuracy_counts, log_softmax
from minialex.layers.lrn import LocalResponseNorm
from minialex.layers.pool import MaxPool2d
from minialex.layers.relu import ReLU

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Layer",
    "Linear",
    "LocalResponseNorm",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "accuracy_counts",
    "col2im",
    "conv_output_size",
    "im2col",
    "log_softmax",
]
