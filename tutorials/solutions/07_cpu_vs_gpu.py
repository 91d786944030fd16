"""Solutions to the exercises of tutorials/07_cpu_vs_gpu.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

from minialex.layers import conv_output_size


# Exercise 1
def im2col_bytes(n, c, h, w, k, stride, padding, itemsize=4):
    """Bytes of the (c*k*k, n*oh*ow) matrix built by im2col."""
    oh, ow = conv_output_size(h, k, stride, padding), conv_output_size(w, k, stride, padding)
    return c * k * k * n * oh * ow * itemsize


# Exercise 2
def gemm_intensity(m, k, n, itemsize=4):
    """2mkn / (itemsize * (mk + kn + mn))."""
    return 2 * m * k * n / (itemsize * (m * k + k * n + m * n))
