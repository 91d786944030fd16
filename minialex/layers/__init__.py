"""AlexNet's layers, each with a forward and a hand-written backward pass.

Every layer follows the protocol of :class:`~minialex.layers.base.Layer`: ``forward(x)``,
``backward(dy, need_input_grad=True)``, ``params``/``grads``/``buffers`` dicts, ``train()``/``eval()``,
and ``output_shape(input_shape)``/``macs(input_shape)`` computed from shapes alone. The loss has its own
small protocol, :class:`~minialex.layers.loss.Loss`: ``forward(logits, labels)``, ``backward(dloss=1.0)``.

The naive loop versions of the convolution, im2col/col2im, max-pooling and LRN, against which these are
tested, are in :mod:`minialex.reference`.
"""

from minialex.layers.base import Layer
from minialex.layers.batchnorm import BatchNorm1d, BatchNorm2d
from minialex.layers.container import Sequential
from minialex.layers.conv import Conv2d
from minialex.layers.dropout import Dropout
from minialex.layers.flatten import Flatten
from minialex.layers.im2col import col2im, conv_output_size, im2col
from minialex.layers.linear import Linear
from minialex.layers.loss import Loss, SoftmaxCrossEntropy, log_softmax
from minialex.layers.lrn import PAPER_LRN, LocalResponseNorm
from minialex.layers.pool import MaxPool2d
from minialex.layers.relu import ReLU

__all__ = [
    "PAPER_LRN",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Layer",
    "Linear",
    "LocalResponseNorm",
    "Loss",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "col2im",
    "conv_output_size",
    "im2col",
    "log_softmax",
]
