"""Orbax checkpoints, one per finished task: train states, PRNG key and the history so far.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so an
interrupted write never damages an earlier checkpoint and is never picked up as the latest.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gr_jax.rundir import RunDirError


class CheckpointError(RunDirError, ValueError):
    """A checkpoint that cannot be restored into the state of the run resuming it: written by
    another config or another version of the code, or damaged."""


def manager(run_dir: str | Path) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        Path(run_dir).absolute() / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, cleanup_tmp_directories=True
        ),
        item_names=("state", "meta"),
    )


@contextlib.contextmanager
def opened(run_dir: str | Path | None) -> Iterator[ocp.CheckpointManager | None]:
    """`manager(run_dir)` (None without a run directory), closed however the block ends: an
    open manager's threads would print errors at exit after a failure."""
    if run_dir is None:
        yield None
        return
    with manager(run_dir) as mngr:
        yield mngr


def save(mngr: ocp.CheckpointManager, tasks_done: int, state: Any, meta: dict) -> None:
    """Checkpoint after `tasks_done` tasks: `state` is a pytree of arrays, `meta` JSON-able."""
    mngr.save(
        tasks_done,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    )
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, tasks_done: int, target: Any) -> tuple[Any, dict]:
    """The (state, meta) saved after `tasks_done` tasks; `target` gives the state's structure.

    A field that is None in `target` (`RunState.buffer` unless replay is "buffer") must be None
    in the checkpoint too, or a CheckpointError says so (Orbax would drop it silently). A checkpoint
    written before such a field existed (`buffer`, added 2026-11-30) restores with it None.
    Any failure is a CheckpointError that says what to do, not Orbax's traceback."""
    try:
        return _restore_into(mngr, tasks_done, target)
    except CheckpointError:
        raise
    except Exception as e:  # Orbax's and TensorStore's: another tree, other shapes, bad files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if len(first) > 300:
            first = first[:300] + " ..."
        folder = Path(mngr.directory) / str(tasks_done)
        raise CheckpointError(
            f"the checkpoint after task {tasks_done} ({folder}) does not restore into this "
            f"run's state ({type(e).__name__}: {first}): it was written by another config or "
            f"version of gr_jax, or it is damaged. Start the run again with --overwrite, or, "
            f"if only this checkpoint is damaged, move {folder} aside to resume from the one "
            f"before"
        ) from e


def _restore_into(mngr: ocp.CheckpointManager, tasks_done: int, target: Any) -> tuple[Any, dict]:
    tree = _saved_tree(mngr, tasks_done)
    into = target  # what Orbax restores: the target, or its fields the checkpoint holds
    if dataclasses.is_dataclass(target):
        fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
        present = {k for k, v in fields.items() if v is not None}
        saved = {k: v is not None for k, v in tree.items()}
        dropped = sorted(k for k in set(saved) - present if saved[k])
        if dropped:
            raise CheckpointError(
                f"the checkpoint after task {tasks_done} holds {', '.join(dropped)}, which the "
                f"state it is restored into has not: a run of another config"
            )
        if set(saved) == present != set(fields):
            into = {k: fields[k] for k in present}
    _check_shapes(tree, into, tasks_done, Path(mngr.directory) / str(tasks_done))
    state, meta = _restore(mngr, tasks_done, into)
    return (state if into is target else target.replace(**state)), meta


def _check_shapes(tree: Any, target: Any, tasks_done: int, folder: Path) -> None:
    """A CheckpointError if the saved arrays' names or shapes (`tree`, the checkpoint's
    metadata) differ from `target`'s: found before Orbax starts reads that fail noisily (a
    model of another size)."""

    def name(path: tuple) -> str:
        return ".".join(
            str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path
        )

    want = {name(p): np.shape(x) for p, x in jax.tree_util.tree_flatten_with_path(target)[0]}
    have = {m.name: tuple(m.shape) for m in jax.tree_util.tree_leaves(tree) if hasattr(m, "shape")}
    wrong = [
        f"{k}: saved {have.get(k, 'nothing')}, now {want.get(k, 'nothing')}"
        for k in sorted(set(want) | set(have))
        if have.get(k) != want.get(k)
    ]
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise CheckpointError(
            f"the checkpoint after task {tasks_done} ({folder}) holds arrays this run's state "
            f"has not ({'; '.join(wrong[:3])}{more}): it was written by another config or "
            f"version of gr_jax. Start the run again with --overwrite"
        )


def _saved_tree(mngr: ocp.CheckpointManager, tasks_done: int) -> Any:
    """The metadata tree of the state saved after `tasks_done` tasks (names, shapes; no data)."""
    return (
        ocp.StandardCheckpointHandler()
        .metadata(Path(mngr.directory) / str(tasks_done) / "state")
        .tree
    )


def saved_fields(mngr: ocp.CheckpointManager, tasks_done: int) -> dict[str, bool]:
    """The top-level fields of the state saved after `tasks_done` tasks: whether each holds
    arrays (False: saved as None)."""
    return {k: v is not None for k, v in _saved_tree(mngr, tasks_done).items()}


def _restore(mngr: ocp.CheckpointManager, tasks_done: int, target: Any) -> tuple[Any, dict]:
    out = mngr.restore(
        tasks_done,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
    )
    return out.state, out.meta


def latest(mngr: ocp.CheckpointManager) -> int | None:
    """Number of tasks done in the newest complete checkpoint, or None."""
    return mngr.latest_step()


def latest_in(run_dir: str | Path) -> int | None:
    """`latest` from the folder names alone (Orbax renames a checkpoint to its step when it is
    complete), without a manager, whose start-up clean-up thread could outlive a process that
    is about to exit."""
    folder = Path(run_dir) / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=None)
