"""Source of tutorials/09_photographs.ipynb (build with `python tutorials/build.py 09`)."""

# %% [markdown]
# # 9. Photographs: the paper's data pipeline and its evaluation
#
# Every notebook so far fed the network digits. AlexNet was trained on 1.2 million photographs, and §2 and §4.1
# of the paper describe what happened to each one on its way in: a rescale and a crop to $256\times256$, the mean
# image subtracted, random $224\times224$ crops and mirror images, and a colour shift along the principal components
# of the training set's RGB values. At test time, ten crops per image, their predictions averaged, and two error
# rates, top-1 and top-5. This notebook runs each step with minialex's own functions (`minialex.data`) on real
# photographs that ship with scikit-image, so it works offline.
#
# You will:
# 1. decode photographs the paper's way (shorter side to 256, the central $256\times256$ square);
# 2. draw the training crops and flips, and count how many different inputs one photo gives;
# 3. compute the mean image and the channel means, and subtract them;
# 4. derive the PCA colour noise from the RGB covariance and implement it (two exercises);
# 5. average ten crops at test time, and compute top-1 and top-5 error on a worked example;
# 6. see the image-folder layout and its decoded-image cache on a tiny folder written to a temporary directory.
#
# Prerequisites: notebooks 5 and 6. Reading time: about 30 minutes.

# %%
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import skimage.data
from matplotlib_inline.backend_inline import set_matplotlib_formats
from PIL import Image

from minialex import backend, exercises
from minialex import seed as minialex_seed
from minialex.backend import to_numpy
from minialex.data import InputPipeline, load_dataset
from minialex.data import augment as ops
from minialex.data.photo import centre_box, decode
from minialex.data.stats import PixelStats, rgb_pca
from minialex.gradcheck import rel_error
from minialex.layers import log_softmax
from minialex.models import alexnet
from minialex.training.metrics import topk_hits

np.set_printoptions(precision=4, suppress=True, linewidth=120)
set_matplotlib_formats("jpeg")  # photographs: JPEG figures keep the committed notebook small (PNG: 2.5 MB)
plt.rcParams["figure.dpi"] = 72
workdir = Path(tempfile.mkdtemp(prefix="minialex-photos-"))  # every file this notebook writes goes here

# %% [markdown]
# ## 9.1 Four photographs, decoded the paper's way
#
# scikit-image bundles a few photographs of different sizes and aspect ratios. We write each to a JPEG file, as a
# data set would hold it, and decode it with `minialex.data.photo.decode`, the function the image-folder cache uses.
# The paper: *"Given a rectangular image, we first rescaled the image such that the shorter side was of length 256,
# and then cropped out the central 256×256 patch."* For a $W\times H$ image with shorter side $s = \min(W, H)$ that is
# the central $s\times s$ square, box $\big(\tfrac{W-s}2, \tfrac{H-s}2, \tfrac{W+s}2, \tfrac{H+s}2\big)$, resized by
# the factor $256/s$; minialex does it as one resampling of that box (Pillow's antialiased bilinear filter).

# %%
names = ["astronaut", "coffee", "chelsea", "rocket"]
with warnings.catch_warnings():  # skimage.data loads tqdm.auto, which warns that notebook widgets are missing
    warnings.simplefilter("ignore")
    originals = {name: getattr(skimage.data, name)() for name in names}
files = {}
for name, pixels in originals.items():
    files[name] = workdir / f"{name}.jpg"
    Image.fromarray(pixels).save(files[name], quality=92)
photos = np.stack([decode(files[name]) for name in names])  # uint8 (4, 3, 256, 256)

fig, axes = plt.subplots(2, 4, figsize=(11, 5))
for ax, name in zip(axes[0], names, strict=True):
    h, w = originals[name].shape[:2]
    ax.imshow(originals[name])
    left, top, right, bottom = centre_box(w, h)
    ax.add_patch(plt.Rectangle((left, top), right - left, bottom - top, fill=False, color="yellow", lw=2))
    ax.set_title(f"{name}: {w}×{h}", fontsize=9)
for ax, image in zip(axes[1], photos, strict=True):
    ax.imshow(image.transpose(1, 2, 0))
    ax.set_title("decoded: 256×256", fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
plt.show()
for name in names:
    h, w = originals[name].shape[:2]
    print(f"{name:>9}: {w}×{h}, central square {min(w, h)}², scale factor {256 / min(w, h):.3f}")

# %% [markdown]
# The yellow boxes are what survives: the wide photos lose their sides, and all four are shrunk (by factors from
# 0.5 to 0.85; a photo whose shorter side is below 256 pixels would be enlarged). Everything outside the central square is never seen by the network, in training
# or at test time, a loss the paper accepts for a fixed input size.
#
# ## 9.2 Random crops and flips
#
# During training, each image is cut at a random $224\times224$ position (minialex's paper model uses 227, see
# notebook 5) and mirrored left to right with probability ½, drawn afresh every epoch. A crop can start at any
# offset from 0 to $256-227 = 29$ along each axis: $30^2 = 900$ positions, times two for the mirror, 1,800 different
# inputs from one photo. (The paper's "factor of 2048" is $(256-224)^2\cdot 2$ for its 224 crops.) minialex draws
# the offsets and flips for a batch (`draw_crops`, `draw_flips`) and cuts all windows in one gather
# (`crop_windows`), on uint8 pixels, before anything is converted to floats.

# %%
minialex_seed(4)
batch = np.repeat(photos[2:3], 4, axis=0)  # four copies of chelsea
top, left = ops.draw_crops(4, 256, 256, 227)
flips = ops.draw_flips(4)
crops = to_numpy(ops.flip_where(ops.crop_windows(batch, top, left, 227), flips))
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, crop, t, lf, f in zip(axes, crops, top, left, flips, strict=True):
    ax.imshow(crop.transpose(1, 2, 0))
    ax.set_title(f"offset ({int(t)}, {int(lf)}){', mirrored' if f else ''}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
print("crop shape:", crops.shape, crops.dtype, "  distinct training inputs per photo:", (256 - 227 + 1) ** 2 * 2)

# %% [markdown]
# ## 9.3 Subtracting the mean
#
# The paper's only other preprocessing (§2): *"subtracting the mean activity over the training set from each
# pixel"*: the **mean image**, a $3\times256\times256$ average of the training photos, pixel by pixel. Most later
# implementations subtract a per-channel mean (three numbers) instead, and divide by a per-channel standard
# deviation. minialex computes both exactly, in integers (`minialex.data.stats.PixelStats`), as the cache does
# for a whole folder. With four photos the mean image is still recognisably made of them; averaged over a million
# photographs it is smooth and nearly uniform, so the two choices differ much less than they do here.

# %%
stats = PixelStats(3, image_shape=(3, 256, 256))
stats.add(photos)
mean_image = stats.mean_image()  # float64 (3, 256, 256) in [0, 1] units
channel_mean, channel_std = stats.channel_mean_std()
print("channel means (R, G, B):", np.round(channel_mean, 4), "  stds:", np.round(channel_std, 4))
print("the mean image averaged over its pixels equals them:", np.allclose(mean_image.mean(axis=(1, 2)), channel_mean))
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].imshow(mean_image.transpose(1, 2, 0))
axes[0].set_title("mean image of the 4 photos", fontsize=9)
minus_image = photos[0] / 255.0 - mean_image
minus_channel = photos[0] / 255.0 - np.array(channel_mean)[:, None, None]
for ax, shown, title in [(axes[1], minus_image, "astronaut − mean image"), (axes[2], minus_channel, "− channel means")]:
    ax.imshow(np.clip(shown.transpose(1, 2, 0) + 0.5, 0, 1))  # +0.5 to display negative values
    ax.set_title(title, fontsize=9)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 9.4 The PCA colour noise
#
# The second augmentation (§4.1) changes the colour and brightness of the whole image, in the directions in which
# the colours of natural photographs actually vary. Take the RGB value $x_p \in \mathbb R^3$ of every pixel $p$ of the
# training set ($P$ pixels in all, values in $[0, 1]$) and its covariance
#
# $$\mu = \frac1P\sum_p x_p, \qquad \Sigma = \frac1P\sum_p (x_p-\mu)(x_p-\mu)^\top = P_\Sigma\, \Lambda\, P_\Sigma^\top,$$
#
# whose eigen-decomposition gives orthonormal eigenvectors $p_1, p_2, p_3$ (the columns of $P_\Sigma$) and eigenvalues
# $\lambda_1 \ge \lambda_2 \ge \lambda_3$: $p_1$ is the direction of largest colour variance (for photographs, almost
# $(1,1,1)/\sqrt3$: brightness), and $\lambda_i$ is the variance along $p_i$. For each training image, once per
# epoch, draw $\alpha_i \sim \mathcal N(0, 0.1^2)$ and add to **every pixel** of that image
#
# $$\delta = [p_1, p_2, p_3]\,[\alpha_1\lambda_1,\ \alpha_2\lambda_2,\ \alpha_3\lambda_3]^\top = P_\Sigma\,(\alpha\odot\lambda).$$
#
# Since $\alpha$ has covariance $0.01\,I$, $\delta$ has covariance $P_\Sigma\,\mathrm{diag}(0.01\,\lambda_i^2)\,P_\Sigma^\top$:
# the shift is largest along the brightness direction, and a colour the data set never varies along is never
# added. The paper reports that this cut the top-1 error by over 1 %.
#
# Two readings of the formula exist: the paper multiplies $\alpha_i$ by the eigenvalue $\lambda_i$ (a variance),
# which is what minialex does, with pixels in $[0, 1]$ units; some implementations use $\sqrt{\lambda_i}$ (a standard
# deviation), a much larger noise. `docs/data.md` discusses the units.
#
# ### Exercise 1: the RGB covariance
#
# Implement `rgb_covariance(images)` for uint8 images $(N, 3, H, W)$: the $3\times3$ covariance $\Sigma$ above over
# all pixels of all images, in $[0, 1]$ units, divided by $P$. Mind the axis order when you flatten.


# %% [exercise]
def rgb_covariance(images):
    """uint8 images (N, 3, H, W) -> the 3x3 covariance of the RGB values of all their pixels, in [0, 1] units."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_rgb_covariance(rgb_covariance)

# %% [markdown]
# minialex's `rgb_pca` returns the eigenvalues in descending order and the eigenvectors as columns, from the same
# covariance. For our four photos:

# %%
eigvals, eigvecs = rgb_pca(photos)
print("eigenvalues λ:", eigvals, "  (the variance along each eigenvector, [0, 1] units)")
print("eigenvectors (columns):\n", eigvecs)
print(f"p1 against (1, 1, 1)/√3: cosine {abs(float(eigvecs[:, 0] @ np.ones(3))) / np.sqrt(3):.4f}")
print("std of δ along p_i with α ~ N(0, 0.1²), in grey levels:", 0.1 * eigvals * 255)

# %% [markdown]
# The first eigenvector is nearly the brightness direction; the others are colour contrasts (roughly red against
# blue, and green against the two). With the paper's formula in $[0, 1]$ units the noise is small, a fraction of a
# grey level to a few (the last line); below it is drawn 30 times larger so that it can be seen.
#
# ### Exercise 2: the noise itself
#
# Implement `pca_colour_noise(x, eigvals, eigvecs, alpha)`: `x` a float batch $(N, 3, H, W)$, `alpha` of shape
# $(N, 3)$ (row $n$ is image $n$'s $\alpha$), `eigvecs` with the eigenvectors as columns. Return a new array
# $x + \delta_n$, with $\delta_n = P_\Sigma(\alpha_n \odot \lambda)$ added to every pixel of image $n$.


# %% [exercise]
def pca_colour_noise(x, eigvals, eigvecs, alpha):
    """x (N, 3, H, W) float, eigvals (3,), eigvecs (3, 3) with eigenvectors as columns, alpha (N, 3) -> x + delta."""
    # Your code here.
    raise NotImplementedError


# %% [check]
exercises.check_pca_colour_noise(pca_colour_noise)

# %% [markdown]
# minialex's `pca_lighting` draws $\alpha$ itself (from the seeded generator of `minialex.backend`) and adds the
# shift in place. With the same seed we can draw the same $\alpha$ and compute the formula by hand, which checks
# the library against the formula above:

# %%
x = photos / 255.0
minialex_seed(3)
library = ops.pca_lighting(x.copy(), eigvals, eigvecs, std=0.1)
minialex_seed(3)  # the generator pca_lighting draws from
alpha = to_numpy(backend.normal((4, 3), std=0.1, dtype=x.dtype))
by_hand = x + ((alpha * eigvals) @ eigvecs.T)[:, :, None, None]
print(f"pca_lighting vs the formula by hand: relative difference {rel_error(library, by_hand):.1e}")

fig, axes = plt.subplots(1, 5, figsize=(12, 2.6))
axes[0].imshow(photos[1].transpose(1, 2, 0))
axes[0].set_title("coffee", fontsize=9)
minialex_seed(5)
for ax in axes[1:]:
    shifted = ops.pca_lighting(x[1:2].copy(), eigvals, eigvecs, std=3.0)  # 30x the paper's
    ax.imshow(np.clip(shifted[0].transpose(1, 2, 0), 0, 1))
    ax.set_title("α ~ N(0, 3²), 30× the paper's", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Break it, and watch the check fail
#
# The $\sqrt\lambda$ misreading is easy to make and invisible in a picture at the paper's scale. A check that
# catches it: the covariance of $\delta$ over many draws must be $P_\Sigma\,\mathrm{diag}(0.01\lambda^2)\,P_\Sigma^\top$.
# We draw 20,000 shifts with each version and compare their sample covariance with that prediction:

# %%
predicted = eigvecs @ np.diag(0.01 * eigvals**2) @ eigvecs.T
draws = np.random.default_rng(0).normal(0, 0.1, (20000, 3))
for label, lam in [("λ (the paper's formula)", eigvals), ("√λ (the misreading)", np.sqrt(eigvals))]:
    deltas = (draws * lam) @ eigvecs.T
    sample = deltas.T @ deltas / len(deltas)
    err = rel_error(sample, predicted)
    print(
        f"{label:>25}: sample covariance vs prediction, relative error {err:.1e} -> {'ok' if err < 0.05 else 'FAILS'}"
    )

# %% [markdown]
# With 20,000 draws the right formula agrees with the prediction to within the sampling noise (of order
# $1/\sqrt{20000} \approx 0.7\,\%$), while $\sqrt\lambda$ is far off: its variances are $0.01\lambda_i$, not
# $0.01\lambda_i^2$, that is $1/\lambda_i$ times too large, 7 times along $p_1$ and over 600 times along $p_3$ for
# these photos, since $\lambda \ll 1$ in $[0, 1]$ units.
#
# ## 9.5 Ten crops at test time
#
# At test time the paper takes ten $224\times224$ views of each $256\times256$ image, the four corners and the
# centre and the mirror images of those five, runs the network on each, and **averages the ten softmax outputs**
# (§4.1). This cut its top-5 error on ILSVRC-2010 from 18.3 % to 17.0 %, at ten times the cost of one forward
# pass. `InputPipeline.ten_crops` returns the ten standardised views. We have no trained ImageNet model offline,
# so we show the mechanics with an untrained `mini` AlexNet on $32\times32$ versions of the photos (its predictions
# mean nothing; the averaging is the point).

# %%
small = np.stack([np.asarray(Image.fromarray(p.transpose(1, 2, 0)).resize((36, 36), Image.BILINEAR)) for p in photos])
small = np.ascontiguousarray(small.transpose(0, 3, 1, 2))  # uint8 (4, 3, 36, 36)
minialex_seed(0)
model = alexnet("mini", in_channels=3, num_classes=10)
model.eval()
views = ops.ten_crop(ops.to_device_float(small, channel_mean, channel_std), 32)
print(f"{len(views)} views of shape {tuple(views[0].shape)}: four corners, centre, and the five mirrored")
probabilities = np.stack([np.exp(to_numpy(log_softmax(model.forward(np.ascontiguousarray(v))))) for v in views])
averaged = probabilities.mean(axis=0)  # (4 images, 10 classes)
print("top class of each view, image by image:\n", probabilities.argmax(axis=2).T)
print("top class of the averaged softmax:", averaged.argmax(axis=1))

# %% [markdown]
# The views of one image do not always agree; averaging the probabilities (not the top classes) lets confident
# views outweigh uncertain ones. Averaging probabilities is also not the same as averaging logits: the mean of
# softmaxes is not the softmax of the mean.
#
# ## 9.6 Top-1 and top-5 error, a worked example
#
# ImageNet has 1,000 classes, some nearly indistinguishable (dozens of dog breeds), and many photos contain
# several objects. So the challenge reported two numbers: the **top-1 error**, the fraction of test images whose
# label is not the network's most probable class, and the **top-5 error**, the fraction whose label is not among
# its five most probable classes. The paper's network: 37.5 % top-1 and 17.0 % top-5 on ILSVRC-2010.
#
# Four images and eight classes, with made-up probabilities:

# %%
classes = ["tabby", "tiger cat", "espresso", "cup", "astronaut", "rocket", "space shuttle", "teapot"]
scores = np.array(
    [
        [0.05, 0.03, 0.02, 0.03, 0.55, 0.12, 0.15, 0.05],  # an astronaut photo, label "astronaut"
        [0.02, 0.01, 0.30, 0.45, 0.01, 0.01, 0.01, 0.19],  # a coffee photo, label "espresso": 2nd
        [0.30, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0.10],  # a cat photo, label "tabby": 2nd
        [0.02, 0.02, 0.30, 0.25, 0.07, 0.05, 0.09, 0.20],  # a rocket photo, label "rocket": 6th
    ]
)
labels = np.array([4, 2, 0, 5])
ranks = [int((scores[i] > scores[i, labels[i]]).sum()) + 1 for i in range(4)]
for i, rank in enumerate(ranks):
    top5 = [classes[j] for j in np.argsort(-scores[i])[:5]]
    print(f"image {i}: label {classes[labels[i]]!r} ranked {rank}; top five {top5}")
hits = topk_hits(scores, labels, ks=(1, 5))
print(f"by hand: top-1 error {np.mean([r > 1 for r in ranks]):.0%}, top-5 error {np.mean([r > 5 for r in ranks]):.0%}")
print(f"topk_hits: top-1 error {1 - hits[1].mean():.0%}, top-5 error {1 - hits[5].mean():.0%}")

# %% [markdown]
# The label of image 0 is first, those of images 1 and 2 second, that of image 3 sixth: 3 of the 4 images are
# top-1 errors (75 %), but only one is a top-5 error (25 %). A "tiger cat" for a "tabby" is the kind of mistake top-5 forgives.
# (With 8 classes, top-5 is lenient indeed; with 1,000 it is still a strict test.)
#
# ## 9.7 An image folder and its cache
#
# minialex trains on photographs stored in the ImageNet layout, one folder per class (`docs/data.md`):
#
# ```
# root/train/<class>/*.jpg      required
# root/val/<class>/...          optional
# root/test/<class>/...         optional
# ```
#
# `load_dataset(root)` scans it, decodes every photo once into a cache of uint8 arrays (9.1's `decode`), and
# memory-maps that cache in every later run; the cache also holds the training split's statistics: the channel
# means and stds, the mean image, and the PCA eigen-pairs of 9.4. We build a tiny folder of two classes from our
# photos (a few crops of each, so that every class has several files) with all three splits:

# %%
root = workdir / "tiny-photos"
rng = np.random.default_rng(0)
for split, count in [("train", 6), ("val", 2), ("test", 2)]:
    for cls, name in [("cat", "chelsea"), ("coffee", "coffee")]:
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        h, w = originals[name].shape[:2]
        for k in range(count):
            t, lf = rng.integers(0, h // 4), rng.integers(0, w // 4)
            Image.fromarray(originals[name][t : t + 3 * h // 4, lf : lf + 3 * w // 4]).save(folder / f"{name}-{k}.jpg")
(root / "train" / "cat" / "notes.txt").write_text("not an image: counted as ignored, never decoded")

start = time.perf_counter()
tiny = load_dataset(root)
first = time.perf_counter() - start
start = time.perf_counter()
again = load_dataset(root)
print(
    f"\nfirst load (decodes, builds the cache) {first:.2f} s; second load (memory-maps it) {time.perf_counter() - start:.2f} s"
)
print(tiny.summary.replace(str(root), "tiny-photos"))
print("classes:", tiny.classes, "  train images:", tiny.train_images.shape, tiny.train_images.dtype)

# %%
cache = Path(tiny.cache)
print("cache folder:", cache.relative_to(root))
for path in sorted(cache.iterdir()):
    print(f"  {path.name:16} {path.stat().st_size:>10,} bytes")
index = json.loads((cache / "index.json").read_text())
print("index.json keys:", sorted(index))
print("statistics stored:", sorted(index["stats"]))
print("ignored:", index["ignored"])

# %% [markdown]
# The cache lives in `root/.minialex-cache/` (a folder whose name starts with a dot is not part of the data), one
# `.npy` array per split of shape $(N, 3, 256, 256)$, the mean image, and `index.json` with the classes, every file
# and its label, and the statistics. Its name holds a fingerprint of the listing (every file's path, size and
# modification time): change a file and the next load builds a new cache.

# %%
Image.fromarray(originals["coffee"][::2, ::2]).save(root / "train" / "coffee" / "coffee-6.jpg")
changed = load_dataset(root)
print("after adding a photo: train images", changed.train_images.shape[0], "  new cache:", changed.cache != tiny.cache)
print("old cache removed:", not cache.exists())

# %% [markdown]
# `InputPipeline.for_dataset` turns such a data set into the paper's pipeline for a model: random crops of the
# model's input size, flips, the mean image, the PCA noise from the cache's eigen-pairs, and the ten crops:

# %%
pipeline = InputPipeline.for_dataset(changed, (3, 227, 227))
print(pipeline.describe())
minialex_seed(0)
x = pipeline.train(changed.train_images[:4])
print("a training batch:", tuple(x.shape), x.dtype, f"mean {float(x.mean()):.3f}, std {float(x.std()):.3f}")
print("ten views of two test images:", len(pipeline.ten_crops(changed.test_images[:2])), "batches of", (2, 3, 227, 227))

# %%
shutil.rmtree(workdir)  # the temporary folder of this notebook, and everything in it

# %% [markdown]
# ## Summary
#
# * Decoding: the central square of side $\min(W, H)$, resized to $256\times256$.
# * Training: a random $227\times227$ crop (the paper's 224, see notebook 5) and a mirror with probability ½, 1,800
#   inputs per photo; minus the mean image; plus the PCA colour noise $P_\Sigma(\alpha\odot\lambda)$, $\alpha \sim
#   \mathcal N(0, 0.1^2)$ once per image, from the eigen-decomposition of the training pixels' RGB covariance.
# * Test: ten crops, softmax outputs averaged; top-1 and top-5 error count the label outside the first one or
#   five classes.
# * An image folder is decoded once into a fingerprinted cache that holds the pixels and the statistics.
#
# **Next:** [10. Fast convolution](10_winograd.ipynb): Winograd's algorithm, which computes a 3×3 convolution with
# fewer multiplications than the textbook formula.
