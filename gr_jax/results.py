"""A run's history and results: the curves' rows, the history before the first task, the line
logged per task, and results.json's content (matrices, ACC/BWT/FWT, memory, provenance)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from gr_jax import gan, metrics, provenance
from gr_jax.config import Config
from gr_jax.tasks import TaskData

if TYPE_CHECKING:
    from gr_jax.loop import RunState


GAN_CURVES = ("d_loss", "g_loss", "d_real", "d_fake")


GAN_CURVES_OPTIONAL = ("align_loss",)  # with replay alignment, from task 2 on


def solver_curve(t: int, e: int, m: dict, val: Any) -> dict[str, Any]:
    """A row of `solver_curves`: one seed's metrics after solver epoch `e` of task `t`."""
    return {
        "task": t,
        "epoch": e,
        "loss": float(m["loss"]),
        "train_accuracy": float(m["accuracy"]),
        "val_accuracy": np.asarray(val).tolist(),
    }


def gan_curve(t: int, e: int, m: dict) -> dict[str, Any]:
    """A row of `gan_curves`: one seed's last-step GAN metrics of epoch `e` of task `t`."""
    return {
        "task": t,
        "epoch": e,
        **{k: float(m[k]) for k in GAN_CURVES + GAN_CURVES_OPTIONAL if k in m},
    }


def empty_history(b_val: list, b_test: list) -> dict[str, Any]:
    """A run's history before its first task, given the untrained solver's accuracies (FWT's b)."""
    return {
        "tasks_done": 0,
        "r_val": [],
        "r_test": [],
        "b_val": b_val,
        "b_test": b_test,
        "solver_curves": [],
        "gan_curves": [],
        "replay_class_counts": [],
        "timings": [],
    }


def log_task(out: Path | None, cfg: Config, t: int, row: Any, seconds: float) -> None:
    """One line on stderr for a finished task: what a log without progress bars shows."""
    seen = np.asarray(row)[: t + 1]
    where = f"{out}: " if out is not None else ""
    tqdm.write(
        f"{where}task {t + 1}/{cfg.num_tasks} done in {seconds:.0f} s; test accuracy on tasks "
        f"1-{t + 1}: {' '.join(f'{a:.3f}' for a in seen)} (mean {seen.mean():.4f})",
        file=sys.stderr,
    )


def stored_bytes(cfg: Config, seen: np.ndarray) -> int:
    """Bytes of real images (uint8) a baseline stores for replay at its largest (last task;
    `seen`: images seen after each task). `exact` draws from all earlier images, so it keeps
    them all, as `joint` does; `buffer` keeps at most `buffer_size`."""
    earlier = int(seen[-2]) if len(seen) > 1 else 0
    if cfg.replay in ("exact", "joint"):
        return earlier * 28 * 28
    if cfg.replay == "buffer":
        return min(cfg.buffer_size, earlier) * 28 * 28
    return 0


def make_results(
    cfg: Config,
    state: RunState,
    history: dict,
    data: TaskData,
    wall: float,
    env: dict[str, Any] | None = None,
    resolved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-able results: matrices, ACC/BWT/FWT, curves, timings, memory, provenance
    (`env`: this process's `provenance.environment()`, taken when it started the tasks;
    `resolved`: more auto values and what they stood for, e.g. a --seeds run's seed axis).
    `state` is read for its parameters' sizes only (shapes suffice)."""
    seen = np.cumsum([len(y) for _, y in data.train])
    return {
        "config": cfg.to_dict(),
        # what the config's auto values stood for in this run (auto's meaning may change)
        "config_resolved": {
            "d_chunks": cfg.discriminator_chunks,
            "gan_scan": gan.scan_steps(cfg.gan_scan),
            **(resolved or {}),
        },
        "test": metrics.summary(history["r_test"], history["b_test"]),
        "val": metrics.summary(history["r_val"], history["b_val"]),
        **history,
        "memory": {
            "solver_param_bytes": metrics.tree_bytes(state.solver.params),
            # with an EMA, replay needs its weights as well (and training the raw ones)
            "generator_param_bytes": metrics.tree_bytes(
                (state.gan.g.params, getattr(state.gan.g, "ema_params", None))
            ),
            "discriminator_param_bytes": metrics.tree_bytes(state.gan.d.params),
            "real_data_bytes_float32_after_task": (seen * 28 * 28 * 4).tolist(),
            "real_data_bytes_uint8_after_task": (seen * 28 * 28).tolist(),
            "replay_buffer_bytes_uint8": stored_bytes(cfg, seen),
        },
        "wall_seconds_this_process": wall,
        # this process's; `environments`: each task's
        "environment": env if env is not None else provenance.environment(),
    }
