"""Generative replay: draw images from the previous generator, label them with the previous
solver, and mix them with the new task's real data into fixed-capacity device arrays.

Labels are the solver's argmax (the method) and, with a temperature T > 0, also its softened
output distribution softmax(logits / T) for distillation. A conditional generator is asked
for the seen classes in turn, so its replay is balanced by construction (with fresh replay, for
classes drawn uniformly in every step: balanced in expectation)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from gr_jax import health
from gr_jax.batching import valid_permutation
from gr_jax.gan import GenState, balanced_labels, sample
from gr_jax.solver import ReplayLoss, random_shift, train_step


def teacher_targets(
    solver: TrainState, images: jnp.ndarray, temperature: float
) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """The solver's argmax labels for `images` and, if temperature > 0, softmax(logits / T)."""
    logits = solver.apply_fn({"params": solver.params}, images)
    soft = jax.nn.softmax(logits / temperature) if temperature > 0 else None
    return jnp.argmax(logits, -1).astype(jnp.int32), soft


@partial(jax.jit, static_argnames=("n", "latent_dim", "temperature"))
def sample_and_label(
    g: GenState,
    solver: TrainState,
    key: jax.Array,
    n: int,
    latent_dim: int,
    gen_labels: jnp.ndarray | None = None,
    temperature: float = 0.0,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None]:
    """`n` generated images (of classes `gen_labels` if the generator is conditional), the
    solver's argmax labels for them, and its soft targets (None at temperature 0)."""
    images = sample(g, key, n, latent_dim, gen_labels)
    return images, *teacher_targets(solver, images, temperature)


def generate_replay(
    g: GenState,
    solver: TrainState,
    key: jax.Array,
    n_gen: int,
    latent_dim: int,
    chunk: int,
    class_order: jnp.ndarray | None = None,
    n_seen: int = 0,
    temperature: float = 0.0,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None]:
    """`n_gen` labelled replay images, drawn in jitted chunks of fixed size `chunk`; with
    `class_order` (a conditional generator) the first `n_seen` classes of it, balanced.
    Returns (images, labels, soft targets or None)."""
    if n_gen < 1:
        raise ValueError(f"n_gen must be >= 1 to draw replay, got {n_gen}")
    n_chunks = -(-n_gen // chunk)
    keys = jax.random.split(key, n_chunks)
    parts = []
    for i in range(n_chunks):
        ys = None
        if class_order is not None:
            ys = balanced_labels(class_order, n_seen, i * chunk, chunk)
        parts.append(sample_and_label(g, solver, keys[i], chunk, latent_dim, ys, temperature))
    images = jnp.concatenate([p[0] for p in parts])[:n_gen]
    labels = jnp.concatenate([p[1] for p in parts])[:n_gen].astype(jnp.int32)
    soft = jnp.concatenate([p[2] for p in parts])[:n_gen] if temperature > 0 else None
    return images, labels, soft


def stored_replay(
    previous: list[tuple[np.ndarray, np.ndarray]], n: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Real examples of earlier tasks: all of them (`n` None, joint training) or `n` drawn
    uniformly without replacement (exact replay: a perfect generator drawing `n` images)."""
    x = np.concatenate([p[0] for p in previous])
    y = np.concatenate([p[1] for p in previous])
    if n is None or n >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(y), n, replace=False))
    return x[keep], y[keep]


def reservoir_update(buffer: np.ndarray, n_before: int, n_new: int, seed: int) -> np.ndarray:
    """A fixed-size memory after a task of `n_new` examples, numbered n_before, n_before + 1, ...
    after the `n_before` seen earlier. `buffer` holds the numbers of the kept examples (-1: an
    empty slot), a uniform sample of the first `n_before`; the result is a uniform sample of
    min(len(buffer), n_before + n_new) of all of them that keeps no old example the buffer had
    dropped: reservoir sampling, a task at a time (the number of new examples kept is
    hypergeometric, as it is when the examples arrive one by one). Sorted, padded with -1."""
    rng = np.random.default_rng(seed)
    held = buffer[buffer >= 0]
    if len(held) != min(len(buffer), n_before):
        raise ValueError(
            f"buffer holds {len(held)} examples, expected min({len(buffer)}, {n_before})"
        )
    size = min(len(buffer), n_before + n_new)
    k = int(rng.hypergeometric(n_new, n_before, size)) if size else 0
    kept = np.concatenate(
        [rng.choice(held, size - k, replace=False), n_before + rng.choice(n_new, k, replace=False)]
    )
    out = np.full(len(buffer), -1, np.int32)
    out[:size] = np.sort(kept)
    return out


def kept_replay(
    previous: list[tuple[np.ndarray, np.ndarray]], buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The examples of earlier tasks that a `reservoir_update` buffer holds (numbered in task
    order)."""
    keep = buffer[buffer >= 0]
    x = np.concatenate([p[0] for p in previous])
    y = np.concatenate([p[1] for p in previous])
    return x[keep], y[keep]


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


@partial(jax.jit, static_argnames="num_classes")
def soft_rows(
    y: jnp.ndarray, n_real: jnp.ndarray, gen_soft: jnp.ndarray, num_classes: int
) -> jnp.ndarray:
    """Targets for every row of a mix: one-hot labels, with the replay rows (from `n_real` on)
    replaced by the teacher's soft targets."""
    return jax.lax.dynamic_update_slice_in_dim(jax.nn.one_hot(y, num_classes), gen_soft, n_real, 0)


@partial(jax.jit, static_argnames=("batch_size", "latent_dim", "temperature", "shift", "dropout"))
def fresh_step_at(
    state: TrainState,
    teacher: TrainState,
    g: GenState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    perm: jnp.ndarray,
    cursor: tuple[jnp.ndarray, ...],
    key: jax.Array,
    batch_size: int,
    latent_dim: int,
    class_order: jnp.ndarray | None = None,
    n_seen: jnp.ndarray | None = None,
    share: jnp.ndarray | None = None,
    temperature: float = 0.0,
    shift: int = 0,
    dropout: bool = False,
) -> tuple[TrainState, tuple[jnp.ndarray, ...]]:
    """One solver step on half a batch of real images (batch number `step` of `perm`) and half a
    batch of replay drawn afresh from the previous generator `g` and labelled by `teacher`;
    with shift > 0 the whole batch is then translated (`random_shift`; the teacher labels the
    generated images as drawn); with `dropout` the solver's dropout is on.

    `cursor` = (step, first non-finite step, loss sum, accuracy sum) stays on the device.
    (`state` is not donated: at the first step it shares its buffers with `teacher`.)
    """
    step, first_bad, loss_sum, acc_sum = cursor
    half = batch_size // 2
    idx = jax.lax.dynamic_slice_in_dim(perm, step * half, half)
    k_step = jax.random.fold_in(key, step)
    k_z, k_y, k_shift, k_drop = jax.random.split(k_step, 4)
    ys = None
    if class_order is not None:
        ys = class_order[jax.random.randint(k_y, (half,), 0, n_seen)]
    gen_x = sample(g, k_z, half, latent_dim, ys)
    gen_y, gen_soft = teacher_targets(teacher, gen_x, temperature)
    x = jnp.concatenate([images[idx], gen_x])
    y = jnp.concatenate([labels[idx], gen_y])
    soft = None
    if gen_soft is not None:
        soft = jnp.concatenate([jax.nn.one_hot(labels[idx], gen_soft.shape[-1]), gen_soft])
    if shift > 0:
        x = random_shift(k_shift, x, shift)
    is_replay = jnp.arange(2 * half) >= half
    drop_key = k_drop if dropout else None
    loss = ReplayLoss(is_replay, soft, share, temperature or 1.0)
    state, m = train_step(state, x, y, loss, drop_key)
    first_bad = health.note_first_bad(first_bad, step, m["loss"])
    return state, (step + 1, first_bad, loss_sum + m["loss"], acc_sum + m["accuracy"])


def fresh_epoch(
    state: TrainState,
    teacher: TrainState,
    g: GenState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    n_real: int,
    key: jax.Array,
    batch_size: int,
    latent_dim: int,
    *,
    class_order: jnp.ndarray | None = None,
    n_seen: int = 0,
    share: jnp.ndarray | None = None,
    temperature: float = 0.0,
    shift: int = 0,
    dropout: bool = False,
) -> tuple[TrainState, dict]:
    """One solver epoch over the first `n_real` (real) rows with fresh replay in every step:
    n_real // (batch_size // 2) steps, so the last partial half-batch of real rows is left out
    (another in each epoch's shuffle), as in the other epochs' last batch.

    A Python loop of jitted steps: a conv generator inside `lax.fori_loop` loses XLA CPU's fast
    convolutions (measured; the `gan_scan` note in benchmarks/README.md)."""
    perm_key, step_key = jax.random.split(key)
    perm = valid_permutation(perm_key, jnp.asarray(n_real), images.shape[0])
    zero = jnp.zeros((), jnp.float32)
    cursor = (jnp.zeros((), jnp.int32), jnp.asarray(health.NO_BAD_STEP, jnp.int32), zero, zero)
    n_seen_arr = None if class_order is None else jnp.asarray(n_seen)
    steps = n_real // (batch_size // 2)
    for _ in range(steps):
        state, cursor = fresh_step_at(
            state, teacher, g, images, labels, perm, cursor, step_key, batch_size, latent_dim,
            class_order, n_seen_arr, share, temperature, shift, dropout,
        )  # fmt: skip
    n = max(steps, 1)
    return state, {
        "loss": cursor[2] / n,
        "accuracy": cursor[3] / n,
        "first_bad_step": cursor[1],
        "params_finite": health.all_finite(state.params),
    }
