"""The solver's pure train and eval steps.

`apply_model` returns gradients and metrics, `update_model` applies them (as in Flax's
MNIST example); `train_epoch` runs a whole epoch as one jitted `lax.fori_loop` over batches
gathered by index from data that stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training.train_state import TrainState

from gr_jax import health
from gr_jax.batching import valid_permutation
from gr_jax.models import Solver


@cache
def _solver_parts(
    hidden: tuple[int, ...], lr: float, dropout: float, head: str
) -> tuple[Solver, optax.GradientTransformation, Callable[[jax.Array], Any]]:
    """The module, its optimizer and its jitted initialiser, made once per setting: module and
    optimizer are static parts of the train state, so fresh (unequal) instances in every run
    would recompile every jitted solver function in the next run of the same process (a sweep,
    a benchmark, the tests); the initialiser is one program instead of many small ones."""
    model = Solver(hidden, dropout=dropout, head=head)
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 28, 28, 1)))["params"])
    return model, optax.adam(lr), init


def create_solver_state(
    key: jax.Array, hidden: tuple[int, ...], lr: float, dropout: float = 0.0, head: str = "linear"
) -> TrainState:
    """A freshly initialised solver and its Adam."""
    model, tx, init = _solver_parts(tuple(hidden), lr, dropout, head)
    return TrainState.create(apply_fn=model.apply, params=init(key), tx=tx)


class ReplayLoss(struct.PyTreeNode):
    """How replayed examples enter the solver's loss (`soft` and `share` optional; pass no
    ReplayLoss at all for the method's plain mean cross-entropy over hard labels).

    soft: (B, C) teacher targets, distilled at `temperature` on replayed rows (x T^2, Hinton
        et al. 2015, so gradients keep their scale);
    is_replay: (B,) which rows are replay;
    share: weight of the replay rows' mean loss against the current task's mean loss.
    """

    is_replay: jnp.ndarray
    soft: jnp.ndarray | None = None
    share: jnp.ndarray | None = None
    temperature: float = struct.field(pytree_node=False, default=1.0)

    def loss(self, logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        if self.soft is not None:
            t = self.temperature
            distil = t * t * optax.softmax_cross_entropy(logits / t, self.soft)
            losses = jnp.where(self.is_replay, distil, losses)
        if self.share is None:
            return losses.mean()
        r = self.is_replay.astype(losses.dtype)
        n_replay, n_current = r.sum(), (1 - r).sum()
        replay = (losses * r).sum() / jnp.maximum(n_replay, 1.0)
        current = (losses * (1 - r)).sum() / jnp.maximum(n_current, 1.0)
        # a batch without one of the two parts puts all the weight on the other
        share = jnp.where(n_replay == 0, 0.0, jnp.where(n_current == 0, 1.0, self.share))
        return share * replay + (1 - share) * current


def apply_model(
    state: TrainState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    replay: ReplayLoss | None = None,
    dropout_key: jax.Array | None = None,
) -> tuple[Any, jnp.ndarray, jnp.ndarray]:
    """Gradients of the mean cross-entropy (or of `replay`'s loss), the loss and the accuracy
    on one batch; with `dropout_key` the solver runs in training mode (its dropout on)."""

    def loss_fn(params):
        train = {} if dropout_key is None else {"train": True, "rngs": {"dropout": dropout_key}}
        logits = state.apply_fn({"params": params}, images, **train)
        if replay is not None:
            return replay.loss(logits, labels), logits
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return grads, loss, accuracy


def update_model(state: TrainState, grads: Any) -> TrainState:
    return state.apply_gradients(grads=grads)


@jax.jit
def train_step(
    state: TrainState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    replay: ReplayLoss | None = None,
    dropout_key: jax.Array | None = None,
) -> tuple[TrainState, dict]:
    grads, loss, accuracy = apply_model(state, images, labels, replay, dropout_key)
    return update_model(state, grads), {"loss": loss, "accuracy": accuracy}


def random_shift(key: jax.Array, images: jnp.ndarray, max_shift: int) -> jnp.ndarray:
    """Each image translated by its own random offset in [-max_shift, max_shift] pixels along
    each axis, its border pixels (the background) repeated into what is shifted in:
    augmentation that covers more of each class's positions than the generator draws (and the
    current task's real images hold)."""
    if max_shift == 0:
        return images
    n, h, w, c = images.shape
    m = max_shift
    padded = jnp.pad(images, ((0, 0), (m, m), (m, m), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (n, 2), 0, 2 * m + 1)

    def crop(image: jnp.ndarray, offset: jnp.ndarray) -> jnp.ndarray:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


class ReplayRows(struct.PyTreeNode):
    """Which rows of a training set are replay (from `n_real` on), their soft targets (rows of
    `soft`, None for hard labels), and the loss weighting (see ReplayLoss)."""

    n_real: jnp.ndarray
    soft: jnp.ndarray | None = None
    share: jnp.ndarray | None = None
    temperature: float = struct.field(pytree_node=False, default=1.0)

    def batch(self, idx: jnp.ndarray) -> ReplayLoss:
        soft = None if self.soft is None else self.soft[idx]
        return ReplayLoss(idx >= self.n_real, soft, self.share, self.temperature)


@partial(jax.jit, static_argnames=("batch_size", "shift", "dropout"), donate_argnames="state")
def train_epoch(
    state: TrainState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    n_valid: jnp.ndarray,
    key: jax.Array,
    batch_size: int,
    replay: ReplayRows | None = None,
    shift: int = 0,
    dropout: bool = False,
) -> tuple[TrainState, dict]:
    """One epoch over the first `n_valid` rows of (images, labels), shuffled, last batch dropped;
    each batch randomly translated by up to `shift` pixels (`random_shift`) if shift > 0, and
    the solver's dropout on (its own key every step) if `dropout`. It donates `state`'s
    buffers (updated in place): use the returned state; `state` is deleted."""
    shift_key = drop_key = None
    if shift > 0:  # the order of these splits is part of every recorded result: add new ones after
        key, shift_key = jax.random.split(key)
    if dropout:
        key, drop_key = jax.random.split(key)
    perm = valid_permutation(key, n_valid, images.shape[0])
    n_steps = n_valid // batch_size

    def body(i, carry):
        state, loss_sum, acc_sum, first_bad = carry
        idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
        batch_replay = None if replay is None else replay.batch(idx)
        x = images[idx]
        if shift > 0:
            x = random_shift(jax.random.fold_in(shift_key, i), x, shift)
        step_drop_key = None if drop_key is None else jax.random.fold_in(drop_key, i)
        state, m = train_step(state, x, labels[idx], batch_replay, step_drop_key)
        first_bad = health.note_first_bad(first_bad, i, m["loss"])
        return state, loss_sum + m["loss"], acc_sum + m["accuracy"], first_bad

    zero = jnp.zeros((), jnp.float32)
    carry = (state, zero, zero, jnp.asarray(health.NO_BAD_STEP))
    state, loss_sum, acc_sum, first_bad = jax.lax.fori_loop(0, n_steps, body, carry)
    steps = jnp.maximum(n_steps, 1)
    return state, {
        "loss": loss_sum / steps,
        "accuracy": acc_sum / steps,
        "first_bad_step": first_bad,
        "params_finite": health.all_finite(state.params),
    }


@jax.jit
def predict(state: TrainState, images: jnp.ndarray) -> jnp.ndarray:
    """The solver's labels (argmax of its logits) for a batch of images."""
    return jnp.argmax(state.apply_fn({"params": state.params}, images), -1)


@partial(jax.jit, static_argnames="num_tasks")
def task_hits(
    state: TrainState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    task_of_class: jnp.ndarray,
    num_tasks: int,
) -> jnp.ndarray:
    """Integer counts (2, num_tasks): correct 10-way predictions and examples, per task.

    Counts are exact whatever the summation order (batched over seeds or not), so accuracies
    computed from them are identical wherever the predictions are.
    """
    correct = (predict(state, images) == labels).astype(jnp.int32)
    task = task_of_class[labels]
    hits = jax.ops.segment_sum(correct, task, num_tasks)
    counts = jax.ops.segment_sum(jnp.ones_like(correct), task, num_tasks)
    return jnp.stack([hits, counts])


def accuracies(hits: jnp.ndarray) -> np.ndarray:
    """Accuracy per task (float64, on the host) from `task_hits` counts (..., 2, num_tasks)."""
    h = np.asarray(hits, np.float64)
    return h[..., 0, :] / np.maximum(h[..., 1, :], 1.0)


def task_accuracies(
    state: TrainState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    task_of_class: jnp.ndarray,
    num_tasks: int,
) -> np.ndarray:
    """Accuracy (10-way, class-incremental) on each task's examples: a (num_tasks,) vector."""
    return accuracies(task_hits(state, images, labels, task_of_class, num_tasks))
