"""Fixed-capacity training sets: data padded to a capacity that stays the same across tasks (so
nothing recompiles when the number of examples changes), and epochs that shuffle only the
valid rows. Shared by the solver's, the GAN's and fresh replay's epochs."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def pad_to(x: np.ndarray, capacity: int) -> np.ndarray:
    """`x` with zero rows appended up to `capacity` rows."""
    return np.concatenate([x, np.zeros((capacity - len(x), *x.shape[1:]), x.dtype)])


@partial(jax.jit, static_argnames="capacity")
def valid_permutation(key: jax.Array, n_valid: jnp.ndarray, capacity: int) -> jnp.ndarray:
    """A random order of range(capacity) whose first `n_valid` entries permute range(n_valid):
    padding rows sort to the end."""
    u = jax.random.uniform(key, (capacity,))
    u = jnp.where(jnp.arange(capacity) < n_valid, u, 2.0)
    return jnp.argsort(u)
