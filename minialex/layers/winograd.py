"""Winograd convolution F(m×m, 3×3) for stride-1 3×3 layers: forward, dX and dW, batched as GEMMs.

Shapes (as in :class:`minialex.layers.Conv2d`)::

    x (N, C, H, W)    weight (K, C/G, 3, 3)    y (N, K, OH, OW),  OH = H + 2p − 2

The 1-D algorithm, its derivation from polynomial interpolation and the nesting to 2-D are in
:mod:`minialex.layers.winograd_transforms`: a tile of α×α inputs (α = m + 2) gives m×m outputs as
``Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A``.

Tiles. The output is cut into TH×TW tiles of m×m (TH = ⌈OH/m⌉); output tile (th, tw) needs the α×α input
patch starting at row th·m, column tw·m of the padded input, so neighbouring input tiles overlap by 2.
When m does not divide OH the padded input gets extra zero rows below (and columns to the right), the
last tiles compute a few outputs that do not exist, and those are cropped. With P = N·TH·TW tiles and
every tile flattened row-major to α² values (:func:`~minialex.layers.winograd_transforms.kron_matrices`)::

    d  (α², C, P)      d[(i, j), c, (n, th, tw)] = xpad[n, c, th·m + i, tw·m + j]      one strided copy
    V  (α², C, P)      V = (Bᵀ⊗Bᵀ) · d                                                 one GEMM
    U  (α², K, C/G)    U = (G⊗G) · vec(weight)                                          one small GEMM
    M  (α², K, P)      M[ξ]_g = U[ξ]_g · V[ξ]_g    for each of the α² points ξ, each group g   one batched GEMM
    Yt (m², K, P)      Yt = (Aᵀ⊗Aᵀ) · M                                                 one GEMM
    y                  Yt scattered into (N, K, OH, OW), the overhang cropped                one strided copy

The multiplications that count are those of M: α²·K·(C/G)·P against 9·K·(C/G)·N·OH·OW for the direct
convolution, a factor 9m²/α² fewer per tile (2.25 for F(2×2), 4 for F(4×4)) less the cropped overhang.

Backward, dX. y = conv(x, w) with padding p is dy → dxpad, ``dxpad[n, c, h, w] = Σ_{k,i,j} dy[n, k, h−i, w−j]
w[k, c, i, j]``: a full (padding 2) correlation of dy with the kernel flipped in both axes and its two channel
axes swapped, w'[c, k, i, j] = w[k, c, 2−i, 2−j] (within each group). Cropping p from each side of dxpad is the
same as padding dy by 2 − p (cropping dy when p > 2), so **dX is itself a Winograd convolution**:
``dx = conv(dy, w', padding = 2 − p)``, run through the same code.

Backward, dW. The forward is a chain of linear maps of w: w → U = (G⊗G)w → M = U V → y = crop((Aᵀ⊗Aᵀ) M). Each
one's adjoint, in reverse order, gives dW (exactly, in exact arithmetic: the transposed transforms)::

    dYt = tiles of dy (zeros in the overhang)         (m², K, P)      the adjoint of the crop-and-scatter
    dM  = (Aᵀ⊗Aᵀ)ᵀ · dYt                              (α², K, P)      one GEMM
    dU[ξ]_g = Σ_P dM[ξ]_g · V[ξ]_gᵀ                   (α², K, C/G)    one batched GEMM, summed over the chunks
    dW  = (G⊗G)ᵀ · dU                                  (9, K·C/G)      one small GEMM

When the whole batch is one chunk, the forward keeps V for dW (one input transform fewer per step, at the cost of
α²/m² times the input's size until the backward pass); otherwise V is rebuilt from x chunk by chunk in the
backward pass, as im2col rebuilds its columns, so that only x is kept between the passes.
The bias is added after the output transform, and db = Σ dy over N, OH, OW, as for im2col.

Memory and chunks. The batch goes through in chunks of images whose transformed tiles fit in a budget of
bytes, through reused scratch buffers (:mod:`minialex._engine.workspace`). Every array stays in the input's
dtype; the matrices are rounded once from exact fractions to it. Everything is ``xp`` array code (strided
views, copies, ``matmul``), written to run on CuPy unchanged.
"""

from __future__ import annotations

from typing import Any

from minialex._engine import parallel
from minialex._engine.workspace import scratch
from minialex.backend import xp
from minialex.layers.winograd_transforms import kron_matrices

Array = Any

TILE_SIZES = (2, 4)
"""The output tile sizes m of the supported algorithms F(m×m, 3×3)."""


def tile_count(size: int, m: int) -> int:
    """⌈size / m⌉: how many m-wide tiles cover ``size`` outputs."""
    return -(-size // m)


def bytes_per_image(c_in: int, c_out: int, h: int, w: int, padding: tuple[int, int], m: int, itemsize: int) -> int:
    """Bytes of scratch one image needs in the largest of the three Winograd computations of a layer.

    A convolution from C to K channels over T tiles holds the gathered tiles and V (2·α²·C·T values), the
    product M (α²·K·T) and the output tiles (m²·K·T). The forward runs C_in → C_out over the output's tiles;
    dX runs C_out → C_in over the input's tiles; dW holds the tiles, V, the dy tiles and dM of the forward's.
    """
    oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    alpha2, m2 = (m + 2) ** 2, m * m
    t_out, t_in = tile_count(oh, m) * tile_count(ow, m), tile_count(h, m) * tile_count(w, m)
    forward = (2 * alpha2 * c_in + alpha2 * c_out + m2 * c_out) * t_out
    input_grad = (2 * alpha2 * c_out + alpha2 * c_in + m2 * c_in) * t_in
    weight_grad = (2 * alpha2 * c_in + m2 * c_out + alpha2 * c_out) * t_out
    return max(forward, input_grad, weight_grad) * itemsize


def transform_kernel(weight: Array, groups: int, m: int) -> Array:
    """U = (G⊗G)·vec(w) for every filter: weight (K, C/G, 3, 3) → U (α², G, K/G, C/G)."""
    k, cg = weight.shape[:2]
    _, g_kron, _ = kron_matrices(m, weight.dtype)
    u = xp.matmul(g_kron, weight.reshape(k * cg, 9).T)
    return u.reshape(-1, groups, k // groups, cg)


def flipped_kernel(weight: Array, groups: int) -> Array:
    """w'[c, k, i, j] = w[k, c, 2−i, 2−j] within each group: (K, C/G, 3, 3) → (C, K/G, 3, 3), contiguous."""
    k, cg = weight.shape[:2]
    w5 = weight.reshape(groups, k // groups, cg, 3, 3).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return xp.ascontiguousarray(w5).reshape(groups * cg, k // groups, 3, 3)


def _crop(x: Array, padding: tuple[int, int]) -> tuple[Array, tuple[int, int]]:
    """A negative padding −q is a crop of q rows (columns) from each side: returns (view, padding ≥ 0)."""
    ph, pw = padding
    if ph < 0:
        x = x[:, :, -ph : x.shape[2] + ph]
    if pw < 0:
        x = x[:, :, :, -pw : x.shape[3] + pw]
    return x, (max(ph, 0), max(pw, 0))


def transform_input(x: Array, padding: tuple[int, int], m: int, keep: bool = False) -> tuple[Array, int, int]:
    """V = (Bᵀ⊗Bᵀ)·d for every α×α input tile of ``x`` (n, C, H, W) zero-padded by ``padding``.

    Returns V (α², C, n·TH·TW) and (TH, TW). V is a scratch view valid until the next call, or with ``keep`` a
    new array of its own.
    """
    x, (ph, pw) = _crop(x, padding)
    n, c, h, w = x.shape
    th, tw = tile_count(h + 2 * ph - 2, m), tile_count(w + 2 * pw - 2, m)
    alpha = m + 2
    hp, wp = th * m + 2, tw * m + 2  # >= h + 2ph: the extra rows and columns are zeros
    xpad = scratch("winograd.pad", (c, n, hp, wp), x.dtype)
    tiles = scratch("winograd.tiles", (alpha * alpha, c, n * th * tw), x.dtype)
    s_c, s_n, s_h, s_w = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, shape=(c, alpha, alpha, n, th, tw), strides=(s_c, s_h, s_w, s_n, m * s_h, m * s_w)
    )
    tiles6 = tiles.reshape(alpha, alpha, c, n, th, tw).transpose(2, 0, 1, 3, 4, 5)
    x_cm = x.transpose(1, 0, 2, 3)

    def channels(c0: int, c1: int) -> None:
        pad = xpad[c0:c1]
        pad[:, :, :ph] = 0
        pad[:, :, ph + h :] = 0
        pad[:, :, ph : ph + h, :pw] = 0
        pad[:, :, ph : ph + h, pw + w :] = 0
        pad[:, :, ph : ph + h, pw : pw + w] = x_cm[c0:c1]
        tiles6[c0:c1] = view[c0:c1]  # the one gather: every tile, overlapping by 2

    parallel.split(channels, c, tiles.size)
    b_kron = kron_matrices(m, x.dtype)[2]
    v = xp.empty(tiles.shape, dtype=x.dtype) if keep else scratch("winograd.v", tiles.shape, x.dtype)
    xp.matmul(b_kron, tiles.reshape(alpha * alpha, -1), out=v.reshape(alpha * alpha, -1))
    return v, th, tw


def conv_chunk(x: Array, u: Array, padding: tuple[int, int], m: int, out: Array, keep: bool = False) -> Array:
    """Write the Winograd convolution of ``x`` (n, C, H, W) with U (α², G, K/G, C/G) into ``out`` (K, n, OH, OW).

    Returns the transformed input V (a scratch view, or with ``keep`` an array of its own, for the backward pass).
    """
    alpha2, groups, kg, cg = u.shape
    k = groups * kg
    v, th, tw = transform_input(x, padding, m, keep)
    p = v.shape[2]
    prod = scratch("winograd.m", (alpha2, groups, kg, p), x.dtype)
    xp.matmul(u, v.reshape(alpha2, groups, cg, p), out=prod)  # the α²·G GEMMs, one call
    at_kron = kron_matrices(m, x.dtype)[0]
    yt = scratch("winograd.y", (m * m, k * p), x.dtype)
    xp.matmul(at_kron, prod.reshape(alpha2, -1), out=yt)
    scatter_tiles(yt, out, m, th, tw)
    return v


def scatter_tiles(yt: Array, out: Array, m: int, th: int, tw: int) -> None:
    """out[k, n, th·m + i, tw·m + j] = yt[(i, j), k, (n, th, tw)], the overhang beyond ``out`` dropped."""
    k, n, oh, ow = out.shape
    y6 = yt.reshape(m, m, k, n, th, tw)

    def channels(k0: int, k1: int) -> None:
        for i in range(m):
            rows = tile_count(oh - i, m)
            for j in range(m):
                out[k0:k1, :, i::m, j::m] = y6[i, j, k0:k1, :, :rows, : tile_count(ow - j, m)]

    parallel.split(channels, k, out.size)


def gather_tiles(dy: Array, m: int, th: int, tw: int) -> Array:
    """The adjoint of :func:`scatter_tiles`: dy (K, n, OH, OW) → (m², K, n·TH·TW), zeros in the overhang."""
    k, n, oh, ow = dy.shape
    yt = scratch("winograd.y", (m * m, k, n * th * tw), dy.dtype)
    y6 = yt.reshape(m, m, k, n, th, tw)

    def channels(k0: int, k1: int) -> None:
        for i in range(m):
            rows = tile_count(oh - i, m)
            for j in range(m):
                cols = tile_count(ow - j, m)
                tile = y6[i, j, k0:k1]
                tile[:, :, :rows, :cols] = dy[k0:k1, :, i::m, j::m]
                tile[:, :, rows:] = 0
                tile[:, :, :rows, cols:] = 0

    parallel.split(channels, k, yt.size)
    return yt


def weight_grad_chunk(
    x: Array, dy: Array, padding: tuple[int, int], m: int, groups: int, du: Array, v: Array | None = None
) -> None:
    """Add this chunk's dU = Σ_P dM·Vᵀ into ``du`` (α², G, K/G, C/G); x (n, C, H, W), dy (K, n, OH, OW).

    ``v``: the chunk's V kept from the forward pass, if it was (else it is rebuilt from x).
    """
    alpha2, _, kg, cg = du.shape
    th, tw = tile_count(dy.shape[2], m), tile_count(dy.shape[3], m)
    if v is None:
        v, _, _ = transform_input(x, padding, m)
    p = v.shape[2]
    yt = gather_tiles(dy, m, th, tw)
    at_kron = kron_matrices(m, x.dtype)[0]
    dm = scratch("winograd.m", (alpha2, groups, kg, p), x.dtype)
    xp.matmul(at_kron.T, yt.reshape(m * m, -1), out=dm.reshape(alpha2, -1))
    du += xp.matmul(dm, v.reshape(alpha2, groups, cg, p).transpose(0, 1, 3, 2))


def weight_grad(du: Array, m: int) -> Array:
    """dW = (G⊗G)ᵀ·dU: dU (α², G, K/G, C/G) → dW (K, C/G, 3, 3), contiguous."""
    alpha2, groups, kg, cg = du.shape
    g_kron = kron_matrices(m, du.dtype)[1]
    dw = xp.matmul(g_kron.T, du.reshape(alpha2, -1))  # (9, K·C/G)
    return xp.ascontiguousarray(dw.T).reshape(groups * kg, cg, 3, 3)
