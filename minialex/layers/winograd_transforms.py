"""The matrices of Winograd's minimal filtering F(m, r), derived exactly from polynomial interpolation.

One dimension first. A filter g of r taps slid over a signal d of α = m + r − 1 samples gives m outputs::

    y_i = Σ_k g_k · d_{i+k},        i = 0..m−1,  k = 0..r−1                   (m·r multiplications)

Winograd's algorithm computes them with α multiplications::

    y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]        G: (α, r),  Bᵀ: (α, α),  Aᵀ: (m, α)

Derivation (Toom–Cook). Read g and a length-m signal h as polynomials g(x) = Σ g_k x^k, h(x) = Σ h_i x^i.
Their *linear* convolution s = g ∗ h has s(x) = g(x)·h(x), a polynomial of degree α − 1, so α values of it
determine it: its values at α − 1 distinct points p_j, and its leading coefficient (the "point at
infinity", s_∞ = g_{r−1}·h_{m−1}). Each of those α values is *one* product, g(p_j)·h(p_j)::

    s = V⁻¹ [ (E_r g) ⊙ (E_m h) ]

where E_n (α, n) evaluates a polynomial of n coefficients at the points (E_n[j, k] = p_j^k, and the
row of ∞ picks the coefficient of x^{n−1}), and V = E_α is the same for degree α − 1 (invertible: a
Vandermonde matrix with one extra row). For a fixed g this is a linear map h → s, the matrix
C_g[t, i] = g_{t−i} (α, m). The filter y = C_gᵀ d is its *transpose* (correlation is the adjoint of
convolution), and transposing the product gives::

    y = E_mᵀ [ (E_r g) ⊙ (V⁻ᵀ d) ],    so    Aᵀ = E_mᵀ,  G = E_r,  Bᵀ = V⁻ᵀ.

Any diagonal scaling D moves freely between the two factors of the ⊙ (G → D⁻¹G, Bᵀ → D Bᵀ); it is used
to make every row of Bᵀ integer (the input transform is then additions and small integer multiples, as in
Lavin & Gray, 2016). The points: 0, 1, −1 for F(2, 3) and 0, ±1, ±2 for F(4, 3), each with ∞. Larger
points make the matrices' entries grow (5 and 1/24 in F(4, 3)); that growth, not the algorithm, is where
float32 accuracy goes.

Two dimensions by nesting: a 2-D tile of α×α inputs is filtered along its rows, then along its columns,
with the same 1-D algorithm::

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        d, U = G g Gᵀ, V = Bᵀ d B: (α, α);  Y: (m, m)

Flattening each tile row-major turns each sandwich into one matrix with the Kronecker product,
vec(Bᵀ d B) = (Bᵀ ⊗ Bᵀ) vec(d), so the three transforms are matrices (α², α²), (α², r²) and (m², α²)
that multiply every tile of a batch at once: GEMMs again (:func:`kron_matrices`).

All matrices are computed here in exact rational arithmetic (:mod:`fractions`) and only then rounded to
the dtype of the data.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from typing import Any

import numpy as np

from minialex.backend import xp
from minialex.errors import LayerInputError

Array = Any
Matrix = list[list[Fraction]]

POINTS: dict[int, tuple[Fraction, ...]] = {
    2: (Fraction(0), Fraction(1), Fraction(-1)),
    4: (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2)),
}
"""The finite interpolation points of F(m, 3) for each supported output tile size m (∞ is always added)."""


def _evaluation(points: tuple[Fraction, ...], n: int) -> Matrix:
    """E_n: the values of a polynomial of n coefficients at ``points`` and at ∞ (its leading coefficient)."""
    rows = [[p**k for k in range(n)] for p in points]
    rows.append([Fraction(int(k == n - 1)) for k in range(n)])
    return rows


def _inverse(a: Matrix) -> Matrix:
    """The exact inverse of a small square matrix of Fractions (Gauss–Jordan)."""
    size = len(a)
    work = [row[:] + [Fraction(int(i == j)) for j in range(size)] for i, row in enumerate(a)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if work[r][col] != 0)
        work[col], work[pivot] = work[pivot], work[col]
        lead = work[col][col]
        work[col] = [v / lead for v in work[col]]
        for r in range(size):
            if r != col and work[r][col] != 0:
                factor = work[r][col]
                work[r] = [v - factor * u for v, u in zip(work[r], work[col], strict=True)]
    return [row[size:] for row in work]


def _transpose(a: Matrix) -> Matrix:
    return [list(col) for col in zip(*a, strict=True)]


@cache
def exact_matrices(m: int, r: int = 3) -> tuple[Matrix, Matrix, Matrix]:
    """(Aᵀ, G, Bᵀ) of F(m, r) as exact Fractions, shapes (m, α), (α, r), (α, α) with α = m + r − 1.

    Each row ξ of Bᵀ is scaled to integers with no common factor (and G's row ξ divided by the same
    number), which leaves the product Aᵀ[(G g) ⊙ (Bᵀ d)] unchanged.
    """
    if m not in POINTS or r != 3:
        raise LayerInputError(f"Winograd F(m, r): supported are m in {sorted(POINTS)} with r = 3, got F({m}, {r})")
    points = POINTS[m]
    alpha = m + r - 1
    at = _transpose(_evaluation(points, m))
    g = _evaluation(points, r)
    bt = _transpose(_inverse(_evaluation(points, alpha)))
    for xi in range(alpha):
        denominators = np.lcm.reduce([v.denominator for v in bt[xi]])
        numerators = [int(v * int(denominators)) for v in bt[xi]]
        common = int(np.gcd.reduce([abs(v) for v in numerators if v])) or 1
        scale = Fraction(int(denominators), common)
        bt[xi] = [v * scale for v in bt[xi]]
        g[xi] = [v / scale for v in g[xi]]
    return at, g, bt


def matrices(m: int, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Aᵀ, G, Bᵀ) of F(m, 3) as host NumPy arrays of ``dtype`` (see :func:`exact_matrices`)."""
    return tuple(np.array([[float(v) for v in row] for row in a], dtype=dtype) for a in exact_matrices(m))


@cache
def _kron_host(m: int, dtype_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    at, g, bt = (np.array([[float(v) for v in row] for row in a], dtype=np.float64) for a in exact_matrices(m))
    # Kronecker products in float64 from the exact entries, then rounded once to the data's dtype.
    return tuple(np.ascontiguousarray(np.kron(a, a).astype(dtype_name)) for a in (at, g, bt))


_device_cache: dict[tuple[int, str, int], tuple[Array, Array, Array]] = {}


def kron_matrices(m: int, dtype: Any) -> tuple[Array, Array, Array]:
    """(Aᵀ⊗Aᵀ, G⊗G, Bᵀ⊗Bᵀ) of F(m×m, 3×3) on the backend's device, shapes (m², α²), (α², 9), (α², α²).

    They act on tiles flattened row-major: vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d), and likewise for G and Aᵀ.
    """
    name = np.dtype(dtype).name
    key = (m, name, id(xp))
    if key not in _device_cache:
        _device_cache[key] = tuple(xp.asarray(a) for a in _kron_host(m, name))
    return _device_cache[key]
