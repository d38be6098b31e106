"""Reading finished (or partial) run directories: config, results, per-task train states.

A run of seeds in one program (`--seeds`) is read one seed at a time (`seed`, default its
first); its folder or one of its `seed=S` folders may be given. A run cut short (no
results.json yet) is read from its last checkpoint's history."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gr_jax import checkpoints, gan, metrics, multiseed, rundir, solver
from gr_jax.config import Config
from gr_jax.loop import RunState, init_state
from gr_jax.tasks import class_order, n_seen

_SEED_DIR = re.compile(r"seed=(-?\d+)")


def newest_run(runs_dir: str | Path) -> Path:
    """The run folder (one holding a config.json) directly in `runs_dir` that started last."""
    found = list(Path(runs_dir).glob("*/config.json"))
    if not found:
        raise FileNotFoundError(f"no run folder (one with a config.json) in {runs_dir}")
    return max(found, key=lambda p: p.stat().st_mtime).parent


def _top(run_dir: str | Path) -> tuple[Path, int | None]:
    """(the run's folder, the seed its `seed=S` folder names if `run_dir` is one, else None)."""
    path = Path(run_dir)
    named = _SEED_DIR.fullmatch(path.name)
    if named and not (path / "config.json").exists() and (path.parent / "seeds.json").exists():
        return path.parent, int(named[1])
    return path, None


def _config(top: Path) -> Config:
    return Config.from_dict(json.loads((top / "config.json").read_text()))


def run_seeds(run_dir: str | Path) -> list[int] | None:
    """The seeds of a run of seeds in one program (its seeds.json); None for a single seed."""
    return rundir.read_json(_top(run_dir)[0] / "seeds.json")


def locate(run_dir: str | Path, seed: int | None = None) -> tuple[Path, int | None]:
    """(the run's folder, the seed to read): None for a single-seed run; for a run of seeds in
    one program `seed`, else the one its `seed=S` folder names, else its first."""
    top, named = _top(run_dir)
    if named is not None and seed is not None and seed != named:
        raise ValueError(f"{run_dir} holds seed {named}, not seed {seed}")
    seed = named if seed is None else seed
    seeds = run_seeds(top)
    if seeds is None:
        if seed is not None and seed != _config(top).seed:
            raise ValueError(f"{top} is a run of seed {_config(top).seed} only, not {seed}")
        return top, None
    if seed is not None and seed not in seeds:
        raise ValueError(f"{top} holds seeds {seeds}, not seed {seed}")
    return top, seeds[0] if seed is None else seed


def load_config(run_dir: str | Path, seed: int | None = None) -> Config:
    """The run's config (of a run of seeds in one program, seed `seed`'s: see `locate`)."""
    top, seed = locate(run_dir, seed)
    cfg = _config(top)
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)


def load_results(run_dir: str | Path, seed: int | None = None) -> dict[str, Any]:
    """results.json; for a run cut short, `partial_results` from its last checkpoint."""
    top, seed = locate(run_dir, seed)
    results = rundir.read_json(
        top / "results.json" if seed is None else top / f"seed={seed}/results.json"
    )
    return results if isinstance(results, dict) else partial_results(top, seed)


def partial_results(run_dir: str | Path, seed: int | None = None) -> dict[str, Any]:
    """What results.json will hold, as far as the last checkpoint's history goes (JSON types):
    `config`, the history (`tasks_done`, matrices with a row per task done, curves, replay counts,
    timings) and `test`/`val`: ACC, BWT and FWT over the tasks done."""
    top, seed = locate(run_dir, seed)
    with checkpoints.manager(top) as mngr:
        done = checkpoints.latest(mngr)
        if done is None:
            raise FileNotFoundError(
                f"{top} has no results.json and no checkpoint: its run ended before its first task"
            )
        meta = mngr.restore(done, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    history = meta if seed is None else meta["histories"][run_seeds(top).index(seed)]
    k = history["tasks_done"]
    so_far = {
        split: metrics.summary(np.asarray(history[f"r_{split}"])[:, :k], history[f"b_{split}"][:k])
        for split in ("test", "val")
    }
    config = json.loads(json.dumps(load_config(top, seed).to_dict()))  # as in results.json
    return {"config": config, **so_far, **history}


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run of seeds in one program: its summary.json (mean and std over seeds), or for a run
    cut short the same over the seeds' `partial_results`."""
    top, _ = locate(run_dir)
    seeds = run_seeds(top)
    if seeds is None:
        raise ValueError(f"{top} is a run of one seed, not of seeds in one program")
    found = rundir.read_json(top / "summary.json")
    if isinstance(found, dict):
        return found
    return multiseed.summary([load_results(top, s) for s in seeds])


def task_states(run_dir: str | Path, seed: int | None = None) -> dict[int, RunState]:
    """The state saved after each finished task: {tasks_done: RunState} (of seed `seed` of a
    run of seeds in one program)."""
    top, seed = locate(run_dir, seed)
    cfg, seeds = load_config(top, seed), run_seeds(top)
    target = init_state(cfg) if seed is None else multiseed.init_states(cfg, seeds)
    with checkpoints.manager(top) as mngr:
        states = {s: checkpoints.restore(mngr, s, target)[0] for s in mngr.all_steps()}
    if seed is None:
        return states
    return {s: multiseed.seed_slice(state, seeds.index(seed)) for s, state in states.items()}


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
