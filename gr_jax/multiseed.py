"""Many seeds in one program: the task loop's states carry a leading seed axis and every step
(solver epoch, GAN step, generation, evaluation) is mapped over it, in one of two ways
(`Config.seed_axis`, `over_seeds`):

- "vmap" batches the seeds into each kernel (`jax.vmap`). It pays where one seed leaves the
  device waiting: on an H100, 8 seeds of the solver cost 1.8-2x one, of the conv GAN 4.5x with
  `conv_impl="slices"` (7-9.5x with XLA's convolutions, which become grouped convolutions).
  Batched kernels round differently from a single seed's, so seed s agrees with the
  single-seed run to float32 rounding (see `tests/test_multiseed.py` for the tolerance).
- "unroll" traces each seed's step side by side into the one program, each seed's state a
  separate set of parameters (`SeedList`): every seed runs exactly a single-seed run's
  computation, so seed s is bitwise the single-seed run with seed s, and on a CPU, busy with
  one seed already, K seeds cost K times one, where vmapped conv GANs cost 4-5x more.
  "auto" (the default) unrolls on CPU and vmaps elsewhere.

Each seed's keys are derived exactly as in a single-seed run (`PRNGKey(seed)`, the same splits).
With several devices the seed axis is sharded over a mesh (`seed_mesh`); across hosts, every
process runs the same program on its own seeds and gathers the small per-seed metrics.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from gr_jax import (
    batching,
    faults,
    gan,
    health,
    loop,
    metrics,
    replay,
    rundir,
    solver,
    timing,
)
from gr_jax.config import BEYOND_OFF, Config, ConfigError, diff, validate
from gr_jax.loop import RunState
from gr_jax.results import empty_history, gan_curve, make_results, solver_curve
from gr_jax.tasks import TaskData, capacity, prepare_data


@jax.tree_util.register_pytree_node_class
class SeedList:
    """One pytree per seed, side by side: how unrolled seeds travel into and out of a program.

    Each seed's arrays are then parameters of the program with a single-seed run's shapes.
    (Slicing seeds out of stacked arrays inside the program lets XLA fuse some reductions
    differently, 1 ulp apart, which GAN training amplifies.)"""

    def __init__(self, items: Any) -> None:
        self.items = tuple(items)

    def tree_flatten(self) -> tuple[tuple, None]:
        return self.items, None

    @classmethod
    def tree_unflatten(cls, _: None, children: Any) -> SeedList:
        return cls(children)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


@dataclass(frozen=True)
class Programs:
    """The jitted functions of one config over the seed axis (compiled once, reused every task).

    With `listed`, seed-mapped arguments and results are `SeedList`s (unrolled seeds on one
    device); otherwise arrays with a leading seed axis."""

    listed: bool
    solver_epoch: Callable
    hits: Callable
    gan_step: Callable
    gan_steps: Callable
    permutations: Callable
    new_gans: Callable
    generate: Callable
    mix: Callable
    all_finite: Callable
    split: Callable
    fold_in: Callable
    epoch_keys: Callable
    gan_keys: Callable


def seed_axis(cfg: Config) -> str:
    """`cfg.seed_axis` with "auto" resolved: unroll on CPU, vmap on accelerators."""
    if cfg.seed_axis != "auto":
        return cfg.seed_axis
    return "unroll" if jax.default_backend() == "cpu" else "vmap"


def over_seeds(fn: Callable, in_axes: int | tuple = 0, how: str = "vmap") -> Callable:
    """`fn` mapped over the seeds of the arguments whose `in_axes` is 0 (None: the same
    argument for every seed): a leading seed axis, or for "unroll" on one device `SeedList`s.

    "vmap" batches the seeds into each kernel. "unroll" traces `fn` once per seed into the one
    program; on one device the seeds come and go as `SeedList`s, so every seed computes what
    a single-seed run computes, bit for bit. With a device mesh, unrolled seeds run inside
    `shard_map` on slices of stacked arrays, each device unrolling its own seeds (there XLA may
    fuse a few reductions differently, 1 ulp apart).
    """
    if how == "vmap":
        return jax.vmap(fn, in_axes=in_axes)

    def axes_of(args: tuple) -> tuple:
        return in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)

    def unrolled(*args: Any) -> Any:
        axes = axes_of(args)
        mapped = [a for a, ax in zip(args, axes, strict=True) if ax == 0]
        seeds = n_seeds(mapped[0])
        outs = [
            fn(*(seed_slice(a, i) if ax == 0 else a for a, ax in zip(args, axes, strict=True)))
            for i in range(seeds)
        ]
        if isinstance(mapped[0], SeedList):
            if type(outs[0]) is tuple:  # a tuple of results: a tuple of SeedLists
                return tuple(SeedList(o[j] for o in outs) for j in range(len(outs[0])))
            return SeedList(outs)
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)

    mesh = seed_mesh()
    if mesh is None:
        return unrolled

    def sharded(*args: Any) -> Any:
        specs = tuple(
            PartitionSpec("seeds") if ax == 0 else PartitionSpec() for ax in axes_of(args)
        )
        # no varying-across-devices checks: seeds never communicate (and loop carries
        # started from constants would need casts)
        return jax.shard_map(
            unrolled,
            mesh=mesh,
            in_specs=specs,
            out_specs=PartitionSpec("seeds"),
            check_vma=False,
        )(*args)

    return sharded


T = TypeVar("T")

# The config fields a run of seeds in one program honours as a single-seed run does; it refuses
# the options in config.BEYOND_OFF unless they are off, and any field in neither list unless it
# has its default value: a field added to the config later is refused here until it is supported
# (tests/test_multiseed.py checks that every field is in one of the two lists).
SUPPORTED = frozenset(
    "dataset data_dir tasks val_fraction test_fraction split_seed seed replay n_gen buffer_size "
    "gen_chunk solver_hidden solver_epochs solver_batch solver_lr solver_dropout solver_head gan "
    "latent_dim gan_width gen_epochs final_gan gan_batch gan_lr d_lr gan_lr_final gan_beta1 "
    "d_chunks d_mbstd d_mbdisc d_spectral gan_scan conv_impl seed_axis gan_dtype replay_share "
    "align_batch".split()
)


def programs(cfg: Config, capacity: int) -> Programs:
    """The jitted programs of every phase, mapped over the seed axis as `cfg.seed_axis` says
    (built once per config and capacity in a process: the same programs, no recompiles, for
    any seeds, which are in the keys alone, and wherever the data lie)."""
    return _programs(replace(cfg, seed=0, data_dir=None), capacity)


@functools.cache
def _programs(cfg: Config, capacity: int) -> Programs:
    how = seed_axis(cfg)
    seeds = functools.partial(over_seeds, how=how)
    return Programs(
        listed=how == "unroll" and seed_mesh() is None,
        solver_epoch=jax.jit(
            seeds(
                functools.partial(
                    solver.train_epoch,
                    batch_size=cfg.solver_batch,
                    dropout=cfg.solver_dropout > 0,
                ),
                in_axes=(0, 0, 0, None, 0),
            )
        ),
        hits=jax.jit(
            seeds(
                functools.partial(solver.task_hits, num_tasks=cfg.num_tasks),
                in_axes=(0, None, None, None),
            )
        ),
        gan_step=jax.jit(seeds(functools.partial(gan.gan_step_at, batch_size=cfg.gan_batch))),
        gan_steps=jax.jit(
            seeds(
                functools.partial(
                    gan.gan_steps_at,
                    batch_size=cfg.gan_batch,
                    steps=gan.scan_steps(cfg.gan_scan),
                )
            )
        ),
        permutations=jax.jit(
            seeds(lambda k, n: batching.valid_permutation(k, n, capacity), in_axes=(0, None))
        ),
        new_gans=jax.jit(seeds(functools.partial(loop.new_gan, cfg))),
        generate=jax.jit(
            seeds(
                lambda g, s, k: replay.generate_replay(
                    g, s, k, cfg.n_gen, cfg.latent_dim, cfg.gen_chunk
                )[:2]
            )
        ),
        mix=jax.jit(seeds(replay.mix, in_axes=(None, None, None, 0, 0))),
        all_finite=jax.jit(seeds(health.all_finite)),
        split=jax.jit(seeds(loop.task_keys)),
        fold_in=jax.jit(seeds(jax.random.fold_in, in_axes=(0, None))),
        epoch_keys=jax.jit(seeds(gan.epoch_keys)),
        gan_keys=jax.jit(seeds(loop.gan_keys)),
    )


def init_states(cfg: Config, seeds: list[int]) -> RunState:
    """Initial states of all seeds, stacked on a leading axis (on the CPU bitwise each seed's
    own: the unrolled runs' tests compare them with single-seed runs)."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return _init_program(replace(cfg, seed=0))(keys)  # the seeds are in the keys alone


@functools.cache
def _init_program(cfg: Config) -> Callable[[jax.Array], RunState]:
    """`loop.state_from_key` mapped over keys, as one program (op by op, every op of the
    mapped initialisation compiles on its own, again for every number of seeds)."""
    return jax.jit(jax.vmap(functools.partial(loop.state_from_key, cfg)))


def seed_mesh() -> Mesh | None:
    """A 1-D mesh over all devices (every host's, after `jax.distributed.initialize()`), or
    None on a single device."""
    if jax.device_count() == 1:
        return None
    return Mesh(np.array(jax.devices()), ("seeds",))


def shard_seeds(tree: Any) -> Any:
    """Place the leading (seed) axis of every leaf across the devices; no-op on one device.

    The jitted programs then run each device's seeds where they live (seeds are
    independent: no communication). The number of seeds must be a multiple of the devices.
    """
    mesh = seed_mesh()
    if mesh is None:
        return tree
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    if n % mesh.size:
        raise ConfigError(f"{n} seeds cannot be split evenly over {mesh.size} devices")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("seeds")))


def seed_slice(tree: Any, i: int) -> Any:
    """Seed `i` of a `SeedList` or of a tree with a leading seed axis."""
    if isinstance(tree, SeedList):
        return tree[i]
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def n_seeds(tree: Any) -> int:
    """The number of seeds of a `SeedList` or of a tree with a leading seed axis."""
    if isinstance(tree, SeedList):
        return len(tree)
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


def each(tree: Any, f: Callable) -> Any:
    """`f` of every seed of a `SeedList`; `f` of the whole tree (all seeds) otherwise."""
    if isinstance(tree, SeedList):
        return SeedList(f(t) for t in tree.items)
    return f(tree)


@functools.partial(jax.jit, static_argnums=1)
def unstack(tree: Any, seeds: int) -> SeedList:
    """A tree with a leading seed axis as a `SeedList` (exact copies)."""
    return SeedList(seed_slice(tree, i) for i in range(seeds))


@jax.jit
def stack(seeds: SeedList) -> Any:
    """A `SeedList` as one tree with a leading seed axis (exact copies)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *seeds.items)


def as_programs_take(p: Programs, tree: Any, seeds: int) -> Any:
    """A tree with a leading seed axis in the form `p`'s programs take (a `SeedList` if listed)."""
    return unstack(tree, seeds) if p.listed else tree


def as_stacked(p: Programs, tree: Any) -> Any:
    """A result of `p`'s programs with a leading seed axis again."""
    return stack(tree) if p.listed else tree


def replicated(p: Programs, x: jnp.ndarray, seeds: int) -> Any:
    """The same array for every seed, in the form `p`'s programs take."""
    return SeedList([x] * seeds) if p.listed else jnp.broadcast_to(x, (seeds, *x.shape))


def to_host(tree: Any) -> Any:
    """NumPy copies of every leaf, all seeds, on every process: on a multi-host run a leaf's
    seeds live on several hosts and are gathered (every process must call this)."""

    def get(a: Any) -> np.ndarray:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    if isinstance(tree, SeedList):
        return jax.tree_util.tree_map(lambda *xs: np.stack([get(x) for x in xs]), *tree.items)
    return jax.tree_util.tree_map(get, tree)


def shapes_of_one_seed(tree: Any) -> Any:
    """The shapes and dtypes of one seed's leaves (what `make_results` reads of the state)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def _on_all_processes_then_first(check: Callable[[], T], write: Callable[[], None]) -> T:
    """`check` (read-only, may raise) on every process, then `write` on process 0 only; returns
    what `check` returned.

    Every process checks the same files before any is written, so all raise or none do; if
    `write` fails on process 0, every process raises (none waits for it at a barrier)."""
    checked = check()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("gr_jax: run dir checked")
    failed: BaseException | None = None
    if jax.process_index() == 0:
        try:
            write()
        except Exception as e:  # told to the others below, then raised here
            failed = e
    if jax.process_count() > 1:
        ok = multihost_utils.broadcast_one_to_all(np.int32(failed is None))
        if not ok and failed is None:
            raise rundir.RunDirError("process 0 could not prepare the run directory; see its error")
    if failed is not None:
        raise failed
    return checked


def _gan_epoch(
    p: Programs, g: gan.GANState, x, y, n: int, keys, batch: int, per_call: int, on_step
) -> tuple[Any, dict[str, np.ndarray]]:
    """One GAN epoch of every seed; the metrics of its last step, per seed, on the host."""
    perm_keys, step_keys = p.epoch_keys(keys)
    # explicit copies, as in gan.train_epoch: no implicit host<->device copy in an epoch
    s = n_seeds(keys)
    start = (np.int32(0), np.int32(health.NO_BAD_STEP))
    if p.listed:
        cursor = SeedList([start] * s)
    else:
        cursor = tuple(np.full(s, v, np.int32) for v in start)
    n_dev, cursor = jax.device_put((np.int32(n), cursor))
    perm = p.permutations(perm_keys, n_dev)
    m: Any = {}
    for k in gan.call_sizes(n // batch, per_call):
        step = p.gan_step if k == 1 else p.gan_steps
        g, cursor, m = step(g, x, y, perm, cursor, step_keys)
        on_step(k)
    finite = p.all_finite(each(g, lambda gi: (gi.g.params, gi.d.params)))
    bad = each(cursor, lambda c: c[1])
    return g, {**to_host(m), "first_bad_step": to_host(bad), "params_finite": to_host(finite)}


def run_task(
    cfg: Config,
    t: int,
    state: RunState,
    data: TaskData,
    histories: list[dict],
    bars: bool = False,
) -> RunState:
    """`loop.run_task` for all seeds at once (generative replay or fine-tuning); `state`
    holds every seed on a leading axis, `histories` one history per seed."""
    with timing.compile_seconds() as compile_time:
        new_state = _run_phases(cfg, t, state, data, histories, bars)
    for h in histories:
        h["timings"][-1]["compile"] = compile_time[0]  # part of the phases above
    return new_state


def _run_phases(
    cfg: Config, t: int, state: RunState, data: TaskData, histories: list[dict], bars: bool
) -> RunState:
    cap = capacity(cfg, data)
    p = programs(cfg, cap)
    seeds = len(histories)
    # unrolled seeds travel as one tree each (SeedList); stacked again at the end
    state = shard_seeds(state)  # a no-op unless restored from a checkpoint onto a mesh
    state = RunState(
        *(as_programs_take(p, part, seeds) for part in (state.solver, state.gan, state.key))
    )
    key, k_replay, k_solver, k_gan = p.split(state.key)
    timings: dict[str, float] = {}

    faults.point(t, "generate")
    tick = time.perf_counter()
    real_x, real_y = data.train[t]
    x = jnp.asarray(batching.pad_to(real_x, cap))
    y = jnp.asarray(batching.pad_to(real_y, cap))
    n = len(real_y)
    counts = np.zeros((seeds, cfg.num_classes), int)
    if cfg.replay == "generative" and t > 0 and cfg.n_gen > 0:
        gen_x, gen_y = p.generate(each(state.gan, lambda g: g.g), state.solver, k_replay)
        xs, ys = p.mix(x, y, jnp.asarray(n), gen_x, gen_y)
        n += cfg.n_gen
        counts = np.stack([np.bincount(row, minlength=cfg.num_classes) for row in to_host(gen_y)])
    else:
        xs, ys = replicated(p, x, seeds), replicated(p, y, seeds)
    for h, c in zip(histories, counts):
        h["replay_class_counts"].append(c.tolist())
    jax.block_until_ready(xs)
    timings["generate"] = time.perf_counter() - tick

    tick, eval_time = time.perf_counter(), 0.0
    s = state.solver
    for e in tqdm(
        range(cfg.solver_epochs), desc=f"task {t + 1} solver", leave=False, disable=not bars
    ):
        s, m = p.solver_epoch(s, xs, ys, jnp.asarray(n), p.fold_in(k_solver, e))
        jax.block_until_ready(s)
        faults.point(t, "solver")
        tock = time.perf_counter()
        m = to_host(m)
        health.check(m, f"task {t + 1}, solver, epoch {e + 1}")
        val = solver.accuracies(to_host(p.hits(s, data.val_x, data.val_y, data.task_of_class)))
        for i, h in enumerate(histories):
            h["solver_curves"].append(solver_curve(t, e, seed_slice(m, i), val[i]))
        eval_time += time.perf_counter() - tock
    timings["solver"] = time.perf_counter() - tick - eval_time

    tick = time.perf_counter()
    val = solver.accuracies(to_host(p.hits(s, data.val_x, data.val_y, data.task_of_class)))
    test = solver.accuracies(to_host(p.hits(s, data.test_x, data.test_y, data.task_of_class)))
    for i, h in enumerate(histories):
        h["r_val"].append(val[i].tolist())
        h["r_test"].append(test[i].tolist())
    timings["evaluate"] = time.perf_counter() - tick + eval_time

    tick = time.perf_counter()
    g = state.gan
    if loop.trains_gan(cfg, t):
        init_keys, train_keys = p.gan_keys(k_gan)
        epochs = cfg.gen_epochs_for(t)
        total = epochs * (n // cfg.gan_batch)
        g = each(p.new_gans(init_keys), lambda gi: gi.decaying_over(total))
        with tqdm(total=total, desc=f"task {t + 1} GAN", leave=False, disable=not bars) as bar:
            for e in range(epochs):
                g, m = _gan_epoch(
                    p,
                    g,
                    xs,
                    ys,
                    n,
                    p.fold_in(train_keys, e),
                    cfg.gan_batch,
                    gan.scan_steps(cfg.gan_scan),
                    bar.update,
                )
                health.check(m, f"task {t + 1}, GAN, epoch {e + 1}")
                faults.point(t, "gan")
                for i, h in enumerate(histories):
                    h["gan_curves"].append(gan_curve(t, e, seed_slice(m, i)))
        jax.block_until_ready(g)
    timings["gan"] = time.perf_counter() - tick

    for h in histories:
        h["timings"].append(dict(timings))
        h["tasks_done"] = t + 1
    return RunState(*(as_stacked(p, part) for part in (s, g, key)))


def run(
    cfg: Config,
    seeds: list[int],
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    bars: bool = True,
    log: bool = False,
) -> list[dict[str, Any]]:
    """All `seeds` of `cfg` in one program; with `out`, a checkpoint after every task, one
    `seed=S/results.json` per seed and `summary.json` (mean and std over seeds); `bars` and
    `log` as in `loop.run` (the line per task gives the mean over seeds)."""
    cfg = validate(replace(cfg, seed=seeds[0]))
    if cfg.replay not in ("generative", "none"):
        raise ConfigError(
            "--seeds runs generative replay or fine-tuning; use a sweep for baselines"
        )
    beyond = {k: v for k, (v, _) in diff(cfg, replace(cfg, **BEYOND_OFF)).items()}
    unknown = set(Config.__dataclass_fields__) - SUPPORTED - set(BEYOND_OFF)
    beyond.update((k, getattr(cfg, k)) for k in unknown if getattr(cfg, k) != getattr(Config(), k))
    if beyond:
        raise ConfigError(
            f"--seeds runs the method with its own settings, not the options beyond it; run "
            f"seeds of {', '.join(sorted(beyond))} one at a time (a sweep over --seeds does that)"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: repeated seeds in {seeds}")
    if len(seeds) % jax.device_count():  # found before a run directory is touched
        raise ConfigError(
            f"{len(seeds)} seeds cannot be split evenly over {jax.device_count()} devices"
        )
    started = time.perf_counter()
    out = Path(out) if out is not None else None
    if out is not None:
        checked = _on_all_processes_then_first(
            lambda: rundir.check(cfg, out, resume, overwrite, seeds), lambda: None
        )
        if resume and (done := _finished(cfg, seeds, out)) is not None:
            return done
    data = prepare_data(cfg)  # before a run dir is replaced: bad data loses no earlier run
    with contextlib.ExitStack() as claim:  # process 0's, held while it runs
        if out is not None:
            _on_all_processes_then_first(
                lambda: None,
                lambda: claim.enter_context(
                    rundir.create(cfg, out, resume, overwrite, seeds, checked)
                ),
            )
            # finished by the process that held it while the data loaded
            if resume and (done := _finished(cfg, seeds, out)) is not None:
                return done
        return _run_tasks(cfg, seeds, out, resume, data, started, bars, log)


def _finished(cfg: Config, seeds: list[int], out: Path) -> list[dict[str, Any]] | None:
    """Every seed's results if the run in `out` is complete (writing its summary.json if a
    kill came before it), else None."""
    done = [rundir.finished_results(replace(cfg, seed=s), out / f"seed={s}") for s in seeds]
    if any(r is None for r in done):
        return None
    tqdm.write(f"{out} is complete; its results are unchanged", file=sys.stderr)
    if rundir.read_json(out / "summary.json") is None and jax.process_index() == 0:
        try:
            rundir.write_json(out / "summary.json", summary(done))  # killed before it
        except OSError as e:  # a read-only archive: the results are still there
            print(f"gr_jax: warning: no summary.json written: {e}", file=sys.stderr)
    return done


def _run_tasks(
    cfg: Config,
    seeds: list[int],
    out: Path | None,
    resume: bool,
    data: TaskData,
    started: float,
    bars: bool,
    log: bool = False,
) -> list[dict[str, Any]]:
    state = shard_seeds(init_states(cfg, seeds))
    p = programs(cfg, capacity(cfg, data))
    solvers = as_programs_take(p, state.solver, len(seeds))
    b_val = solver.accuracies(to_host(p.hits(solvers, data.val_x, data.val_y, data.task_of_class)))
    b_test = solver.accuracies(
        to_host(p.hits(solvers, data.test_x, data.test_y, data.task_of_class))
    )
    histories = [empty_history(b_val[i].tolist(), b_test[i].tolist()) for i in range(len(seeds))]
    state, histories, env = loop.drive(
        cfg,
        out,
        resume,
        state,
        histories,
        lambda t, s, hs: run_task(cfg, t, s, data, hs, bars),
        bars,
        log,
        seeds=True,
    )
    wall = time.perf_counter() - started
    one_seed = shapes_of_one_seed(state)
    resolved = {"seed_axis": seed_axis(cfg)}  # whether each seed is bitwise its own run
    results = [
        make_results(replace(cfg, seed=s), one_seed, histories[i], data, wall, env, resolved)
        for i, s in enumerate(seeds)
    ]
    if out is not None and jax.process_index() == 0:  # one writer on multi-host runs
        for s, r in zip(seeds, results):
            (out / f"seed={s}").mkdir(exist_ok=True)
            rundir.write_json(out / f"seed={s}" / "results.json", r)
        rundir.write_json(out / "summary.json", summary(results))
    return results


def summary(results: list[dict]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of each scalar metric (`metrics.SCALARS`) and of
    every accuracy-matrix entry."""
    out: dict[str, Any] = {"seeds": [r["config"]["seed"] for r in results]}
    for split in ("test", "val"):
        # from the stored matrices, as the sweep's tables: runs from before a metric have it
        values = [metrics.summary(r[f"r_{split}"], r[f"b_{split}"]) for r in results]
        for m in metrics.SCALARS:
            mean, std = metrics.mean_std([v[m] for v in values])
            out[f"{split}_{m}"] = {"mean": mean, "std": std}
        r_all = np.array([r[f"r_{split}"] for r in results])
        out[f"r_{split}"] = {"mean": r_all.mean(0).tolist(), "std": r_all.std(0).tolist()}
    return out
