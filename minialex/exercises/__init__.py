"""Graders for the exercises in ``tutorials/``: each checks a learner's function and prints a verdict.

Every ``check_*`` function takes the learner's function, runs it on fresh inputs it builds itself, compares
the answer with an independent reference (finite differences, or minialex's own tested layers) and prints
one line:

* ``PASS <exercise>: ...`` with the figure that was checked (e.g. the worst relative error);
* ``FAIL <exercise>: ...`` with what was expected, what came back and, where a classic mistake explains
  the difference, a hint;
* ``<exercise>: not yet implemented ...`` while the function still raises ``NotImplementedError``.

A checker never raises (a crash inside the learner's code is reported as a FAIL) and returns ``None``, so
the notebook's check cells run cleanly whether or not the exercise is solved. Reference solutions are in
``tutorials/solutions/``.

One module per notebook; :mod:`minialex.exercises._grading` holds what they share (the verdict, the answer
checks). Everything runs on the host in float64 NumPy (the tutorials use the NumPy backend): finite
differences in float32 are noise (see :mod:`minialex.gradcheck`).

=====================  =========================================================================
module                 graders
=====================  =========================================================================
``chain_rule``         :func:`check_linear_backward`, :func:`check_softmax_ce_backward`
``convolution``        :func:`check_conv_forward_naive`, :func:`check_conv_backward_naive`,
                       :func:`check_im2col`, :func:`check_col2im`
``relu_pool``          :func:`check_relu_backward`, :func:`check_maxpool_backward`
``lrn``                :func:`check_lrn_forward`, :func:`check_lrn_backward`
``assembling``         :func:`check_pool5_side`, :func:`check_conv_cost`
``training``           :func:`check_sgd_paper_step`, :func:`check_confusion_matrix`
``cpu_vs_gpu``         :func:`check_im2col_bytes`, :func:`check_gemm_intensity`
``batchnorm``          :func:`check_batchnorm_backward`
``photographs``        :func:`check_rgb_covariance`, :func:`check_pca_colour_noise`
``two_gpu_split``      :func:`check_allgather_bytes`
``winograd``           :func:`check_winograd_f23`, :func:`check_winograd_tile`
=====================  =========================================================================
"""

from minialex.exercises.assembling import check_conv_cost, check_pool5_side
from minialex.exercises.batchnorm import check_batchnorm_backward
from minialex.exercises.chain_rule import check_linear_backward, check_softmax_ce_backward
from minialex.exercises.convolution import (
    check_col2im,
    check_conv_backward_naive,
    check_conv_forward_naive,
    check_im2col,
)
from minialex.exercises.cpu_vs_gpu import check_gemm_intensity, check_im2col_bytes
from minialex.exercises.lrn import check_lrn_backward, check_lrn_forward
from minialex.exercises.photographs import check_pca_colour_noise, check_rgb_covariance
from minialex.exercises.relu_pool import check_maxpool_backward, check_relu_backward
from minialex.exercises.training import check_confusion_matrix, check_sgd_paper_step
from minialex.exercises.two_gpu_split import check_allgather_bytes
from minialex.exercises.winograd import check_winograd_f23, check_winograd_tile

__all__ = [
    "check_allgather_bytes",
    "check_batchnorm_backward",
    "check_col2im",
    "check_confusion_matrix",
    "check_conv_backward_naive",
    "check_conv_cost",
    "check_conv_forward_naive",
    "check_gemm_intensity",
    "check_im2col",
    "check_im2col_bytes",
    "check_linear_backward",
    "check_lrn_backward",
    "check_lrn_forward",
    "check_maxpool_backward",
    "check_pca_colour_noise",
    "check_pool5_side",
    "check_relu_backward",
    "check_rgb_covariance",
    "check_sgd_paper_step",
    "check_softmax_ce_backward",
    "check_winograd_f23",
    "check_winograd_tile",
]
