"""The task loop: for each task, generate -> label -> mix -> train the solver -> evaluate ->
reset (or, with keep_generator, continue) and train the generator -> checkpoint.

State flows explicitly: a `RunState` (solver state, GAN state, PRNG key, and for the `buffer`
baseline its memory) goes into each task and a new one comes out; keys are split, never
reused. Data flow one way: config -> data -> tasks (`tasks.py`) -> loop -> results
(`results.py`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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
    batching,
    checkpoints,
    faults,
    gan,
    health,
    provenance,
    replay,
    rundir,
    solver,
    timing,
)
from gr_jax.config import Config, validate
from gr_jax.results import empty_history, gan_curve, log_task, make_results, solver_curve
from gr_jax.tasks import TaskData, capacity, class_order, n_seen, prepare_data


class RunState(struct.PyTreeNode):
    """Everything the loop carries from one task to the next."""

    solver: TrainState
    gan: gan.GANState
    key: jax.Array
    # replay "buffer": the kept training images, numbered in task order (-1: an empty slot)
    buffer: jax.Array | None = None


@dataclass(frozen=True)
class TrainSet:
    """One task's training set in fixed-capacity device arrays: rows [0, n_real) are real
    (with stored replay, `exact`, `buffer` or `joint`, the old images too), [n_real, n)
    generated replay, the rest padding. `soft` holds distillation targets (or None)."""

    x: jnp.ndarray
    y: jnp.ndarray
    n: int
    n_real: int
    soft: jnp.ndarray | None = None


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


def _accuracies(state: TrainState, data: TaskData, cfg: Config) -> tuple[list, list]:
    val = solver.task_accuracies(state, data.val_x, data.val_y, data.task_of_class, cfg.num_tasks)
    test = solver.task_accuracies(
        state, data.test_x, data.test_y, data.task_of_class, cfg.num_tasks
    )
    return np.asarray(val).tolist(), np.asarray(test).tolist()


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
    x = jnp.asarray(batching.pad_to(real_x, rows))
    y = jnp.asarray(batching.pad_to(real_y, rows))
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
        if gen_soft is not None and not cfg.fresh_replay:  # fresh replay draws its own
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
    state, (history,), env = drive(
        cfg,
        out,
        resume,
        state,
        [empty_history(b_val, b_test)],
        lambda t, s, hs: run_task(cfg, t, s, data, hs[0], bars),
        bars,
        log,
    )
    results = make_results(cfg, state, history, data, time.perf_counter() - started, env)
    if out is not None:
        rundir.write_json(out / "results.json", results)
    return results


def drive(
    cfg: Config,
    out: Path | None,
    resume: bool,
    state: Any,
    histories: list[dict],
    task: Callable[[int, Any, list[dict]], Any],
    bars: bool,
    log: bool,
    seeds: bool = False,
) -> tuple[Any, list[dict], dict[str, Any]]:
    """The tasks of a run, from the first unfinished one: with `out`, resume from its newest
    checkpoint (if `resume`), then `task(t, state, histories)` for each task, a checkpoint after
    it, and with `log` a line on stderr (the mean over seeds). One driver for single-seed runs
    and runs of seeds in one program (`seeds`: the checkpoints' metadata holds every seed's
    history, `{"histories": [...]}`; a single-seed run's holds its history alone).

    Returns the final state, the histories and this process's environment (provenance)."""
    with checkpoints.opened(out) as mngr:
        if mngr is not None and resume and (done := checkpoints.latest(mngr)) is not None:
            state, meta = checkpoints.restore(mngr, done, state)
            histories = meta["histories"] if seeds else [meta]
            tqdm.write(f"resuming {out} from the checkpoint after task {done}", file=sys.stderr)
        env = provenance.environment()
        first = histories[0]["tasks_done"]
        tasks = range(first, cfg.num_tasks)
        for t in tqdm(tasks, desc="tasks", disable=not bars, initial=first, total=cfg.num_tasks):
            tick_task = time.perf_counter()
            changed = [provenance.note_environment(h, env, t) for h in histories]
            provenance.warn_if_changed(changed[0], t)
            state = task(t, state, histories)
            if mngr is not None:
                tick = time.perf_counter()
                checkpoints.save(
                    mngr, t + 1, state, {"histories": histories} if seeds else histories[0]
                )
                faults.point(t, "checkpoint")
                for h in histories:
                    h["timings"][-1]["checkpoint"] = time.perf_counter() - tick
            if log:
                row = np.mean([h["r_test"][t] for h in histories], axis=0)
                log_task(out, cfg, t, row, time.perf_counter() - tick_task)
    return state, histories, env
