"""Source of tutorials/07_cpu_vs_gpu.ipynb (build with `python tutorials/build.py 07`)."""

# %% [markdown]
# # 7. CPU vs GPU: what im2col costs, how the NumPy and CuPy backends differ, and how to read the benchmarks
#
# AlexNet made its name by training on GPUs. This last notebook asks where the time of a training step goes,
# and what changes when the same code runs on a GPU. It works from the shapes first (as notebook 5 did for
# memory), then measures a few kernels on the machine that runs it, then reads the results that minialex's
# benchmark suite has recorded beside PyTorch. So far those are CPU runs only: no GPU run of minialex has been
# recorded, so this notebook explains how the GPU backend works and what to measure, and makes no claim about
# how fast it is.
#
# You will:
# 1. separate the two kinds of work in a convolution: the im2col **copy** (memory-bound) and the **GEMM**
#    (compute-bound), with the arithmetic intensity that decides which limit applies;
# 2. measure both on this machine and see how much of a real layer's time they explain;
# 3. see what the CuPy backend changes (asynchronous kernels, synchronisation, launch overhead, transfers);
# 4. read the recorded benchmark results, layer by layer, and find where minialex wins and loses against PyTorch.
#
# Prerequisites: notebooks 2 and 5. Reading time: about 25 minutes. Runs on a CPU; nothing here needs a GPU.

# %%
import glob
import json
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from minialex import backend, exercises
from minialex.layers import Conv2d, im2col
from minialex.models import alexnet, layer_table

# %% [markdown]
# ## 7.1 Two kinds of work
#
# A convolution in minialex is an im2col followed by a GEMM (notebook 2). They stress different parts of the
# machine:
#
# * **im2col** does no arithmetic at all. It reads the input and writes $C_{in}K^2 \times N O_H O_W$ numbers: its
#   speed is set by **memory bandwidth** (bytes per second).
# * **GEMM** $(M\times K)\cdot(K\times N)$ does $2MKN$ floating-point operations on $MK + KN + MN$ numbers. Its
#   **arithmetic intensity**, FLOPs per byte moved,
#
# $$I = \frac{2MKN}{4\,(MK + KN + MN)} \quad\text{(float32)},$$
#
# is large for big matrices (every number is reused many times, in cache), so a good BLAS runs it at the
# machine's **peak FLOP rate**.
#
# Whether an operation is limited by memory or by arithmetic depends on its intensity compared with the
# machine's **balance**, peak FLOP/s divided by bandwidth. Below it, time ≈ bytes / bandwidth; above it,
# time ≈ FLOPs / peak. (This is the "roofline" model.) Let us measure both numbers for this machine, with small
# arrays so that it takes a few seconds.


# %%
def best_time(fn, repeat=7):
    """Shortest wall time of fn() in seconds over `repeat` runs after one warm-up (the run least disturbed by
    other processes); synchronises before reading the clock, so that it is also right for asynchronous GPU work."""
    fn()
    times = []
    for _ in range(repeat):
        backend.synchronize()
        start = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


xp = backend.xp
a = xp.ones((1024, 1024), dtype=np.float32)
b = xp.ones((1024, 1024), dtype=np.float32)
gemm_flops_per_s = 2 * 1024**3 / best_time(lambda: a @ b)
src = xp.ones(16 * 2**20, dtype=np.float32)  # 64 MB
dst = xp.empty_like(src)
copy_bytes_per_s = 2 * src.nbytes / best_time(lambda: xp.copyto(dst, src))  # read + write
print(backend.describe())
print(f"float32 GEMM 1024^3:    {gemm_flops_per_s / 1e9:7.1f} GFLOP/s")
print(f"copy of 64 MB:          {copy_bytes_per_s / 1e9:7.1f} GB/s (bytes read + written)")
print(f"machine balance:        {gemm_flops_per_s / copy_bytes_per_s:7.1f} FLOP per byte")

# %% [markdown]
# (Best-of-7 timings of small arrays on a possibly shared machine: rough numbers. The benchmark suite measures
# more carefully.)
#
# ### Exercise 1: the size of the im2col matrix
#
# Implement `im2col_bytes(n, c, h, w, k, stride, padding, itemsize)`: the bytes of the `cols` matrix that im2col
# builds for a batch of $n$ images with $c$ channels of $h\times w$ pixels, a $k\times k$ kernel, a stride and a
# padding. (`conv_output_size` is allowed.) The check compares with real im2col buffers and with the paper's layers.


# %% [exercise]
def im2col_bytes(n, c, h, w, k, stride, padding, itemsize=4):
    """Bytes of the (c*k*k, n*oh*ow) matrix built by im2col."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_im2col_bytes(im2col_bytes)

# %% [markdown]
# ### Exercise 2: arithmetic intensity of a GEMM
#
# Implement `gemm_intensity(m, k, n, itemsize)`: FLOPs per byte for the product of an $m\times k$ and a $k\times n$
# matrix, counting each of the three matrices read or written once.


# %% [exercise]
def gemm_intensity(m, k, n, itemsize=4):
    """2mkn / (itemsize * (mk + kn + mn))."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_gemm_intensity(gemm_intensity)

# %% [markdown]
# ## 7.2 The convolutions of AlexNet, from the shapes
#
# For each convolution of the paper's network at batch 128 we compute the im2col bytes (written once, read back
# by the GEMM), the forward GEMM's FLOPs and intensity, and from the two measured rates a predicted time for each
# part. A grouped layer does $G$ GEMMs of $M = C_{out}/G$, $K = C_{in}K^2/G$.

# %%
model = alexnet("paper")
batch = 128
rows = {r.name: r for r in layer_table(model, model.input_shape)}
print(f"{'layer':6s} {'cols (MB)':>10s} {'GFLOP':>7s} {'intensity':>10s} {'im2col ms':>10s} {'GEMM ms':>8s}")
predicted = {}
for name, layer in model.named_layers():
    if not isinstance(layer, Conv2d):
        continue
    _, oh, ow = rows[name].output_shape
    kh, kw = layer.kernel_size
    g = layer.groups
    m, k, n = layer.out_channels // g, layer.in_channels // g * kh * kw, batch * oh * ow
    cols = 4 * layer.in_channels * kh * kw * n
    flops = 2 * batch * rows[name].macs
    intensity = g * 2 * m * k * n / (4 * g * (m * k + k * n + m * n))
    t_copy, t_gemm = 2 * cols / copy_bytes_per_s, flops / gemm_flops_per_s
    predicted[name] = (t_copy, t_gemm)
    print(f"{name:6s} {cols / 1e6:10.0f} {flops / 1e9:7.1f} {intensity:10.0f} {1e3 * t_copy:10.0f} {1e3 * t_gemm:8.0f}")

fig, ax = plt.subplots(figsize=(6, 2.8))
names = list(predicted)
copy_ms = np.array([predicted[k][0] for k in names]) * 1e3
gemm_ms = np.array([predicted[k][1] for k in names]) * 1e3
ax.barh(names, gemm_ms, label="GEMM (FLOPs / peak)", color="tab:blue")
ax.barh(names, copy_ms, left=gemm_ms, label="im2col (bytes / bandwidth)", color="tab:red")
ax.invert_yaxis()
ax.set_xlabel("predicted forward time at batch 128 on this machine (ms)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"im2col share of the predicted forward convolution time: {copy_ms.sum() / (copy_ms + gemm_ms).sum():.0%}")

# %% [markdown]
# Every GEMM here has an intensity of tens of FLOPs per byte or more, above the machine's balance: the GEMMs are
# compute-bound, and a CPU BLAS runs them near its peak. The copy is cheap next to them on a CPU,
# but not free, especially for conv1 (large output, few channels) and conv2 (25 copies of every pixel). The
# backward pass adds two GEMMs per layer (for $\partial W$ and $\partial\,\mathrm{cols}$) and the col2im
# scatter-add, with the same balance. (minialex lowers the batch in chunks of at most `CHUNK_BYTES` and builds
# the columns a second time in the backward pass, notebook 5: two im2col copies per layer and step, bought back many
# times over in memory.)
#
# A GPU raises the FLOP rate by a much larger factor than the memory bandwidth: its balance is higher. Work that
# is negligible on a CPU (the im2col copies, ReLU, LRN, pooling, the optimiser update: everything that is
# bandwidth-bound) then takes a much larger share of the step. That is why GPU libraries fuse such operations
# into few kernels, or avoid materialising im2col at all.
#
# ### Measured on this machine
#
# The same comparison, measured: im2col and the grouped GEMM of conv2 at a batch of 4 (small enough to run in well
# under a second), done the way `Conv2d.forward` does them (the columns go into one reused buffer), next to the
# whole layer. The four are timed in alternation, round after round, and each keeps its fastest round, so that a
# neighbour who takes a core for a moment disturbs all four alike rather than one of them.


# %%
def best_times(fns, rounds=7):
    """Fastest wall time of each fn() over `rounds` rounds that run them in turn (after one warm-up each)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            backend.synchronize()
            start = time.perf_counter()
            fn()
            backend.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


conv2 = model["conv2"]
x = xp.asarray(np.random.default_rng(0).standard_normal((4, 96, 27, 27)).astype(np.float32))
cols = im2col(x, 5, 1, 2)
w = conv2.params["weight"].reshape(2, 128, -1)
product = xp.empty((2, 128, cols.shape[1]), dtype=np.float32)
t = best_times(
    {
        "im2col": lambda: im2col(x, 5, 1, 2, out=cols),
        "GEMM": lambda: xp.matmul(w, cols.reshape(2, -1, cols.shape[1]), out=product),
        "bias": lambda: product.reshape(256, -1).__iadd__(conv2.params["bias"][:, None]),
        "layer": lambda: conv2.forward(x),
    }
)
flops = 2 * 4 * rows["conv2"].macs
parts = t["im2col"] + t["GEMM"] + t["bias"]
print(f"conv2 at batch 4: cols {cols.shape}, {cols.nbytes / 1e6:.0f} MB")
print(f"  im2col        {1e3 * t['im2col']:6.1f} ms   ({2 * cols.nbytes / t['im2col'] / 1e9:5.1f} GB/s)")
print(f"  grouped GEMM  {1e3 * t['GEMM']:6.1f} ms   ({flops / t['GEMM'] / 1e9:5.1f} GFLOP/s)")
print(f"  bias          {1e3 * t['bias']:6.1f} ms")
print(f"  whole forward {1e3 * t['layer']:6.1f} ms; the three parts add up to {parts / t['layer']:.0%} of it")
print(
    f"  predicted from the rates of 7.1: im2col {1e3 * predicted['conv2'][0] * 4 / 128:.1f} ms, "
    f"GEMM {1e3 * predicted['conv2'][1] * 4 / 128:.1f} ms"
)

# %% [markdown]
# Read the last two lines together. The prediction of 7.1 uses rates measured on other arrays (a square GEMM, a
# plain copy), so it can be off for conv2's long, thin matrices; the parts' sum next to the whole layer tests the
# model itself: a `Conv2d` forward is its im2col, its GEMM and a bias, plus bookkeeping (input checks, a reshaped
# view of the output) that costs microseconds. When the sum is far from 100 %, the measurement is disturbed (on a
# shared machine, another process held a core during one of the runs): rerun the cell, and distrust any single
# millisecond timing taken on such a machine. What survives the noise is the order of the two: the GEMM takes
# several times as long as the copy, on this CPU.
#
# ## 7.3 The NumPy and CuPy backends
#
# minialex has one code path. Every layer does its array work through `minialex.backend.xp`, which is the `numpy`
# module or the `cupy` module, chosen once from the environment variable `MINIALEX_BACKEND` (`numpy`, `cupy` or
# `auto`) when minialex is imported. CuPy implements NumPy's API on an NVIDIA GPU, so `xp.matmul`, slicing,
# `as_strided` views and `+=` mean the same thing on both. What differs:
#
# | | NumPy (CPU) | CuPy (GPU) |
# |---|---|---|
# | GEMM | OpenBLAS/MKL on a few cores | cuBLAS on thousands of GPU cores |
# | execution | synchronous: a call returns when done | **asynchronous**: a call queues a kernel and returns at once |
# | per-operation cost | a few µs of Python and NumPy overhead | a few µs of Python plus a kernel launch |
# | memory-bound passes (copies, ReLU, LRN, pooling) | one core per NumPy call; minialex splits the large ones (im2col, col2im, LRN, pooling) over a few threads | bandwidth-bound too, on a much wider memory bus; their share of the step is what a GPU run would measure |
# | data | already in host memory | must cross PCIe; minialex sends `uint8` batches (4× fewer bytes) and converts on the device |
# | custom kernels | NumPy twin | `ElementwiseKernel`s where generic code would launch many kernels (e.g. the SGD update) |
# | random numbers | host generator | a device generator seeded from the host one: same seed, different numbers |
#
# **Timing asynchronous code.** On a GPU, `time.perf_counter()` around `y = layer.forward(x)` measures how long
# it took to *queue* the work, not to do it. Synchronise before reading the clock (as `best_time` above does
# with `backend.synchronize()`, a no-op on NumPy), or better, record CUDA events around the work, which is what
# the benchmark suite does. The same pitfall hides in any host-side check, e.g. `float(loss)` forces a
# synchronisation and a device-to-host copy every step.
#
# **Launch overhead.** Each element-wise operation on the GPU is a kernel launch of several microseconds. A layer
# written as ten small NumPy-style operations costs ten launches however small the data, so the smaller the
# arrays (the `mini` model, small batches), the larger the share of the step that goes to launching rather than
# computing. How large that share is for minialex is one of the things a recorded GPU run will tell; none has been
# recorded yet.
#
# **Numbers.** float32 results are not bit-identical between backends (the GEMMs sum in different orders), so
# comparisons across backends need a tolerance. The test suite is written to run the same float64 gradient checks,
# with the same $10^{-6}$ bound, on both backends (`MINIALEX_BACKEND=cupy pytest`); that run has not been recorded
# yet either.
#
# Which backend is running this notebook, and is a GPU visible at all?

# %%
print("backend:", backend.name, "|", backend.describe())
try:
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
        print(f"CuPy {cupy.__version__} is installed and sees {count} GPU(s).")
    except Exception as exc:  # installed, but no driver or device
        print(f"CuPy {cupy.__version__} is installed but sees no GPU ({type(exc).__name__}).")
except ImportError:
    print("CuPy is not installed: no GPU is available to this notebook. Everything measured here is CPU-only.")

# %% [markdown]
# To run minialex on a GPU: `pip install "minialex[cuda12]"` (or `[cuda13]`), then `MINIALEX_BACKEND=cupy minialex
# train` or, for these notebooks, start Jupyter with that variable set. The notebooks were written and executed
# on a CPU-only machine. Section 7.4 reads whatever the benchmark results folder holds, so a recorded GPU run will
# appear there, with its own rows, once one exists; the cell says which devices it found.
#
# ## 7.4 Reading the recorded benchmark results
#
# The benchmark suite (`benchmarks/`, see its README for the command) times every layer of the paper's AlexNet
# and whole training steps, minialex beside PyTorch on the same machine, and records the results with a
# description of the machine in `benchmarks/results/`: a Markdown report, JSON for programs, and charts. This
# cell shows what is there, and on which devices it was measured. (The folder also holds the results of other
# benchmarks, of the data pipeline, of the convolution algorithms or of several processes; only the runs of
# `python -m benchmarks.run` are read here.)

# %%
RESULTS = os.path.join("..", "benchmarks", "results")


def has_steps(path):
    """Whether the JSON record at ``path`` is a run of ``python -m benchmarks.run`` with training steps."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    return "per_layer" in record and bool(record.get("steps"))


records = [path for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))) if has_steps(path)]
stems = [path[: -len(".json")] for path in records]
reports = [stem + ".md" for stem in stems if os.path.exists(stem + ".md")]
charts = [stem + kind for stem in stems for kind in ("-layers.png", "-steps.png") if os.path.exists(stem + kind)]
if not (reports or records):
    print(f"No recorded benchmark results in {os.path.normpath(RESULTS)} when this notebook ran.")
    print("Run the benchmark suite (see benchmarks/README.md) to create them, then run this notebook again.")
devices = set()
for path in records:
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    found = sorted({entry.get("device", "cpu") for entry in record.get("steps", [])})
    devices.update(found)
    print(f"{os.path.basename(path)}: training steps measured on {', '.join(found) or 'no device'}")
    for note in record.get("notes", []):
        print(f"  note: {note}")
print("devices in the recorded results:", ", ".join(sorted(devices)) or "none")
for path in reports:
    display(Markdown(f"**{os.path.basename(path)}**"))
    with open(path, encoding="utf-8") as f:
        display(Markdown(f.read()))
for path in charts:
    display(Image(filename=path, width=700))

# %% [markdown]
# The JSON file holds the same numbers for programs. For example, the training-step throughput of every model on
# every device and framework, and minialex's ratio to PyTorch on the same device (this cell reads the `steps`
# entries: model, batch, device and the median seconds per framework):


# %%
def step_rows(record):
    """(device, model, batch, framework, images/s, GFLOP/s) for every measured training step."""
    rows = []
    for entry in record.get("steps", []):
        for framework, seconds in entry.get("median_s", {}).items():
            device = entry.get("device", "cpu")
            images = entry["batch"] / seconds
            rows.append((device, entry["variant"], entry["batch"], framework, images, entry["gflop_step"] / seconds))
    return rows


for path in records:
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    try:
        rows = step_rows(record)
    except (KeyError, TypeError, ZeroDivisionError) as exc:
        print(f"{os.path.basename(path)}: no training-step table in the expected layout ({type(exc).__name__})")
        continue
    if not rows:
        continue
    print(f"{os.path.basename(path)}: float32 GEMM rate {record.get('gemm_gflops', float('nan')):.0f} GFLOP/s")
    print(
        f"{'device':6s} {'model':12s} {'batch':>5s} {'framework':16s} {'images/s':>9s} {'GFLOP/s':>8s} {'vs PyTorch':>10s}"
    )
    for device, variant, n, framework, images, gflops in rows:
        torch_rates = [r[4] for r in rows if r[:3] == (device, variant, n) and r[3].startswith("torch")]
        ratio = f"{images / max(torch_rates):10.2f}" if framework == "minialex" and torch_rates else ""
        print(f"{device:6s} {variant:12s} {n:5d} {framework:16s} {images:9.1f} {gflops:8.1f} {ratio}")

# %% [markdown]
# The per-layer tables hold the rest of the story. Where does minialex's time go, and where does it gain or lose
# against PyTorch? The cell adds up each framework's forward and backward milliseconds by kind of layer, for every
# recorded per-layer table (the paper's model at batch 32 and 128 on this machine, and the Keras CIFAR-10 model,
# whose `norm` layers are BatchNorm), and names the convolutions on which PyTorch was faster:


# %%
def layer_kind(name):
    kinds = (("conv", "convolutions"), ("norm", "LRN or BatchNorm"), ("pool", "max-pooling"), ("fc", "fully connected"))
    for prefix, kind in kinds:
        if name.startswith(prefix):
            return kind
    return "ReLU, dropout, loss, ..."


for path in records:
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    for table in record.get("per_layer", []):
        layers = table["layers"]
        frameworks = [fw for fw in ("minialex", "torch") if all(fw in row for row in layers.values())]
        if len(frameworks) < 2:
            continue
        device = table.get("device", record.get("device", "cpu"))
        print(
            f"{os.path.basename(path)}: {table['variant']}, batch {table['batch']} on {device} (ms, forward + backward)"
        )
        totals = {}
        for name, row in layers.items():
            for fw in frameworks:
                key = (layer_kind(name), fw)
                totals[key] = totals.get(key, 0.0) + 1e3 * (row[fw]["fwd_s"] + row[fw]["bwd_s"])
        for kind in dict.fromkeys(k for k, _ in totals):
            mine, theirs = totals[(kind, "minialex")], totals[(kind, "torch")]
            faster = "minialex" if mine < theirs else "PyTorch"
            print(
                f"  {kind:24s} minialex {mine:7.0f}   PyTorch {theirs:7.0f}   {faster} {max(mine, theirs) / min(mine, theirs):4.1f}x faster"
            )
        torch_faster = [
            n
            for n, row in layers.items()
            if n.startswith("conv")
            and row["torch"]["fwd_s"] + row["torch"]["bwd_s"] < row["minialex"]["fwd_s"] + row["minialex"]["bwd_s"]
        ]
        variant = alexnet(table["variant"])  # the measured model's own layers
        grouped = [n for n in torch_faster if variant[n].groups > 1]
        print(
            f"  convolutions on which PyTorch was faster: {', '.join(torch_faster) or 'none'} "
            f"(grouped among them: {', '.join(grouped) or 'none'})"
        )

# %% [markdown]
# How to read these tables:
#
# * **Time and images/s** are medians of repeated runs, alternating the frameworks (A B A B) in one process, so
#   that a noisy neighbour slows both equally. Single timings on a shared machine are worth ±20 %.
# * **Achieved GFLOP/s** divides the nominal work of a step (3 × the forward FLOPs of the convolutions and linear
#   layers: forward, $\partial W$ and $\partial x$ GEMMs) by its time. Dividing again by the machine's measured GEMM
#   rate gives the **fraction of peak**: how much of the step is spent doing useful arithmetic at full speed.
# * **The ratio to PyTorch** compares the same shapes, weights and precision on the same device. On this CPU the
#   per-kind sums above say where it comes from. minialex's LRN, written as one channel-window sum, is several
#   times faster than PyTorch's, which composes it from generic operations, and so is its fully connected backward;
#   on the paper's model that is where a whole-step lead comes from. The convolutions are not where minialex wins:
#   PyTorch's direct CPU convolutions (oneDNN) beat minialex's on most of them (im2col + GEMM, or Winograd on the
#   wide 3×3 layers, notebook 10), the **grouped** ones included. On torchvision's layout (no LRN, no groups) there
#   is no LRN to win on, and the step table shows the two frameworks close, whichever is ahead in a given run.
# * **GPU rows**, when a GPU run is recorded, are only meaningful with proper synchronisation (CUDA events) and
#   should say whether PyTorch used TF32 tensor cores, which trade precision for a large speed-up in float32 GEMMs.
#
# ## Summary
#
# * A convolution is a memory-bound copy (im2col) feeding a compute-bound GEMM (tens of FLOPs per byte or more).
# * On a CPU the GEMMs dominate; the roofline model says that on a GPU, whose FLOP rate grows much more than its
#   bandwidth, copies, element-wise layers and kernel launches take a larger share. How large, for minialex, is for
#   a recorded GPU run to say; none exists yet.
# * The same minialex code runs on NumPy or CuPy through `backend.xp`; GPU timing needs synchronisation.
# * On the recorded CPU runs, minialex's advantage on the paper's model comes from LRN and the fully connected
#   layers; PyTorch's convolutions, grouped ones included, are faster at batch 32, and about even at batch 128.
#
# This is the end of the core series. From here: `minialex train --help`, the layer sources in `minialex/layers/`
# (each tells the whole story of its layer in one file), and the benchmark suite.
#
# **Next:** the series goes beyond the paper's own layers with [8. Batch normalisation and
# Adam](08_batchnorm.ipynb), what replaced LRN and plain SGD in practice.
