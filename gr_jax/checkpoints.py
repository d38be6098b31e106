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

    A field that is None in `target` (`RunState.buffer` unless replay is "buffer") must be None
    in the checkpoint too, or a ValueError says so (Orbax would drop it silently). A checkpoint
    written before such a field existed (`buffer`, added 2026-11-30) restores with it None."""
    if dataclasses.is_dataclass(target):
        fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
        present = {k for k, v in fields.items() if v is not None}
        saved = saved_fields(mngr, tasks_done)
        dropped = sorted(k for k in set(saved) - present if saved[k])
        if dropped:
            raise ValueError(
                f"the checkpoint after task {tasks_done} holds {', '.join(dropped)}, which the "
                f"state it is restored into has not: a run of another config"
            )
        if set(saved) == present != set(fields):
            state, meta = _restore(mngr, tasks_done, {k: fields[k] for k in present})
            return target.replace(**state), meta
    return _restore(mngr, tasks_done, target)


def saved_fields(mngr: ocp.CheckpointManager, tasks_done: int) -> dict[str, bool]:
    """The top-level fields of the state saved after `tasks_done` tasks: whether each holds
    arrays (False: saved as None)."""
    folder = Path(mngr.directory) / str(tasks_done) / "state"
    tree = ocp.StandardCheckpointHandler().metadata(folder).tree
    return {k: v is not None for k, v in tree.items()}


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
