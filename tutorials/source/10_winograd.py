"""Source of tutorials/10_winograd.ipynb (build with `python tutorials/build.py 10`)."""

# %% [markdown]
# # 10. Fast convolution: Winograd's minimal filtering, or why the fastest libraries do not compute the textbook formula
#
# Notebook 2 turned a convolution into one matrix product (im2col + GEMM), and notebook 7 showed that a GEMM runs
# at the machine's peak rate: the only way left to go faster is to do **fewer multiplications**. For a 3×3
# filter there is a classic trick, Winograd's *minimal filtering algorithm* (Winograd 1980; Lavin & Gray 2016
# brought it to convolutional networks, and cuDNN uses it for 3×3 layers): two outputs of a 3-tap filter cost 4
# multiplications instead of 6, a 2×2 block of outputs of a 3×3 filter costs 16 instead of 36.
#
# You will:
# 1. derive F(2, 3) by hand from polynomial interpolation, and write it (exercise 1);
# 2. nest it into 2-D, F(2×2, 3×3), on one tile (exercise 2);
# 3. see F(4×4, 3×3), its matrices, and what its larger entries cost in float32 accuracy;
# 4. check minialex's Winograd layer against the direct convolution, and measure its speed against the
#    multiplication count.
#
# Prerequisites: notebook 2 (convolution, im2col) and notebook 7 (GEMM rates). About 30 minutes.

# %%
import json
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises, reference
from minialex.layers import Conv2d
from minialex.layers.winograd_transforms import exact_matrices, matrices

# %% [markdown]
# ## 10.1 The 1-D problem: two outputs of a 3-tap filter
#
# A convolution layer computes a *correlation*: with a filter $g = (g_0, g_1, g_2)$ and four samples
# $d = (d_0, d_1, d_2, d_3)$, the two outputs are
#
# $$y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2, \qquad y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2 ,$$
#
# six multiplications. Winograd's F(2, 3) computes the same two numbers with four:
#
# $$m_1 = (d_0 - d_2)\,g_0,\quad m_2 = (d_1 + d_2)\,\tfrac{g_0 + g_1 + g_2}{2},\quad
#   m_3 = (d_2 - d_1)\,\tfrac{g_0 - g_1 + g_2}{2},\quad m_4 = (d_1 - d_3)\,g_2,$$
# $$y_0 = m_1 + m_2 + m_3, \qquad y_1 = m_2 - m_3 - m_4 .$$
#
# The filter's combinations $(g_0 \pm g_1 + g_2)/2$ are computed **once per filter**, and a layer reuses each
# filter at every position of every image: they are free. Only products with the data count.
#
# ### Where the formulas come from: polynomial interpolation
#
# Read the filter and a 2-sample signal $h$ as polynomials, $g(x) = g_0 + g_1 x + g_2 x^2$ and
# $h(x) = h_0 + h_1 x$. Their product $s(x) = g(x)h(x)$ has degree 3, so **four values determine it**, and each
# value is a single multiplication: $s(p) = g(p)\,h(p)$. Take the points $p = 0, 1, -1$ and "$\infty$" (the
# leading coefficient, $s_3 = g_2 h_1$):
#
# $$s(0) = g_0 h_0,\quad s(1) = (g_0 + g_1 + g_2)(h_0 + h_1),\quad s(-1) = (g_0 - g_1 + g_2)(h_0 - h_1),\quad
#   s_\infty = g_2 h_1 .$$
#
# Interpolation (solving a 4×4 Vandermonde system) recovers the coefficients of $s$, the *linear* convolution
# $g * h$. That is the Toom–Cook algorithm. In matrices, with $E_n$ evaluating a polynomial of $n$ coefficients at
# the points and $V = E_4$:
#
# $$s = V^{-1}\,\big[(E_3 g) \odot (E_2 h)\big] .$$
#
# The correlation we want is the **transpose** of this map ($h \mapsto g * h$ is a matrix $C_g$, and
# $y = C_g^\top d$: correlation is the adjoint of convolution, exactly as $\partial L/\partial x$ of a convolution
# was a correlation in notebook 2). Transposing the product gives the three matrices of Winograd's algorithm:
#
# $$y = A^\top\big[(G g) \odot (B^\top d)\big], \qquad A^\top = E_2^\top,\quad G = E_3,\quad B^\top = V^{-\top}.$$
#
# minialex computes them in exact fractions (`minialex/layers/winograd_transforms.py`); a diagonal scaling moved
# between $G$ and $B^\top$ makes $B^\top$ integer:

# %%
at, g_mat, bt = exact_matrices(2)


def show(name, m):
    print(name)
    for row in m:
        print("   ", "  ".join(f"{v!s:>5}" for v in row))


show("Aᵀ (2×4)", at)
show("G (4×3)", g_mat)
show("Bᵀ (4×4)", bt)

# %% [markdown]
# Check the identity on random numbers, and count: the element-wise product $\odot$ is the only place where data
# and filter meet, 4 multiplications.

# %%
AT, G, BT = matrices(2)
rng = np.random.default_rng(0)
d, g = rng.standard_normal(4), rng.standard_normal(3)
direct = np.array([d[0:3] @ g, d[1:4] @ g])
winograd = AT @ ((G @ g) * (BT @ d))
print("direct  ", direct)
print("Winograd", winograd, " difference", np.abs(direct - winograd).max())

# %% [markdown]
# ### Exercise 1: F(2, 3) by hand
#
# Write `f23(d, g)`, returning `(y0, y1)`, with the four products $m_1 \dots m_4$ above, starting from the
# filter transform `u` given in the stub. The check hands your function samples that **count their
# multiplications**, so it must use at most 4 products involving `d`.


# %% [exercise]
def f23(d, g):
    """Two outputs of the 3-tap filter g over the 4 samples d, with 4 multiplications."""
    # Start from the filter's transform G g (free: computed once per filter):
    # u = (g[0], (g[0] + g[1] + g[2]) / 2, (g[0] - g[1] + g[2]) / 2, g[2])
    raise NotImplementedError


# %% [check]
exercises.check_winograd_f23(f23)

# %% [markdown]
# ## 10.2 Two dimensions: nesting F(2, 3)
#
# A 3×3 filter over a 4×4 tile $d$ gives 2×2 outputs, 36 multiplications directly. Filter along the rows with
# F(2, 3), then along the columns with F(2, 3) again: every 1-D product becomes a 1-D Winograd problem itself, and
#
# $$Y = A^\top\big[(G g G^\top) \odot (B^\top d B)\big]A$$
#
# needs $4 \times 4 = 16$ multiplications, 2.25× fewer. $U = G g G^\top$ is the filter's transform (once per
# filter), $V = B^\top d B$ the tile's (additions only: $B^\top$ holds 0 and ±1).
#
# ### Exercise 2: one F(2×2, 3×3) tile
#
# Write `tile(d, g)` with the matrices `AT`, `G`, `BT` of F(2, 3) from above.


# %% [exercise]
def tile(d, g):
    """The 2×2 outputs of the 3×3 filter g over the 4×4 tile d, by F(2×2, 3×3)."""
    raise NotImplementedError


# %% [check]
exercises.check_winograd_tile(tile)

# %% [markdown]
# **A whole layer.** An image is cut into overlapping tiles (tile $t$ starts at row $2t$: neighbours share 2
# rows), every tile of every channel is transformed, and then, for each of the 16 positions $\xi$ of the
# transformed tile, the sum over input channels is a matrix product:
#
# $$M_\xi = U_\xi V_\xi, \qquad U_\xi: (C_{out}, C_{in}),\quad V_\xi: (C_{in}, \text{tiles}),$$
#
# 16 GEMMs with one column per tile, which together do 16/36 of im2col's multiplications (4 outputs per tile).
# The output transform $A^\top M A$ then gives the 2×2 outputs of every tile.
# The backward pass is the same machinery: $\partial L/\partial x$ is a Winograd convolution of $\partial L/\partial y$
# with the flipped filter, and $\partial L/\partial W$ follows from the transposed transforms
# (`minialex/layers/winograd.py` derives both).
#
# ## 10.3 Bigger tiles: F(4×4, 3×3), and what it costs in accuracy
#
# With 5 points ($0, \pm 1, \pm 2$ and $\infty$) the same construction gives 4 outputs from 6 inputs:
# 36 multiplications for a 4×4 block instead of 144, **4× fewer**. The price is in the matrices:

# %%
at4, g4, bt4 = exact_matrices(4)
show("Bᵀ of F(4, 3) (6×6)", bt4)
show("G of F(4, 3) (6×3)", g4)
largest = max(abs(v) for row in bt4 for v in row)
smallest = min(abs(v) for row in g4 for v in row if v != 0)
print(
    f"entries from {smallest} to {largest}: "
    f"products of the nested 2-D transform span {float(largest**2 / smallest**2):.0f}×"
)

# %% [markdown]
# Adding numbers of very different sizes and then cancelling them loses low-order bits. Compare the float32
# result of each algorithm with a float64 one, on a conv3-shaped layer of 64 channels (inputs like a ReLU's
# outputs):

# %%
rng = np.random.default_rng(1)
x = np.abs(rng.standard_normal((2, 64, 13, 13))) * 3.0
exact = Conv2d(64, 64, 3, padding=1, dtype=np.float64, algorithm="im2col")
y64 = exact.forward(x)
errors = {}
for algorithm in ("im2col", "winograd2", "winograd4"):
    layer = Conv2d(64, 64, 3, padding=1, algorithm=algorithm)
    layer.params["weight"] = exact.params["weight"].astype(np.float32)
    y32 = layer.forward(x.astype(np.float32))
    errors[algorithm] = float(np.abs(y32 - y64).max() / np.abs(y64).max())
    print(f"{algorithm:10s} float32 error relative to the largest output: {errors[algorithm]:.1e}")

# %% [markdown]
# F(2×2) stays close to im2col; F(4×4) loses about one and a half decimal digits. For training that is harmless
# (an SGD step changes the weights by far more), and it is why cuDNN and oneDNN use F(2×2) or F(4×4) and not the
# even larger tiles that would save still more multiplications. In float64 every algorithm agrees with the loop
# reference to rounding:

# %%
x = rng.standard_normal((2, 3, 7, 9))
for algorithm in ("winograd2", "winograd4"):
    layer = Conv2d(3, 4, 3, padding=1, dtype=np.float64, algorithm=algorithm)
    y = layer.forward(x)
    y_ref = reference.conv2d_forward(x, layer.params["weight"], layer.params["bias"], 1, 1)
    print(f"{algorithm}: max difference from the loop reference {np.abs(y - y_ref).max():.1e}")

# %% [markdown]
# ## 10.4 Speed against the multiplication count
#
# Fewer multiplications are not the same as less time: the transforms are memory-bound passes (gathering
# overlapping tiles, the small transform products, scattering the results back), and the 16 or 36 GEMMs are
# shorter than im2col's one. Time one layer (128 channels, 13×13 maps like AlexNet's conv3–5, batch 8) forward and
# backward, the three algorithms side by side, alternating, medians:

# %%
rng = np.random.default_rng(2)
x = rng.standard_normal((8, 128, 13, 13)).astype(np.float32)
dy = rng.standard_normal((8, 128, 13, 13)).astype(np.float32)
layers = {a: Conv2d(128, 128, 3, padding=1, algorithm=a) for a in ("im2col", "winograd2", "winograd4")}
for layer in layers.values():
    layer.params["weight"] = layers["im2col"].params["weight"]
times = {a: [] for a in layers}
for _ in range(4):
    for a, layer in layers.items():
        start = time.perf_counter()
        layer.forward(x)
        layer.backward(dy)
        times[a].append(time.perf_counter() - start)
mults = {"im2col": 9 * 13 * 13, "winograd2": 16 * 7 * 7, "winograd4": 36 * 4 * 4}  # per channel pair and image
for a in layers:
    print(
        f"{a:10s} {1000 * np.median(times[a]):7.1f} ms"
        f"   speed-up {np.median(times['im2col']) / np.median(times[a]):.2f}×"
        f"   multiplications saved {mults['im2col'] / mults[a]:.2f}×"
    )

# %% [markdown]
# On 13×13 maps the tiles do not fit exactly (F(4×4) computes 16×16 outputs and crops 3 rows and columns), so
# F(4×4) saves 2.64×, not 4×, and F(2×2) 1.94×. The measured speed-up is smaller than the saving: the transforms
# take their share. This machine may also be shared with other jobs, so treat the figures above as rough.
#
# The project's benchmark measured every AlexNet layer the same way, beside PyTorch, with one thread each (the
# machine was heavily loaded: see `docs/winograd.md`):

# %%
path = os.path.join("..", "benchmarks", "results", "convolution-amd-epyc-1thread-batch32.json")
with open(path, encoding="utf-8") as f:
    recorded = json.load(f)
rows = [r for r in recorded["layers"] if "winograd4" in r["median_s"]]
labels = [f"{r['variant']}\n{r['layer']}" for r in rows]
fig, ax = plt.subplots(figsize=(10, 3.5))
positions = np.arange(len(rows))
for k, (key, label) in enumerate(
    [("im2col", "im2col"), ("winograd2", "F(2×2)"), ("winograd4", "F(4×4)"), ("pytorch", "PyTorch")]
):
    ax.bar(positions + 0.2 * k - 0.3, [1000 * r["median_s"][key] for r in rows], width=0.2, label=label)
ax.set_xticks(positions, labels, fontsize=8)
ax.set_ylabel("ms, forward + backward, batch 32")
ax.legend(ncol=4, fontsize=8)
ax.set_title("AlexNet's 3×3 layers: im2col, Winograd and PyTorch (one thread each, loaded machine)")
plt.tight_layout()
plt.show()
for r in rows:
    saved = r["multiplications"]["im2col"] / r["multiplications"]["winograd4"]
    speed = r["median_s"]["im2col"] / r["median_s"]["winograd4"]
    print(
        f"{r['variant']:12s} {r['layer']}: F(4×4) saves {saved:.2f}× the multiplications, "
        f"runs {speed:.2f}× faster than im2col"
    )

# %% [markdown]
# ## What to take away
#
# * A convolution's textbook formula is one way to compute it, not the fastest: F(m×m, 3×3) computes the same
#   numbers (exactly, in exact arithmetic) from a product of transformed tiles, with $(m+2)^2$ instead of $9m^2$
#   multiplications per tile.
# * The algorithm is polynomial interpolation: evaluate, multiply point by point, interpolate; the correlation is
#   its transpose.
# * The saving is paid for with transforms (memory-bound passes) and with accuracy (larger tiles, larger matrix
#   entries): F(4×4) loses about 1.5 decimal digits in float32. Libraries choose per layer, by shape; minialex's
#   `Conv2d(algorithm="auto")` does too (F(4×4) for the wide 3×3 layers on the CPU). On a busy machine the many
#   GEMM calls of a Winograd product can each wait for a BLAS thread that another job holds: `docs/winograd.md`
#   has the measurements, busy and idle.
#
# **Next:** [11. The two-GPU split](11_two_gpu_split.ipynb): the paper's two columns, run in one process and over MPI.
