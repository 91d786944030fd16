"""Source of tutorials/01_chain_rule.ipynb (build with `python tutorials/build.py 01`)."""

# %% [markdown]
# # 1. The chain rule: a linear layer and softmax cross-entropy
#
# AlexNet ends in three fully connected layers and a 1000-way softmax trained with cross-entropy. This notebook
# derives the backward pass of those two pieces by hand, turns the derivation into code, and proves the code right
# with finite differences. Everything later in the series (convolutions, pooling, LRN) uses the same three steps:
# **derive, implement, check**.
#
# You will:
# 1. write the chain rule for a layer $y = f(x)$ as "given $\partial L/\partial y$, produce $\partial L/\partial x$";
# 2. derive the gradients of $y = xW^\top + b$;
# 3. derive $\partial L/\partial z = (\mathrm{softmax}(z) - \mathrm{onehot}(t))/N$ for the cross-entropy loss;
# 4. see why gradient checks use central differences in float64 with $h \approx 10^{-6}$;
# 5. implement both backward passes yourself (exercises with self-checking cells).
#
# Prerequisites: NumPy, matrix products, partial derivatives. Reading time: about 20 minutes.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises
from minialex.gradcheck import check_layer, check_model, numerical_gradient, rel_error
from minialex.layers import Linear, Sequential, SoftmaxCrossEntropy

np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1.1 The chain rule as a protocol
#
# A network is a chain of functions ending in a scalar loss $L$:
# $x \xrightarrow{f_1} h_1 \xrightarrow{f_2} h_2 \cdots \xrightarrow{} L$.
# For one layer $y = f(x)$ the multivariate chain rule says
#
# $$\frac{\partial L}{\partial x_i} = \sum_j \frac{\partial L}{\partial y_j}\,\frac{\partial y_j}{\partial x_i}.$$
#
# The layer never needs to know what comes after it. It receives the **upstream gradient**
# $g = \partial L/\partial y$ (same shape as $y$), and returns $\partial L/\partial x$ (same shape as $x$). That is
# the whole protocol of every layer in minialex:
#
# ```python
# y  = layer.forward(x)      # remembers what backward will need
# dx = layer.backward(dy)    # dy = dL/dy in, dL/dx out; dL/dparams go to layer.grads
# ```
#
# A useful habit: **a gradient has the shape of the thing it is the gradient of.** If your formula for
# $\partial L/\partial W$ does not produce an array shaped like $W$, it is wrong.

# %% [markdown]
# ## 1.2 The linear layer
#
# For a batch $x \in \mathbb{R}^{N \times D}$, weights $W \in \mathbb{R}^{M \times D}$ (PyTorch's layout: one row
# per output) and bias $b \in \mathbb{R}^{M}$:
#
# $$y_{nj} = \sum_i x_{ni} W_{ji} + b_j, \qquad y = xW^\top + b \in \mathbb{R}^{N\times M}.$$
#
# Differentiate one entry at a time. $y_{nj}$ depends on $x_{ni}$ through the single term $x_{ni}W_{ji}$, on
# $W_{ji}$ through the terms $x_{ni}W_{ji}$ of **every** sample $n$, and on $b_j$ once per sample:
#
# $$\frac{\partial L}{\partial x_{ni}} = \sum_j g_{nj} W_{ji}, \qquad
# \frac{\partial L}{\partial W_{ji}} = \sum_n g_{nj} x_{ni}, \qquad
# \frac{\partial L}{\partial b_j} = \sum_n g_{nj}.$$
#
# In matrix form, and with the shapes as a check:
#
# | gradient | formula | shape |
# |---|---|---|
# | $\partial L/\partial x$ | $g\,W$ | $(N\times M)(M \times D) = N \times D$ |
# | $\partial L/\partial W$ | $g^\top x$ | $(M\times N)(N \times D) = M \times D$ |
# | $\partial L/\partial b$ | $\sum_n g_{n,:}$ | $M$ |
#
# The weight gradient is a sum over the batch of outer products $g_n x_n^\top$: every sample votes on how each
# weight should move. This is exactly what `minialex.layers.Linear.backward` computes. Let us look at it run.

# %%
fc = Linear(4, 3).astype(np.float64)
x = rng.standard_normal((5, 4))
y = fc.forward(x)
dy = rng.standard_normal(y.shape)  # pretend this came from the layers above
dx = fc.backward(dy)
print("x", x.shape, "-> y", y.shape)
print("dx", dx.shape, " dW", fc.grads["weight"].shape, " db", fc.grads["bias"].shape)
print("dW equals dy.T @ x:", np.allclose(fc.grads["weight"], dy.T @ x))

# %% [markdown]
# ### Exercise 1: the linear layer's backward pass
#
# Implement `linear_backward(x, weight, dy)` returning `(dx, dweight, dbias)` for $y = x W^\top + b$. Do not modify
# the inputs. The cell after it checks your answer against finite differences. (Solution:
# `tutorials/solutions/01_chain_rule.py`.)


# %% [exercise]
def linear_backward(x, weight, dy):
    """x (N, D), weight (M, D), dy = dL/dy (N, M)  ->  (dx (N, D), dweight (M, D), dbias (M,))."""
    # Your code here: three lines, one per row of the table above.
    raise NotImplementedError


# %% [check]
exercises.check_linear_backward(linear_backward)

# %% [markdown]
# ## 1.3 Softmax and cross-entropy
#
# The last layer produces one **logit** $z_{nk}$ per class. Softmax turns a row of logits into probabilities, and
# the cross-entropy loss is the negative log-probability of the true class $t_n$, averaged over the batch:
#
# $$p_{nk} = \frac{e^{z_{nk}}}{\sum_j e^{z_{nj}}}, \qquad
# L = -\frac{1}{N}\sum_{n} \log p_{n,t_n}.$$
#
# **Derivation.** Write the log-probability without the fraction:
# $\log p_{n t} = z_{nt} - \log\sum_j e^{z_{nj}}$. Only row $n$ of the logits affects sample $n$'s term, and
#
# $$\frac{\partial}{\partial z_{nk}} \log\sum_j e^{z_{nj}} = \frac{e^{z_{nk}}}{\sum_j e^{z_{nj}}} = p_{nk},
# \qquad \frac{\partial z_{nt}}{\partial z_{nk}} = [k = t].$$
#
# So $\partial(-\log p_{nt})/\partial z_{nk} = p_{nk} - [k = t]$, and with the mean over the batch:
#
# $$\boxed{\;\frac{\partial L}{\partial z} = \frac{\mathrm{softmax}(z) - \mathrm{onehot}(t)}{N}\;}$$
#
# The softmax's messy Jacobian and the logarithm cancel into "prediction minus target". Two consequences you can
# verify below: every row of the gradient sums to zero (probabilities and the one-hot both sum to 1), and the
# gradient is small exactly when the model is confident and right.

# %%
z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 1.0], [-1.0, 0.0, 3.0]])
t = np.array([0, 1, 2, 0])
ce = SoftmaxCrossEntropy()
loss = ce.forward(z, t)
dz = ce.backward()
onehot = np.eye(3)[t]
print(f"loss = {float(loss):.4f}")
print("softmax p:\n", ce.probs)
print("(p - onehot) / N:\n", (ce.probs - onehot) / len(t))
print("library gradient equals it:", np.allclose(dz, (ce.probs - onehot) / len(t)))
print("row sums of the gradient:", dz.sum(axis=1))

# %% [markdown]
# A picture of the last sample: the model puts most mass on class 2, but the label is class 0. The gradient
# (scaled by $N$) pushes the true class's logit **up** (negative gradient, since we step against it) and every
# other logit **down** in proportion to its probability.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
classes = np.arange(3)
axes[0].bar(classes - 0.2, ce.probs[3], width=0.4, label="softmax p")
axes[0].bar(classes + 0.2, onehot[3], width=0.4, label="one-hot target")
axes[0].set_title("sample 3: prediction vs target")
axes[0].legend()
axes[1].bar(classes, dz[3] * len(t), color="tab:red")
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_title(r"$N\,\partial L/\partial z$ = p − onehot")
for ax in axes:
    ax.set_xticks(classes)
    ax.set_xlabel("class")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Numerical stability: log-sum-exp
#
# $e^{z}$ overflows float64 for $z > 709$ (and float32 already for $z > 88$). Softmax does not change when the same
# constant is added to a whole row, so we subtract the row maximum $m_n$ first:
#
# $$\log p_{nk} = (z_{nk} - m_n) - \log\sum_j e^{z_{nj} - m_n}.$$
#
# Every exponent is now $\le 0$ and the largest term is exactly $e^0 = 1$, so the sum cannot overflow or vanish.
# minialex computes $\log p$ this way and never adds a "$+10^{-7}$" inside a logarithm.

# %%
big = np.array([[1000.0, 999.0, 990.0]])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum(axis=1, keepdims=True)
print("naive softmax of [1000, 999, 990]:", naive)
print("minialex:                         ", (ce.forward(big, np.array([0])), ce.probs)[1])

# %% [markdown]
# ### Exercise 2: the softmax cross-entropy backward pass
#
# Implement `softmax_ce_backward(logits, labels)` returning $\partial L/\partial z$ for the **mean** loss. Compute
# the softmax stably (subtract the row max). The check compares with finite differences and also feeds logits
# near 1000.


# %% [exercise]
def softmax_ce_backward(logits, labels):
    """logits (N, K) float, labels (N,) ints in [0, K)  ->  dL/dlogits (N, K)."""
    # Your code here: a stable softmax, subtract 1 at the true classes, divide by N.
    raise NotImplementedError


# %% [check]
exercises.check_softmax_ce_backward(softmax_ce_backward)

# %% [markdown]
# ## 1.4 Checking gradients with finite differences
#
# How do we know a derivation is right? Compare it with the definition of the derivative. The **central
# difference**
#
# $$\frac{\partial L}{\partial \theta_i} \approx \frac{L(\theta + h e_i) - L(\theta - h e_i)}{2h}$$
#
# has two errors. Taylor expansion gives a **truncation** error $\frac{h^2}{6} L'''$, which shrinks with $h$. But
# $L$ is computed in floating point with relative precision $\varepsilon$ ($2.2\times10^{-16}$ in float64,
# $1.2\times10^{-7}$ in float32), and the difference of two nearly equal numbers divided by $2h$ carries a
# **rounding** error of about $\varepsilon |L| / h$, which grows as $h$ shrinks. The total is smallest near
# $h \approx \varepsilon^{1/3}$. Let us measure it on the loss above, perturbing one logit.


# %%
def loss_of(logits):
    return float(SoftmaxCrossEntropy().forward(logits, t))


ce.forward(z, t)
exact = float(ce.backward()[3, 2])  # the analytic dL/dz[3, 2]
hs = np.logspace(-12, -1, 45)
errors = {}
for dtype in (np.float64, np.float32):
    zt = z.astype(dtype)
    errs = []
    for h in hs:
        plus, minus = zt.copy(), zt.copy()
        plus[3, 2] += dtype(h)
        minus[3, 2] -= dtype(h)
        step = float(plus[3, 2]) - float(minus[3, 2])  # the step actually taken after rounding
        errs.append(abs((loss_of(plus) - loss_of(minus)) / step - exact) / abs(exact) if step else np.nan)
    errors[np.dtype(dtype).name] = np.array(errs)

fig, ax = plt.subplots(figsize=(6, 3.4))
for name, errs in errors.items():
    ax.loglog(hs, errs, "o-", ms=3, label=name)
ax.axvline(1e-6, color="gray", ls="--", lw=0.8)
ax.text(1.3e-6, 1e-1, "h = 1e-6", color="gray")
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the central difference")
ax.set_title("truncation (right) vs rounding (left)")
ax.legend()
fig.tight_layout()
plt.show()
print(f"float64 at h=1e-6: {errors['float64'][np.argmin(abs(hs - 1e-6))]:.1e}")
print(f"float32 at h=1e-6: {errors['float32'][np.argmin(abs(hs - 1e-6))]:.1e}")
print(f"float32, best h:   {np.nanmin(errors['float32']):.1e}")

# %% [markdown]
# The V shape is the whole story. In float64 with $h = 10^{-6}$ the central difference is good to about
# $10^{-10}$, so a correct backward pass agrees with it far below $10^{-6}$, and a wrong one (a missing $1/N$, a
# transposed matrix, an off-by-one window) disagrees at order 1. In float32 the same $h$ gives errors of a few
# percent, and even the luckiest $h$ of the 45 tried leaves an error of order $10^{-5}$ (the last line printed),
# found by luck: the float32 curve jumps around from one $h$ to the next, so no $h$ can be chosen in advance. A
# float32 gradient check cannot tell a subtle bug from rounding noise. That is why every
# check in minialex runs in **float64** and demands a relative error below $10^{-6}$, measured as
#
# $$\mathrm{rel\_error}(a, n) = \frac{\max_i |a_i - n_i|}{\max_i |a_i| + \max_i |n_i|}.$$
#
# `minialex.gradcheck` packages this: `numerical_gradient(f, x)` perturbs each entry of `x` in place,
# `check_layer(layer, x)` compares a layer's `backward` with it for the input and every parameter.

# %%
fc = Linear(4, 3).astype(np.float64)
print("Linear:", check_layer(fc, rng.standard_normal((5, 4))))

# %% [markdown]
# ### What a bug looks like
#
# Here is a softmax-CE gradient that forgets the $1/N$ of the mean. It has the right shape, the right sign and
# rows that sum to zero. Only the check catches it.


# %%
def buggy_backward(logits, labels):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p  # forgot: / len(labels)


zz = rng.standard_normal((4, 3))
numeric = numerical_gradient(lambda: loss_of(zz), zz)
print(f"buggy:   rel_error = {rel_error(buggy_backward(zz, t), numeric):.2e}")
ce.forward(zz, t)
print(f"library: rel_error = {rel_error(ce.backward(), numeric):.2e}")

# %% [markdown]
# ## 1.5 Chaining layers
#
# A two-layer network is the chain rule applied twice. Forward runs left to right and each layer caches its
# input; backward runs right to left, each layer turning $\partial L/\partial(\text{its output})$ into
# $\partial L/\partial(\text{its input})$:

# %%
fc1, fc2, ce = Linear(6, 5).astype(np.float64), Linear(5, 3).astype(np.float64), SoftmaxCrossEntropy()
xb, tb = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)

loss = ce.forward(fc2.forward(fc1.forward(xb)), tb)  # forward
dlogits = ce.backward()  # dL/dz = (p - onehot)/N
dh = fc2.backward(dlogits)  # dL/dh = dL/dz W2, and fc2.grads
dxb = fc1.backward(dh)  # dL/dx = dL/dh W1, and fc1.grads
print(f"loss {float(loss):.4f}; dL/dx shape {dxb.shape}; fc1 dW shape {fc1.grads['weight'].shape}")

# %% [markdown]
# `Sequential` does exactly this loop for any list of layers, and `check_model` checks a whole network ending in a
# loss, for the input and for every parameter at once:

# %%
net = Sequential(("fc1", fc1), ("fc2", fc2))
errs = check_model(net, SoftmaxCrossEntropy(), xb, tb)
for name, err in errs.items():
    print(f"{name:12s} {err:.1e}")
print("all below 1e-6:", max(errs.values()) < 1e-6)

# %% [markdown]
# ## Summary
#
# * A layer's backward maps $\partial L/\partial y$ to $\partial L/\partial x$ (and fills its parameter
#   gradients); the shapes always match the forward's.
# * Linear: $\partial L/\partial x = gW$, $\partial L/\partial W = g^\top x$, $\partial L/\partial b = \sum_n g_n$.
# * Softmax + cross-entropy: $\partial L/\partial z = (p - \mathrm{onehot})/N$, computed through log-sum-exp.
# * Central differences in float64 with $h = 10^{-6}$ verify a backward pass to about $10^{-10}$; float32 cannot.
#
# **Next:** [2. Convolution as a matrix product](02_convolution_as_gemm.ipynb), where the backward pass of a
# convolution turns out to be the *transpose* of a copy.
