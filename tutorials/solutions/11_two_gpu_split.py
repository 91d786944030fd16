"""Solutions to the exercises of tutorials/11_two_gpu_split.ipynb.

Paste a function into its exercise cell (replacing the stub), run it, then run the check cell below it.
"""


# Exercise
def allgather_bytes(channels, height, width, ranks, itemsize):
    """Bytes one rank sends per image through the all-gather into a layer that needs the whole (C, H, W)."""
    block = channels // ranks * height * width  # what one rank holds: C/P channels
    forward = (ranks - 1) * block * itemsize  # its block to each of the P - 1 others
    backward = (ranks - 1) * channels * height * width // ranks * itemsize  # reduce-scatter: (P - 1)/P of the whole
    return forward, backward
