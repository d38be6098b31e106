"""Continual-learning metrics (Lopez-Paz & Ranzato 2017, GEM) and memory figures."""

from __future__ import annotations

from typing import Any

import numpy as np


def acc(r: np.ndarray) -> float:
    """Average accuracy over all tasks after the last task: mean of R's last row."""
    return float(np.mean(np.asarray(r)[-1]))


def bwt(r: np.ndarray) -> float:
    """Backward transfer: mean over j < T of R[T, j] - R[j, j] (negative = forgetting)."""
    r = np.asarray(r)
    t = r.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([r[-1, j] - r[j, j] for j in range(t - 1)]))


def fwt(r: np.ndarray, b: np.ndarray) -> float:
    """Forward transfer: mean over j > 1 of R[j-1, j] - b[j], b = accuracy at random init."""
    r, b = np.asarray(r), np.asarray(b)
    t = r.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))


# summary's metrics, in the order every print and table shows them
SCALARS = ("acc", "bwt", "fwt")


def summary(r: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The scalar metrics of accuracy matrix `r` (`b`: the accuracies at initialisation), named
    as in SCALARS. Results files, the printed summaries and the sweep and multi-seed tables all
    take them from here (the tables recompute them from the stored matrices), so a metric added
    here and to SCALARS reaches every one of them, runs made before it included."""
    return {"acc": acc(r), "bwt": bwt(r), "fwt": fwt(r, b)}


def format_scalars(means: dict[str, float], stds: dict[str, float] | None = None) -> str:
    """The metrics as one line, "ACC 0.9670  BWT -0.0170  FWT +0.0012" (the differences
    signed), with "± std" after each when `stds` are given."""
    cells = []
    for m in SCALARS:
        cell = f"{m.upper()} {means[m]:{'' if m == 'acc' else '+'}.4f}"
        cells.append(cell if stds is None else f"{cell} ± {stds[m]:.4f}")
    return "  ".join(cells)


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and standard deviation over seeds: the population std (ddof 0), the convention of
    every summary and table of this project."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std())


def judged_replay(probs: np.ndarray, seen: list[int], sure: float = 0.9) -> dict[str, Any]:
    """An independent classifier's verdict on generated images meant to show the classes
    `seen`, from its class probabilities `probs` (N, C): the share it puts in a class the
    generator never learnt (`unseen`: not a plausible digit of a seen class), the share it is
    sure of (`sure`: max probability > `sure`), and the smallest and largest count of a seen
    class (`fewest`, `most`: mode dropping)."""
    probs = np.asarray(probs)
    label = probs.argmax(1)
    counts = np.bincount(label, minlength=probs.shape[1])[list(seen)]
    return {
        "unseen": float(np.mean(~np.isin(label, seen))),
        "sure": float(np.mean(probs.max(1) > sure)),
        "fewest": int(counts.min()),
        "most": int(counts.max()),
        "counts": counts.tolist(),
    }


def tree_bytes(tree: Any) -> int:
    """Bytes of all array leaves of a pytree."""
    import jax

    # from shapes only: no copy, and it works for arrays spread over several hosts
    return int(sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree)))


def format_matrix(r: np.ndarray, name: str = "R") -> str:
    """The accuracy matrix as text: rows = after task i, columns = task j."""
    r = np.asarray(r)
    head = f"{name} (row i: after task i, column j: task j)\n        " + " ".join(
        f"  T{j + 1} " for j in range(r.shape[1])
    )
    rows = [f"after T{i + 1} " + " ".join(f"{v:.3f}" for v in row) for i, row in enumerate(r)]
    return "\n".join([head, *rows])
