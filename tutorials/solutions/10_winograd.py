"""Solutions to the exercises of tutorials/10_winograd.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""

import numpy as np

from minialex.layers.winograd_transforms import matrices

AT, G, BT = matrices(2)


# Exercise 1
def f23(d, g):
    """Two outputs of the 3-tap filter g over the 4 samples d, with 4 multiplications."""
    u = (g[0], (g[0] + g[1] + g[2]) / 2, (g[0] - g[1] + g[2]) / 2, g[2])  # the filter's transform G g: free
    m1 = (d[0] - d[2]) * u[0]
    m2 = (d[1] + d[2]) * u[1]
    m3 = (d[2] - d[1]) * u[2]
    m4 = (d[1] - d[3]) * u[3]
    return m1 + m2 + m3, m2 - m3 - m4


# Exercise 2
def tile(d, g):
    """The 2×2 outputs of the 3×3 filter g over the 4×4 tile d, by F(2×2, 3×3)."""
    u = G @ g @ G.T  # (4, 4): the filter's transform
    v = BT @ d @ BT.T  # (4, 4): the tile's transform (B = BTᵀ)
    return AT @ (u * v) @ AT.T
