"""The naive references: every operation of the fast layers written as plain loops, obviously right and slow.

The layers in :mod:`minialex.layers` are optimised (strided views, one GEMM per group, chunks, threads,
reused buffers). Here each operation is written the way a textbook states it, one output element or one
window at a time, so that it can be checked by eye. They are the ground truth the tests compare the fast
layers with, and what the tutorials and the benchmarks' sanity checks use. Run them on tiny shapes only.

=========================================================  =================================================
function                                                   what it computes
=========================================================  =================================================
:func:`im2col` / :func:`col2im`                            the columns of a convolution, and their adjoint
:func:`conv2d_forward` / :func:`conv2d_backward`           a grouped cross-correlation, and its dx, dW, db
:func:`maxpool2d_forward` / :func:`maxpool2d_backward`     max over windows (first maximum wins), and its dx
:func:`lrn_forward` / :func:`lrn_backward`                 the paper's local response normalization, and dx
:func:`batchnorm_forward` / :func:`batchnorm_backward`     batch normalization in training mode, and dx, dγ, dβ
=========================================================  =================================================

Every function takes arrays of either backend (they are copied to the host) and returns host NumPy arrays
of the input's dtype; ``kernel_size``, ``stride`` and ``padding`` are an int or a pair (rows, columns).
The inputs are assumed finite: the rules for ±inf and NaN live with the fast layers and are tested against
PyTorch.
"""

from minialex.reference.batchnorm import batchnorm_backward, batchnorm_forward
from minialex.reference.convolution import col2im, conv2d_backward, conv2d_forward, im2col
from minialex.reference.lrn import lrn_backward, lrn_forward
from minialex.reference.pooling import maxpool2d_backward, maxpool2d_forward

__all__ = [
    "batchnorm_backward",
    "batchnorm_forward",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "im2col",
    "lrn_backward",
    "lrn_forward",
    "maxpool2d_backward",
    "maxpool2d_forward",
]
