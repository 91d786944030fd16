"""Source of tutorials/02_convolution_as_gemm.ipynb (build with `python tutorials/build.py 02`)."""

# %% [markdown]
# # 2. Convolution as a matrix product: im2col, and col2im as its adjoint
#
# Five of AlexNet's eight learned layers are convolutions, and they take about 90 % of its arithmetic. Written as
# loops, a convolution is six nested `for`s and hopelessly slow in Python. Written as **one matrix product**
# (GEMM), it runs at the speed of the machine's BLAS library. The trick is called **im2col** ("image to
# columns"), and the backward pass of the trick is its transpose, **col2im**.
#
# You will:
# 1. write a convolution as loops and derive its backward pass by hand, on a worked example small enough to
#    check with pencil and paper, and see $\partial L/\partial x$ turn out to be a full correlation with the
#    flipped kernel;
# 2. build the im2col matrix of a tiny image by hand and see every window become a column;
# 3. compute a convolution as `W @ cols` and confirm it against the loop definition;
# 4. derive the backward pass as two matrix products and col2im, and see why col2im is the **adjoint** of im2col,
#    not its inverse;
# 5. handle stride, padding and groups (the paper's two-GPU split), forward and backward;
# 6. watch a gradient check catch the classic col2im bug, and gradient-check `minialex.layers.Conv2d`;
# 7. implement the loop forward and backward, im2col and col2im yourself (four graded exercises).
#
# Prerequisites: notebook 1 (the chain rule and gradient checks). Reading time: about 40 minutes.

# %%
import matplotlib.pyplot as plt
import numpy as np
from scipy import signal

from minialex import exercises
from minialex.gradcheck import check_layer
from minialex.layers import Conv2d, col2im, conv_output_size, im2col

np.set_printoptions(precision=3, suppress=True, linewidth=120)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 2.1 What a convolution computes
#
# A convolution layer (strictly a cross-correlation, as in every deep-learning library) slides $C_{out}$ filters of
# size $C_{in}\times K_H \times K_W$ over the input $x \in \mathbb{R}^{N\times C_{in}\times H\times W}$ (zero-padded
# by $p$, moved by stride $s$):
#
# $$y_{n,o,h,w} = b_o + \sum_{c=0}^{C_{in}-1}\sum_{i=0}^{K_H-1}\sum_{j=0}^{K_W-1}
#   W_{o,c,i,j}\; x^{\text{pad}}_{n,\,c,\; h s + i,\; w s + j},
# \qquad O_H = \left\lfloor \frac{H + 2p - K_H}{s} \right\rfloor + 1.$$
#
# Here it is as loops, as slow and as clear as it gets. We keep it as the reference.


# %%
def conv_loops(x, w, stride=1, pad=0):
    """The definition: x (N, C, H, W), w (C_out, C, KH, KW) -> y (N, C_out, OH, OW). No bias."""
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = conv_output_size(h, kh, stride, pad), conv_output_size(wd, kw, stride, pad)
    y = np.zeros((n, c_out, oh, ow))
    for b in range(n):
        for o in range(c_out):
            for r in range(oh):
                for c in range(ow):
                    window = xpad[b, :, r * stride : r * stride + kh, c * stride : c * stride + kw]
                    y[b, o, r, c] = (window * w[o]).sum()
    return y


# %% [markdown]
# ### Exercise 1: the loops, with a bias and groups
#
# Write `conv_forward_naive(x, w, b, stride, padding, groups)`: the loops above plus a bias $b_o$ added to every
# output of filter $o$, and **groups**. With `groups=G` (section 2.5 explains why AlexNet has them) the input
# channels and the filters are cut into $G$ equal groups and filter $o$ sees only the channels of its own group
# $g = o \,/\!/\, (C_{out}/G)$: channels $g\,C_{in}/G$ to $(g+1)\,C_{in}/G - 1$. So `w` has shape
# $(C_{out}, C_{in}/G, K_H, K_W)$. With `groups=1` it is exactly the definition. The check compares with
# `minialex.layers.Conv2d` on overlapping windows, padding, strides that do not tile, and 2 and 3 groups.


# %% [exercise]
def conv_forward_naive(x, w, b, stride=1, padding=0, groups=1):
    """x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), b (C_out,) -> y (N, C_out, OH, OW)."""
    # Your code here: conv_loops with "+ b[o]", and the window cut to the channels of filter o's group.
    raise NotImplementedError


# %% [check]
exercises.check_conv_forward_naive(conv_forward_naive)

# %% [markdown]
# ## 2.2 The backward pass, by hand
#
# Everything in a convolution's backward pass follows from the loop definition and notebook 1's rule: **every
# term of a sum that contains a variable contributes to that variable's gradient**. Write $g = \partial L/\partial y$
# (same shape as $y$). The term $W_{o,c,i,j}\,x^{\text{pad}}_{n,c,hs+i,ws+j}$ appears once in output
# $y_{n,o,h,w}$, for every sample $n$ and output position $(h, w)$. Differentiating it with respect to each factor:
#
# $$\frac{\partial L}{\partial W_{o,c,i,j}} = \sum_{n}\sum_{h,w} g_{n,o,h,w}\; x^{\text{pad}}_{n,c,\,hs+i,\,ws+j},
# \qquad
# \frac{\partial L}{\partial b_o} = \sum_{n}\sum_{h,w} g_{n,o,h,w},$$
#
# $$\frac{\partial L}{\partial x^{\text{pad}}_{n,c,u,v}} = \sum_{o}\;\sum_{(h,w,i,j)\,:\;hs+i = u,\; ws+j = v}
#   g_{n,o,h,w}\; W_{o,c,i,j}.$$
#
# As loops this is one line each: every window *votes* for the weights with its own pixels
# (`dw[o] += g[n, o, h, w] * window`), and *sends back* the filter, scaled by its upstream gradient, onto the pixels
# it covered (`dxpad[n, :, window] += g[n, o, h, w] * w[o]`). Windows overlap, so a pixel collects from several:
# **add**, never assign. Finally $\partial L/\partial x$ is $\partial L/\partial x^{\text{pad}}$ with the padding
# cut off (the padded zeros are constants, not inputs).
#
# ### A worked example
#
# One channel, a $3\times3$ image $x$ holding 1 to 9, a $2\times2$ filter $W = \begin{pmatrix}1&2\\3&4\end{pmatrix}$,
# stride 1, no padding, so $y$ is $2\times2$; and an upstream gradient $g = \begin{pmatrix}1&-1\\2&0\end{pmatrix}$.
#
# * $\partial L/\partial W_{0,0}$: the top-left weight touches the top-left pixel of every window, i.e. $x_{0,0},
#   x_{0,1}, x_{1,0}, x_{1,1} = 1, 2, 4, 5$, so it is $1\cdot1 + (-1)\cdot2 + 2\cdot4 + 0\cdot5 = 7$.
# * $\partial L/\partial x_{1,1}$: the centre pixel sits in all four windows, at a different offset in each: it
#   is the bottom-right pixel of window $(0,0)$, the bottom-left of window $(0,1)$, and so on. So it collects
#   $g_{0,0}W_{1,1} + g_{0,1}W_{1,0} + g_{1,0}W_{0,1} + g_{1,1}W_{0,0} = 1\cdot4 + (-1)\cdot3 + 2\cdot2 + 0\cdot1 = 5$.
# * $\partial L/\partial x_{0,0}$: the corner is in window $(0,0)$ only, as its top-left pixel: $g_{0,0}W_{0,0} = 1$.
#
# The cell computes all of them with the loops written out (the way you will in the exercise) and checks the three
# numbers:

# %%
x_small = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
w_small = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
g_small = np.array([[[[1.0, -1.0], [2.0, 0.0]]]])
dw_small, dx_small = np.zeros_like(w_small), np.zeros_like(x_small)
for h in range(2):
    for w_ in range(2):
        window = x_small[0, :, h : h + 2, w_ : w_ + 2]
        dw_small[0] += g_small[0, 0, h, w_] * window  # each window votes for the weights
        dx_small[0, :, h : h + 2, w_ : w_ + 2] += g_small[0, 0, h, w_] * w_small[0]  # and sends the filter back
print("dL/dW =\n", dw_small[0, 0])
print("dL/dx =\n", dx_small[0, 0])
print("the three hand computations:", dw_small[0, 0, 0, 0] == 7, dx_small[0, 0, 1, 1] == 5, dx_small[0, 0, 0, 0] == 1)

# %% [markdown]
# ### $\partial L/\partial x$ is a full correlation with the flipped kernel
#
# Look at the centre pixel again: it met $W_{1,1}$ in the first window and $W_{0,0}$ in the last, so read in the
# order of the windows, the kernel appears **flipped** (rotated by 180°). That is true of every pixel. With
# stride 1, substitute $i = u - h$ in the formula above:
#
# $$\frac{\partial L}{\partial x^{\text{pad}}_{n,c,u,v}} = \sum_o \sum_{h,w} g_{n,o,h,w}\; W_{o,c,\,u-h,\,v-w}
#   = \sum_o \big(g_{n,o} \star_{\text{full}} \widetilde W_{o,c}\big)_{u,v},
#   \qquad \widetilde W_{o,c,i,j} = W_{o,c,\,K_H-1-i,\,K_W-1-j},$$
#
# a *full* cross-correlation ($\star_{\text{full}}$: $g$ zero-padded by $K-1$ on every side, so that every window
# that touches a pixel is counted) of the upstream gradient with the flipped kernel, which is the same thing as a
# true (flipping) convolution of $g$ with $W$. The forward pass correlates $x$ with $W$; the backward pass convolves
# $g$ with $W$. And $\partial L/\partial W_{o,c} = \sum_n x^{\text{pad}}_{n,c} \star_{\text{valid}} g_{n,o}$ is a
# valid correlation of the input with the upstream gradient. `scipy.signal` has all three operations; the loops
# agree with them:

# %%
flipped = w_small[0, 0, ::-1, ::-1]
full_correlation = signal.correlate2d(np.pad(g_small[0, 0], 1), flipped, mode="valid")  # g padded by K - 1 = 1
print("full correlation of g with the flipped kernel == loops:", np.array_equal(full_correlation, dx_small[0, 0]))
print(
    "true convolution of g with W             == loops:",
    np.array_equal(signal.convolve2d(g_small[0, 0], w_small[0, 0]), dx_small[0, 0]),
)
print(
    "valid correlation of x with g (dL/dW)    == loops:",
    np.array_equal(signal.correlate2d(x_small[0, 0], g_small[0, 0], mode="valid"), dw_small[0, 0]),
)

# %% [markdown]
# With a stride $s > 1$ the same holds after spreading $g$ out: put $s - 1$ zeros between its entries (the windows
# that were skipped contribute nothing), then do the full correlation with the flipped kernel. This is why the
# backward pass of a strided convolution is called a *transposed* (or "fractionally strided") convolution. A last
# check, on several channels and filters at stride 2, against `Conv2d`'s backward pass:

# %%
x_multi = rng.standard_normal((1, 2, 7, 7))
conv_s2 = Conv2d(2, 3, 3, stride=2).astype(np.float64)
g_multi = rng.standard_normal(conv_s2.output_shape(x_multi.shape))
conv_s2.forward(x_multi)
dx_layer = conv_s2.backward(g_multi)
spread = np.zeros((3, 2 * g_multi.shape[2] - 1, 2 * g_multi.shape[3] - 1))
spread[:, ::2, ::2] = g_multi[0]  # s - 1 = 1 zero between the entries
weight = conv_s2.params["weight"]
dx_signal = np.zeros((2, 7, 7))
for c in range(2):
    full = sum(signal.convolve2d(spread[o], weight[o, c]) for o in range(3))  # (OH·s - s + K) = 7 rows here
    dx_signal[c, : full.shape[0], : full.shape[1]] = full
print(
    "stride 2, 2 channels, 3 filters: spread-out full convolution == Conv2d.backward:",
    np.allclose(dx_signal, dx_layer[0]),
)

# %% [markdown]
# The loops are the clearest statement of the backward pass and the slowest implementation of it; `scipy.signal`
# is faster but one image and one channel pair at a time. Section 2.4 finds the form that runs at the speed of
# the machine: two matrix products and a scatter-add.
#
# ### Exercise 2: the backward pass with loops
#
# Write `conv_backward_naive(x, w, dy, stride, padding, groups)` returning `(dx, dw, db)`, using the loops of the
# worked example: pad `x`, visit every window of every filter, accumulate into `dw[o]` and into a zero `dxpad`, cut
# the padding off at the end; `db` is a sum. Handle groups the way your forward pass did (a filter's window covers
# only its group's channels). The check compares with `Conv2d`'s backward on the same cases as exercise 1, simplest
# first, and names the classic mistake it recognises (`=` for `+=`, an averaged `db`, a flipped kernel, the
# padding left on, the groups ignored).


# %% [exercise]
def conv_backward_naive(x, w, dy, stride=1, padding=0, groups=1):
    """x (N, C_in, H, W), w (C_out, C_in/groups, KH, KW), dy (N, C_out, OH, OW) -> (dx, dw, db)."""
    # Your code here: the loops of conv_forward_naive, with the two "+=" lines of the worked example inside.
    raise NotImplementedError


# %% [check]
exercises.check_conv_backward_naive(conv_backward_naive)

# %% [markdown]
# ## 2.3 im2col by hand
#
# Take a $4\times4$ image with the numbers 1 to 16 and a $3\times3$ filter. There are $2\times2 = 4$ window
# positions. im2col copies each window, flattened in the order (channel, row, column), into one **column**:

# %%
x_tiny = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
cols = im2col(x_tiny, kernel_size=3)
print("image:\n", x_tiny[0, 0])
print("cols = im2col(image), shape", cols.shape, "(rows: the 9 offsets (i, j); columns: the 4 windows):\n", cols)

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 1.1]})
axes[0].imshow(x_tiny[0, 0], cmap="Blues")
for (r, c), v in np.ndenumerate(x_tiny[0, 0]):
    axes[0].text(c, r, int(v), ha="center", va="center")
for k, (r0, c0, color) in enumerate([(0, 0, "tab:red"), (1, 1, "tab:orange")]):
    axes[0].add_patch(plt.Rectangle((c0 - 0.45, r0 - 0.45), 2.9, 2.9, fill=False, lw=2.5, ec=color))
    axes[1].add_patch(plt.Rectangle((3 * k - 0.45, -0.45), 0.9, 8.9, fill=False, lw=2.5, ec=color))
axes[0].set_title("image: windows (0,0) and (1,1)")
axes[1].imshow(cols, cmap="Blues", aspect="auto")
for (r, c), v in np.ndenumerate(cols):
    axes[1].text(c, r, int(v), ha="center", va="center", fontsize=8)
axes[1].set_xticks(range(4), ["(0,0)", "(0,1)", "(1,0)", "(1,1)"])
axes[1].set_yticks(range(9), [f"({i},{j})" for i in range(3) for j in range(3)])
axes[1].set_title("cols: one column per window")
for ax in axes[:1]:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Now the convolution of all windows with all filters is one product. Flatten each filter into a **row**, in the
# same (channel, row, column) order; the $C_{out}$ filters form a matrix $W_{mat}$ of shape
# $C_{out}\times C_{in}K_HK_W$:
#
# $$Y_{mat} = W_{mat}\,\mathrm{cols} + b, \qquad
# (C_{out}\times N O_H O_W) = (C_{out}\times C_{in}K_HK_W)\,(C_{in}K_HK_W \times N O_H O_W).$$
#
# Each entry of $Y_{mat}$ is one filter dotted with one window, which is the definition above. Let us check it on
# two channels, three filters and a batch of two, against the loops:

# %%
x = rng.standard_normal((2, 2, 5, 5))
w = rng.standard_normal((3, 2, 3, 3))
cols = im2col(x, 3)  # (2*3*3, 2*3*3) = (18, 18)
y_mat = w.reshape(3, -1) @ cols  # (3, 18): columns ordered (n, oh, ow)
y = y_mat.reshape(3, 2, 3, 3).transpose(1, 0, 2, 3)  # -> (N, C_out, OH, OW)
print("cols", cols.shape, " W_mat", w.reshape(3, -1).shape, " y", y.shape)
print("max |GEMM - loops| =", np.abs(y - conv_loops(x, w)).max())

# %% [markdown]
# ### Stride and padding
#
# Stride and padding change only *which* windows im2col gathers: padding adds zeros around the image first,
# stride skips window positions. The output size $O_H = \lfloor (H + 2p - K)/s \rfloor + 1$ **floors**: when the
# stride does not tile the input, the last rows and columns are simply never visited. AlexNet's conv1 is the
# famous case: $11\times11$ filters at stride 4 on the "224 × 224" images of the paper give
# $(224 - 11)/4 + 1 = 54.25$, which is not an integer. (Notebook 5 settles this puzzle; Caffe uses 227-pixel crops.)

# %%
for h, k, s, p in [(227, 11, 4, 0), (224, 11, 4, 0), (224, 11, 4, 2), (27, 5, 1, 2), (13, 3, 1, 1)]:
    exact = (h + 2 * p - k) / s + 1
    print(f"H={h:3d} K={k:2d} s={s} p={p}:  (H+2p-K)/s+1 = {exact:6.2f}  ->  O_H = {conv_output_size(h, k, s, p)}")
x = rng.standard_normal((1, 1, 5, 5))
w = rng.standard_normal((1, 1, 3, 3))
y = (w.reshape(1, -1) @ im2col(x, 3, stride=2, padding=1)).reshape(1, 1, 3, 3)
print("stride 2, padding 1: matches the loops:", np.allclose(y, conv_loops(x, w, stride=2, pad=1)))

# %% [markdown]
# ### Exercise 3: im2col with loops
#
# Write `im2col_naive(x, kh, kw, stride, padding)` with plain loops: pad `x` with zeros, then for every window
# write its values into one column. Rows are ordered $(c, i, j)$ and columns $(n, o_h, o_w)$, exactly as
# `minialex.layers.im2col`, which the check compares with on several shapes.


# %% [exercise]
def im2col_naive(x, kh, kw, stride=1, padding=0):
    """x (N, C, H, W) -> cols (C*kh*kw, N*OH*OW); row (c, i, j), column (n, oh, ow)."""
    # Your code here: np.pad, conv_output_size, then loops over n, oh, ow that fill one column each.
    raise NotImplementedError


# %% [check]
exercises.check_im2col(im2col_naive)

# %% [markdown]
# ## 2.4 The backward pass: two GEMMs, and the adjoint of im2col
#
# With $Y = W_{mat}\,\mathrm{cols} + b$ and the upstream gradient $G = \partial L/\partial Y$ reshaped to
# $C_{out}\times N O_H O_W$, notebook 1's linear-layer rules give, with no new calculus:
#
# $$\frac{\partial L}{\partial W_{mat}} = G\,\mathrm{cols}^\top, \qquad
# \frac{\partial L}{\partial b} = \sum_{\text{columns}} G, \qquad
# \frac{\partial L}{\partial\,\mathrm{cols}} = W_{mat}^\top G.$$
#
# The last step is new: from $\partial L/\partial\,\mathrm{cols}$ to $\partial L/\partial x$. im2col is a
# **linear map** $\mathrm{cols} = A\,x$ whose matrix $A$ holds only 0s and 1s: each row of $A$ picks the one
# pixel that a given column entry copies. The chain rule for a linear map is
#
# $$\frac{\partial L}{\partial x} = A^\top \frac{\partial L}{\partial\,\mathrm{cols}}.$$
#
# $A^\top$ sends each column entry *back* to the pixel it came from, and where a pixel was copied into several
# windows, the **sum** of the copies' gradients lands on it. That scatter-add is **col2im**. Let us build $A$
# explicitly for the $4\times4$ image by applying im2col to each of the 16 unit images:

# %%
A = np.stack([im2col(e.reshape(1, 1, 4, 4), 3).ravel() for e in np.eye(16)], axis=1)  # (36, 16)
counts = A.sum(axis=0).reshape(4, 4)  # how many window entries copy each pixel = A^T applied to all-ones

fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1.3, 1]})
axes[0].imshow(A, cmap="Greys", aspect="auto")
axes[0].set_title("A: cols = A x  (36 entries × 16 pixels)")
axes[0].set_xlabel("pixel")
axes[0].set_ylabel("entry of cols")
axes[1].imshow(counts, cmap="Oranges")
for (r, c), v in np.ndenumerate(counts):
    axes[1].text(c, r, int(v), ha="center", va="center")
axes[1].set_title("col2im(ones): windows per pixel")
axes[1].set_xticks([])
axes[1].set_yticks([])
fig.tight_layout()
plt.show()
print("col2im(ones) equals A^T 1:", np.array_equal(col2im(np.ones((9, 4)), (1, 1, 4, 4), 3)[0, 0], counts))

# %% [markdown]
# Two facts to take away from the picture:
#
# * **col2im is the adjoint, not the inverse.** `col2im(im2col(x))` is not `x`: it is `x` times the number of
#   windows that saw each pixel. What col2im satisfies is the defining identity of a transpose,
#   $\langle \mathrm{col2im}(C), X\rangle = \langle C, \mathrm{im2col}(X)\rangle$ for every $C$ and $X$.
# * **Overlap means accumulation.** The centre pixels sit in 4 windows and must collect 4 gradient
#   contributions; an implementation that *assigns* instead of *adds* is wrong exactly there.

# %%
X = rng.standard_normal((2, 3, 7, 6))
C = rng.standard_normal(im2col(X, (3, 2), stride=2, padding=1).shape)
lhs = (col2im(C, X.shape, (3, 2), stride=2, padding=1) * X).sum()
rhs = (C * im2col(X, (3, 2), stride=2, padding=1)).sum()
print(f"<col2im(C), X> = {lhs:.12f}\n<C, im2col(X)> = {rhs:.12f}")
print("col2im(im2col(x)) == x ?", np.allclose(col2im(im2col(x_tiny, 3), x_tiny.shape, 3), x_tiny))
print("col2im(im2col(x)) == x * counts ?", np.allclose(col2im(im2col(x_tiny, 3), x_tiny.shape, 3), x_tiny * counts))

# %% [markdown]
# How many windows see a pixel depends on kernel and stride. With AlexNet's conv1 ($11\times11$, stride 4) the
# windows overlap heavily: interior pixels are read by up to $\lceil 11/4\rceil^2 = 9$ windows, and a band of
# pixels at the right and bottom edges is read by none when the stride does not tile the image.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, (size, k, s) in zip(axes, [(10, 3, 1), (33, 11, 4)], strict=True):
    oh = conv_output_size(size, k, s, 0)
    c = col2im(np.ones((k * k, oh * oh)), (1, 1, size, size), k, stride=s)[0, 0]
    im = ax.imshow(c, cmap="Oranges")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"{k}x{k} stride {s} on {size}x{size}: windows per pixel")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# col2im is computed without a Python loop over pixels: for each kernel offset $(i, j)$, the entries of that
# row of `cols` land on a strided slice of the input, `dx[:, :, i::s, j::s]` (trimmed to $O_H\times O_W$), and
# within one offset no pixel repeats, so a vectorised `+=` is exact. That is $K_H K_W$ slice-adds in all.
#
# ### Exercise 4: col2im with loops
#
# Write `col2im_naive(cols, x_shape, kh, kw, stride, padding)`: the adjoint of your im2col. Allocate a zero padded
# gradient, walk the windows in the same order as im2col and **add** each column back into its window, then cut
# off the padding. The check tests the adjoint identity and compares with `minialex.layers.col2im`.


# %% [exercise]
def col2im_naive(cols, x_shape, kh, kw, stride=1, padding=0):
    """cols (C*kh*kw, N*OH*OW), x_shape (N, C, H, W) -> dx (N, C, H, W): scatter-add every column back."""
    # Your code here: the mirror image of im2col_naive, with += instead of a copy.
    raise NotImplementedError


# %% [check]
exercises.check_col2im(col2im_naive)

# %% [markdown]
# ### Break it, and watch the check fail
#
# The classic bug of this layer is a col2im that *assigns* each window's gradient (`=`) instead of adding it
# (`+=`). Here is a whole convolution layer in a dozen lines, im2col, a GEMM and col2im, with a switch that plants
# exactly that bug, and the gradient check of section 1.4 run on it. Watch the kernel and the stride: when the
# windows do not overlap ($2\times2$ at stride 2) every pixel is in at most one window, `=` and `+=` do the same,
# and the buggy layer **passes**. Only an overlapping case ($3\times3$ at stride 1, like AlexNet's conv3 to
# conv5) exposes it, which is why every gradient check of a convolution must include one.


# %%
def col2im_assign(cols, x_shape, k, stride):
    """col2im with the bug: '=' where overlapping windows must add."""
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0)
    dx = np.zeros(x_shape)
    column = 0
    for b in range(n):
        for r in range(oh):
            for q in range(ow):
                dx[b, :, r * stride : r * stride + k, q * stride : q * stride + k] = cols[:, column].reshape(c, k, k)
                column += 1
    return dx


class TinyConv:
    """A convolution layer (no bias, no padding) in a dozen lines: im2col, GEMM, col2im."""

    def __init__(self, weight, stride, assign_bug=False):
        self.params, self.grads = {"weight": weight}, {}
        self.stride, self.assign_bug = stride, assign_bug

    def forward(self, x):
        self.x, (c_out, _, k, _) = x, self.params["weight"].shape
        self.cols = im2col(x, k, self.stride)
        oh, ow = conv_output_size(x.shape[2], k, self.stride, 0), conv_output_size(x.shape[3], k, self.stride, 0)
        y = self.params["weight"].reshape(c_out, -1) @ self.cols  # (C_out, N*OH*OW)
        return y.reshape(c_out, x.shape[0], oh, ow).transpose(1, 0, 2, 3)

    def backward(self, dy):
        w = self.params["weight"]
        g = dy.transpose(1, 0, 2, 3).reshape(w.shape[0], -1)
        self.grads["weight"] = (g @ self.cols.T).reshape(w.shape)
        dcols = w.reshape(w.shape[0], -1).T @ g
        if self.assign_bug:
            return col2im_assign(dcols, self.x.shape, w.shape[2], self.stride)
        return col2im(dcols, self.x.shape, w.shape[2], stride=self.stride)


x_check = rng.standard_normal((2, 2, 6, 6))
for k, s in [(2, 2), (3, 1)]:
    w_check = rng.standard_normal((3, 2, k, k))
    for bug in (False, True):
        errs = check_layer(TinyConv(w_check.copy(), s, assign_bug=bug), x_check)
        verdict = "passes" if max(errs.values()) < 1e-6 else "FAILS"
        print(
            f"{k}x{k} stride {s}, col2im with {'= ' if bug else '+='}: dx error {errs['x']:.1e}, "
            f"dW error {errs['weight']:.1e} -> {verdict}"
        )

# %% [markdown]
# ## 2.5 Groups: the paper's two-GPU split
#
# AlexNet was trained on two GTX 580 GPUs with 3 GB each, so the network was cut in half along the channels. In
# conv2, conv4 and conv5 "kernels are connected only to those kernel maps in the previous layer which reside on
# the same GPU" (§3.5): conv2's 256 filters are $5\times5\times\mathbf{48}$, not $\times 96$. A convolution with
# `groups=G` splits the input channels and the filters into $G$ groups and convolves group $g$'s filters with
# group $g$'s channels only; the weight tensor has shape $(C_{out}, C_{in}/G, K_H, K_W)$.
#
# Because im2col puts the channel first, group $g$ owns a contiguous block of rows of `cols`, and the grouped
# forward is $G$ independent GEMMs $Y_g = W_g\,\mathrm{cols}_g$ (minialex does them in one batched `matmul`).
# The connectivity between output and input channels becomes block-diagonal:

# %%
conv2_full = Conv2d(96, 256, 5, padding=2)
conv2_grouped = Conv2d(96, 256, 5, padding=2, groups=2)
n_full = sum(p.size for p in conv2_full.params.values())
n_grouped = sum(p.size for p in conv2_grouped.params.values())
print(f"conv2 without groups: weight {conv2_full.params['weight'].shape}, {n_full:,} parameters")
print(f"conv2 with groups=2:  weight {conv2_grouped.params['weight'].shape}, {n_grouped:,} parameters")

fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, groups in zip(axes, (1, 2), strict=True):
    mask = np.kron(np.eye(groups), np.ones((256 // groups, 96 // groups)))
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_title(f"conv2, groups={groups}")
    ax.set_xlabel("input channel (96)")
    ax.set_ylabel("output channel (256)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Is a grouped convolution really two independent convolutions side by side? Copy the two halves of the weights
# into two ordinary convolutions on the two halves of the channels and compare:

# %%
grouped = Conv2d(4, 6, 3, padding=1, groups=2).astype(np.float64)
left, right = Conv2d(2, 3, 3, padding=1).astype(np.float64), Conv2d(2, 3, 3, padding=1).astype(np.float64)
left.params["weight"][...] = grouped.params["weight"][:3]
right.params["weight"][...] = grouped.params["weight"][3:]
x = rng.standard_normal((2, 4, 6, 6))
y_two = np.concatenate([left.forward(x[:, :2]), right.forward(x[:, 2:])], axis=1)
print("grouped conv == two convs on the channel halves:", np.allclose(grouped.forward(x), y_two))

# %% [markdown]
# The backward pass splits the same way: each half's gradients come from its own half alone, because no weight of
# one group ever touches a channel of the other. The grouped layer's $\partial L/\partial x$ is the two halves'
# input gradients side by side, and its $\partial L/\partial W$ is the two halves' weight gradients stacked:

# %%
dy_two = rng.standard_normal(y_two.shape)
dx_grouped = grouped.backward(dy_two)
dx_left, dx_right = left.backward(dy_two[:, :3]), right.backward(dy_two[:, 3:])
print(
    "dL/dx of the grouped conv == the two halves' dL/dx side by side:",
    np.allclose(dx_grouped, np.concatenate([dx_left, dx_right], axis=1)),
)
print(
    "dL/dW of the grouped conv == the two halves' dL/dW stacked:      ",
    np.allclose(grouped.grads["weight"], np.concatenate([left.grads["weight"], right.grads["weight"]])),
)

# %% [markdown]
# ## 2.6 Gradient check of Conv2d
#
# `Conv2d` implements everything above: im2col, one (batched) GEMM, bias, and the backward
# $\partial L/\partial W = G\,\mathrm{cols}^\top$, $\partial L/\partial x = \mathrm{col2im}(W^\top G)$. The
# convolution is linear in $x$ and in $W$, so it has no kinks and any random input will do. We check a strided,
# padded, grouped layer with a non-square kernel, and a miniature conv1 ($11\times11$ at stride 4 on a $24\times24$
# image, a stride that does not tile the input).

# %%
cases = {
    "3x2 kernel, stride 2, padding 1, groups 2": (Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2), (2, 4, 7, 6)),
    "11x11 stride 4 on 24x24 (conv1-like)": (Conv2d(3, 2, 11, stride=4), (1, 3, 24, 24)),
}
for what, (layer, shape) in cases.items():
    layer.astype(np.float64)
    layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
    errs = check_layer(layer, rng.standard_normal(shape))
    print(f"{what}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), "->", max(errs.values()) < 1e-6)

# %% [markdown]
# ## Summary
#
# * The backward pass of a convolution, from its loops: every window votes for the weights with its pixels
#   ($\partial L/\partial W$, a valid correlation of $x$ with $g$) and sends the filter back onto its pixels
#   ($\partial L/\partial x$, a full correlation of $g$ with the flipped kernel, after spreading $g$ out by the
#   stride); overlapping windows **add**.
# * im2col turns a convolution into one GEMM: $(C_{out}\times C_{in}K^2)\cdot(C_{in}K^2 \times N O_H O_W)$.
# * The backward is two more GEMMs ($G\,\mathrm{cols}^\top$ and $W^\top G$) and col2im, the **adjoint** of
#   im2col: a scatter-*add* where windows overlap. A col2im that assigns passes every non-overlapping test.
# * Stride and padding only change which windows are gathered; the output size floors.
# * Groups make the filter-channel connectivity block-diagonal and halve conv2's parameters: the paper's
#   two-GPU split. Forward and backward are the groups' own passes side by side.
#
# The price of im2col is memory: every input pixel is copied once per window that sees it (up to 9 times in
# conv1). Notebooks 5 and 7 measure what that costs at batch 128.
#
# **Next:** [3. ReLU, overlapping max-pooling and dropout](03_relu_pool_dropout.ipynb).
