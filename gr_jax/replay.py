"""Generative replay: draw images from the previous generator, label them with the previous
solver, and mix them with the new task's real data into fixed-capacity device arrays."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from gr_jax.gan import GenState, sample
from gr_jax.solver import predict


@partial(jax.jit, static_argnames=("n", "latent_dim"))
def sample_and_label(
    g: GenState, solver: TrainState, key: jax.Array, n: int, latent_dim: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`n` generated images and the solver's argmax labels for them."""
    images = sample(g, key, n, latent_dim)
    return images, predict(solver, images)


def generate_replay(
    g: GenState,
    solver: TrainState,
    key: jax.Array,
    n_gen: int,
    latent_dim: int,
    chunk: int,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`n_gen` labelled replay images, drawn in jitted chunks of fixed size `chunk`."""
    n_chunks = -(-n_gen // chunk)
    keys = jax.random.split(key, max(n_chunks, 1))
    parts = [sample_and_label(g, solver, keys[i], chunk, latent_dim) for i in range(n_chunks)]
    if not parts:
        return jnp.zeros((0, 28, 28, 1)), jnp.zeros((0,), jnp.int32)
    images = jnp.concatenate([p[0] for p in parts])[:n_gen]
    labels = jnp.concatenate([p[1] for p in parts])[:n_gen].astype(jnp.int32)
    return images, labels


def stored_replay(
    previous: list[tuple[np.ndarray, np.ndarray]], n: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Real examples of earlier tasks: all of them (`n` None, joint training) or `n` drawn
    uniformly without replacement (exact replay from a buffer of `n` stored images)."""
    x = np.concatenate([p[0] for p in previous])
    y = np.concatenate([p[1] for p in previous])
    if n is None or n >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(y), n, replace=False))
    return x[keep], y[keep]


def pad_to(x: np.ndarray, capacity: int) -> np.ndarray:
    """`x` with zero rows appended up to `capacity` rows."""
    return np.concatenate([x, np.zeros((capacity - len(x), *x.shape[1:]), x.dtype)])


@jax.jit
def mix(
    real_x: jnp.ndarray,
    real_y: jnp.ndarray,
    n_real: jnp.ndarray,
    gen_x: jnp.ndarray,
    gen_y: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Write the generated examples into the padded real arrays right after the `n_real` real ones.

    Shapes stay fixed from task to task (capacity rows, n_gen generated), so nothing recompiles;
    the training loops shuffle the first `n_real + n_gen` rows and never read the padding.
    """
    x = jax.lax.dynamic_update_slice_in_dim(real_x, gen_x, n_real, 0)
    y = jax.lax.dynamic_update_slice_in_dim(real_y, gen_y, n_real, 0)
    return x, y
