"""The task loop: for each task, generate -> label -> mix -> train the solver -> evaluate ->
reset (or, with keep_generator, continue) and train the generator -> checkpoint.

State flows explicitly: a `RunState` (solver state, GAN state, PRNG key, and for the `buffer`
baseline its memory) goes into each task
and a new one comes out; keys are split, never reused. Data flow one way: config -> data ->
tasks -> loop -> results.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState
from tqdm.auto import tqdm

from gr_jax import (
    checkpoints,
    faults,
    gan,
    health,
    metrics,
    provenance,
    replay,
    rundir,
    solver,
    timing,
)
from gr_jax.config import Config, ConfigError, validate
from gr_jax.data import load_splits, task_indices

GAN_CURVES = ("d_loss", "g_loss", "d_real", "d_fake")
GAN_CURVES_OPTIONAL = ("align_loss",)  # with replay alignment, from task 2 on


class RunState(struct.PyTreeNode):
    """Everything the loop carries from one task to the next."""

    solver: TrainState
    gan: gan.GANState
    key: jax.Array
    # replay "buffer": the kept training images, numbered in task order (-1: an empty slot)
    buffer: jax.Array | None = None


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


@dataclass(frozen=True)
class TrainSet:
    """One task's training set in fixed-capacity device arrays: rows [0, n_real) are real
    (with stored replay, `exact`, `buffer` or `joint`, the old images too), [n_real, n) generated replay,
    the rest padding. `soft` holds distillation targets (or None)."""

    x: jnp.ndarray
    y: jnp.ndarray
    n: int
    n_real: int
    soft: jnp.ndarray | None = None


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


def check_memory(cfg: Config, data: TaskData, copies: int = 2) -> None:
    """A ConfigError if a task's training set cannot fit in this machine's memory: float32
    images, held at least twice (the mix on the host and on the device). Said before the run
    directory is made, not as an allocation error in task 2."""
    rows = capacity(cfg, data)
    need = rows * 28 * 28 * 4 * copies
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


def new_gan(cfg: Config, key: jax.Array) -> gan.GANState:
    """A freshly initialised GAN of `cfg`'s architecture and optimiser."""
    return gan.create_gan_state(
        key,
        cfg.gan,
        cfg.gan_width,
        cfg.latent_dim,
        cfg.gan_lr,
        cfg.gan_beta1,
        d_chunks=cfg.discriminator_chunks,
        num_classes=cfg.num_classes if cfg.conditional else 0,
        loss=cfg.gan_loss,
        ema=cfg.gan_ema,
        mbstd=cfg.d_mbstd,
        mbdisc=cfg.d_mbdisc,
        conv_impl=cfg.conv_impl,
        spectral=cfg.d_spectral,
        dtype=cfg.gan_dtype,
        d_lr=cfg.d_lr,
        lr_final=cfg.gan_lr_final,
    )


def class_order(cfg: Config) -> jnp.ndarray:
    """All classes in task order: task t's replay draws from the first n_seen(t) of them."""
    return jnp.asarray([c for classes in cfg.tasks for c in classes], jnp.int32)


def n_seen(cfg: Config, t: int) -> int:
    """Classes of the tasks before task t."""
    return sum(len(classes) for classes in cfg.tasks[:t])


def replay_weight_at(cfg: Config, t: int) -> jnp.ndarray | None:
    """The weight of replay in the solver's loss at task t (0-based); None: every example alike."""
    if cfg.replay_weighting == "tasks":
        return jnp.asarray(1.0 - 1.0 / (t + 1), jnp.float32)
    if cfg.replay_weighting == "fixed":
        return jnp.asarray(cfg.replay_share if t > 0 else 0.0, jnp.float32)
    return None


def init_state(cfg: Config) -> RunState:
    """A run's state before its first task, from `cfg.seed` alone."""
    return state_from_key(cfg, jax.random.PRNGKey(cfg.seed))


def state_from_key(cfg: Config, key: jax.Array) -> RunState:
    """The initial state of a run whose root PRNG key is `key` (pure: vmappable over keys)."""
    key, k_solver, k_gan = jax.random.split(key, 3)
    return RunState(
        solver=solver.create_solver_state(
            k_solver, cfg.solver_hidden, cfg.solver_lr, cfg.solver_dropout, cfg.solver_head
        ),
        gan=new_gan(cfg, k_gan),
        key=key,
        buffer=jnp.full((cfg.buffer_size,), -1, jnp.int32) if cfg.replay == "buffer" else None,
    )


def task_keys(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(key carried to the next task, replay key, solver key, GAN key) of one task. Every run,
    single- or multi-seed, derives its keys here, so a seed's numbers never depend on
    how it was run."""
    key, k_replay, k_solver, k_gan = jax.random.split(key, 4)
    return key, k_replay, k_solver, k_gan


def gan_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(initialisation key, training key) of a task's GAN phase."""
    init_key, train_key = jax.random.split(key)
    return init_key, train_key


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


def _accuracies(state: TrainState, data: TaskData, cfg: Config) -> tuple[list, list]:
    val = solver.task_accuracies(state, data.val_x, data.val_y, data.task_of_class, cfg.num_tasks)
    test = solver.task_accuracies(
        state, data.test_x, data.test_y, data.task_of_class, cfg.num_tasks
    )
    return np.asarray(val).tolist(), np.asarray(test).tolist()


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
    return data.capacity_real + extra[cfg.replay]


def replay_phase(
    cfg: Config, t: int, state: RunState, data: TaskData, key: jax.Array
) -> tuple[TrainSet, list[int]]:
    """Task t's training set: its real data plus, for t > 0, the replay (n_gen generated images
    labelled by the solver; or stored real images for the baselines). With `buffer` replay the
    images are those the state's buffer kept, and `key` is not used.

    Stored images count as real rows (the replay weighting and soft targets are for generated
    replay only). Returns the training set and the class counts of its replay.
    """
    real_x, real_y = data.train[t]
    counts = [0] * cfg.num_classes
    stored = None
    if t > 0 and cfg.replay in ("exact", "joint"):
        n_keep = cfg.buffer_size if cfg.replay == "exact" else None
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        stored = replay.stored_replay(data.train[:t], n_keep, seed)
    elif t > 0 and cfg.replay == "buffer":
        stored = replay.kept_replay(data.train[:t], np.asarray(state.buffer))
    if stored is not None:
        real_x, real_y = np.concatenate([real_x, stored[0]]), np.concatenate([real_y, stored[1]])
        counts = np.bincount(stored[1], minlength=cfg.num_classes).tolist()
    rows = capacity(cfg, data)
    x = jnp.asarray(replay.pad_to(real_x, rows))
    y = jnp.asarray(replay.pad_to(real_y, rows))
    n = n_real = len(real_y)
    soft = None
    if cfg.replay == "generative" and t > 0 and cfg.n_gen > 0:
        gen_x, gen_y, gen_soft = replay.generate_replay(
            state.gan.g,
            state.solver,
            key,
            cfg.n_gen,
            cfg.latent_dim,
            cfg.gen_chunk,
            class_order(cfg) if cfg.conditional else None,
            n_seen(cfg, t),
            cfg.soft_targets,
        )
        x, y = replay.mix(x, y, jnp.asarray(n), gen_x, gen_y)
        if gen_soft is not None:
            soft = replay.soft_rows(y, jnp.asarray(n), gen_soft, cfg.num_classes)
        n += cfg.n_gen
        counts = np.bincount(np.asarray(gen_y), minlength=cfg.num_classes).tolist()
    return TrainSet(jax.block_until_ready(x), y, n, n_real, soft), counts


def _solver_epoch(
    cfg: Config, t: int, s: TrainState, train: TrainSet, previous: RunState, key: jax.Array
) -> tuple[TrainState, dict]:
    """One solver epoch on the mix, or, with fresh replay, on the real data plus replay drawn
    in every step from the previous generator and labelled by the previous solver."""
    share = replay_weight_at(cfg, t)
    temperature = cfg.soft_targets
    if cfg.fresh_replay and t > 0:
        return replay.fresh_epoch(
            s,
            previous.solver,
            previous.gan.g,
            train.x,
            train.y,
            train.n_real,
            key,
            cfg.solver_batch,
            cfg.latent_dim,
            class_order=class_order(cfg) if cfg.conditional else None,
            n_seen=n_seen(cfg, t),
            share=share,
            temperature=temperature,
            shift=cfg.solver_shift,
            dropout=cfg.solver_dropout > 0,
        )
    rows = None
    if train.soft is not None or share is not None:
        rows = solver.ReplayRows(jnp.asarray(train.n_real), train.soft, share, temperature or 1.0)
    return solver.train_epoch(
        s, train.x, train.y, jnp.asarray(train.n), key, cfg.solver_batch, rows,
        cfg.solver_shift, cfg.solver_dropout > 0,
    )  # fmt: skip


def solver_phase(
    cfg: Config,
    t: int,
    previous: RunState,
    train: TrainSet,
    data: TaskData,
    key: jax.Array,
    history: dict,
    bars: bool,
) -> tuple[TrainState, float]:
    """Train the solver (continuing from its weights) on the mix; validation after each epoch.

    Returns the new state and the seconds spent on validation. The epochs donate their input
    state's buffers, so `previous.solver` is used up: read the returned state, not it."""
    eval_time = 0.0
    s = previous.solver
    for e in tqdm(
        range(cfg.solver_epochs), desc=f"task {t + 1} solver", leave=False, disable=not bars
    ):
        s, m = _solver_epoch(cfg, t, s, train, previous, jax.random.fold_in(key, e))
        jax.block_until_ready(s)
        faults.point(t, "solver")
        tick = time.perf_counter()
        health.check(m, f"task {t + 1}, solver, epoch {e + 1}")
        val = solver.task_accuracies(s, data.val_x, data.val_y, data.task_of_class, cfg.num_tasks)
        history["solver_curves"].append(solver_curve(t, e, m, val))
        eval_time += time.perf_counter() - tick
    return s, eval_time


def trains_gan(cfg: Config, t: int) -> bool:
    """Whether task `t` (0-based) ends with a GAN phase: for generative replay, unless the task
    has 0 GAN epochs (the generator before it is kept) or it is the last task and `final_gan` is
    off (no later task replays that generator)."""
    last = t == cfg.num_tasks - 1
    return cfg.replay == "generative" and cfg.gen_epochs_for(t) > 0 and (cfg.final_gan or not last)


def gan_phase(
    cfg: Config,
    t: int,
    previous: gan.GANState,
    train: TrainSet,
    key: jax.Array,
    history: dict,
    bars: bool,
) -> gan.GANState:
    """Reset the GAN (or, with keep_generator, continue from the previous one), then train it
    on the mix. With keep_generator `previous` is used up (the steps donate its buffers)."""
    init_key, train_key = gan_keys(key)
    g = previous if cfg.keep_generator and t > 0 else new_gan(cfg, init_key)
    if cfg.replay_alignment > 0 and t > 0:
        g = g.anchored(
            previous.g, class_order(cfg), n_seen(cfg, t), cfg.replay_alignment, cfg.align_batch
        )
    n_epochs = cfg.gen_epochs_for(t)
    n = train.n
    total = n_epochs * (n // cfg.gan_batch)
    g = g.decaying_over(total)
    with tqdm(total=total, desc=f"task {t + 1} GAN", leave=False, disable=not bars) as bar:
        for e in range(n_epochs):
            g, m = gan.train_epoch(
                g,
                train.x,
                train.y,
                n,
                jax.random.fold_in(train_key, e),
                cfg.gan_batch,
                on_step=bar.update,
                steps_per_call=gan.scan_steps(cfg.gan_scan),
            )
            health.check(m, f"task {t + 1}, GAN, epoch {e + 1}")
            faults.point(t, "gan")
            history["gan_curves"].append(gan_curve(t, e, m))
    return jax.block_until_ready(g.unanchored())


def run_task(
    cfg: Config, t: int, state: RunState, data: TaskData, history: dict, bars: bool = False
) -> RunState:
    """Task `t` (0-based): generate + label + mix, train the solver, evaluate, reset (or keep)
    and train the generator. Returns the new state; appends this task's rows to `history`
    (JSON-able). The train steps donate their states' buffers (updated in place, no copies),
    so `state` is used up: keep the returned state, or a copy made before the call."""
    with timing.compile_seconds() as compile_time:
        new_state = _run_phases(cfg, t, state, data, history, bars)
    history["timings"][-1]["compile"] = compile_time[0]  # part of the phases above
    return new_state


def _run_phases(
    cfg: Config, t: int, state: RunState, data: TaskData, history: dict, bars: bool
) -> RunState:
    key, k_replay, k_solver, k_gan = task_keys(state.key)
    timings: dict[str, float] = {}

    faults.point(t, "generate")
    tick = time.perf_counter()
    train, counts = replay_phase(cfg, t, state, data, k_replay)
    history["replay_class_counts"].append(counts)
    timings["generate"] = time.perf_counter() - tick

    tick = time.perf_counter()
    s, eval_time = solver_phase(cfg, t, state, train, data, k_solver, history, bars)
    timings["solver"] = time.perf_counter() - tick - eval_time

    tick = time.perf_counter()
    r_val, r_test = _accuracies(s, data, cfg)
    history["r_val"].append(r_val)
    history["r_test"].append(r_test)
    timings["evaluate"] = time.perf_counter() - tick + eval_time

    tick = time.perf_counter()
    g = state.gan
    if trains_gan(cfg, t):
        g = gan_phase(cfg, t, state.gan, train, k_gan, history, bars)
    timings["gan"] = time.perf_counter() - tick

    buffer = state.buffer
    if cfg.replay == "buffer":  # the memory keeps some of this task's images (k_replay's use)
        seed = int(jax.random.randint(k_replay, (), 0, 2**31 - 1))
        before = sum(len(y) for _, y in data.train[:t])
        buffer = jnp.asarray(
            replay.reservoir_update(np.asarray(buffer), before, len(data.train[t][1]), seed)
        )

    history["timings"].append(timings)
    history["tasks_done"] = t + 1
    return RunState(solver=s, gan=g, key=key, buffer=buffer)


def run(
    cfg: Config,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    bars: bool = True,
    log: bool = False,
) -> dict[str, Any]:
    """Run the whole experiment; with `out`, checkpoint after every task and write results.json.

    `resume` continues the run in `out` from its last checkpoint (a finished run's results
    come back as recorded, as JSON types); `overwrite` replaces the run in `out`; `bars`:
    progress bars; `log`: a line on stderr for every finished task."""
    cfg = validate(cfg)
    started = time.perf_counter()
    out = Path(out) if out is not None else None
    if out is not None:
        checked = rundir.check(cfg, out, resume, overwrite)
        if resume and (done := rundir.finished_results(cfg, out)) is not None:
            tqdm.write(f"{out} is complete; its results.json is unchanged", file=sys.stderr)
            return done
    data = prepare_data(cfg)  # before a run dir is replaced: bad data loses no earlier run
    if out is None:
        return _run_tasks(cfg, None, False, data, started, bars, log)
    with rundir.create(cfg, out, resume, overwrite, checked=checked):  # held while it runs
        if resume and (done := rundir.finished_results(cfg, out)) is not None:
            return done  # finished by the process that held it while the data loaded
        return _run_tasks(cfg, out, resume, data, started, bars, log)


def _run_tasks(
    cfg: Config,
    out: Path | None,
    resume: bool,
    data: TaskData,
    started: float,
    bars: bool,
    log: bool = False,
) -> dict[str, Any]:
    state = init_state(cfg)
    b_val, b_test = _accuracies(state.solver, data, cfg)
    history = empty_history(b_val, b_test)

    with contextlib.ExitStack() as stack:  # the checkpoint manager closed however the run ends
        mngr = stack.enter_context(checkpoints.manager(out)) if out is not None else None
        if mngr is not None and resume:
            done = checkpoints.latest(mngr)
            if done is not None:
                state, history = checkpoints.restore(mngr, done, state)
                tqdm.write(f"resuming {out} from the checkpoint after task {done}", file=sys.stderr)
        env = provenance.environment()
        first = history["tasks_done"]
        tasks = range(first, cfg.num_tasks)
        for t in tqdm(tasks, desc="tasks", disable=not bars, initial=first, total=cfg.num_tasks):
            tick_task = time.perf_counter()
            provenance.warn_if_changed(provenance.note_environment(history, env, t), t)
            state = run_task(cfg, t, state, data, history, bars)
            if mngr is not None:
                tick = time.perf_counter()
                checkpoints.save(mngr, t + 1, state, history)
                faults.point(t, "checkpoint")
                history["timings"][-1]["checkpoint"] = time.perf_counter() - tick
            if log:
                log_task(out, cfg, t, history["r_test"][t], time.perf_counter() - tick_task)

    results = make_results(cfg, state, history, data, time.perf_counter() - started, env)
    if out is not None:
        rundir.write_json(out / "results.json", results)
    return results


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
