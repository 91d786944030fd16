"""Source of tutorials/05_assembling_alexnet.ipynb (build with `python tutorials/build.py 05`)."""

# %% [markdown]
# # 5. Assembling AlexNet: shapes, parameters, FLOPs and memory
#
# Notebooks 1 to 4 built and checked every layer. Stacked in the paper's order they make AlexNet. Before training
# anything, it pays to do the bookkeeping that the paper's Figure 2 only sketches: what shape leaves every layer,
# where the 61 million parameters are, where the arithmetic is, and how much memory a training step at the
# paper's batch size of 128 needs. All of it follows from the shapes, so we compute it rather than measure it.
#
# You will:
# 1. trace the shapes through the network and settle the **224 vs 227** puzzle;
# 2. see that the fully connected layers hold 96 % of the parameters while the convolutions do 92 % of the work;
# 3. compute the memory of activations and im2col buffers at batch 128;
# 4. tell the paper's story of the two GPUs: the 3 GB limit, where the GPUs exchanged data, what the split cost
#    and bought, and how long the 90 epochs would take on this CPU;
# 5. gradient-check a whole (miniature) AlexNet end to end, and explain the size of its error.
#
# Prerequisites: notebooks 1 to 4 (notebook 2 for im2col). Reading time: about 30 minutes.

# %%
import glob
import json
import os

import matplotlib.pyplot as plt
import numpy as np

from minialex import exercises
from minialex import seed as minialex_seed
from minialex.gradcheck import check_model
from minialex.layers import Conv2d, Linear, LocalResponseNorm, MaxPool2d, SoftmaxCrossEntropy, conv_output_size
from minialex.layers.conv import CHUNK_BYTES
from minialex.models import alexnet, layer_table

# %% [markdown]
# ## 5.1 The network
#
# `minialex.models.alexnet("paper")` builds the 2012 network from the layers of notebooks 1 to 4, with the
# paper's layer names. `summary()` lists each layer's output shape for one image, its parameters and its
# multiply-adds (MACs; one MAC is 2 FLOPs), computed from the shapes without running anything.

# %%
minialex_seed(0)
model = alexnet("paper")
print(model.summary())

# %% [markdown]
# ## 5.2 The 224 vs 227 puzzle
#
# The paper says the input is $224\times224\times3$ and conv1 has 96 kernels of $11\times11$ at stride 4. But
#
# $$\frac{224 - 11}{4} + 1 = 54.25,$$
#
# which is not a whole number of window positions, and Figure 2's count of 253,440 conv1 neurons is no
# $96\times h\times w$ layout either ($253{,}440 / 96 = 2640$, not a square). With 227 pixels,
# $(227 - 11)/4 + 1 = 55$, and $96\times55\times55 = 290{,}400$: every later size in the network follows from
# that. Caffe's reference model crops 227; torchvision keeps 224 and pads conv1 by 2 pixels. The sizes that matter
# are the ones that reach the classifier: fc6 expects $256\times6\times6 = 9216$ inputs. Follow one side of the
# image through the paper's layers:

# %%
PAPER_SPATIAL = [  # (layer, kernel, stride, padding) for the layers that change the spatial size
    ("conv1", 11, 4, 0),
    ("pool1", 3, 2, 0),
    ("conv2", 5, 1, 2),
    ("pool2", 3, 2, 0),
    ("conv3", 3, 1, 1),
    ("conv4", 3, 1, 1),
    ("conv5", 3, 1, 1),
    ("pool5", 3, 2, 0),
]


def trace(size, first_padding=0):
    sides = [size]
    for name, k, s, p in PAPER_SPATIAL:
        sides.append(conv_output_size(sides[-1], k, s, first_padding if name == "conv1" else p))
    return sides


print("layer:           ", "  ".join(f"{n:>5s}" for n in ["input"] + [n for n, *_ in PAPER_SPATIAL]))
for size, pad, what in [(227, 0, "Caffe, 227"), (224, 0, "paper's 224"), (224, 2, "torchvision: 224, pad 2")]:
    print(f"{what:24s}", "  ".join(f"{v:5d}" for v in trace(size, pad)))

# %% [markdown]
# With 224 pixels and no padding, conv1 floors 54.25 to 54, pool5 ends at $5\times5$, and fc6 would need 6400
# inputs, not 9216. Which input sizes give the paper's $6\times6$? The flooring makes it a range; the cell tries
# every size from 200 to 300, far enough on both sides to bracket it, and says so.

# %%
sizes = np.arange(200, 301)
pool5 = np.array([trace(s)[-1] for s in sizes])
six = sizes[pool5 == 6]
assert pool5[0] < 6 < pool5[-1], "the range of sizes tried must bracket the 6x6 range"
print(f"pool5 side 6 for input sizes {six.min()} to {six.max()} ({len(six)} sizes; 224 gives {trace(224)[-1]})")
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.step(sizes, pool5, where="mid")
ax.axvline(224, color="tab:red", ls="--", lw=1, label="224 (paper text)")
ax.axvline(227, color="tab:green", ls="--", lw=1, label="227 (Caffe)")
ax.set_xlabel("input side (pixels)")
ax.set_ylabel("pool5 side")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 1: the shape chain
#
# Write `pool5_side(image_size)` for the paper's network (no padding in conv1) using `conv_output_size`, without
# looking at `trace` above. The check compares with a reference for every input size from 67 to 400 pixels.


# %% [exercise]
def pool5_side(image_size):
    """Side of the paper network's pool5 output for a square input of `image_size` pixels."""
    # Your code here: conv1 11/4, pool 3/2, conv2 5/1 pad 2, pool 3/2, three 3/1 pad 1 convs, pool 3/2.
    raise NotImplementedError


# %% [check]
exercises.check_pool5_side(pool5_side)

# %% [markdown]
# ## 5.3 Where the parameters live, and where the work is done
#
# For a convolution with $C_{in}$ input and $C_{out}$ output channels, $K\times K$ kernels, $G$ groups and an
# $O_H\times O_W$ output:
#
# $$\text{params} = C_{out}\,\frac{C_{in}}{G}\,K^2 + C_{out}, \qquad
# \text{MACs} = O_H\,O_W\,C_{out}\,\frac{C_{in}}{G}\,K^2 .$$
#
# A linear layer from $D$ to $M$ has $DM + M$ parameters and $DM$ MACs: each weight is used **once** per image. A
# convolution's weight is used at every one of the $O_H O_W$ output positions (3025 of them in conv1). That single
# difference splits AlexNet in two:

# %%
rows = [r for r in layer_table(model, model.input_shape) if r.params]
names = [r.name for r in rows]
params = np.array([r.params for r in rows], dtype=float)
macs = np.array([r.macs for r in rows], dtype=float)

fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
colors = ["tab:blue" if n.startswith("conv") else "tab:orange" for n in names]
axes[0].barh(names, 100 * params / params.sum(), color=colors)
axes[0].set_title(f"share of the {params.sum() / 1e6:.1f} M parameters (%)")
axes[1].barh(names, 100 * macs / macs.sum(), color=colors)
axes[1].set_title(f"share of the {macs.sum() / 1e9:.2f} G multiply-adds per image (%)")
axes[0].invert_yaxis()
fig.tight_layout()
plt.show()
conv = np.array([n.startswith("conv") for n in names])
print(
    f"convolutions: {params[conv].sum() / params.sum():5.1%} of the parameters, {macs[conv].sum() / macs.sum():5.1%} of the MACs"
)
print(
    f"FC layers:    {params[~conv].sum() / params.sum():5.1%} of the parameters, {macs[~conv].sum() / macs.sum():5.1%} of the MACs"
)

# %% [markdown]
# fc6 alone, $9216\times4096$, holds 62 % of the parameters and does 5 % of the work. This is why the paper needed
# dropout on fc6 and fc7 (that is where the network can memorise), why later networks replaced the big FC layers
# with global pooling, and, in notebook 7, why fc6 runs far below the machine's peak at small batches: it reads
# 151 MB of weights to do 38 M multiply-adds per image.
#
# The other AlexNets in minialex make the same point with different numbers. (The `d2l` variant takes a
# $1\times224\times224$ image, the `mini` one a $1\times28\times28$ digit.)

# %%
print(f"{'variant':12s} {'input':>12s} {'params':>12s} {'GMACs/image':>12s} {'FC share of params':>19s}")
for variant in ("paper", "torchvision", "d2l", "mini"):
    net = model if variant == "paper" else alexnet(variant)
    table = layer_table(net, net.input_shape)
    total = sum(r.params for r in table)
    fc = sum(r.params for r in table if r.kind == "Linear")
    shape = "×".join(map(str, net.input_shape))
    print(f"{variant:12s} {shape:>12s} {total:12,d} {sum(r.macs for r in table) / 1e9:12.3f} {fc / total:19.1%}")
    del net

# %% [markdown]
# ### Exercise 2: parameters and MACs of a convolution
#
# Implement `conv_cost(c_in, c_out, k, groups, out_h, out_w)` returning `(params, macs)` for a convolution with a
# bias. The check compares with the paper's five convolutions and with random configurations.


# %% [exercise]
def conv_cost(c_in, c_out, k, groups, out_h, out_w):
    """(number of parameters including the bias, multiply-adds for one image) of a k x k convolution."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_conv_cost(conv_cost)

# %% [markdown]
# ## 5.4 Memory at batch 128
#
# Training needs, besides the weights, everything the backward pass will read. We count, in float32 (4 bytes):
#
# * **parameters, gradients and momentum**: three copies of the 61 M numbers (the optimiser of notebook 6 keeps a
#   velocity per weight);
# * **activations**: the output of every layer for the whole batch, which the next layer keeps for its backward
#   pass (its input);
# * **im2col buffers**: the `cols` matrix of each convolution, $C_{in}K^2\times N O_H O_W$, which the backward pass
#   needs again for $\partial L/\partial W = G\,\mathrm{cols}^\top$ (notebook 2). Every pixel is copied once per
#   window that sees it. We count the simplest design: the whole batch lowered at once, and every layer's `cols`
#   kept until the backward pass.
#
# Nothing is allocated here: the sizes follow from the table. (Real implementations differ in detail: a ReLU can
# keep a boolean mask instead of its input, max-pooling a one-byte argmax, LRN a few arrays; the point is the
# order of magnitude.)

# %%
BATCH, FLOAT = 128, 4
table = layer_table(model, model.input_shape)
activations = {r.name: BATCH * int(np.prod(r.output_shape)) * FLOAT for r in table}
cols_bytes = {}
for r in table:
    layer = model[r.name]
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel_size
        cols_bytes[r.name] = layer.in_channels * kh * kw * BATCH * r.output_shape[1] * r.output_shape[2] * FLOAT
n_params = sum(r.params for r in table)
MB = 1e6
budget = {
    "parameters": n_params * FLOAT,
    "gradients": n_params * FLOAT,
    "momentum": n_params * FLOAT,
    "activations": sum(activations.values()),
    "im2col buffers": sum(cols_bytes.values()),
}
for what, size in budget.items():
    print(f"{what:15s} {size / MB:8.0f} MB")
print(f"{'total':15s} {sum(budget.values()) / MB:8.0f} MB")
print()
for name, size in cols_bytes.items():
    layer = model[name]
    n_rows = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    n_cols = size // FLOAT // n_rows
    print(
        f"{name}: cols {n_rows:5d} x {n_cols:9,d} = {size / MB:4.0f} MB   (its output: {activations[name] / MB:4.0f} MB)"
    )

# %%
fig, ax = plt.subplots(figsize=(7, 3))
parts = [
    ("weights + grads + momentum", budget["parameters"] * 3, "tab:gray"),
    ("activations", budget["activations"], "tab:blue"),
    ("im2col buffers", budget["im2col buffers"], "tab:red"),
]
left = 0.0
for label, size, color in parts:
    ax.barh([0], [size / 1e9], left=left, color=color, label=f"{label}: {size / 1e9:.2f} GB")
    left += size / 1e9
ax.set_yticks([])
ax.set_xlabel("GB (float32, batch 128)")
ax.set_title("memory of one training step of the paper's AlexNet, from the shapes")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The im2col copies are the largest item: conv2's alone is about 0.9 GB, nine times the layer's own output, because
# each of its input pixels is copied into 25 windows. This is the price of turning a convolution into one big GEMM
# over the whole batch. The remedy is to lower a slice of the batch at a time into one reused buffer and, in the
# backward pass, to rebuild the columns from the layer's input (which is kept anyway): one more copy, which is cheap
# next to the GEMMs (notebook 7), for gigabytes less memory. Caffe, for example, lowers one image at a time.
#
# minialex's `Conv2d` does this: it cuts the batch into chunks whose columns fit in `CHUNK_BYTES` (printed below)
# and lowers each chunk into one scratch buffer that every convolution reuses, so its im2col memory is that of the
# largest chunk, not the sum over layers:

# %%
print(f"CHUNK_BYTES = {CHUNK_BYTES / 2**20:.0f} MiB")
shape = model.input_shape
for r in table:
    layer = model[r.name]
    if isinstance(layer, Conv2d):
        chunk = layer.batch_chunk((BATCH, *shape), FLOAT)
        per_image = cols_bytes[r.name] // BATCH
        print(
            f"{r.name}: {chunk:3d} images per chunk -> {chunk * per_image / MB:3.0f} MB of columns at a time "
            f"(the whole batch at once: {cols_bytes[r.name] / MB:4.0f} MB)"
        )
    shape = r.output_shape

# %% [markdown]
# ## 5.5 The paper's story: why two GPUs, where they talked, and what it cost
#
# The grouped convolutions are not a design choice the paper argues for on their own: they are the shadow of the
# hardware. "A single GTX 580 GPU has only 3GB of memory, which limits the maximum size of the networks that can be
# trained on it" (§3.2), so the authors put half of every layer's kernels on each of two GPUs. The drawing below is
# the paper's Figure 2 redrawn from `alexnet("paper")` itself: every convolution and fully connected layer is cut in
# two by its output channels, one half per GPU, and a red line marks a layer that reads **both** halves of its
# input, i.e. where the GPUs must exchange activations. Which layers those are is read from the model: a `Linear`
# layer, or a `Conv2d` with `groups=1`, reads all its input channels; a `Conv2d` with `groups=2` reads only its own
# GPU's half.

# %%
stages = []  # one entry per convolution or linear layer, with the pooling / LRN folded in after it
shape_in = model.input_shape
for r in table:
    layer = model[r.name]
    if isinstance(layer, (Conv2d, Linear)):
        reads_all = isinstance(layer, Linear) or layer.groups == 1
        stages.append({"name": r.name, "shape": r.output_shape, "reads_all": reads_all, "after": [], "input": shape_in})
    elif isinstance(layer, (MaxPool2d, LocalResponseNorm)) and stages:
        stages[-1]["after"].append(r.name)
    shape_in = r.output_shape
for stage in stages:  # the first layer reads the image, which both GPUs are given: no exchange there
    stage["exchange"] = stage["reads_all"] and stage is not stages[0]


def half(shape):
    return "×".join(map(str, (shape[0] // 2, *shape[1:])))


fig, ax = plt.subplots(figsize=(11, 3.3))
ax.add_patch(plt.Rectangle((-0.45, 0.1), 0.8, 1.8, fc="whitesmoke", ec="k"))
ax.text(-0.1, 1.0, "image\n" + "×".join(map(str, model.input_shape)), ha="center", va="center", fontsize=7)
for i, stage in enumerate(stages, start=1):
    for gpu_y in (1.45, 0.55):
        ax.add_patch(
            plt.Rectangle(
                (i - 0.35, gpu_y - 0.3), 0.7, 0.6, fc="tab:blue" if i <= 5 else "tab:orange", alpha=0.25, ec="k"
            )
        )
        ax.text(i, gpu_y, f"{stage['name']}\n{half(stage['shape'])}", ha="center", va="center", fontsize=7)
        ax.plot([i - 0.65, i - 0.35], [gpu_y, gpu_y], color="k", lw=1)  # from the same GPU
    if stage["exchange"]:
        ax.plot([i - 0.65, i - 0.35], [1.45, 0.55], color="tab:red", lw=1.5)
        ax.plot([i - 0.65, i - 0.35], [0.55, 1.45], color="tab:red", lw=1.5)
    if stage["after"]:
        ax.text(i, 0.05, "+ " + ", ".join(stage["after"]), ha="center", va="center", fontsize=6, color="gray")
ax.text(len(stages) + 0.55, 1.45, "GPU 1", va="center", fontsize=8)
ax.text(len(stages) + 0.55, 0.55, "GPU 2", va="center", fontsize=8)
ax.set_xlim(-0.6, len(stages) + 1.1)
ax.set_ylim(-0.1, 2.0)
ax.set_axis_off()
ax.set_title(
    "alexnet('paper') split over two GPUs, after the paper's Figure 2 (red: the GPUs exchange activations)", fontsize=9
)
fig.tight_layout()
plt.show()
print("layers that read the other GPU's half:", ", ".join(s["name"] for s in stages if s["exchange"]))

# %% [markdown]
# Now tie it to section 5.4's count. Each GPU holds half of every layer's kernels (so half the weights, gradients
# and momentum) and half of every activation, plus, for each red layer, a copy of the other GPU's half of that
# layer's input. At batch 128, in float32, with the two versions of the im2col count of 5.4:

# %%
received = {}  # bytes each GPU receives from the other in the forward pass (the backward sends as much back)
for stage in stages:
    if stage["exchange"]:
        received[stage["name"]] = BATCH * int(np.prod(stage["input"])) // 2 * FLOAT
training_state = 3 * budget["parameters"] + budget["activations"]
for what, total in [
    ("weights, gradients, momentum, activations", training_state),
    ("... and the whole-batch im2col buffers of 5.4", training_state + budget["im2col buffers"]),
]:
    per_gpu = total / 2 + sum(received.values())
    print(
        f"{what:48s} one GPU: {total / 2**30:4.2f} GiB   each of two: {per_gpu / 2**30:4.2f} GiB   (a GTX 580: 3 GiB)"
    )
print()
for name, size in received.items():
    print(f"{name}: each GPU receives {size / 1e6:5.2f} MB per forward pass (the other half of its input)")
exchanged = 2 * 2 * sum(received.values())  # both directions, forward and backward
print(f"per training step, both directions, forward and backward: {exchanged / 1e6:.0f} MB")

# %% [markdown]
# So the memory was tight, not absurd: by this count (a lower bound: it leaves out the gradients of the
# activations during the backward pass, the input batches, convolution workspaces and the CUDA context) the
# training state alone is over half of one GPU's 3 GB, and a straightforward lowering of every convolution would
# not fit at all. Split in two it leaves room on each card. The price is communication, and the drawing shows
# how the authors kept it small: the GPUs talk only at conv3 and at the fully connected layers, and the data that
# crosses is the small late activations (13×13 and smaller), never the large early maps. The cell puts it at a few
# tens of megabytes per step, against the roughly half a second that each step took on their machine (5–6 days for
# about 843,750 steps, see below).
#
# What did the split buy? The paper (§3.2): compared with "a net with half as many kernels in each convolutional
# layer trained on one GPU", the two-GPU net has top-1 and top-5 error rates lower by 1.7 % and 1.2 %, and "takes
# slightly less time to train". And the groups, which exist only because of the split, are a saving in their own
# right, computed here from the model's layers: the same network with every convolution reading all its input
# channels would have

# %%
convs = [r for r in table if isinstance(model[r.name], Conv2d)]
params_now = sum(r.params for r in table)
macs_now = sum(r.macs for r in table)
params_full = params_now + sum((r.params - r.output_shape[0]) * (model[r.name].groups - 1) for r in convs)
macs_full = macs_now + sum(r.macs * (model[r.name].groups - 1) for r in convs)
print(f"with the paper's groups: {params_now:,} parameters, {macs_now / 1e6:,.0f} M multiply-adds per image")
print(f"without groups:          {params_full:,} parameters, {macs_full / 1e6:,.0f} M multiply-adds per image")
print(
    f"the groups save {1 - macs_now / macs_full:.0%} of the arithmetic and {1 - params_now / params_full:.1%} of the parameters"
)

# %% [markdown]
# ### Five to six days on two GTX 580s, and on this CPU
#
# The paper trained for "roughly 90 cycles through the training set of 1.2 million images, which took five to six
# days on two NVIDIA GTX 580 3GB GPUs" (§5). The benchmark suite (`benchmarks/`) records minialex's and PyTorch's
# training-step throughput for this very network at batch 128 on the machine it ran on; the cell reads the
# recorded results and turns them into days for the same 90 epochs (forward, backward and update only: no data
# loading, augmentation or evaluation):

# %%
images = 90 * 1_200_000
print(
    f"two GTX 580s: {images:,} images in 5 to 6 days = {images / (6 * 86400):.0f} to {images / (5 * 86400):.0f} images/s"
)
found = False
for path in sorted(glob.glob(os.path.join("..", "benchmarks", "results", "*.json"))):
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if "per_layer" not in record:  # only the runs of `python -m benchmarks.run` (other benchmarks time other things)
        continue
    for entry in record.get("steps", []):
        if entry.get("variant") != "paper" or entry.get("batch") != 128:
            continue
        for framework, seconds in entry.get("median_s", {}).items():
            rate = 128 / seconds
            found = True
            print(
                f"{os.path.basename(path)} ({entry.get('device', 'cpu')}, {record.get('machine', {}).get('logical_cpus', '?')} "
                f"logical CPUs), {framework}: {rate:.1f} images/s -> {images / rate / 86400:,.0f} days"
            )
if not found:
    print(
        "no recorded benchmark for the paper's model at batch 128 (run `python -m benchmarks.run`, see benchmarks/README.md)"
    )

# %% [markdown]
# ## 5.6 Is the whole network's backward right?
#
# Every layer was checked alone. A last check runs the chain rule through all of them at once: a miniature AlexNet
# with the paper's layer types (convolutions with groups, ReLU, LRN, overlapping pooling, dropout, linear layers)
# but only a few channels, so that finite differences over every parameter and input take seconds. `seed=` makes
# dropout draw the same mask for every evaluation.

# %%
minialex_seed(1)
tiny = alexnet("mini", widths=(4, 4, 6, 8), dtype=np.float64)
x = np.random.default_rng(0).standard_normal((2, 1, 28, 28))
errs = check_model(tiny, SoftmaxCrossEntropy(), x, np.array([3, 7]), seed=5)
print(f"{tiny.num_params()} parameters and {x.size} inputs checked; worst relative error {max(errs.values()):.1e}")
for name, err in errs.items():
    print(f"  {name:12s} {err:.1e}")

# %% [markdown]
# Every error is below the $10^{-6}$ bound, but the input's and the lower layers' are of order $10^{-8}$ to
# $10^{-7}$, a hundred to a thousand times larger than the single layers' of notebooks 1 to 4. Is something slightly wrong deep in the network? No:
# this is the **rounding** arm of notebook 1's V. A central difference of the loss carries an absolute rounding
# error of about $\varepsilon\,|L|/h$ (with $\varepsilon = 2.2\cdot10^{-16}$), whatever the gradient; the relative
# error divides it by the size of the gradient. Here the gradients below the output layer are small, because the
# output layer's weights are drawn with standard deviation 0.01 (notebook 6, section 6.3) and every gradient that
# reaches the lower layers passes through them. The cell predicts each array's error from that alone:

# %%
minialex_seed(5)
ce = SoftmaxCrossEntropy()
loss_value = float(ce.forward(tiny.forward(x), np.array([3, 7])))
analytic = {"x": tiny.backward(ce.backward()), **tiny.grads}
print(
    f"loss {loss_value:.3f}; rounding noise of a central difference with h = 1e-6: ~{2.2e-16 * loss_value / 1e-6:.0e}"
)
for name in ("x", "conv1.weight", "fc4.weight", "fc5.weight"):
    largest = float(np.abs(analytic[name]).max())
    predicted = 2.2e-16 * loss_value / 1e-6 / (2 * largest)
    print(f"  {name:12s} largest |gradient| {largest:.1e}: predicted error ~{predicted:.0e}, measured {errs[name]:.1e}")

# %% [markdown]
# The prediction matches the measurement to within a small factor for every array, and the largest errors belong to
# the smallest gradients. A bug would not care about the size of the gradient; rounding does. (Notebook 1's V says
# what a larger $h$ does: with $h = 10^{-5}$ the rounding floor, and with it these errors, should be ten times
# smaller, as long as truncation stays below it; try it by passing `h=1e-5` to `check_model`.)

# %% [markdown]
# ## Summary
#
# * The paper's "224" does not fit conv1 (54.25 positions); 227 (Caffe) or 224 with padding 2 (torchvision) gives
#   the $96\times55\times55 \to 256\times6\times6$ chain that fc6's 9216 inputs need.
# * Parameters live in the FC layers (96 %, fc6 alone 62 %); the work is in the convolutions (92 % of the MACs).
# * A training step at batch 128 needs about 4 GB in float32 when the whole batch is lowered at once and every
#   `cols` is kept; the im2col copies are more than half of it, and lowering in slices (as minialex does) removes
#   almost all of that.
# * The two-GPU split of the paper follows from the 3 GB of a GTX 580: half of every layer on each GPU, grouped
#   convolutions where each GPU reads only its own half, and an exchange of the small late activations at conv3
#   and the fully connected layers. The groups also save a third of the arithmetic.
# * A whole-network gradient check has larger relative errors than a single layer's when the gradients are small:
#   that is the rounding floor $\varepsilon |L|/h$, predictable, not a bug.
#
# **Next:** [6. Training](06_training.ipynb): the paper's optimiser, and a real (short) training run.
