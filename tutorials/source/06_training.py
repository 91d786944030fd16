"""Source of tutorials/06_training.ipynb (build with `python tutorials/build.py 06`)."""

# %% [markdown]
# # 6. Training: the paper's SGD, a learning-rate schedule, and a short real run
#
# Every backward pass is checked; now we use them. This notebook follows §5 of the paper: stochastic gradient
# descent with momentum 0.9 and weight decay 0.0005, a learning rate divided by 10 when progress stalls, weights
# drawn at random. Then it trains minialex's `mini` AlexNet (every layer type of the paper, sized for $28\times28$
# digits) on the 5,000 real MNIST digits that ship with minialex, for a few epochs, and looks at what it learned.
#
# You will:
# 1. implement the paper's update rule and see what momentum does on a badly conditioned problem;
# 2. see how the paper's rule and PyTorch's differ when the learning rate drops;
# 3. run the two sanity checks of every training run: the **initial loss ≈ ln(classes)**, and **overfitting a
#    handful of images**;
# 4. train for a few seconds and plot the curves;
# 5. see the paper's initialisation stall on a plateau next to He's, the loss climb after a learning-rate drop
#    under the paper's rule (and not under PyTorch's), and what dropout and weight decay do to the curves;
# 6. look at the learned conv1 filters and a confusion matrix.
#
# Prerequisites: notebooks 1 and 5. Reading time: about 35 minutes; the notebook trains several small networks and
# runs in about a minute on two idle CPU cores.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from minialex import exercises
from minialex import seed as minialex_seed
from minialex.backend import to_numpy
from minialex.data import iterate_batches, load_dataset, to_device_float
from minialex.layers import SoftmaxCrossEntropy
from minialex.models import alexnet
from minialex.optim import SGD, ReduceLROnPlateau, StepLR
from minialex.training.metrics import confusion_matrix
from minialex.training.plots import plot_confusion_matrix, plot_filters

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 6.1 The paper's update rule
#
# For every weight $w$ with gradient $g = \partial L/\partial w$ (the mean over the batch), §5 of the paper keeps a
# velocity $v$ and updates
#
# $$v \leftarrow \mu\, v \;-\; \lambda\,\varepsilon\, w \;-\; \varepsilon\, g, \qquad w \leftarrow w + v,$$
#
# with momentum $\mu = 0.9$, weight decay $\lambda = 0.0005$ and learning rate $\varepsilon = 0.01$.
#
# * **Momentum.** $v$ is a running sum of past steps, each discounted by $\mu$ per step. Along a direction where
#   the gradient keeps its sign, steps add up to $\varepsilon g/(1-\mu) = 10\,\varepsilon g$; along a direction
#   where it flips sign from step to step, they cancel. Momentum speeds up the slow directions of a badly
#   conditioned loss without blowing up the fast ones.
# * **Weight decay.** $-\lambda\varepsilon w$ is the gradient step of the penalty $\tfrac{\lambda}{2}\|w\|^2$: every
#   weight shrinks by a factor $1 - \lambda\varepsilon$ per step unless the data holds it up. The paper notes it
#   also *reduced the training error*. minialex, like Caffe's reference model, does not decay biases.
#
# `minialex.optim.SGD(model, lr, momentum, weight_decay)` implements exactly this, reading `model.params` and
# `model.grads`. Anything with those two dicts can be optimised; here a two-parameter quadratic bowl
# $L = \tfrac12(w_1^2 + 25\,w_2^2)$, 25 times steeper in one direction than the other:

# %%
H = np.diag([1.0, 25.0])


class Bowl:
    """L(w) = w·Hw/2, with the params/grads dicts that SGD reads."""

    def __init__(self, start):
        self.params = {"w": np.array(start, dtype=float)}
        self.grads = {}

    def backward(self):
        self.grads = {"w": H @ self.params["w"]}
        return 0.5 * float(self.params["w"] @ H @ self.params["w"])


paths, losses = {}, {}
for label, mu in [("plain SGD (μ = 0)", 0.0), ("momentum μ = 0.9", 0.9)]:
    bowl = Bowl([-9.0, 1.5])
    opt = SGD(bowl, lr=0.015, momentum=mu, weight_decay=0.0)
    path, loss = [bowl.params["w"].copy()], []
    for _ in range(80):
        loss.append(bowl.backward())
        opt.step()
        path.append(bowl.params["w"].copy())
    paths[label], losses[label] = np.array(path), np.array(loss)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1.6, 1]})
g1, g2 = np.meshgrid(np.linspace(-10, 4, 200), np.linspace(-2.5, 2.5, 200))
axes[0].contour(g1, g2, 0.5 * (g1**2 + 25 * g2**2), levels=np.geomspace(0.05, 80, 12), colors="lightgray")
for label, path in paths.items():
    axes[0].plot(path[:, 0], path[:, 1], ".-", ms=3, label=label)
    axes[1].semilogy(losses[label], label=label)
axes[0].set_title("80 steps at lr 0.015 on a ravine")
axes[0].legend(fontsize=8)
axes[1].set_xlabel("step")
axes[1].set_title("loss")
fig.tight_layout()
plt.show()

momentum_path = paths["momentum μ = 0.9"]
print(f"momentum: w1 (shallow axis) starts at -9 and overshoots the minimum to w1 = {momentum_path[:, 0].max():+.2f}")
print(
    f"          w2 (steep axis) starts at 1.5 and swings between {momentum_path[1:, 1].min():+.2f} and {momentum_path[2:, 1].max():+.2f}"
)
print(
    f"loss after 80 steps: plain SGD {losses['plain SGD (μ = 0)'][-1]:.3f}, momentum {losses['momentum μ = 0.9'][-1]:.3f}"
)

# %% [markdown]
# Plain SGD crawls along the shallow direction (each step shrinks $w_1$ by only 1.5 %); momentum accumulates
# those small steps and reaches the bottom long before. The price is visible in the left panel and in the numbers
# printed above: the velocity built up along the shallow axis carries $w_1$ well **past** the minimum before the
# gradient turns it round (the big loop on the right of the figure), while along the steep axis the path swings
# from side to side and dies out at a rate set by $\mu$. Both are the same phenomenon: with $\mu = 0.9$ a step
# is remembered for about $1/(1-\mu) = 10$ steps, whether or not it still points the right way.
#
# ### Exercise 1: the update rule
#
# Implement `sgd_paper_step(w, v, grad, lr, momentum, weight_decay)` returning the new `(w, v)` by the paper's rule.
# Return new arrays (do not modify the inputs). The check runs several steps, including one after a change of the
# learning rate, and compares with the formula (and recognises PyTorch's form of the rule, section 6.2, if you
# write that one instead).


# %% [exercise]
def sgd_paper_step(w, v, grad, lr, momentum, weight_decay):
    """One step of the paper's SGD for one weight array: returns (new w, new v)."""
    # Your code here: two lines.
    raise NotImplementedError


# %% [check]
exercises.check_sgd_paper_step(sgd_paper_step)

# %% [markdown]
# ## 6.2 The learning-rate schedule, and a subtle difference from PyTorch
#
# The paper "divided the learning rate by 10 when the validation error rate stopped improving with the current
# learning rate", three times in about 90 epochs. `ReduceLROnPlateau` does that: after each epoch it is given the
# validation error, and when the error has not improved for more than `patience` epochs in a row it divides the
# rate. `StepLR` is Caffe's simpler fixed schedule (divide every `step_size` epochs). On a made-up validation curve
# that stalls three times, as the paper's run did:

# %%
val_error = [0.40, 0.30, 0.25, 0.24, 0.245, 0.243, 0.20, 0.19, 0.188, 0.189, 0.190, 0.17, 0.169, 0.1695, 0.170, 0.171]
traces = {}
for label, make in [
    ("ReduceLROnPlateau(patience=1)", lambda o: ReduceLROnPlateau(o, factor=0.1, patience=1, max_reductions=3)),
    ("StepLR(step_size=6)", lambda o: StepLR(o, step_size=6, gamma=0.1)),
]:
    opt = SGD(Bowl([0.0, 0.0]), lr=0.01)
    schedule, lrs = make(opt), []
    for err in val_error:
        lrs.append(opt.lr)
        schedule.step(err)
    traces[label] = lrs

fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
axes[0].plot(range(1, len(val_error) + 1), val_error, "o-")
axes[0].set_title("validation error (made up)")
for label, lrs in traces.items():
    axes[1].semilogy(range(1, len(lrs) + 1), lrs, "o-", label=label)
axes[1].set_title("learning rate used in each epoch")
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set_xlabel("epoch")
fig.tight_layout()
plt.show()
for label, lrs in traces.items():
    drops = [epoch + 1 for epoch in range(1, len(lrs)) if lrs[epoch] < lrs[epoch - 1]]
    print(f"{label}: {len(drops)} reductions, first used in epochs {drops}")

# %% [markdown]
# When the rate drops, the two common ways of writing momentum part ways. The paper's $v$ stores **steps** (already
# multiplied by $\varepsilon$). PyTorch's `torch.optim.SGD` stores a buffer $b$ of **gradients** and multiplies by
# the current rate at each step: $b \leftarrow \mu b + g + \lambda w,\ w \leftarrow w - \varepsilon b$. With a
# constant $\varepsilon$ the two are the same algorithm ($v = -\varepsilon b$). When $\varepsilon$ drops by 10,
# PyTorch's very next step is 10 times smaller, because the whole remembered buffer is rescaled at once, while the
# paper's velocity still carries steps taken at the old rate and forgets them at rate $\mu$, over about
# $1/(1-\mu) = 10$ steps. With a constant gradient $g = 1$ and the rate divided at step 40:

# %%
lr_at = np.where(np.arange(80) < 40, 0.01, 0.001)
bowl = Bowl([0.0, 0.0])
opt = SGD(bowl, lr=0.01, momentum=0.9, weight_decay=0.0)
paper_steps, torch_steps, buf = [], [], 0.0
for lr in lr_at:
    opt.lr = float(lr)
    before = bowl.params["w"][0]
    bowl.grads = {"w": np.array([-1.0, 0.0])}  # a constant gradient of -1 (so the steps are positive)
    opt.step()
    paper_steps.append(bowl.params["w"][0] - before)
    buf = 0.9 * buf + 1.0  # PyTorch's buffer for the same gradient
    torch_steps.append(lr * buf)

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(paper_steps, label="paper / minialex: v stores steps")
ax.plot(torch_steps, "--", label="PyTorch: buffer stores gradients")
ax.axvline(40, color="gray", lw=0.8)
ax.set_xlabel("step")
ax.set_ylabel("size of the step")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Neither is wrong; they are different algorithms whenever the rate changes. Section 6.7 shows that the difference
# is not academic: on a real network it decides whether the loss falls or climbs for the first dozen steps after a
# drop.
#
# ## 6.3 The data, and the initial-loss sanity check
#
# `load_dataset("mnist5k")` returns the 5,000 real MNIST digits that minialex uses offline, split once and for all
# (stratified, seeded) into a training, a validation and a test split; the cell prints the sizes. The validation
# split is for watching and deciding (when to lower the rate, which weights to keep); the test split is looked at
# once, at the end, and only reported. Images stay `uint8` until a batch is drawn; `to_device_float` scales them to
# $[0, 1]$ and normalises with the training split's mean and standard deviation.

# %%
ds = load_dataset("mnist5k")
print(ds.source)
print(
    f"train {ds.train_images.shape} {ds.train_images.dtype}, validation {ds.val_images.shape}, "
    f"test {ds.test_images.shape}; mean {ds.mean[0]:.4f}, std {ds.std[0]:.4f}"
)
fig, axes = plt.subplots(2, 10, figsize=(9, 2))
for digit in range(10):
    for row in range(2):
        index = np.flatnonzero(ds.train_labels == digit)[row]
        axes[row, digit].imshow(ds.train_images[index, 0], cmap="gray_r")
        axes[row, digit].set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# Before training, predict the loss. A network that knows nothing should spread its probability evenly,
# $p_k = 1/K$, and then $L = -\ln(1/K) = \ln K$, which is $\ln 10 \approx 2.303$ here. That is the most useful single
# number in deep learning debugging:
#
# * **far above** $\ln K$: the network is confidently wrong before it has learned anything. Usually the logits are
#   large at initialisation (inputs not normalised, weights too large); a loss *summed* over the batch instead of
#   averaged also lands here, at $N$ times $\ln K$. Training starts by undoing that, or diverges;
# * **far below** $\ln K$: something leaks (labels in the input, the test images among the training images) or the
#   loss is mis-computed (divided by $N$ twice, a bug in the softmax);
# * **NaN**: an overflow, usually from unnormalised inputs or a learning rate that is far too high.
#
# How close is "close"? The loss is exactly $\ln K$ whenever the logits of each image are all **equal** (zero or
# not: softmax ignores a constant added to a row), so what matters is how much the logits differ *within* a row at
# initialisation. He initialisation keeps the scale of the activations from layer to layer, which is what the hidden
# layers need, but on the output layer it would give logits with a spread of order one and a loss well above
# $\ln K$. minialex therefore draws the output layer's weights with a small standard deviation (0.01, the paper's
# scale), so that an untrained network starts close to $\ln K$. The cell below measures the default, the same
# network with the He scale on its output layer too, and the default fed raw pixels in $[0, 255]$ instead of
# normalised ones, the failure this check exists for (all on the validation images):

# %%
minialex_seed(0)
ce = SoftmaxCrossEntropy()
probe_x, probe_y = ds.val_images, ds.val_labels


def initial_loss(model, x):
    model.eval()  # no dropout for a measurement
    logits = model.forward(x)
    model.train()
    within_row = float(to_numpy(logits).std(axis=1).mean())
    return float(ce.forward(logits, probe_y)), within_row


normalised = to_device_float(probe_x, ds.mean, ds.std)
model = alexnet("mini")
print(f"ln(10) = {math.log(10):.3f}")
loss, spread = initial_loss(model, normalised)
print(f"mini AlexNet as built, normalised input:   loss {loss:7.3f}  (spread of the logits within a row {spread:.3f})")
he_head = alexnet("mini")
w = he_head.params["fc5.weight"]
w[...] = np.random.default_rng(0).standard_normal(w.shape) * math.sqrt(2.0 / w.shape[1])  # He scale: N(0, 2/fan_in)
loss, spread = initial_loss(he_head, normalised)
print(f"He scale on the output layer too:          loss {loss:7.3f}  (spread of the logits within a row {spread:.2f})")
loss, spread = initial_loss(model, probe_x.astype(np.float32))
print(f"as built, raw pixels 0..255:               loss {loss:7.3f}  (spread of the logits within a row {spread:.2f})")
shifted = ce.forward(np.full((4, 10), 7.0), probe_y[:4])  # equal logits, far from zero
print(f"logits all equal to 7:                     loss {float(shifted):7.3f}  (exactly ln 10)")

# %% [markdown]
# ## 6.4 The second sanity check: overfit a handful of images
#
# Before a long run, check that the network can learn at all: give it 50 training images, switch off the
# regularisers (dropout and weight decay), and train on that one batch over and over. A correct network, loss and
# backward pass drive the training loss towards zero and reach 100 % training accuracy within a few dozen steps.
# If they do not, no amount of data will help: the bug is in the model, the loss, the gradients or the update
# (a wrong sign, a missing `opt.step()`, a learning rate off by 100), and it is much cheaper to find here.

# %%
few = np.random.default_rng(0).choice(len(ds.train_labels), 50, replace=False)
few_x, few_y = to_device_float(ds.train_images[few], ds.mean, ds.std), ds.train_labels[few]
minialex_seed(0)
tiny_run = alexnet("mini")
tiny_run["drop4"].p = 0.0  # no dropout
tiny_opt = SGD(tiny_run, lr=0.01, momentum=0.9, weight_decay=0.0)  # no weight decay
overfit_loss = []
for _ in range(40):
    overfit_loss.append(float(ce.forward(tiny_run.forward(few_x), few_y)))
    tiny_run.backward(ce.backward(), need_input_grad=False)
    tiny_opt.step()
tiny_run.eval()
train_acc = float((to_numpy(tiny_run.forward(few_x)).argmax(axis=1) == few_y).mean())
val_acc = float((to_numpy(tiny_run.forward(normalised)).argmax(axis=1) == probe_y).mean())
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.semilogy(overfit_loss)
ax.set_xlabel("step (the same 50 images every time)")
ax.set_ylabel("training loss")
fig.tight_layout()
plt.show()
print(f"loss {overfit_loss[0]:.2f} -> {overfit_loss[-1]:.4f} in 40 steps; accuracy on the 50 images {train_acc:.0%}")
print(f"accuracy on the validation images: {val_acc:.0%} (50 memorised digits are not enough to generalise)")

# %% [markdown]
# ## 6.5 Training
#
# The training loop is the chain rule of notebook 1 plus the update rule above, once per mini-batch:
#
# ```python
# logits = model.forward(x)                           # every layer caches what its backward needs
# loss = ce.forward(logits, labels)                   # mean cross-entropy
# model.backward(ce.backward(), need_input_grad=False)  # dL/dlogits, then every layer in reverse; fills model.grads
# opt.step()                                          # v <- mu v - lambda eps w - eps g ;  w <- w + v
# ```
#
# (`need_input_grad=False`: nobody needs the gradient with respect to the images, so the first convolution skips
# computing it.) To keep this notebook quick we train the `mini` AlexNet on a random 2,000 of the training digits
# for 3 epochs with batch 32, the paper's momentum and weight decay, and a learning rate of 0.01 divided by 10 for
# the last epoch (`StepLR`), and evaluate on the validation digits after each epoch. Each epoch draws its batch
# order from its own seeded generator and re-seeds dropout, so that sections 6.6 and 6.7 can replay an epoch
# exactly with one thing changed. `minialex train` does the full job (all the training digits, data
# augmentation, more epochs, checkpoints, a progress bar); see the main README.


# %%
def train_epoch(model, opt, images, labels, epoch, batch_size=32):
    """One pass over (images, labels), batches in the order of epoch `epoch`; returns (batch losses, step sizes)."""
    minialex_seed(100 + epoch)  # this epoch's dropout masks
    losses, step_sizes = [], []
    order = np.random.default_rng(epoch)  # this epoch's batch order
    for images_b, labels_b in iterate_batches(images, labels, batch_size=batch_size, shuffle=True, rng=order):
        loss = ce.forward(model.forward(to_device_float(images_b, ds.mean, ds.std)), labels_b)
        model.backward(ce.backward(), need_input_grad=False)
        opt.step()
        losses.append(float(loss))
        # w <- w + v: the step just taken is the velocity
        step_sizes.append(math.sqrt(sum(float((v * v).sum()) for v in opt.velocity.values())))
    return losses, step_sizes


def evaluate(model, images, labels):
    """(mean loss, accuracy, predictions) on uint8 images, dropout off."""
    model.eval()
    logits = model.forward(to_device_float(images, ds.mean, ds.std))
    model.train()
    predictions = to_numpy(logits).argmax(axis=1)
    return float(ce.forward(logits, labels)), float((predictions == labels).mean()), predictions


def snapshot(model, opt):
    """Copies of the weights and velocities, to replay an epoch from here."""
    return {k: v.copy() for k, v in model.params.items()}, {k: v.copy() for k, v in opt.velocity.items()}


minialex_seed(0)
model = alexnet("mini")
opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
schedule = StepLR(opt, step_size=2, gamma=0.1)
subset = np.random.default_rng(0).choice(len(ds.train_labels), 2000, replace=False)
train_images, train_labels = ds.train_images[subset], ds.train_labels[subset]

step_loss, step_size, history = [], [], []
start = time.perf_counter()
for epoch in range(1, 4):
    if epoch == 3:
        at_drop = snapshot(model, opt)  # the state just before the learning rate drops (section 6.7)
    losses, sizes = train_epoch(model, opt, train_images, train_labels, epoch)
    step_loss += losses
    step_size += sizes
    val_loss, val_acc, _ = evaluate(model, ds.val_images, ds.val_labels)
    history.append({"epoch": epoch, "steps": len(step_loss), "lr": opt.lr, "val_loss": val_loss, "val_acc": val_acc})
    print(
        f"epoch {epoch}: lr {opt.lr:g}, mean train loss {np.mean(losses):.3f}, "
        f"validation loss {val_loss:.3f}, accuracy {val_acc:.1%}"
    )
    schedule.step()
seconds = time.perf_counter() - start
steps_per_epoch = len(step_loss) // 3
print(f"{len(step_loss)} steps in {seconds:.0f} s ({len(step_loss) * 32 / seconds:.0f} training images/s here)")
test_loss, test_acc, predictions = evaluate(model, ds.test_images, ds.test_labels)
print(f"reported once, on the {len(ds.test_labels):,} test digits: loss {test_loss:.3f}, accuracy {test_acc:.1%}")

# %% [markdown]
# The curves: per-batch training loss, its running mean, and the validation loss and accuracy after each epoch. The
# loss starts near $\ln 10$, as checked above, and falls as the first features form. A batch holds only 32 digits,
# so the per-batch loss is noisy: judge progress by the running mean and the validation figures. The learning
# rate is divided by 10 for epoch 3 (the grey line); what happens right after it is the subject of section 6.7.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
steps = np.arange(1, len(step_loss) + 1)
axes[0].plot(steps, step_loss, lw=0.6, alpha=0.5, label="training loss per batch")
window = 10
axes[0].plot(steps[window - 1 :], np.convolve(step_loss, np.ones(window) / window, "valid"), label="running mean (10)")
axes[0].plot([h["steps"] for h in history], [h["val_loss"] for h in history], "s", label="validation loss")
axes[0].axhline(math.log(10), color="gray", ls="--", lw=0.8)
axes[0].axvline(2 * steps_per_epoch + 0.5, color="gray", lw=0.8)
axes[0].text(steps[-1], math.log(10), "ln 10 ", ha="right", va="bottom", color="gray")
axes[0].set_yscale("log")
axes[0].set_xlabel("step")
axes[0].legend(fontsize=8)
axes[1].plot([h["epoch"] for h in history], [100 * h["val_acc"] for h in history], "s-")
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("validation accuracy (%)")
axes[1].set_xticks([h["epoch"] for h in history])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6.6 The paper's initialisation and its plateau
#
# minialex initialises with He's scale, $\mathcal{N}(0, 2/\text{fan-in})$, and not with the paper's recipe: every
# weight $\sim\mathcal{N}(0, 0.01^2)$ and biases of 1 in conv2, conv4, conv5 and the hidden fully connected layers
# (§5). With a fixed standard deviation of 0.01 each layer multiplies the scale of the image-dependent signal by
# about $0.01\sqrt{\text{fan-in}/2}$, well below 1, so by the output the logits hardly depend on the image at all:
# the gradient that would tell the layers apart is tiny, and training sits on a **plateau**, at chance accuracy
# and a loss at or above $\ln K$, until it finds its way off. (Caffe's replication of the paper met the same wall: its reference model uses biases of 0.1
# "since initialization to 1 gave flat loss".) Here is the first epoch again, with the same batches in the same
# order and the same dropout masks, once with each initialisation:

# %%
minialex_seed(0)
paper_init = alexnet("mini", init="paper")
paper_opt = SGD(paper_init, lr=0.01, momentum=0.9, weight_decay=5e-4)
paper_loss, _ = train_epoch(paper_init, paper_opt, train_images, train_labels, epoch=1)
_, paper_acc, _ = evaluate(paper_init, ds.val_images, ds.val_labels)

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(step_loss[:steps_per_epoch], label=f"He (minialex's default): {history[0]['val_acc']:.0%} after one epoch")
ax.plot(paper_loss, label=f"the paper's N(0, 0.01²), biases 1: {paper_acc:.0%} after one epoch")
ax.axhline(math.log(10), color="gray", ls="--", lw=0.8)
ax.set_xlabel("step (epoch 1)")
ax.set_ylabel("training loss per batch")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(
    f"mean loss over the last 20 steps of epoch 1: He {np.mean(step_loss[steps_per_epoch - 20 : steps_per_epoch]):.3f}, "
    f"paper {np.mean(paper_loss[-20:]):.3f} (ln 10 = {math.log(10):.3f})"
)

# %% [markdown]
# With He's scale the loss leaves $\ln 10$ within a few dozen steps; with the paper's it does not leave it at all
# in this epoch (it even drifts above it: the network's guesses swing from class to class without yet depending on
# the image), and the validation accuracy is that of guessing. The paper's network did get off its plateau, on 1.2
# million images over 90 epochs, but it paid with its first steps; on our 2,000 digits the plateau is the whole
# epoch. `alexnet(variant, init="paper")` (and `minialex train
# --init paper`) keeps the published recipe for anyone who wants to reproduce it.
#
# ## 6.7 The learning-rate drop: why the loss climbs right after it
#
# Look again at the training curve around the drop at the start of epoch 3: for a dozen steps the batch loss is
# *higher* than before the drop, not lower. That is not batch noise. The paper's velocity $v$ stores steps taken at
# the **old** rate; after the drop it keeps carrying them for about $1/(1-\mu) = 10$ steps, while the gradient
# that should steer them, now multiplied by a 10 times smaller $\varepsilon$, is 10 times weaker. The weights
# coast. PyTorch's formulation (section 6.2) does not: its buffer is multiplied by the new rate at once, which is
# the same as rescaling the paper's velocity by the ratio of the rates at the moment of the drop.
#
# The cell replays epoch 3 from the weights and velocities saved at the drop, with the same batches and the same
# dropout masks, three ways: the paper's rule (that is the run above), the velocity rescaled with the rate (the
# few lines below are all it takes), and no drop at all.


# %%
def replay_epoch3(lr, rescale_velocity):
    """Epoch 3 again from the state saved at the drop, with rate `lr` (optionally scaling v by lr / 0.01)."""
    twin = alexnet("mini")
    twin_opt = SGD(twin, lr=lr, momentum=0.9, weight_decay=5e-4)
    weights, velocity = at_drop
    for name in weights:
        twin.params[name][...] = weights[name]
        twin_opt.velocity[name][...] = velocity[name]
        if rescale_velocity:
            twin_opt.velocity[name] *= lr / 0.01  # PyTorch's behaviour: the remembered steps shrink with the rate
    losses, sizes = train_epoch(twin, twin_opt, train_images, train_labels, epoch=3)
    return losses, sizes, evaluate(twin, ds.val_images, ds.val_labels)[1]


drop = 2 * steps_per_epoch
transients = {
    "paper's rule: v keeps the old steps": (step_loss[drop:], step_size[drop:], history[2]["val_acc"]),
    "v rescaled with the rate (PyTorch)": replay_epoch3(0.001, rescale_velocity=True),
    "no drop (rate stays 0.01)": replay_epoch3(0.01, rescale_velocity=False),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for label, (losses, sizes, _) in transients.items():
    axes[0].plot(np.convolve(losses, np.ones(5) / 5, "valid"), label=label)
    axes[1].semilogy(sizes[:30], label=label)
axes[0].set_xlabel("step after the drop")
axes[0].set_ylabel("batch loss, running mean (5)")
axes[1].set_xlabel("step after the drop")
axes[1].set_ylabel("size of the step |v|")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"mean batch loss over the 25 steps before the drop: {np.mean(step_loss[drop - 25 : drop]):.3f}")
for label, (losses, sizes, acc) in transients.items():
    print(
        f"{label:38s} mean batch loss, 25 steps after: {np.mean(losses[:25]):.3f}; "
        f"|v| 10 steps after: {sizes[9]:.4f}; validation accuracy after the epoch {acc:.1%}"
    )

# %% [markdown]
# Same batches, same masks, same starting point: the difference is the velocity alone. With the paper's rule the
# steps shrink only slowly after the drop (right panel: they decay by $\mu$ per step, from the size they had at the
# old rate) while the loss climbs (left); with the velocity rescaled, the steps shrink tenfold at once and the loss
# does not climb at all: over the first 25 steps it is even lower than in the run that kept the old rate (printed
# above). After about 20 steps the paper's velocity has forgotten the old steps and the three curves run together
# again; the bump cost those steps. When you reproduce a published curve in another framework, a bump after each
# drop, or its absence, is this and nothing else. (minialex's `SGD` implements the paper's rule; the few lines in
# `replay_epoch3` are all PyTorch's behaviour needs.)
#
# ## 6.8 Dropout and weight decay: what the regularisers do to the curves
#
# The paper puts dropout on fc6 and fc7 ("without dropout, our network exhibits substantial overfitting") and
# decays every weight by $\lambda = 0.0005$. To see overfitting at all on a CPU in a few seconds we need a small
# training set, so we train a narrower `mini` AlexNet on only 256 digits for 16 epochs, twice: once with no
# regulariser, once with the paper's (dropout 0.5 on the hidden FC layer, weight decay $5\cdot10^{-4}$), and watch
# the training and validation loss of each.


# %%
def regularisation_run(dropout, weight_decay, epochs=16):
    """Train a narrow mini AlexNet on 256 digits; returns per-epoch (train loss, validation loss, validation acc)."""
    minialex_seed(0)
    net = alexnet("mini", widths=(16, 32, 48, 256))
    net["drop4"].p = dropout
    net_opt = SGD(net, lr=0.01, momentum=0.9, weight_decay=weight_decay)
    curve = []
    for epoch in range(1, epochs + 1):
        train_epoch(net, net_opt, small_images, small_labels, epoch)
        train_loss = evaluate(net, small_images, small_labels)[0]  # on the training digits, dropout off
        val_loss, val_acc, _ = evaluate(net, ds.val_images, ds.val_labels)
        curve.append((train_loss, val_loss, val_acc))
    weights = [to_numpy(w) for name, w in net.params.items() if name.endswith("weight")]
    return np.array(curve), math.sqrt(sum(float((w * w).sum()) for w in weights))


small = np.random.default_rng(5).choice(len(ds.train_labels), 256, replace=False)
small_images, small_labels = ds.train_images[small], ds.train_labels[small]
runs = {
    "no dropout, no weight decay": regularisation_run(dropout=0.0, weight_decay=0.0),
    "dropout 0.5 and weight decay 5e-4 (the paper's)": regularisation_run(dropout=0.5, weight_decay=5e-4),
}
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for (label, (curve, _)), color in zip(runs.items(), ("tab:red", "tab:blue"), strict=True):
    epochs = np.arange(1, len(curve) + 1)
    axes[0].semilogy(epochs, curve[:, 0], "--", color=color, label=f"train: {label}")
    axes[0].semilogy(epochs, curve[:, 1], "-", color=color, label=f"validation: {label}")
    axes[1].plot(epochs, 100 * curve[:, 2], "-", color=color, label=label)
axes[0].set_ylabel("loss")
axes[1].set_ylabel("validation accuracy (%)")
for ax in axes:
    ax.set_xlabel("epoch (256 training digits)")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()
for label, (curve, norm) in runs.items():
    train_loss, val_loss, val_acc = curve[-1]
    print(
        f"{label:48s} final train loss {train_loss:.3f}, validation loss {val_loss:.3f} "
        f"(gap {val_loss - train_loss:.3f}), accuracy {val_acc:.1%}; |weights| {norm:.2f}"
    )
(plain, _), (regularised, _) = runs.values()
gap_change = (regularised[-1, 1] - regularised[-1, 0]) - (plain[-1, 1] - plain[-1, 0])
print(
    f"the paper's regularisers changed the gap by {gap_change:+.3f} "
    f"and the validation accuracy by {100 * (regularised[-1, 2] - plain[-1, 2]):+.1f} points"
)
steps = 16 * math.ceil(256 / 32)
print(
    f"weight decay alone shrinks a weight by (1 - λε)^steps = {(1 - 5e-4 * 0.01) ** steps:.4f} over these {steps} steps"
)
paper_steps = 90 * 1_200_000 // 128
print(
    f"... and by {(1 - 5e-4 * 0.01) ** paper_steps:.3f} over the paper's {paper_steps:,} steps (90 epochs at batch 128)"
)

# %% [markdown]
# Read the dashed lines first. Without regularisation the network memorises its 256 digits: the training loss
# heads for zero while the validation loss levels off far above it, and that gap is overfitting. Dropout trains a
# different random half of the hidden layer at every step, so memorising is slower: the training loss falls later
# (the paper: dropout "roughly doubles the number of iterations required to converge"). Whether that buys
# validation accuracy depends on how long you train and how large the model is next to the data. In the run above
# it did not: the regularised network ended with the lower validation accuracy, and its train–validation gap is not
# much smaller (the line after the two runs prints both differences). Sixteen epochs are too few for a network that learns more slowly to catch up, and
# 256 digits in a narrow network are not the paper's regime of 60 million parameters. A regulariser is judged on
# the validation curve of the run you actually make, not on its reputation.
# Weight decay's share is computed, not guessed, in the last two lines: at $\lambda\varepsilon = 5\cdot10^{-6}$ per
# step it is invisible in a run of a hundred steps, and decisive over the paper's 844 thousand, where a weight
# that no gradient holds up would shrink to under 2 % of its size (the last line printed). It is a long-run
# pressure towards small weights, which the paper found also lowered the *training* error.
#
# ## 6.9 What the first layer learned
#
# The paper's Figure 3 shows conv1's 96 filters after training: oriented edges, gratings and colour blobs. Our conv1
# has 32 filters of $5\times5$ on one grey channel, and three short epochs have only begun to move them away from
# their random start, so we show the starting filters, the trained ones, and the difference, which is what
# training wrote into them. (`minialex train` saves the trained grid in its run directory after a full run.)

# %%
minialex_seed(0)
initial_filters = to_numpy(alexnet("mini").params["conv1.weight"])  # the same seed: the starting point
trained_filters = to_numpy(model.params["conv1.weight"])
display(plot_filters(initial_filters, title="conv1 at initialisation", columns=16))
display(plot_filters(trained_filters, title="conv1 after 3 epochs", columns=16))
display(plot_filters(trained_filters - initial_filters, title="change during training", columns=16))

# %% [markdown]
# ## 6.10 Where the network errs: the confusion matrix
#
# Accuracy is one number; the confusion matrix $C_{ij}$ (how many images of true class $i$ were predicted as $j$)
# shows *which* digits get confused. The diagonal holds the correct predictions.
#
# ### Exercise 2: a confusion matrix
#
# Implement `my_confusion_matrix(labels, predictions, num_classes)` returning a `(K, K)` integer array with rows
# for the true class and columns for the predicted class. A loop is fine.


# %% [exercise]
def my_confusion_matrix(labels, predictions, num_classes):
    """C[i, j] = number of images of true class i predicted as class j."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_confusion_matrix(my_confusion_matrix)

# %% [markdown]
# The matrix of the 3-epoch model on the test digits (the split we report, looked at once, after training):

# %%
matrix = confusion_matrix(ds.test_labels, predictions, 10)
display(plot_confusion_matrix(matrix, ds.classes, title=f"mini AlexNet, {len(ds.test_labels):,} test digits"))
off = matrix - np.diag(np.diag(matrix))
worst = np.unravel_index(np.argmax(off), off.shape)
print(f"most frequent confusion: true {worst[0]} predicted as {worst[1]} ({off[worst]} times)")

# %% [markdown]
# ## Summary
#
# * The paper's SGD: $v \leftarrow \mu v - \lambda\varepsilon w - \varepsilon g$, $w \leftarrow w + v$; momentum
#   speeds up the shallow directions of the loss (and overshoots along them), weight decay shrinks the weights, a
#   pressure that matters over long runs.
# * The paper's velocity stores steps, PyTorch's buffer stores gradients: the same algorithm until the learning
#   rate changes. After a drop the paper's rule coasts on the old steps for about $1/(1-\mu)$ steps and the loss
#   climbs; rescaling the velocity with the rate removes the bump.
# * Two sanity checks before any long run: the loss at step 0 against $\ln K$, and a handful of images overfitted
#   to zero loss.
# * The paper's $\mathcal{N}(0, 0.01^2)$ initialisation starts on a plateau; He's scale does not.
# * Three short epochs on 2,000 digits train the `mini` AlexNet well past chance (section 6.5 printed the
#   figures). The full recipe is `minialex train`.
#
# **Next:** [7. CPU vs GPU](07_cpu_vs_gpu.ipynb): where the time of a training step goes, and what a GPU changes.
