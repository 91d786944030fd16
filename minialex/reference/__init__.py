"""Naive loop versions of the layers: obviously right, slow, for tests, tutorials and sanity checks.

Each function works on host NumPy arrays with explicit loops, so that it can be read against the formula in
the matching layer's docstring; run them on tiny shapes only.
"""
