"""Source of tutorials/08_batchnorm.ipynb (build with `python tutorials/build.py 08`)."""

# %% [markdown]
# # 8. Batch normalisation (and Adam): the layer that replaced LRN
#
# Three years after AlexNet, Ioffe and Szegedy (2015) normalised every channel of a layer's output by the mean and
# variance **of the current mini-batch**. Batch normalisation made deep networks train with larger learning
# rates and less care over the initialisation, and most later versions of AlexNet put it where the paper had
# local response normalisation. Its backward pass is the most instructive one after LRN's: every output depends
# on every input of its channel, yet the gradient collapses to two sums.
#
# You will:
# 1. write the forward pass and derive the compact backward pass ($\partial L/\partial x$ from $g$, $\hat x$ and
#    two sums), then implement it yourself;
# 2. check the layer against finite differences in float64 and against PyTorch on the same numbers;
# 3. plant the three classic mistakes and watch which check catches each;
# 4. see why training and evaluation modes differ, and why PyTorch's `momentum=0.1` is Keras's `momentum=0.9`;
# 5. compare LRN, BatchNorm and neither on the embedded digits, in a deliberately small experiment;
# 6. put Adam's update next to SGD's: bias correction and the "epsilon-hat" form.
#
# Prerequisites: notebooks 1, 4 and 6. Reading time: about 35 minutes.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises
from minialex import seed as minialex_seed
from minialex.backend import to_numpy
from minialex.data import iterate_batches, load_dataset, to_device_float
from minialex.gradcheck import check_layer, rel_error
from minialex.layers import BatchNorm2d, Layer, Sequential, SoftmaxCrossEntropy
from minialex.models import alexnet
from minialex.optim import SGD, Adam

np.set_printoptions(precision=4, suppress=True, linewidth=120)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 8.1 The forward pass
#
# For a feature map $x$ of shape $(N, C, H, W)$, BatchNorm2d treats each channel on its own, over the
# $M = N\cdot H\cdot W$ values it has in the batch. For the values $x_1, \dots, x_M$ of one channel:
#
# $$\mu = \frac1M\sum_{i=1}^M x_i, \qquad \sigma^2 = \frac1M\sum_{i=1}^M (x_i-\mu)^2, \qquad
#   s = \frac{1}{\sqrt{\sigma^2+\varepsilon}}, \qquad \hat x_i = (x_i-\mu)\,s, \qquad y_i = \gamma\,\hat x_i + \beta.$$
#
# $\hat x$ has mean 0 and variance $\sigma^2/(\sigma^2+\varepsilon) \approx 1$ in every channel; the learned scale
# $\gamma$ and shift $\beta$ (one pair per channel, called `weight` and `bias` as in PyTorch) let the network undo
# that where it helps. Note the **biased** variance, divided by $M$: it is what makes $\hat x$ have variance
# exactly $\sigma^2/(\sigma^2+\varepsilon)$. On a batch of activations with a different mean and spread per channel:

# %%
x = rng.standard_normal((8, 3, 5, 5)) * np.array([1.0, 5.0, 0.2])[None, :, None, None]
x += np.array([0.0, 10.0, -3.0])[None, :, None, None]
bn = BatchNorm2d(3, dtype=np.float64)
y = bn.forward(x)
print("per-channel mean of x:", x.mean(axis=(0, 2, 3)), "  std:", x.std(axis=(0, 2, 3)))
print("per-channel mean of y:", y.mean(axis=(0, 2, 3)), "  std:", y.std(axis=(0, 2, 3)))

# %% [markdown]
# ## 8.2 The backward pass, derived
#
# Fix one channel and write $g_i = \partial L/\partial y_i$. The parameters are the easy part:
#
# $$\frac{\partial L}{\partial \beta} = \sum_i g_i, \qquad \frac{\partial L}{\partial \gamma} = \sum_i g_i\,\hat x_i.$$
#
# For the input, every $\hat x_i$ depends on every $x_j$ of the channel, through $\mu$ and through $\sigma^2$.
#
# **Step 1, the statistics.** $\partial\mu/\partial x_j = 1/M$, and, because $\sum_i (x_i - \mu) = 0$ kills the
# term that comes through $\mu$,
#
# $$\frac{\partial\sigma^2}{\partial x_j} = \frac2M\sum_i (x_i-\mu)\Big(\delta_{ij}-\frac1M\Big) = \frac{2(x_j-\mu)}{M},
#   \qquad \frac{\partial s}{\partial x_j} = -\tfrac12(\sigma^2+\varepsilon)^{-3/2}\frac{\partial\sigma^2}{\partial x_j}
#   = -\frac{s^3 (x_j-\mu)}{M}.$$
#
# **Step 2, the product rule on $\hat x_i = (x_i - \mu)\,s$:**
#
# $$\frac{\partial \hat x_i}{\partial x_j} = s\Big(\delta_{ij}-\frac1M\Big) - (x_i-\mu)\,\frac{s^3(x_j-\mu)}{M}
#   = s\Big(\delta_{ij} - \frac1M - \frac{\hat x_i\,\hat x_j}{M}\Big).$$
#
# **Step 3, contract with $\partial L/\partial \hat x_i = \gamma g_i$:**
#
# $$\frac{\partial L}{\partial x_j} = \gamma s\sum_i g_i\Big(\delta_{ij} - \frac1M - \frac{\hat x_i\hat x_j}{M}\Big)
#   = \boxed{\;\frac{\gamma\, s}{M}\Big(M g_j - \sum_i g_i - \hat x_j \sum_i g_i \hat x_i\Big)
#   = \frac{\gamma\, s}{M}\Big(M g_j - \frac{\partial L}{\partial\beta} - \hat x_j\,\frac{\partial L}{\partial\gamma}\Big)\;}$$
#
# The two sums are the ones already computed for $\beta$ and $\gamma$: the whole backward pass is two reductions
# per channel and one elementwise expression, and the $M\times M$ Jacobian of a channel is never formed. Reading
# the bracket: $-\sum_i g_i$ is the gradient through the mean (it makes $\sum_j \partial L/\partial x_j = 0$: adding a
# constant to a channel changes nothing after normalisation), and $-\hat x_j\sum_i g_i\hat x_i$ is the gradient
# through the variance (it removes the part of $g$ along $\hat x$: scaling a channel changes nothing either).
#
# ### Exercise: the backward pass
#
# Implement `batchnorm_backward(x, gamma, dy, eps)` for $x$ of shape $(N, C, H, W)$ in training mode, returning
# `(dx, dgamma, dbeta)` with `dgamma` and `dbeta` of shape $(C,)$. Recompute $\mu$, $s$ and $\hat x$ from `x` (a
# real layer keeps them from the forward pass); reduce over the axes `(0, 2, 3)` with `keepdims=True` so that the
# per-channel numbers broadcast. The check compares `dx` with finite differences and `dgamma`, `dbeta` with
# `BatchNorm2d`, on channels with only 6 to 36 values, where every $1/M$ term matters.


# %% [exercise]
def batchnorm_backward(x, gamma, dy, eps):
    """x (N, C, H, W), gamma (C,), dy = dL/dy (N, C, H, W)  ->  (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_batchnorm_backward(batchnorm_backward)

# %% [markdown]
# ## 8.3 Two independent checks: finite differences and PyTorch
#
# `minialex.layers.BatchNorm2d` implements the boxed formula. First, central differences in float64 of
# $L = \sum y \cdot dy$ with respect to $x$, $\gamma$ and $\beta$ (`check_layer`, notebook 1's tool); the project's
# bound for a correct backward is a relative error below $10^{-6}$. A random $\gamma$ and $\beta$ make the check
# honest (with $\gamma = 1$ a mistake that drops $\gamma$ would pass):

# %%
layer = BatchNorm2d(3, dtype=np.float64)
layer.params["weight"][...] = rng.uniform(0.5, 2.0, 3)
layer.params["bias"][...] = rng.standard_normal(3)
x = rng.standard_normal((4, 3, 3, 3)) * 2 + 1
errors = check_layer(layer, x)
print({name: f"{err:.1e}" for name, err in errors.items()}, "-> below 1e-6:", max(errors.values()) < 1e-6)

# %% [markdown]
# Second, PyTorch's `torch.nn.BatchNorm2d` on the same input, weights and upstream gradient, in float64. A finite
# difference proves that the backward pass matches *our* forward pass; PyTorch also tells us that the forward pass
# is the standard layer (biased variance, $\varepsilon$ inside the square root) and that the running statistics
# move as PyTorch's do.

# %%
dy = rng.standard_normal(x.shape)
# the gradient check ran many forward passes in training mode: start the running statistics afresh, like PyTorch's
layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = 0.0, 1.0
y = layer.forward(x)
dx = layer.backward(dy)
try:
    import torch

    twin = torch.nn.BatchNorm2d(3, eps=layer.eps, momentum=layer.momentum).double()
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.params["weight"]))
        twin.bias.copy_(torch.from_numpy(layer.params["bias"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    pairs = {
        "y": (y, yt.detach().numpy()),
        "dx": (dx, xt.grad.numpy()),
        "dgamma": (layer.grads["weight"], twin.weight.grad.numpy()),
        "dbeta": (layer.grads["bias"], twin.bias.grad.numpy()),
        "running_mean": (layer.buffers["running_mean"], twin.running_mean.numpy()),
        "running_var": (layer.buffers["running_var"], twin.running_var.numpy()),
    }
    for name, (ours, theirs) in pairs.items():
        print(f"{name:>12}: relative difference to PyTorch {rel_error(ours, theirs):.1e}")
except ImportError:
    torch = None
    print("(PyTorch is not installed: skipping the comparison)")

# %% [markdown]
# ## 8.4 Break it, and watch the checks fail
#
# Here is a second, whole-array BatchNorm2d in which one of three classic mistakes can be planted:
#
# * **no mean term**: the backward pass forgets $-\sum_i g_i$, the gradient through $\mu$;
# * **running statistics in training**: the forward pass normalises with the running $\mu$ and $\sigma^2$ (as in
#   evaluation mode) while training, so the batch is not normalised at all;
# * **$M-1$**: the forward pass normalises with the unbiased variance, $\sum(x_i-\mu)^2/(M-1)$. PyTorch *keeps* the
#   unbiased variance in `running_var`, which is how this one creeps in, but it normalises with the biased one.
#
# Each version goes through the same two checks as above: finite differences of its own forward pass, and the
# comparison with PyTorch.


# %%
class PlainBatchNorm2d(Layer):
    """BatchNorm2d (training mode, PyTorch's conventions) in a few whole-array lines; `mistake` plants a bug."""

    def __init__(self, channels, mistake=None, eps=1e-5, momentum=0.1):
        super().__init__()
        self.mistake, self.eps, self.momentum = mistake, eps, momentum
        self.params = {"weight": np.ones(channels), "bias": np.zeros(channels)}
        self.buffers = {"running_mean": np.zeros(channels), "running_var": np.ones(channels)}

    def forward(self, x):
        m = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mean) ** 2).sum(axis=(0, 2, 3), keepdims=True) / (m - 1 if self.mistake == "M - 1" else m)
        if self.mistake == "running statistics in training":
            mean = self.buffers["running_mean"].reshape(1, -1, 1, 1)
            var = self.buffers["running_var"].reshape(1, -1, 1, 1)
        self.s = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (x - mean) * self.s
        return self.params["weight"].reshape(1, -1, 1, 1) * self.xhat + self.params["bias"].reshape(1, -1, 1, 1)

    def backward(self, dy, need_input_grad=True):
        m = dy.shape[0] * dy.shape[2] * dy.shape[3]
        dbeta = dy.sum(axis=(0, 2, 3), keepdims=True)
        dgamma = (dy * self.xhat).sum(axis=(0, 2, 3), keepdims=True)
        self.grads = {"weight": dgamma.ravel(), "bias": dbeta.ravel()}
        mean_term = 0.0 if self.mistake == "no mean term" else dbeta / m
        return self.params["weight"].reshape(1, -1, 1, 1) * self.s * (dy - mean_term - self.xhat * dgamma / m)


def torch_difference(plain, x, dy):
    """Relative difference of (y, dx) to torch.nn.BatchNorm2d with the same gamma and beta."""
    twin = torch.nn.BatchNorm2d(x.shape[1], eps=plain.eps, momentum=plain.momentum).double()
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(plain.params["weight"]))
        twin.bias.copy_(torch.from_numpy(plain.params["bias"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    y, dx = plain.forward(x), plain.backward(dy)
    return rel_error(y, yt.detach().numpy()), rel_error(dx, xt.grad.numpy())


x = rng.standard_normal((2, 3, 2, 2)) * 2 + 1  # M = 8 values per channel
dy = rng.standard_normal(x.shape)
print(f"{'version':>32} | {'finite differences: dx':>22} | {'PyTorch: y':>10} | {'PyTorch: dx':>11}")
for mistake in (None, "no mean term", "running statistics in training", "M - 1"):
    plain = PlainBatchNorm2d(3, mistake)
    plain.params["weight"][...] = [0.5, 1.5, 2.0]
    plain.params["bias"][...] = [0.1, -0.2, 0.3]
    fd = check_layer(plain, x, dy)["x"]
    row = f"{mistake or 'correct (the control)':>32} | {fd:22.1e} | "
    if torch is not None:
        dy_err, dx_err = torch_difference(plain, x, dy)
        row += f"{dy_err:10.1e} | {dx_err:11.1e}"
    print(row)

# %% [markdown]
# Reading the table, column by column:
#
# * The **missing mean term** has a perfect forward pass, so only a check of the gradient can see it: the finite
#   differences and PyTorch's `dx` both flag it, PyTorch's `y` cannot.
# * **Running statistics in training** normalise with $\mu = 0$, $\sigma^2 = 1$ (the initial running values), so
#   the output is far from PyTorch's. The finite differences fail too, but for a reason worth seeing: the forward
#   pass is now a fixed affine map of $x$, and the backward pass (the batch formula) is not its derivative. Had
#   the backward been written for the affine map ($\gamma s g$), the gradient check would pass on a layer that
#   does not normalise anything: a gradient check proves a backward pass against its *own* forward pass, and only
#   a reference can tell that the forward pass is the wrong function.
# * **$M-1$** is a small error in the forward pass, a factor $\sqrt{(M-1)/M} = \sqrt{7/8} \approx 0.935$ on
#   $\hat x$. With $M$ in the thousands it would hide below a loose tolerance; with $M = 8$ PyTorch's output exposes
#   it. The finite differences catch it too, because the backward formula was derived for a division by $M$.
#
# The lesson of notebook 4 again: test with few values per channel (large $1/M$ terms), random $\gamma$ and $\beta$,
# and two independent references.
#
# ## 8.5 Training mode and evaluation mode
#
# In training mode an image's output depends on the other images of its batch, through $\mu$ and $\sigma^2$. That
# is fine for learning (it even acts as a mild regulariser), but a classifier must give an image the same answer
# whatever it is batched with. So the layer also keeps **running statistics**, moving averages of the batch
# statistics seen in training, and evaluation mode (`.eval()`) normalises with them instead: then $\mu$ and
# $\sigma^2$ are constants, the layer is the fixed affine map $y = \gamma s_{\text{run}}(x - \mu_{\text{run}}) + \beta$,
# and its backward pass is just $\partial L/\partial x = \gamma\, s_{\text{run}}\, g$.

# %%
bn = BatchNorm2d(3, dtype=np.float64)
for _ in range(100):  # training batches whose channels have mean (0, 10, -3) and std (1, 5, 0.2)
    batch = rng.standard_normal((16, 3, 4, 4)) * np.array([1.0, 5.0, 0.2])[None, :, None, None]
    bn.forward(batch + np.array([0.0, 10.0, -3.0])[None, :, None, None])
print("running mean:", bn.buffers["running_mean"], "  running var:", bn.buffers["running_var"])

image = batch[:1] + np.array([0.0, 10.0, -3.0])[None, :, None, None]
others_a, others_b = rng.standard_normal((2, 3, 3, 4, 4))
for mode in ("train", "eval"):
    getattr(bn, mode)()
    first = bn.forward(np.concatenate([image, others_a]))[0]
    second = bn.forward(np.concatenate([image, others_b]))[0]
    print(
        f"{mode:>5} mode: the same image, two different batches -> outputs differ by {np.abs(first - second).max():.2e}"
    )

# %% [markdown]
# The running statistics have converged to the data's mean (0, 10, −3) and variance (1, 25, 0.04), within the
# noise of the last batches. In training mode the same image gets a different output in each batch (here its
# batchmates are standard normal, far from its own statistics, so the difference is large); in evaluation mode
# the outputs agree exactly. Forgetting `.eval()` before testing, or evaluating with batches of one image in
# training mode (where $\hat x = 0$, or an error), are the two classic consequences.
#
# ## 8.6 Momentum: PyTorch's 0.1 is Keras's 0.9
#
# Both frameworks update the running statistics by an exponential moving average, but their `momentum` means
# opposite things:
#
# $$\text{PyTorch: } r \leftarrow (1-m)\,r + m\,b \quad (m = 0.1), \qquad
#   \text{Keras: } r \leftarrow m\,r + (1-m)\,b \quad (m = 0.99),$$
#
# with $r$ the running value and $b$ the batch's. PyTorch's $m$ is the weight of the *new* batch, Keras's the weight
# of the *old* average, so PyTorch's `momentum=0.1` is Keras's `momentum=0.9`, and Keras's default 0.99 (a much
# slower average, over about 100 batches) is PyTorch's 0.01. Two more differences: PyTorch stores the **unbiased**
# variance $\sigma^2 M/(M-1)$ in `running_var` although it normalises with the biased one, and the default
# $\varepsilon$ differs ($10^{-5}$ against $10^{-3}$). `BatchNorm2d(convention="keras")` follows Keras's rules:

# %%
torch_style = BatchNorm2d(3, momentum=0.1, dtype=np.float64)  # PyTorch's convention (the default)
keras_style = BatchNorm2d(3, momentum=0.9, convention="keras", dtype=np.float64)
batch = rng.standard_normal((2, 3, 2, 2)) * 3 + 1  # M = 8
for _ in range(200):  # long enough for the initial running values (mean 0, variance 1) to be forgotten
    torch_style.forward(batch)
    keras_style.forward(batch)
print(
    "running mean, PyTorch 0.1 / Keras 0.9:", torch_style.buffers["running_mean"], keras_style.buffers["running_mean"]
)
ratio = torch_style.buffers["running_var"] / keras_style.buffers["running_var"]
print("running var ratio PyTorch / Keras:", ratio, " M / (M - 1) =", 8 / 7)

# %% [markdown]
# The running means are identical; the running variances differ by exactly $M/(M-1) = 8/7$, the unbiased
# correction. With $M$ in the tens of thousands (a real feature map) the correction is negligible, but a port
# that copies the numbers "momentum 0.99" from Keras into PyTorch averages over 1.01 batches instead of 100.
#
# ## 8.7 LRN, BatchNorm or neither: a small comparison on the digits
#
# minialex's `mini` AlexNet has LRN after conv1 and conv2, where the paper has it. We build three versions from
# the same random weights: with LRN (as built), with `BatchNorm2d` in place of each LRN layer (after the ReLU, where
# the LRN was; the BatchNorm paper put it before the nonlinearity, and both placements are in use), and with
# neither. To fit the time budget the network is narrowed to widths (16, 32, 48, 64) and each version is trained
# for the same 60 steps of 32 digits (about half a pass over the 3,500 training digits) with the paper's SGD at
# learning rate 0.01; a fourth run trains the BatchNorm version with Adam (section 8.8). Validation accuracy is
# measured on the 500 validation digits in evaluation mode (BatchNorm with its running statistics).
#
# **This is a small experiment**: one seed, one short run per setting, on an easy data set where every version
# does well. Differences of a percent or two between runs are within what another seed would change; read the
# curves for what is large (how fast the loss falls), not for the last digit.

# %%
ds = load_dataset("mnist5k")
ce = SoftmaxCrossEntropy()
val_x = to_device_float(ds.val_images, ds.mean, ds.std)


WIDTHS = (16, 32, 48, 64)  # conv1, conv2, conv3, fc4: half the mini AlexNet's widths or less, to keep this quick


def mini_with(norm):
    """The mini AlexNet with its two LRN layers kept ("lrn"), replaced by BatchNorm2d ("bn"), or removed (None)."""
    minialex_seed(0)  # the same initial weights for every version (BatchNorm draws no random numbers)
    layers = []
    for name, child in alexnet("mini", widths=WIDTHS).children.items():
        if name.startswith("norm"):
            if norm is None:
                continue
            if norm == "bn":
                child = BatchNorm2d(layers[-2][1].out_channels)  # the channels of the conv two layers back
        layers.append((name, child))
    return Sequential(*layers)


def short_run(norm, make_optimizer, steps=60):
    """Train for `steps` batches of 32; return (batch losses, validation accuracy, seconds)."""
    model = mini_with(norm)
    opt = make_optimizer(model)
    order = np.random.default_rng(1)  # the same batches for every run
    losses, start = [], time.perf_counter()
    batches = iterate_batches(ds.train_images, ds.train_labels, batch_size=32, shuffle=True, rng=order)
    for (images, labels), _ in zip(batches, range(steps), strict=False):
        losses.append(float(ce.forward(model.forward(to_device_float(images, ds.mean, ds.std)), labels)))
        model.backward(ce.backward(), need_input_grad=False)
        opt.step()
    model.eval()
    accuracy = float((to_numpy(model.forward(val_x)).argmax(axis=1) == ds.val_labels).mean())
    return losses, accuracy, time.perf_counter() - start


def sgd(lr):
    return lambda model: SGD(model, lr=lr, momentum=0.9, weight_decay=5e-4)


runs = {
    "LRN, SGD 0.01": ("lrn", sgd(0.01)),
    "BatchNorm, SGD 0.01": ("bn", sgd(0.01)),
    "neither, SGD 0.01": (None, sgd(0.01)),
    "BatchNorm, Adam 0.001": ("bn", lambda model: Adam(model, lr=1e-3)),
}
results = {}
for label, (norm, make_optimizer) in runs.items():
    results[label] = short_run(norm, make_optimizer)
    losses, accuracy, seconds = results[label]
    print(
        f"{label:>22}: loss over the last 20 steps {np.mean(losses[-20:]):.3f}, "
        f"validation accuracy {accuracy:.1%}  ({seconds:.0f} s)"
    )

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
for label, (losses, _, _) in results.items():
    smooth = np.convolve(losses, np.ones(8) / 8, "valid")
    ax.plot(np.arange(8, len(losses) + 1), smooth, label=label, ls="--" if "Adam" in label else "-")
ax.set_xlabel("step (batches of 32)")
ax.set_ylabel("training loss (running mean of 8)")
ax.set_yscale("log")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# In this run the BatchNorm version's loss falls fastest and it ends with the best validation accuracy of the three
# SGD runs; the version with neither normalisation is the slowest, and LRN lies in between. (The paper's LRN
# constants were chosen for pixels in $[0, 255]$; on these standardised digits the activations at initialisation
# stay below 10, where LRN's gain $s^{-\beta}$ is between 0.592 and 0.595 everywhere: it is almost the constant
# $2^{-0.75}$ of notebook 4's low-energy regime, so its difference from "neither" here is a rescaling of the
# activations, not lateral inhibition. The same gain is why the two versions without LRN start above
# $\ln 10 \approx 2.3$: the two factors of about 0.59 shrink LRN's initial logits, and the others lack them; see
# notebook 6's first sanity check.) Adam
# with its default rate reaches an accuracy close to BatchNorm with SGD. With one seed and 60 steps these are
# early-training speeds, not final accuracies (notebook 6 trains the full-width LRN version for 189 steps to above
# 90 % validation accuracy). What this cannot show is the comparison on ImageNet-sized problems, where the paper
# measured LRN's benefit (1.4 % top-1) and where BatchNorm's benefit was that much deeper networks trained at all.
#
# ## 8.8 Adam next to SGD
#
# The paper's SGD (notebook 6) moves each weight by a multiple of its gradient. Adam (Kingma & Ba, 2015), the
# default optimiser of much later work, divides by a running estimate of the gradient's size instead. For every
# parameter $\theta$ with gradient $g$, at step $t = 1, 2, \dots$:
#
# $$\begin{aligned}
# \text{SGD (the paper):}\quad & v \leftarrow \mu v - \lambda\varepsilon\theta - \varepsilon g, & \theta &\leftarrow \theta + v\\
# \text{Adam:}\quad & m \leftarrow \beta_1 m + (1-\beta_1)\, g, & v &\leftarrow \beta_2 v + (1-\beta_2)\, g^2,\\
# & \hat m = \frac{m}{1-\beta_1^t},\quad \hat v = \frac{v}{1-\beta_2^t}, & \theta &\leftarrow \theta - \alpha\,\frac{\hat m}{\sqrt{\hat v}+\epsilon}
# \end{aligned}$$
#
# with $\alpha = 10^{-3}$, $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$. Three things to see.
#
# **Scale invariance.** $\hat m/\sqrt{\hat v}$ does not change when $g$ is multiplied by a constant, so each
# parameter moves by about $\alpha$ per step whatever the size of its gradient; SGD's step is proportional to it.
#
# **Bias correction.** $m$ and $v$ start at 0, so early averages are too small, $v$'s much more than $m$'s (at
# $t = 1$, $m = 0.1\,g$ and $v = 0.001\,g^2$). Without the correction the first step would be
# $\alpha\cdot 0.1/\sqrt{0.001} = 3.16\,\alpha$ per parameter; with it, $\hat m = g$, $\hat v = g^2$ and the step is
# $\alpha$ exactly (up to $\epsilon$).
#
# **Epsilon-hat.** TensorFlow and Keras compute the same step as $\alpha_t\, m/(\sqrt v + \hat\epsilon)$ with
# $\alpha_t = \alpha\sqrt{1-\beta_2^t}/(1-\beta_1^t)$ (the paper's §2 notes this is cheaper). The two forms are equal
# when $\hat\epsilon = \epsilon\sqrt{1-\beta_2^t}$, so the *same number* in the epsilon-hat form acts as an $\epsilon$
# that is $1/\sqrt{1-\beta_2^t}$ times larger: 31.6 times at $t = 1$. It matters only where $\sqrt{\hat v}$ is near
# $\epsilon$, i.e. for tiny gradients. `minialex.optim.Adam` computes both (`epsilon_hat=True`, or `Adam.keras`).


# %%
class Params:
    """Anything with `params` and `grads` dicts can be optimised: two weights with gradients 1000x apart."""

    def __init__(self):
        self.params = {"w": np.zeros(2)}
        self.grads = {"w": np.array([1e-3, 1.0])}


def first_step(make_optimizer, grad):
    model = Params()
    model.grads["w"] = np.asarray(grad, dtype=np.float64)
    make_optimizer(model).step()
    return -model.params["w"]


def show(values):
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


sgd_step = first_step(lambda m: SGD(m, lr=1e-3, momentum=0.9, weight_decay=0.0), [1e-3, 1.0])
print(
    "gradient (1e-3, 1):  SGD's first step",
    show(sgd_step),
    "  Adam's",
    show(first_step(lambda m: Adam(m, lr=1e-3), [1e-3, 1.0])),
)
beta1, beta2, g = 0.9, 0.999, np.array([1e-3, 1.0])
no_correction = 1e-3 * ((1 - beta1) * g) / (np.sqrt((1 - beta2) * g**2) + 1e-8)
print("Adam's first step without bias correction:", show(no_correction))
tiny = [1e-8, 1e-8]
paper_form = first_step(lambda m: Adam(m, lr=1e-3, eps=1e-8), tiny)[0]
hat_form = first_step(lambda m: Adam(m, lr=1e-3, eps=1e-8, epsilon_hat=True), tiny)[0]
print(f"gradient 1e-8, eps 1e-8: Adam's first step {paper_form:.3g}, the epsilon-hat form's {hat_form:.3g}")

# %% [markdown]
# SGD's step follows the gradient's size; Adam's first step is $\alpha = 10^{-3}$ for both weights. Without bias
# correction it would be 3.16 times larger. With gradients of $10^{-8}$, the size of $\epsilon$, the paper's form
# takes a step of $\alpha/2$ (since $\hat g/(|\hat g| + \epsilon) = 1/2$) while the epsilon-hat form with the same
# number takes about 3 % of $\alpha$: the same `eps` is a different optimiser. minialex's Adam is checked against
# `torch.optim.Adam` step for step; on these numbers:

# %%
if torch is not None:
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([w], lr=1e-3)
    ours = Params()
    adam = Adam(ours, lr=1e-3)
    for _ in range(5):
        gradient = rng.standard_normal(2) * np.array([1e-3, 1.0])
        w.grad = torch.from_numpy(gradient.copy())
        reference.step()
        ours.grads["w"] = gradient
        adam.step()
    print(
        f"after 5 steps: relative difference to torch.optim.Adam {rel_error(ours.params['w'], w.detach().numpy()):.1e}"
    )

# %% [markdown]
# ## Summary
#
# * BatchNorm normalises each channel by its batch mean and biased variance, then scales and shifts by $\gamma$,
#   $\beta$: $y = \gamma (x-\mu)/\sqrt{\sigma^2+\varepsilon} + \beta$.
# * Backward: $\partial L/\partial\beta = \sum g$, $\partial L/\partial\gamma = \sum g\hat x$, and
#   $\partial L/\partial x = \frac{\gamma s}{M}\big(Mg - \sum g - \hat x\sum g\hat x\big)$: two sums per channel.
# * Check with few values per channel, random $\gamma$, $\beta$, and two references: finite differences catch a
#   wrong backward, a reference implementation catches a wrong forward.
# * Training mode uses the batch's statistics, evaluation mode the running ones. PyTorch's `momentum=0.1` is
#   Keras's `0.9`; PyTorch keeps the unbiased running variance.
# * Adam moves every parameter by about $\alpha$ per step; bias correction fixes the first steps; the
#   epsilon-hat form gives the same `eps` a different meaning.
#
# **Next:** [9. Photographs](09_photographs.ipynb): the paper's data pipeline and its evaluation, on real photos.
