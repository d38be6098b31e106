"""Reading finished (or partial) run directories: config, results, per-task train states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from gr_jax import checkpoints, gan, solver
from gr_jax.config import Config
from gr_jax.loop import RunState, class_order, init_state, n_seen


def load_config(run_dir: str | Path) -> Config:
    return Config.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


def load_results(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "results.json").read_text())


def task_states(run_dir: str | Path) -> dict[int, RunState]:
    """The state saved after each finished task: {tasks_done: RunState}."""
    cfg = load_config(run_dir)
    mngr = checkpoints.manager(run_dir)
    target = init_state(cfg)
    return {step: checkpoints.restore(mngr, step, target)[0] for step in mngr.all_steps()}


def samples_with_labels(
    state: RunState, cfg: Config, n: int = 64, seed: int = 0, tasks_done: int | None = None
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`n` images from the state's generator and the state's solver's labels for them (a
    conditional generator is asked in turn for every class of the first `tasks_done` tasks,
    all tasks if None)."""
    classes = None
    if cfg.conditional:
        k = n_seen(cfg, cfg.num_tasks if tasks_done is None else tasks_done)
        classes = gan.balanced_labels(class_order(cfg), k, 0, n)
    images = gan.sample(state.gan.g, jax.random.PRNGKey(seed), n, cfg.latent_dim, classes)
    return images, solver.predict(state.solver, images)
