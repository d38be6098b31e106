"""Orbax checkpoints, one per finished task: train states, PRNG key and the history so far.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so an
interrupted write never damages an earlier checkpoint and is never picked up as the latest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


def manager(run_dir: str | Path) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        Path(run_dir).absolute() / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False, cleanup_tmp_directories=True
        ),
        item_names=("state", "meta"),
    )


def save(mngr: ocp.CheckpointManager, tasks_done: int, state: Any, meta: dict) -> None:
    """Checkpoint after `tasks_done` tasks: `state` is a pytree of arrays, `meta` JSON-able."""
    mngr.save(
        tasks_done,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    )
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, tasks_done: int, target: Any) -> tuple[Any, dict]:
    """The (state, meta) saved after `tasks_done` tasks; `target` gives the state's structure.

    A checkpoint written before a field of `target` existed that is None in it (`RunState.buffer`,
    added 2026-11-30) restores too, with that field None."""
    try:
        return _restore(mngr, tasks_done, target)
    except ValueError as e:
        if "structures do not match" not in str(e):
            raise
        if not dataclasses.is_dataclass(target):
            raise
        fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
        if None not in fields.values():
            raise
    state, meta = _restore(mngr, tasks_done, {k: v for k, v in fields.items() if v is not None})
    return target.replace(**state), meta


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
