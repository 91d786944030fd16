"""Source of tutorials/04_local_response_norm.ipynb (build with `python tutorials/build.py 04`)."""

# %% [markdown]
# # 4. Local response normalisation: the paper's formula, its backward pass, and a convention trap
#
# AlexNet normalises the outputs of conv1 and conv2 (after the ReLU) across neighbouring channels: a strongly
# active feature map damps its neighbours at the same pixel, a form of "lateral inhibition" (§3.3). It cut the
# paper's top-1 error by 1.4 %. Two years later VGG (Simonyan & Zisserman, 2014) reported that it did not improve
# their much deeper networks while costing memory and time, and dropped it; batch normalisation (2015) came after
# that, as a different kind of normalisation altogether. LRN is still worth studying: it is the one AlexNet layer
# whose backward pass needs genuine calculus, and the one whose constants are most often copied wrong.
#
# You will:
# 1. read the paper's formula and see what it does to a vector of channels;
# 2. derive the backward pass step by step, and implement forward and backward yourself;
# 3. see why a test with the paper's tiny $\alpha$ cannot catch a wrong window;
# 4. plant the classic backward bug (a window that is not mirrored) and see which gradient checks catch it;
# 5. meet the $\alpha$ vs $\alpha/n$ trap: PyTorch's and Caffe's LRN are *not* the paper's with the same numbers.
#
# Prerequisites: notebook 1. Reading time: about 30 minutes.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises
from minialex.gradcheck import check_layer, rel_error
from minialex.layers import LocalResponseNorm

np.set_printoptions(precision=4, suppress=True, linewidth=120)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 4.1 The formula
#
# For the activity $a^i_{x,y}$ of channel $i$ (of $N$) at pixel $(x, y)$, the paper defines
#
# $$b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha \sum_{j=\max(0,\, i-n/2)}^{\min(N-1,\, i+n/2)} \big(a^j_{x,y}\big)^2\Big)^{\beta}$$
#
# with $n = 5$, $k = 2$, $\alpha = 10^{-4}$, $\beta = 0.75$. Each pixel is handled on its own; only the channel
# axis mixes. Writing $W(i)$ for the window of channels $[i - 2, i + 2]$ clipped to $[0, N-1]$ and
#
# $$s_i = k + \alpha \sum_{j \in W(i)} a_j^2, \qquad b_i = a_i\, s_i^{-\beta},$$
#
# every channel is divided by a power of the local energy around it. Note that $\alpha$ multiplies the **plain
# sum**, not the mean; hold on to that for section 4.4.
#
# What does it do? Take one pixel with 24 channels of moderate activity and one channel with a strong response.
# The activations after conv1 and a ReLU are in the tens to hundreds when the input pixels are in $[0, 255]$, which
# is the scale at which $\alpha = 10^{-4}$ matters:

# %%
a = np.full(24, 40.0) + rng.uniform(-10, 10, 24)
a[11] = 300.0
lrn = LocalResponseNorm()  # the paper's n=5, alpha=1e-4, beta=0.75, k=2
b = lrn.forward(a[None, :])[0]

fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
axes[0].bar(range(24), a, color="tab:blue")
axes[0].set_title("input a (one pixel, 24 channels)")
axes[1].bar(range(24), b / a, color="tab:green")
axes[1].set_title(r"gain $b_i / a_i = s_i^{-\beta}$")
for ax in axes:
    ax.set_xlabel("channel")
fig.tight_layout()
plt.show()
print("gain far from the spike:", round(float(b[0] / a[0]), 3), "  next to it:", round(float(b[10] / a[10]), 3))

# %% [markdown]
# Channels far from the spike keep about half their value (a little below $k^{-\beta} = 2^{-0.75} \approx 0.59$,
# because their own neighbourhood has some energy too); the five channels whose window contains the spike are
# damped to less than a third of that, the spike itself included. Strong responses compete with their neighbours.
#
# ### Exercise 1: the forward pass
#
# Implement `lrn_forward(a, size, alpha, beta, k)` for `a` of shape $(N, C, \dots)$ with channels on axis 1. Use
# the window $W(i) = [\,i - \lfloor n/2\rfloor,\; i + \lfloor (n-1)/2\rfloor\,]$ clipped to the valid channels (for
# $n = 5$ that is $i \pm 2$; for even $n$ the extra channel goes before $i$, as in PyTorch). A loop over channels
# is fine. The check compares with `LocalResponseNorm` for odd and even windows.


# %% [exercise]
def lrn_forward(a, size, alpha, beta, k):
    """a (N, C, ...) -> b of the same shape: b_i = a_i / (k + alpha * sum of a_j**2 over the window)**beta."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_lrn_forward(lrn_forward)

# %% [markdown]
# ## 4.2 The backward pass, step by step
#
# Fix one pixel and drop the $x, y$ indices. Given $g_i = \partial L/\partial b_i$, we need
# $\partial L/\partial a_m = \sum_i g_i\, \partial b_i/\partial a_m$.
#
# **Step 1: which outputs depend on $a_m$?** $b_m$ directly (through the factor $a_m$), and every $b_i$ whose
# window contains $m$ (through $s_i$).
#
# **Step 2: differentiate $s_i$.** Only the term $j = m$ of the sum depends on $a_m$:
#
# $$\frac{\partial s_i}{\partial a_m} = 2\alpha\, a_m\, [m \in W(i)].$$
#
# **Step 3: the product rule on $b_i = a_i s_i^{-\beta}$:**
#
# $$\frac{\partial b_i}{\partial a_m} = [i = m]\, s_i^{-\beta} \;-\; \beta\, a_i\, s_i^{-\beta-1}\, \frac{\partial s_i}{\partial a_m}
# = [i = m]\, s_i^{-\beta} \;-\; 2\alpha\beta\, a_i\, a_m\, s_i^{-\beta-1}\,[m \in W(i)].$$
#
# **Step 4: contract with $g$:**
#
# $$\boxed{\;\frac{\partial L}{\partial a_m} = g_m\, s_m^{-\beta} \;-\; 2\alpha\beta\, a_m
#   \sum_{i\,:\, m \in W(i)} g_i\, a_i\, s_i^{-\beta-1}\;}$$
#
# **Step 5: make it cheap.** $a_i s_i^{-\beta-1} = b_i / s_i$, and both $b$ and $s$ are known from the forward pass,
# so the backward is: $t_i = g_i b_i / s_i$; a windowed sum of $t$ over the channels; two multiplications. The
# set $\{i : m \in W(i)\}$ is the window *mirrored* around $m$; for odd $n$ it is the same window $m \pm 2$. No
# Jacobian matrix is ever formed.
#
# The first term is what a careless derivation stops at (treating $s$ as a constant). Let us see how much the
# second term matters at the paper's constants and realistic activations, on the 24-channel pixel above:

# %%
g = rng.standard_normal(24)
lrn.forward(a[None, :])
full = lrn.backward(g[None, :])[0]
s = 2.0 + 1e-4 * np.array([np.sum(a[max(0, i - 2) : i + 3] ** 2) for i in range(24)])
first_term_only = g * s**-0.75
print(f"relative error if the second term is dropped: {rel_error(first_term_only, full):.2f}")

# %% [markdown]
# ### Exercise 2: the backward pass
#
# Implement `lrn_backward(a, dy, size, alpha, beta, k)` returning $\partial L/\partial a$ from the boxed formula.
# Recompute $s$ and $b$ from `a` (a real layer would cache them). Careful with the mirrored window for even sizes:
# $\{i : m \in W(i)\} = [\,m - \lfloor (n-1)/2\rfloor,\; m + \lfloor n/2\rfloor\,]$. The check uses finite
# differences with a large $\alpha$ (see 4.3 for why).


# %% [exercise]
def lrn_backward(a, dy, size, alpha, beta, k):
    """a (N, C, ...) the forward input, dy = dL/db (same shape)  ->  dL/da."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_lrn_backward(lrn_backward)

# %% [markdown]
# ## 4.3 Why tests use a large $\alpha$
#
# With $\alpha = 10^{-4}$ and inputs of order 1 (what a unit test usually feeds), $\alpha\sum a_j^2 \approx 5\cdot
# 10^{-4}$ is nothing next to $k = 2$: the layer is almost $b = a / 2^{0.75}$, whatever the window. A layer whose
# window is off by one (here: channels $i-2 \dots i+1$, a bug that even-size handling easily introduces) then agrees
# with the correct one to about one part in $10^4$ (the first line the cell prints), inside the tolerance of many a
# forward-pass test. With $\alpha = 1$ the same bug is an order-one error:


# %%
def lrn_window(a, before, after, alpha, beta=0.75, k=2.0):
    """LRN over channels [i - before, i + after] (a test double for a wrong window)."""
    c = a.shape[1]
    s = np.stack([(a[:, max(0, i - before) : i + after + 1] ** 2).sum(axis=1) for i in range(c)], axis=1)
    return a * (k + alpha * s) ** -beta


x = rng.standard_normal((4, 16, 3, 3))
for alpha in (1e-4, 1e-2, 1.0):
    right, off_by_one = lrn_window(x, 2, 2, alpha), lrn_window(x, 2, 1, alpha)
    print(f"alpha = {alpha:6g}:  relative difference of the off-by-one window = {rel_error(off_by_one, right):.1e}")

# %% [markdown]
# The same holds for the backward pass: a gradient check at $\alpha = 10^{-4}$ hardly exercises the second term.
# minialex's tests and the exercise checks therefore use $\alpha$ between 0.2 and 1, odd and even window sizes,
# and few channels (so that the clipped windows at both edges are exercised).

# %%
for size in (5, 4, 3):
    layer = LocalResponseNorm(size=size, alpha=0.5, beta=0.75, k=1.0)
    errs = check_layer(layer, rng.standard_normal((2, 7, 3, 3)))
    print(f"LocalResponseNorm(size={size}, alpha=0.5): error {errs['x']:.1e}  ->  below 1e-6: {errs['x'] < 1e-6}")

# %% [markdown]
# ### Break it, and watch the check fail
#
# The most common LRN backward bug is in step 5: summing $t_i = g_i b_i / s_i$ over the window $W(m)$ itself
# instead of the mirrored set $\{i : m \in W(i)\}$. For an odd size the two are the same set ($m \pm 2$), so the
# bug is invisible; for an even size the window is lopsided (one more channel before $i$ than after) and the
# mirror image differs. Here is the layer with that bug planted, checked at odd and even sizes, with the paper's
# tiny $\alpha$ and with a large one:


# %%
def channel_window_sum(t, before, after):
    """out[:, i] = sum of t[:, j] for j in [i - before, i + after], clipped to the channels."""
    c = t.shape[1]
    return np.stack([t[:, max(0, i - before) : i + after + 1].sum(axis=1) for i in range(c)], axis=1)


class LRNUnmirroredBug(LocalResponseNorm):
    """The paper's LRN whose backward sums over W(m) instead of {i : m in W(i)}."""

    def forward(self, a):
        self.a_seen = a
        return super().forward(a)

    def backward(self, dy, need_input_grad=True):
        a, before, after = self.a_seen, self.size // 2, (self.size - 1) // 2
        s = self.k + self.alpha * channel_window_sum(a * a, before, after)
        t = dy * a * s ** (-self.beta - 1)
        window_of_m = channel_window_sum(t, before, after)  # the bug: should be (after, before), the mirror image
        return dy * s**-self.beta - 2 * self.alpha * self.beta * a * window_of_m


x = rng.standard_normal((2, 7, 3, 3))
for size in (5, 4):
    for alpha in (1e-4, 0.5):
        err = check_layer(LRNUnmirroredBug(size=size, alpha=alpha, beta=0.75, k=1.0), x)["x"]
        print(f"size {size}, alpha {alpha:6g}: error {err:.1e} -> {'passes' if err < 1e-6 else 'FAILS'}")

# %% [markdown]
# Only an even size catches it, and the catch is loud only with a large $\alpha$; with $\alpha = 10^{-4}$ and
# inputs of order 1 the error of the bug is small enough to slip under a loose tolerance (it is above the
# project's $10^{-6}$ here only because the gradient check itself is good to $10^{-10}$). Both conditions are
# why minialex's LRN tests, and the exercise's grader, use even and odd sizes and $\alpha$ between 0.2 and 1.
#
# %% [markdown]
# ## 4.4 The $\alpha$ vs $\alpha/n$ trap
#
# The paper multiplies the **sum** of squares by $\alpha$. PyTorch's `torch.nn.LocalResponseNorm(size, alpha,
# beta, k)` and Caffe's LRN layer multiply the **mean**, i.e. they divide $\alpha$ by $n$, and default $k$ to 1:
#
# $$\text{PyTorch / Caffe:}\quad b_i = a_i \Big(k + \frac{\alpha'}{n}\sum_{j\in W(i)} a_j^2\Big)^{-\beta}.$$
#
# So the paper's layer is `torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)`, and Caffe's
# `bvlc_alexnet` (`local_size: 5, alpha: 0.0001`, $k = 1$) is *not* the paper's layer: it is $k = 1$,
# $\alpha = 2\cdot10^{-5}$ in the paper's notation. Copying "alpha = 1e-4" from one convention into the other is
# silently wrong by a factor of 5 in $\alpha$. If PyTorch is installed, we can see it directly:

# %%
x = np.abs(rng.standard_normal((2, 16, 4, 4))) * 60  # post-ReLU activations at conv1's scale
paper = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0).forward(x)
try:
    import torch

    lrn_t = torch.nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)
    same = np.allclose(lrn_t(torch.from_numpy(x)).numpy(), paper, rtol=1e-12, atol=0)
    print("torch LocalResponseNorm(5, alpha=5e-4, k=2) equals the paper's layer:", same)
    naive = torch.nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)(torch.from_numpy(x)).numpy()
    print(f"torch LocalResponseNorm(5, alpha=1e-4, k=2) differs by {rel_error(naive, paper):.1%}")
except ImportError:
    print("(PyTorch is not installed: skipping the comparison)")

# %% [markdown]
# In minialex terms, a layer written with the other convention is `LocalResponseNorm(alpha=1e-4 / 5)`. How far
# apart are the two? It depends on the energy in the window: the plot shows the gain $s^{-\beta}$ as a function
# of $\sum_{j\in W}a_j^2$ for the paper's constants and for the two common misreadings.

# %%
energy = np.logspace(0, 7, 200)
settings = {
    r"paper: $k=2,\ \alpha=10^{-4}$": (2.0, 1e-4),
    r"$\alpha$ divided by $n$: $k=2,\ \alpha=2\cdot10^{-5}$": (2.0, 2e-5),
    r"Caffe bvlc / PyTorch default: $k=1,\ \alpha=2\cdot10^{-5}$": (1.0, 2e-5),
}
fig, ax = plt.subplots(figsize=(6.5, 3.4))
for label, (k, alpha) in settings.items():
    ax.semilogx(energy, (k + alpha * energy) ** -0.75, label=label)
ax.set_xlabel(r"window energy $\sum_{j\in W(i)} a_j^2$")
ax.set_ylabel(r"gain $s^{-\beta}$")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
wrong = LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=2.0).forward(x)
print(f"on the activations above, the alpha/n layer differs from the paper's by {rel_error(wrong, paper):.1%}")

# %% [markdown]
# At low energy every setting is a constant gain $k^{-\beta}$ (which the next layer's weights absorb), so the
# difference between $k = 1$ and $k = 2$ only rescales. The conventions part ways where LRN actually *does*
# something, at window energies of $10^4$ and above, and there the $\alpha/n$ layer normalises five times too
# weakly. When you port weights or compare with another framework, translate the constants, and test the
# translation with inputs large enough to reach that regime.
#
# ## Summary
#
# * $b_i = a_i s_i^{-\beta}$ with $s_i = k + \alpha\sum_{j\in W(i)} a_j^2$ (paper: $n=5,\ k=2,\ \alpha=10^{-4},\
#   \beta=0.75$).
# * $\partial L/\partial a_m = g_m s_m^{-\beta} - 2\alpha\beta\, a_m \sum_{i: m\in W(i)} g_i b_i/s_i$: two window
#   sums and a few products, reusing $b$ and $s$ from the forward pass.
# * Test with a large $\alpha$ and both window parities; at $\alpha = 10^{-4}$ a wrong window hides.
# * The paper's $\alpha$ multiplies the sum; PyTorch's and Caffe's the mean. The paper's layer is
#   `torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)`.
#
# **Next:** [5. Assembling AlexNet](05_assembling_alexnet.ipynb): shapes, parameters, FLOPs and memory.
