"""Figures from results files (matplotlib): curves, accuracy matrices, samples, replay balance."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np


def validation_curves(
    results: dict, ax: plt.Axes | None = None, title: str | None = None
) -> plt.Axes:
    """Validation accuracy on each task after every solver epoch, across all tasks."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    curves = results["solver_curves"]
    acc = np.array([c["val_accuracy"] for c in curves])
    x = np.arange(1, len(curves) + 1)
    for j in range(acc.shape[1]):
        first = next((i for i, c in enumerate(curves) if c["task"] == j), None)
        if first is not None:  # None: a partial run that has not reached task j yet
            ax.plot(x[first:], acc[first:, j], label=f"task {j + 1}")
    for i in range(1, len(curves)):
        if curves[i]["task"] != curves[i - 1]["task"]:
            ax.axvline(i + 0.5, color="grey", lw=0.6, ls="--")
    ax.set(xlabel="solver epoch (all tasks)", ylabel="validation accuracy", ylim=(-0.02, 1.02))
    ax.set_title(title or "validation accuracy per task")
    ax.legend(fontsize=7, ncol=5, loc="lower left")
    return ax


def accuracy_matrix(
    r: Sequence[Sequence[float]], ax: plt.Axes | None = None, title: str = "test accuracy R[i, j]"
) -> plt.Axes:
    """Heatmap of the accuracy matrix: row i = after task i, column j = task j."""
    r = np.asarray(r)
    ax = ax or plt.subplots(figsize=(4, 3.5))[1]
    ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if r[i, j] < 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(r.shape[1]), [f"T{j + 1}" for j in range(r.shape[1])])
    ax.set_yticks(range(r.shape[0]), [f"after T{i + 1}" for i in range(r.shape[0])])
    ax.set_title(title)
    return ax


def sample_grid(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
    ncols: int = 8,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """A grid of generated images, each titled with the solver's label."""
    images = np.asarray(images)[..., 0]
    n = len(images)
    nrows = -(-n // ncols)
    grid = np.ones((nrows * 30, ncols * 30))
    for k in range(n):
        r, c = divmod(k, ncols)
        grid[r * 30 + 1 : r * 30 + 29, c * 30 + 1 : c * 30 + 29] = (images[k] + 1) / 2
    ax = ax or plt.subplots(figsize=(ncols * 0.6, nrows * 0.6))[1]
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    if labels is not None:
        for k, lab in enumerate(np.asarray(labels)):
            r, c = divmod(k, ncols)
            ax.text(c * 30 + 2, r * 30 + 8, str(int(lab)), color="red", fontsize=7)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def replay_histogram(
    counts: Sequence[int], ax: plt.Axes | None = None, title: str = "replay labels"
) -> plt.Axes:
    """How many replayed images the solver put in each class."""
    ax = ax or plt.subplots(figsize=(4, 2.5))[1]
    ax.bar(range(len(counts)), counts)
    ax.set(xticks=range(len(counts)), xlabel="class", ylabel="images", title=title)
    return ax
