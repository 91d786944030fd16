"""Source of tutorials/03_relu_pool_dropout.ipynb (build with `python tutorials/build.py 03`)."""

# %% [markdown]
# # 3. ReLU, overlapping max-pooling and dropout
#
# Three layers of AlexNet have no learned parameters but plenty of subtlety in their backward passes:
#
# * **ReLU** (§3.1 of the paper) has a kink at 0, where a gradient check lies to you;
# * **overlapping max-pooling** (§3.4, $3\times3$ windows at stride 2) routes each gradient to one winner, and a
#   pixel can win several windows, so gradients must **accumulate**; when two pixels tie, a rule must pick one;
# * **dropout** (§4.2) is random, and the paper scales at *test* time while every modern library scales at
#   *training* time ("inverted" dropout).
#
# Prerequisites: notebooks 1 and 2. Reading time: about 25 minutes.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises
from minialex import seed as minialex_seed
from minialex.gradcheck import check_layer, numerical_gradient, tie_free
from minialex.layers import Dropout, Linear, MaxPool2d, ReLU, col2im, conv_output_size

np.set_printoptions(precision=3, suppress=True, linewidth=120)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 3.1 ReLU and its kink
#
# $$y = \max(0, x), \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\cdot[x > 0].$$
#
# The gradient passes unchanged where the unit is active and is blocked where it is not. The paper's Figure 1
# showed a four-layer CNN with ReLUs reaching 25 % training error on CIFAR-10 six times faster than with $\tanh$:
# the derivative is 1 on the active side instead of a $\tanh'$ that vanishes for large inputs.
#
# At exactly $x = 0$ the function has no derivative. minialex (like PyTorch) uses 0 there. A central difference
# straddling the kink returns the *average* of the two slopes, $\tfrac12$, so a gradient check that puts an input
# at (or within $h$ of) 0 reports an error that is not a bug:

# %%
relu = ReLU()
x = np.array([-1.0, -1e-9, 0.0, 1e-9, 0.5, 2.0])
dy = np.ones_like(x)
relu.forward(x)
numeric = numerical_gradient(lambda: float(relu.forward(x).sum()), x)
print("x        ", x.tolist())
print("analytic ", relu.backward(dy).tolist())
print("numeric  ", numeric.round(4).tolist(), " <- near 0: neither 0 nor 1")

fig, ax = plt.subplots(figsize=(5, 2.6))
grid = np.linspace(-2, 2, 401)
ax.plot(grid, np.maximum(grid, 0), label="ReLU(x)")
ax.step(grid, (grid > 0).astype(float), where="post", label="derivative [x > 0]")
ax.legend()
ax.set_xlabel("x")
fig.tight_layout()
plt.show()

# %% [markdown]
# The cure is to test on inputs that are far from the kink compared with $h = 10^{-6}$. `minialex.gradcheck.tie_free`
# builds such inputs: distinct values spread over $[-1, 1]$, none within $10^{-3}$ of zero or of each other. (The
# "distinct" part matters for max-pooling below.)

# %%
print("ReLU on tie-free input:", check_layer(ReLU(), tie_free((2, 3, 4, 4))))

# %% [markdown]
# ### Exercise 1: ReLU backward
#
# Implement `relu_backward(x, dy)`: return $\partial L/\partial x$ without modifying `dy` (a classic bug is
# `dy[x <= 0] = 0`, which silently corrupts the gradient of the layer above). Keep the dtype of the input: float32
# in, float32 out.


# %% [exercise]
def relu_backward(x, dy):
    """x: the forward input, dy = dL/dy (same shape)  ->  dL/dx."""
    # Your code here: one line.
    raise NotImplementedError


# %% [check]
exercises.check_relu_backward(relu_backward)

# %% [markdown]
# ## 3.2 Max-pooling
#
# Each output is the maximum of a $k\times k$ window of its channel, windows $s$ apart:
# $y_{n,c,h,w} = \max_{(i,j)} x_{n,c,\,hs+i,\,ws+j}$. Locally the max *is* its winning input (a copy), so the
# gradient goes to the winner and nowhere else:
#
# $$\frac{\partial L}{\partial x_{n,c,u,v}} = \sum_{(h,w)\,:\,\text{(u,v) wins window }(h,w)}
#   \frac{\partial L}{\partial y_{n,c,h,w}}.$$
#
# Note the **sum**. With the classic $2\times2$ windows at stride 2 the windows do not overlap, every pixel is in
# one window, and the sum has at most one term. AlexNet uses **overlapping** pooling, $3\times3$ at stride 2
# (it cut top-1 error by 0.4 %, §3.4), and then a pixel sits in up to $\lceil 3/2\rceil^2 = 4$ windows:

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, (k, s) in zip(axes, [(2, 2), (3, 2)], strict=True):
    o = conv_output_size(9, k, s, 0)
    cover = col2im(np.ones((k * k, o * o)), (1, 1, 9, 9), k, stride=s)[0, 0]  # windows per pixel
    ax.imshow(cover, cmap="Oranges", vmin=0, vmax=4)
    for (r, c), v in np.ndenumerate(cover):
        ax.text(c, r, int(v), ha="center", va="center", fontsize=8)
    ax.set_title(f"{k}x{k} windows, stride {s}: windows per pixel")
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# Put the largest value of a $5\times5$ image at its centre. All four $3\times3$ windows (stride 2) contain it, so
# it wins all four and must receive the sum of all four upstream gradients. An implementation that writes
# `dx[window argmax] = dy` instead of `+=` keeps only the last one; it passes every test with $2\times2$ pooling.

# %%
x = np.arange(25.0).reshape(1, 1, 5, 5) / 10
x[0, 0, 2, 2] = 9.0  # the centre wins every window
dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
pool = MaxPool2d(3, 2)
y = pool.forward(x)
dx = pool.backward(dy)


def maxpool_backward_assign(x, dy, k, s):
    """The classic bug: `=` where it must be `+=`."""
    dx = np.zeros_like(x)
    for n, c, r, q in np.ndindex(*dy.shape):
        window = x[n, c, r * s : r * s + k, q * s : q * s + k]
        i, j = np.unravel_index(np.argmax(window), window.shape)
        dx[n, c, r * s + i, q * s + j] = dy[n, c, r, q]  # should be +=
    return dx


print("y =\n", y[0, 0])
print("dx (minialex) =\n", dx[0, 0])
print("dx (with '=' instead of '+=') =\n", maxpool_backward_assign(x, dy, 3, 2)[0, 0])

# %% [markdown]
# ### Ties: the first-maximum rule
#
# When two pixels of a window hold the same maximum, the max is not differentiable there: raising either one
# raises the output. Some choice has to be made, and it should be the same as other libraries' so that results
# can be compared. minialex, like PyTorch, gives the gradient to the **first** maximum in row-major order within the
# window: scanning the window's offsets, a later pixel replaces the current winner only if it is *strictly*
# greater. On a constant image every window is one big tie, and each window's top-left pixel takes the gradient:

# %%
flat = np.ones((1, 1, 5, 5))
pool = MaxPool2d(3, 2)
pool.forward(flat)
dx_flat = pool.backward(np.ones((1, 1, 2, 2)))
print("dx on a constant image (dy = 1 everywhere):\n", dx_flat[0, 0])
try:
    import torch

    xt = torch.ones(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 3, 2).sum().backward()
    print("PyTorch gives the same:", np.array_equal(xt.grad.numpy(), dx_flat))
except ImportError:
    print("(PyTorch is not installed: skipping the comparison)")

# %% [markdown]
# At a tie a finite difference is meaningless too: nudging one tied pixel up raises the max by $h$, nudging it
# down changes nothing, so the central difference reports $\tfrac12$ per window for *each* tied pixel (the centre
# pixel, tied in four windows, gets 2). The rule is therefore
# tested exactly (as above), and gradient checks use tie-free inputs:

# %%
numeric = numerical_gradient(lambda: float(MaxPool2d(3, 2).forward(flat).sum()), flat)
print("finite differences on the constant image:\n", numeric[0, 0])
errs = check_layer(MaxPool2d(3, 2), tie_free((2, 3, 9, 9)))
print("MaxPool2d(3, 2) on tie-free input:", errs)

# %% [markdown]
# ### Break it, and watch the check fail
#
# The printout above shows the `=` bug on one hand-made image. Would the gradient check of notebook 1 have caught it
# on its own? Wrap the buggy backward in a layer and check it on tie-free input, with non-overlapping windows
# ($2\times2$ at stride 2, the classic textbook setting) and with AlexNet's overlapping ones:


# %%
class MaxPoolAssignBug(MaxPool2d):
    """MaxPool2d whose backward writes `dx[winner] = dy` instead of adding."""

    def forward(self, x):
        self.x_seen = x
        return super().forward(x)

    def backward(self, dy, need_input_grad=True):
        return maxpool_backward_assign(self.x_seen, dy, self.kernel_size[0], self.stride[0])


for k, s in [(2, 2), (3, 2)]:
    for layer in (MaxPool2d(k, s), MaxPoolAssignBug(k, s)):
        err = check_layer(layer, tie_free((2, 3, 9, 9)))["x"]
        print(
            f"{type(layer).__name__:16s} {k}x{k} stride {s}: error {err:.1e} -> {'passes' if err < 1e-6 else 'FAILS'}"
        )

# %% [markdown]
# With $2\times2$ windows the bug is invisible to the check, because no pixel can win two windows. This is why
# minialex's tests check pooling with overlapping windows, and why the exercise's grader does too.
#
# %% [markdown]
# How does minialex find the winners without a Python loop over windows? For each of the $k^2$ offsets
# $(i, j)$ in a window, the pixels at that offset in all windows form one strided slice, `x[:, :, i::s, j::s]`. A
# running maximum over the 9 slices gives $y$, and a small integer array records which offset won
# (updated only on *strictly greater*: the first-maximum rule). The backward walks the 9 offsets again and
# **adds** `dy * (argmax == offset)` into the same slices.
#
# ### Exercise 2: max-pool backward
#
# Implement `maxpool_backward(x, dy, k, stride)` (no padding) in the way that is easiest to get right: loops over
# $n, c$ and the output positions, find the window's first maximum (`np.argmax` on the flattened window returns
# the first one) and **add** `dy` there. The check compares with `MaxPool2d` exactly, on overlapping windows,
# ties and a constant image.


# %% [exercise]
def maxpool_backward(x, dy, k, stride):
    """x (N, C, H, W) the forward input, dy (N, C, OH, OW)  ->  dx (N, C, H, W)."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_maxpool_backward(maxpool_backward)

# %% [markdown]
# ## 3.3 Dropout: the paper's version and the inverted one
#
# AlexNet applies dropout with $p = 0.5$ to fc6 and fc7 (§4.2). Each hidden unit's output is set to zero with
# probability $p$ during training, with a fresh random mask $m_i \sim \mathrm{Bernoulli}(1-p)$ at every step, so
# that units cannot rely on specific partners. At test time all units are used, and the outputs must be scaled so
# that the next layer sees the same **expected** input as in training. There are two places to put the scale:
#
# | | training | test | expected training output |
# |---|---|---|---|
# | paper (§4.2) | $y = m \odot x$ | $y = (1-p)\,x$ ("multiply their outputs by 0.5") | $(1-p)\,x$ |
# | inverted (minialex, PyTorch) | $y = m \odot x / (1-p)$ | $y = x$ | $x$ |
#
# In both, the expected training output equals the test output. Inverted dropout moves the factor into training
# so that inference needs no special case. The backward pass multiplies by the **same** mask that the forward
# drew: $\partial L/\partial x = \partial L/\partial y \odot m/(1-p)$.

# %%
minialex_seed(0)
drop = Dropout(0.5)
x = np.linspace(1.0, 2.0, 6)
print("x               ", x)
print("train forward   ", drop.forward(x), " <- kept units are doubled")
print("backward of ones", drop.backward(np.ones_like(x)), " <- the same mask")
drop.eval()
print("eval forward    ", drop.forward(x))
drop = drop.train()

# %% [markdown]
# The expectation argument, measured: average the training-mode output over more and more masks. The mean
# approaches $x$ like $1/\sqrt{\text{draws}}$, for the inverted version without any test-time scaling.

# %%
x = rng.uniform(0.5, 1.5, 1000)
draws = np.array([drop.forward(x) for _ in range(2000)])
running_mean = np.cumsum(draws, axis=0) / np.arange(1, len(draws) + 1)[:, None]
err = np.abs(running_mean - x).mean(axis=1)
k = np.arange(1, len(draws) + 1)

fig, ax = plt.subplots(figsize=(5.5, 3))
ax.loglog(k, err, label="mean |average of masked outputs − x|")
ax.loglog(k, err[0] / np.sqrt(k), "--", label=r"$\propto 1/\sqrt{\mathrm{draws}}$")
ax.set_xlabel("number of dropout masks averaged")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Are the two versions the same network? Take a layer $h$ followed by dropout and a linear layer $W$. Train the
# paper's version with weights $W$, or the inverted version with $W' = (1-p)\,W$: for any mask $m$ the next layer
# receives exactly the same numbers, $W(m\odot h) = W'(m\odot h/(1-p))$, and at test time
# $W\,(1-p)h = W' h$. So the two compute the same functions: for **what the network computes** they are
# equivalent, up to a constant factor on one weight matrix.

# %%
h = rng.standard_normal((4, 8))
paper_fc, inverted_fc = Linear(8, 3).astype(np.float64), Linear(8, 3).astype(np.float64)
inverted_fc.params["weight"][...] = 0.5 * paper_fc.params["weight"]  # W' = (1 - p) W
inverted_fc.params["bias"][...] = paper_fc.params["bias"]
mask = rng.random(h.shape) >= 0.5
print("training, same mask:", np.allclose(paper_fc.forward(h * mask), inverted_fc.forward(h * mask / 0.5)))
print("test time:          ", np.allclose(paper_fc.forward(0.5 * h), inverted_fc.forward(h)))

# %% [markdown]
# They are **not** equivalent for training with the same hyper-parameters. The next layer's input is $1/(1-p)$
# times larger in the inverted version, so its weight gradient is too,
# $\partial L/\partial W' = \partial L/\partial W \,/\,(1-p)$, while its weights, for the same function, are
# $(1-p)$ times smaller. One SGD step of rate $\varepsilon$ on $W'$, measured in the paper's units
# $W = W'/(1-p)$, therefore moves $W$ by $\varepsilon/(1-p)^2$ times the gradient: with $p = 0.5$, **four times**
# the paper's step on that layer. The weight decay step $-\lambda\varepsilon W'$ is the same fraction of the weight
# in both. So switching conventions with the learning rate, weight decay and initial scale left unchanged is a
# different training run: drawn from the same initial distribution, the inverted network's layer after each dropout
# effectively starts with weights twice as large ($W = W'/(1-p)$), and it learns at an effectively 4× higher rate.
# The cell takes one step on each, in the equivalent parametrisation above, with the same upstream gradient and the
# same mask:

# %%
dz = rng.standard_normal((4, 3))  # the same upstream gradient for both
paper_fc.forward(h * mask)
paper_fc.backward(dz)
inverted_fc.forward(h * mask / 0.5)
inverted_fc.backward(dz)
lr = 0.1
step_paper = -lr * paper_fc.grads["weight"]  # the change of W
step_inverted_in_paper_units = -lr * inverted_fc.grads["weight"] / 0.5  # the change of W' / (1 - p)
ratio = step_inverted_in_paper_units / step_paper
print(
    f"one step of rate {lr}, in the paper's units: inverted / paper = {ratio.min():.3f} .. {ratio.max():.3f}"
    f"  (1 / (1 - p)^2 = {1 / 0.5**2:g})"
)

# %% [markdown]
# A random layer is checked as the fixed function it is for one mask: `check_layer(..., seed=s)` re-seeds
# minialex before every forward, so every finite-difference evaluation draws the same mask.

# %%
print("Dropout(0.5):", check_layer(Dropout(0.5), rng.standard_normal((4, 10)), seed=3))

# %% [markdown]
# ## Summary
#
# * ReLU's backward is a mask; gradient checks must keep inputs away from the kink (`tie_free`).
# * Max-pool's backward routes each gradient to its window's winner and **adds** where overlapping windows share a
#   winner; ties go to the first maximum in row-major order, as in PyTorch.
# * Dropout: the paper scales by $1-p$ at test time, minialex by $1/(1-p)$ during training. The two compute the
#   same functions (up to a factor $1-p$ on the next layer's weights) but do not train the same with the same
#   hyper-parameters: the inverted convention makes the next layer's effective learning rate $1/(1-p)^2$ times
#   larger.
# * A bug in a backward pass can hide from a gradient check that does not exercise it: `=` for `+=` in max-pool
#   passes every check with non-overlapping windows.
#
# **Next:** [4. Local response normalisation](04_local_response_norm.ipynb), the one AlexNet layer whose backward
# pass needs real calculus.
