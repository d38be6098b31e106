"""Cheap divergence detection: non-finite losses are noted on the device, step by step, and
read by the host once per epoch, so no step waits on a host sync."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class DivergenceError(FloatingPointError):
    """A loss or parameter became NaN or Inf."""


NO_BAD_STEP = -1


def note_first_bad(first_bad: jnp.ndarray, step: jnp.ndarray, *values: jnp.ndarray) -> jnp.ndarray:
    """`step` if this is the first step whose `values` are not all finite, else `first_bad`."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in values]))
    return jnp.where((first_bad == NO_BAD_STEP) & ~finite, step, first_bad)


@jax.jit
def all_finite(tree: Any) -> jnp.ndarray:
    """True if every leaf of `tree` is finite (one fused device reduction)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def check(metrics: dict, where: str) -> None:
    """Raise DivergenceError naming `where` (task, phase, epoch) and the first bad step.

    With a leading seed axis (many seeds in one program) it also names the seeds that diverged.
    """
    bad = np.atleast_1d(np.asarray(metrics["first_bad_step"]))
    finite = np.atleast_1d(np.asarray(metrics["params_finite"]))
    failed = np.flatnonzero((bad != NO_BAD_STEP) | ~finite)
    if failed.size == 0:
        return
    i = failed[0]
    step = f"step {bad[i] + 1} of the epoch" if bad[i] != NO_BAD_STEP else "the end of the epoch"
    seeds = f" (seed index {', '.join(map(str, failed))})" if bad.size > 1 else ""
    raise DivergenceError(f"{where}{seeds}: loss or parameters became NaN/Inf at {step}")
