"""From config to tasks: the dataset split into per-task training sets (host) and the
validation and test sets (device), the fixed capacity of a task's training arrays, and a check
that they fit in memory."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from gr_jax.config import Config, ConfigError
from gr_jax.data import load_splits, task_indices


@dataclass(frozen=True)
class TaskData:
    """Per-task real training data (host), and validation/test data (device)."""

    train: list[tuple[np.ndarray, np.ndarray]]
    val_x: jnp.ndarray
    val_y: jnp.ndarray
    test_x: jnp.ndarray
    test_y: jnp.ndarray
    task_of_class: jnp.ndarray

    @property
    def capacity_real(self) -> int:
        return max(len(y) for _, y in self.train)


def prepare_data(cfg: Config) -> TaskData:
    """Load the dataset, split it into tasks, and check the config fits the data."""
    s = load_splits(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    train = [(s.train_x[i], s.train_y[i]) for i in task_indices(s.train_y, cfg.tasks)]
    smallest = min(len(y) for _, y in train)
    for name in ("solver_batch", "gan_batch"):
        if getattr(cfg, name) > smallest:
            raise ConfigError(
                f"{name}={getattr(cfg, name)} is larger than the smallest task's training "
                f"data ({smallest} examples)"
            )
    task_of_class = np.full(cfg.num_classes, cfg.num_tasks, np.int32)
    for t, classes in enumerate(cfg.tasks):
        task_of_class[list(classes)] = t
    val = np.concatenate(task_indices(s.val_y, cfg.tasks))
    test = np.concatenate(task_indices(s.test_y, cfg.tasks))
    data = TaskData(
        train=train,
        val_x=jnp.asarray(s.val_x[np.sort(val)]),
        val_y=jnp.asarray(s.val_y[np.sort(val)]),
        test_x=jnp.asarray(s.test_x[np.sort(test)]),
        test_y=jnp.asarray(s.test_y[np.sort(test)]),
        task_of_class=jnp.asarray(task_of_class),
    )
    check_memory(cfg, data)
    return data


def check_memory(cfg: Config, data: TaskData) -> None:
    """A ConfigError if a task's training set cannot fit in this machine's memory: float32
    images, held at least twice (the mix on the host and on the device). Said before the run
    directory is made, not as an allocation error in task 2."""
    rows = capacity(cfg, data)
    need = rows * 28 * 28 * 4 * 2  # the mix on the host and on the device
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no such query here: nothing to compare
        return
    if need > have:
        field = {"generative": "n_gen", "joint": "the dataset", "none": "the largest task"}.get(
            cfg.replay, "buffer_size"
        )
        raise ConfigError(
            f"a task's training set would hold up to {rows:,} images (set by {field}): "
            f"{need / 2**30:,.1f} GiB or more in float32, more than this machine's "
            f"{have / 2**30:,.1f} GiB of memory"
        )


def capacity(cfg: Config, data: TaskData) -> int:
    """Rows of the fixed-shape training arrays: the most any task's training set can hold."""
    extra = {
        "generative": cfg.n_gen,
        "exact": cfg.buffer_size,
        "buffer": cfg.buffer_size,
        "none": 0,
    }
    if cfg.replay == "joint":
        return sum(len(y) for _, y in data.train)
    if cfg.replay not in extra:
        raise ValueError(f"tasks.capacity does not know the rows replay {cfg.replay!r} adds")
    return data.capacity_real + extra[cfg.replay]


def class_order(cfg: Config) -> jnp.ndarray:
    """All classes in task order: task t's replay draws from the first n_seen(t) of them."""
    return jnp.asarray([c for classes in cfg.tasks for c in classes], jnp.int32)


def n_seen(cfg: Config, t: int) -> int:
    """Classes of the tasks before task t."""
    return sum(len(classes) for classes in cfg.tasks[:t])
