"""The figures of a run: learning curves, the conv1 filters (like the paper's Figure 3), a confusion matrix.

Every function takes plain NumPy arrays (or a history list) and returns a :class:`matplotlib.figure.Figure`
built without pyplot, so nothing here needs a display or touches matplotlib's global state;
:func:`save_figure` writes one to a PNG with the Agg canvas.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minialex import atomic

__all__ = ["filter_grid", "plot_confusion_matrix", "plot_curves", "plot_filters", "save_figure"]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # attaches an Agg canvas: savefig works without pyplot or a display
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> str:
    """Write ``fig`` as a PNG to ``path`` atomically (see :mod:`minialex.atomic`); return the path."""
    atomic.write_atomic(path, lambda temp: fig.savefig(temp, format="png", bbox_inches="tight"), "figure")
    return os.fspath(path)


def plot_curves(history: Sequence[Mapping[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : sequence of dicts
        One dict per epoch with ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy`` (accuracies as fractions); an optional ``lr`` marks learning-rate drops.
    """
    fig = _new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]

    def series(key: str) -> list[float]:
        return [float(row.get(key, math.nan)) for row in history]

    ax_loss.plot(epochs, series("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, series("val_loss"), "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [100 * v for v in series("train_accuracy")], "o-", label="train")
    ax_acc.plot(epochs, [100 * v for v in series("val_accuracy")], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="Accuracy")
    lrs = series("lr")
    for i in range(1, len(history)):
        if lrs[i] < lrs[i - 1]:  # the learning rate was divided: mark it on both panels
            for ax in (ax_loss, ax_acc):
                ax.axvline(epochs[i] - 0.5, color="grey", linestyle=":", linewidth=1)
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: math.ceil(len(epochs) / 20)])
    return fig


def _grid_columns(n: int) -> int:
    root = math.sqrt(n)
    for columns in range(math.ceil(root), math.floor(2 * root) + 1):
        if n % columns == 0:
            return columns
    return max(1, math.ceil(root))


def filter_grid(weights: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile convolution filters into one image, each filter scaled to [0, 1] on its own.

    Parameters
    ----------
    weights : (C_out, C_in, KH, KW) array
        C_in = 3 is shown in colour (RGB), any other C_in as the grey mean over input channels.
    columns : int, optional
        Filters per row (default: a divisor of C_out between √C_out and 2√C_out when there is one, so that
        the grid has no ragged last row: 8×4 for 32 filters, 12×8 for the paper's 96).
    pad : int
        Pixels of white between filters.

    Returns
    -------
    (rows*(KH+pad)+pad, columns*(KW+pad)+pad, 3) float array in [0, 1].

    Each filter is normalised as (w - min w) / (max w - min w) over its own values, so that faint filters
    stay visible; a constant filter becomes mid-grey.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"filter_grid: expected weights of shape (C_out, C_in, KH, KW), got {w.shape}")
    n, c, kh, kw = w.shape
    rgb = w if c == 3 else np.repeat(w.mean(axis=1, keepdims=True), 3, axis=1)
    low = rgb.min(axis=(1, 2, 3), keepdims=True)
    span = rgb.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = np.where(span > 0, (rgb - low) / np.where(span > 0, span, 1.0), 0.5)
    columns = columns or _grid_columns(n)
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (kh + pad) + pad, columns * (kw + pad) + pad, 3))
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (kh + pad), pad + col * (kw + pad)
        grid[top : top + kh, left : left + kw] = scaled[i].transpose(1, 2, 0)
    return grid


def plot_filters(weights: np.ndarray, title: str = "conv1 filters", columns: int | None = None) -> Figure:
    """The first layer's filters as an image grid, like Figure 3 of the paper (see :func:`filter_grid`)."""
    w = np.asarray(weights)
    grid = filter_grid(w, columns=columns)
    scale = max(4.0, min(12.0, grid.shape[1] / 12))
    fig = _new_figure(scale, scale * grid.shape[0] / grid.shape[1] + 0.6)
    ax = fig.subplots()
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title}: {w.shape[0]} × {w.shape[1]}×{w.shape[2]}×{w.shape[3]}, each scaled to its own range")
    return fig


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str] | None = None, title: str = "") -> Figure:
    """A confusion matrix with counts in the cells.

    Parameters
    ----------
    matrix : (K, K) integer array
        ``matrix[i, j]`` = number of images of true class i predicted as class j.
    class_names : K strings, optional (default "0", "1", ...)
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (K, K) matrix, got shape {m.shape}")
    k = m.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"plot_confusion_matrix: {k} classes but {len(names)} class names")
    size = max(5.0, min(14.0, 0.55 * k + 2))
    fig = _new_figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(m, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted class", ylabel="true class")
    total = int(m.sum())
    correct = int(np.trace(m))
    accuracy = f"accuracy {correct}/{total} = {correct / total:.2%}" if total else "no images"
    ax.set_title(f"{title}{': ' if title else ''}{accuracy}")
    if k <= 30:
        threshold = m.max() / 2 if m.size else 0
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    color = "white" if m[i, j] > threshold else "black"
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", color=color, fontsize=8)
    return fig
