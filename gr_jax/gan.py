"""The GAN's pure train step (discriminator + generator update) and sampling.

Non-saturating GAN loss (or hinge), Adam. One step draws one batch of latents, updates the
discriminator on real and generated images, then the generator through the *updated*
discriminator, reusing the generator's forward pass (`jax.vjp`) instead of running it twice.
A conditional GAN generates its fakes with the real batch's labels, so both halves of the
discriminator's batch have the same class mix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training.train_state import TrainState

from gr_jax import health
from gr_jax.batching import valid_permutation
from gr_jax.models import make_gan


class GenState(TrainState):
    """Generator train state; `batch_stats` is empty for generators without BatchNorm."""

    batch_stats: Any = None

    def update_ema(self) -> GenState:
        return self


class EMAGenState(GenState):
    """A generator that also keeps `ema_params`, an exponential moving average of its weights
    (decay `ema_decay`) updated after every step; sampling uses it (averaged weights smooth out
    the oscillation of a GAN's last iterate). A subclass, so that runs without an EMA keep the
    state structure, and the checkpoints, they always had."""

    ema_params: Any = None
    ema_decay: float = struct.field(pytree_node=False, default=0.999)

    def update_ema(self) -> EMAGenState:
        d = self.ema_decay
        ema = jax.tree_util.tree_map(
            lambda e, p: d * e + (1.0 - d) * p, self.ema_params, self.params
        )
        return self.replace(ema_params=ema)


class Anchor(struct.PyTreeNode):
    """The previous task's generator, frozen, for replay alignment: the generator in training
    is pulled towards its images for the same latents and old classes, drawn uniformly from
    the first `n_old` entries of `classes` (traced: one program for every task)."""

    params: Any
    batch_stats: Any
    classes: jnp.ndarray
    n_old: jnp.ndarray


class GANState(struct.PyTreeNode):
    """A GAN in training: the generator's and the discriminator's train states, and the static
    settings its step needs (part of the compiled program, not of the pytree's arrays)."""

    g: GenState
    d: TrainState
    latent_dim: int = struct.field(pytree_node=False, default=100)
    d_chunks: int = struct.field(pytree_node=False, default=1)
    num_classes: int = struct.field(pytree_node=False, default=0)  # 0: unconditional
    loss: str = struct.field(pytree_node=False, default="ns")
    # replay alignment (Wu et al. 2018, MeRGAN): weight of the generator's mean squared
    # distance to `anchor`'s images; only while `anchor` is set (never in checkpoints). An
    # anchored state is another pytree, so the GAN step compiles once more, at task 2.
    anchor: Anchor | None = None
    align: float = struct.field(pytree_node=False, default=0.0)
    align_batch: int = struct.field(pytree_node=False, default=0)  # 0: the real batch's size

    def anchored(
        self,
        previous: GenState,
        classes: jnp.ndarray,
        n_old: int,
        weight: float,
        batch: int = 0,
    ) -> GANState:
        """This GAN, aligned with weight `weight` to a copy of generator `previous` on the
        first `n_old` of `classes`, `batch` images a step (0: as many as the real batch)."""
        g = jax.tree_util.tree_map(jnp.copy, (previous.params, previous.batch_stats))
        anchor = Anchor(*g, jnp.asarray(classes, jnp.int32), jnp.asarray(n_old, jnp.int32))
        return self.replace(anchor=anchor, align=weight, align_batch=batch)

    def decaying_over(self, steps: int) -> GANState:
        """This GAN with its learning rates' linear decay (if any) spread over `steps` updates;
        works on a GAN of many seeds too (vmapped: every seed the same `steps`)."""

        def spread(opt_state: Any) -> Any:
            if not (isinstance(opt_state, tuple) and isinstance(opt_state[-1], LinearDecayState)):
                return opt_state
            last = opt_state[-1]
            return (*opt_state[:-1], last._replace(total=jnp.full_like(last.total, steps)))

        g = self.g.replace(opt_state=spread(self.g.opt_state))
        return self.replace(g=g, d=self.d.replace(opt_state=spread(self.d.opt_state)))

    def sample(self, key: jax.Array, n: int, labels: jnp.ndarray | None = None) -> jnp.ndarray:
        """`n` images from this GAN's generator (`sample`; a conditional GAN needs `labels`)."""
        return sample(self.g, key, n, self.latent_dim, labels)

    def unanchored(self) -> GANState:
        """This GAN without replay alignment (as it is checkpointed and replays)."""
        return self.replace(anchor=None, align=0.0, align_batch=0)


class LinearDecayState(NamedTuple):
    count: jnp.ndarray  # updates made
    total: jnp.ndarray  # updates over which the scale falls to its final value


def scale_by_linear_decay(final: float) -> optax.GradientTransformation:
    """Scales updates by a factor falling linearly from 1 to `final` over `total` updates
    (then staying there). `total` is state, not a constant: a task's number of GAN steps
    differs from task to task, and a constant would compile a new program for each one."""

    def init(params: Any) -> LinearDecayState:
        del params
        return LinearDecayState(jnp.zeros([], jnp.int32), jnp.ones([], jnp.int32))

    def update(updates: Any, state: LinearDecayState, params: Any = None):
        del params
        done = jnp.minimum(state.count / jnp.maximum(state.total, 1), 1.0)
        scale = 1.0 - (1.0 - final) * done
        updates = jax.tree_util.tree_map(lambda u: u * scale.astype(u.dtype), updates)
        return updates, state._replace(count=state.count + 1)

    return optax.GradientTransformation(init, update)


def adam(lr: float, beta1: float, lr_final: float = 1.0) -> optax.GradientTransformation:
    """The GAN's Adam; with `lr_final` < 1 its learning rate decays linearly over each task's
    GAN training to that fraction of `lr` (`GANState.decaying_over` says over how many steps)."""
    if lr_final == 1.0:
        return optax.adam(lr, b1=beta1)
    return optax.chain(optax.adam(lr, b1=beta1), scale_by_linear_decay(lr_final))


@functools.cache
def _gan_parts(
    kind: str, width: int, lr: float, beta1: float, d_lr: float, lr_final: float, **arch: Any
) -> tuple[Any, Any, optax.GradientTransformation, optax.GradientTransformation]:
    """Modules (`make_gan(kind, width, **arch)`) and optimizers, made once per setting: they are
    static parts of the train states, so fresh (unequal) instances at every reset would
    recompile every jitted GAN function."""
    gen, disc = make_gan(kind, width, **arch)
    g_tx = adam(lr, beta1, lr_final)
    d_tx = g_tx if d_lr in (0.0, lr) else adam(d_lr, beta1, lr_final)
    return gen, disc, g_tx, d_tx


@functools.cache
def _init_variables(gen: Any, disc: Any, latent_dim: int) -> Callable[[jax.Array], tuple]:
    """The generator's and discriminator's initial variables from a key, as one jitted program
    made once per model: run op by op, the initialisers compile dozens of small programs
    (seconds on a GPU, and again for every new seed count)."""

    def init(key: jax.Array) -> tuple:
        kg, kd = jax.random.split(key)
        y0 = jnp.zeros((1,), jnp.int32)
        g_vars = gen.init(kg, jnp.zeros((1, latent_dim)), y0, train=False)
        return g_vars, disc.init(kd, jnp.zeros((1, 28, 28, 1)), y0)

    return jax.jit(init)


def create_gan_state(
    key: jax.Array,
    kind: str,
    width: int,
    latent_dim: int,
    lr: float,
    beta1: float,
    *,
    d_chunks: int = 1,
    num_classes: int = 0,
    loss: str = "ns",
    ema: float = 0.0,
    mbstd: bool = False,
    conv_impl: str = "xla",
    spectral: bool = False,
    dtype: str = "float32",
    mbdisc: int = 0,
    d_lr: float = 0.0,
    lr_final: float = 1.0,
) -> GANState:
    """A freshly initialised GAN (the method resets the generator before every task): `kind`
    "conv" or "mlp" (`models.make_gan`), `width` the conv GAN's channels (`ConvGenerator`; the
    MLP GAN has fixed widths), `latent_dim` the size of its Gaussian input, both Adams with `lr`
    and `beta1`, the discriminator's batch in `d_chunks` chunks (the same model, rounded
    differently; a run's conv GAN uses 4), conditional on `num_classes` > 0. A run's GANs come
    from `loop.new_gan(cfg, key)`, which passes all of these from a config. With
    `ema` > 0 its generator also keeps an EMA of its weights with that decay; with `mbstd` its
    discriminator sees each batch's feature spread, with `mbdisc` > 0 how close each image is to
    the others (that many kernels), with `spectral` its layers are spectrally normalised;
    `conv_impl` picks how the conv GAN's convolutions are computed (`models.conv`), `dtype` in
    which precision (parameters and optimizer state stay float32). The discriminator's Adam
    uses `d_lr` (0: `lr`); with `lr_final` < 1 both learning rates decay (`adam`)."""
    arch = dict(
        num_classes=num_classes,
        mbstd=mbstd,
        conv_impl=conv_impl,
        spectral=spectral,
        dtype=dtype,
        mbdisc=mbdisc,
    )
    gen, disc, g_tx, d_tx = _gan_parts(kind, width, lr, beta1, d_lr, lr_final, **arch)
    g_vars, d_vars = _init_variables(gen, disc, latent_dim)(key)
    parts = dict(apply_fn=gen.apply, params=g_vars["params"], tx=g_tx)
    batch_stats = g_vars.get("batch_stats", {})
    if ema > 0:
        # a copy: params and ema_params are donated to the step as separate buffers
        ema_params = jax.tree_util.tree_map(jnp.copy, g_vars["params"])
        g = EMAGenState.create(
            **parts, batch_stats=batch_stats, ema_params=ema_params, ema_decay=ema
        )
    else:
        g = GenState.create(**parts, batch_stats=batch_stats)
    d = TrainState.create(apply_fn=disc.apply, params=d_vars["params"], tx=d_tx)
    return GANState(
        g=g, d=d, latent_dim=latent_dim, d_chunks=d_chunks, num_classes=num_classes, loss=loss
    )


def _d_losses(real_logits: jnp.ndarray, fake_logits: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Summed discriminator loss over a chunk: non-saturating ("ns") or hinge."""
    if kind == "hinge":
        return jax.nn.relu(1.0 - real_logits).sum() + jax.nn.relu(1.0 + fake_logits).sum()
    return jax.nn.softplus(-real_logits).sum() + jax.nn.softplus(fake_logits).sum()


def _g_losses(fake_logits: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Summed generator loss over a chunk."""
    if kind == "hinge":
        return -fake_logits.sum()
    return jax.nn.softplus(-fake_logits).sum()


def _sum_over_chunks(fn, chunks: int, *arrays: jnp.ndarray):
    """Sum of `fn` over `chunks` equal slices of `arrays` (leading axis).

    The slices are independent ops inside one XLA program, which the CPU runtime runs side by
    side on its cores: for the discriminator's small convolutions this is ~1.2x faster than one
    big batch. Per-example math is unchanged (D has no batch statistics), except with `d_mbstd`
    or `d_mbdisc`, whose batch features are taken within each chunk: there `d_chunks` is part
    of the model.
    """
    parts = [fn(*xs) for xs in zip(*(jnp.split(a, chunks) for a in arrays))]
    return jax.tree_util.tree_map(lambda *p: sum(p[1:], p[0]), *parts)


def gan_step(
    state: GANState, real: jnp.ndarray, labels: jnp.ndarray, key: jax.Array
) -> tuple[GANState, dict]:
    """One discriminator and one generator update on a batch of real images (and their labels,
    used only by a conditional GAN)."""
    n = real.shape[0]
    if state.anchor is not None:
        key, k_align = jax.random.split(key)
    z = jax.random.normal(key, (n, state.latent_dim))
    y = labels if state.num_classes else None
    if state.anchor is not None:
        z_old, y_old, target = _alignment_batch(state, k_align, state.align_batch or n)
        z, y = jnp.concatenate([z, z_old]), jnp.concatenate([y, y_old])

    def generate_train(params):
        variables = {"params": params, "batch_stats": state.g.batch_stats}
        return state.g.apply_fn(variables, z, y, train=True, mutable=["batch_stats"])

    fake, g_vjp, g_updates = jax.vjp(generate_train, state.g.params, has_aux=True)
    if state.anchor is not None:
        fake, fake_old = fake[:n], fake[n:]
    fake_const = jax.lax.stop_gradient(fake)
    ys = labels if state.num_classes else jnp.zeros((n,), jnp.int32)

    def d_loss_part(params, real_part, fake_part, y_part):
        y_part = y_part if state.num_classes else None
        real_logits = state.d.apply_fn({"params": params}, real_part, y_part)
        fake_logits = state.d.apply_fn({"params": params}, fake_part, y_part)
        loss = _d_losses(real_logits, fake_logits, state.loss) / n
        stats = (jax.nn.sigmoid(real_logits).sum() / n, jax.nn.sigmoid(fake_logits).sum() / n)
        return loss, stats

    d_value_and_grad = jax.value_and_grad(d_loss_part, has_aux=True)
    (d_loss, (d_real, d_fake_p)), d_grads = _sum_over_chunks(
        lambda r, f, yp: d_value_and_grad(state.d.params, r, f, yp),
        state.d_chunks,
        real,
        fake_const,
        ys,
    )
    d = state.d.apply_gradients(grads=d_grads)

    def g_loss_part(images, y_part):
        y_part = y_part if state.num_classes else None
        return _g_losses(d.apply_fn({"params": d.params}, images, y_part), state.loss) / n

    g_value_and_grad = jax.value_and_grad(g_loss_part)
    parts = [
        g_value_and_grad(f, yp)
        for f, yp in zip(jnp.split(fake, state.d_chunks), jnp.split(ys, state.d_chunks))
    ]
    g_loss = sum(p[0] for p in parts)
    cotangent = [p[1] for p in parts]
    metrics = {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake_p}
    if state.anchor is not None:
        align_loss, align_grad = jax.value_and_grad(
            lambda f: state.align * jnp.mean(jnp.square(f - target))
        )(fake_old)
        cotangent.append(align_grad)
        metrics["align_loss"] = align_loss
    (g_grads,) = g_vjp(jnp.concatenate(cotangent))
    g = state.g.apply_gradients(grads=g_grads, batch_stats=g_updates.get("batch_stats", {}))
    g = g.update_ema()
    return state.replace(g=g, d=d), metrics


def _alignment_batch(
    state: GANState, key: jax.Array, n: int
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """`n` latents and old classes, and the anchor's images for them (inference mode, as the
    anchor draws replay). The generator in training draws the same latents and classes next
    to its usual batch, so its BatchNorm sees old classes too."""
    a = state.anchor
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (n, state.latent_dim))
    y = a.classes[jax.random.randint(ky, (n,), 0, a.n_old)]
    variables = {"params": a.params, "batch_stats": a.batch_stats}
    target = state.g.apply_fn(variables, z, y, train=False)
    return z, y, jax.lax.stop_gradient(target)


def step_at(
    state: GANState,
    images: jnp.ndarray,
    labels: jnp.ndarray | None,
    perm: jnp.ndarray,
    cursor: tuple[jnp.ndarray, jnp.ndarray],
    key: jax.Array,
    batch_size: int,
) -> tuple[GANState, tuple[jnp.ndarray, jnp.ndarray], dict]:
    """`gan_step` on batch number `step` of `perm`, gathered on the device.

    `cursor` = (step, first non-finite step) lives on the device and comes back updated, so a
    loop of these calls moves nothing between host and device.
    """
    step, first_bad = cursor
    idx = jax.lax.dynamic_slice_in_dim(perm, step * batch_size, batch_size)
    batch_labels = None if labels is None else labels[idx]
    state, metrics = gan_step(state, images[idx], batch_labels, jax.random.fold_in(key, step))
    first_bad = health.note_first_bad(first_bad, step, metrics["d_loss"], metrics["g_loss"])
    return state, (step + 1, first_bad), metrics


gan_step_at = jax.jit(step_at, static_argnames="batch_size", donate_argnames="state")


@partial(jax.jit, static_argnames=("batch_size", "steps"), donate_argnames="state")
def gan_steps_at(
    state: GANState,
    images: jnp.ndarray,
    labels: jnp.ndarray,
    perm: jnp.ndarray,
    cursor: tuple[jnp.ndarray, jnp.ndarray],
    key: jax.Array,
    batch_size: int,
    steps: int,
) -> tuple[GANState, tuple[jnp.ndarray, jnp.ndarray], dict]:
    """`steps` consecutive `gan_step_at`s as one `lax.scan`: one dispatch instead of `steps`,
    which pays on accelerators, where dispatching a small step costs about as much as running
    it. Same steps, same keys, so the same result as the loop; metrics of the last step."""

    def body(carry, _):
        state, cursor = carry
        return step_at(state, images, labels, perm, cursor, key, batch_size)[:2], None

    # the last step outside the scan, for its metrics without stacking every step's
    (state, cursor), _ = jax.lax.scan(body, (state, cursor), None, length=steps - 1)
    return step_at(state, images, labels, perm, cursor, key, batch_size)


def scan_steps(requested: int) -> int:
    """GAN steps per dispatched program: `requested`, or for 0 (auto) one on CPU, where conv
    nets inside `lax.scan` lose XLA's fast convolutions (16x slower, benchmarks/README.md), and 50
    elsewhere."""
    if requested > 0:
        return requested
    return 1 if jax.default_backend() == "cpu" else 50


def epoch_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(shuffling key, step key) of one GAN epoch; step k's latents use fold_in(step key, k)."""
    perm_key, step_key = jax.random.split(key)
    return perm_key, step_key


def train_epoch(
    state: GANState,
    images: jnp.ndarray,
    labels: jnp.ndarray | None,
    n_valid: int | None,
    key: jax.Array,
    batch_size: int,
    on_step: Callable[[int], Any] | None = None,
    steps_per_call: int = 1,
) -> tuple[GANState, dict]:
    """One epoch over the first `n_valid` rows of `images` (None: all), shuffled, last batch
    dropped; `labels` None for an unconditional GAN.

    A Python loop of jitted programs of `steps_per_call` steps each (the rest one by one, so
    an epoch's length never changes a compiled shape). Metrics are returned as device arrays
    from the last step, so no step waits on the host; `on_step(k)` is told of every k steps.
    Divergence is in the metrics (`first_bad_step`, `params_finite`): `health.check` raises
    on it. The epoch's only host-to-device copies are the explicit ones of its three scalars
    here (with `images` and `labels` already on the device). The steps donate `state`'s
    buffers (updated in place): use the returned state; `state` is deleted.
    """
    n_valid = images.shape[0] if n_valid is None else n_valid
    if n_valid < batch_size:
        raise ValueError(f"an epoch of {n_valid} images has no batch of {batch_size}")
    if batch_size % state.d_chunks:
        raise ValueError(f"batch_size {batch_size} does not split into {state.d_chunks} D chunks")
    if labels is None and state.num_classes:
        raise ValueError("a conditional GAN trains on labelled images: give `labels`")
    # host arrays (a notebook's) go to the device once, not with every step
    images, labels = jnp.asarray(images), None if labels is None else jnp.asarray(labels)
    perm_key, step_key = epoch_keys(key)
    n, start, no_bad = jax.device_put(tuple(map(np.int32, (n_valid, 0, health.NO_BAD_STEP))))
    perm = valid_permutation(perm_key, n, images.shape[0])
    cursor = (start, no_bad)
    metrics: dict = {}
    for k in call_sizes(n_valid // batch_size, steps_per_call):
        args = (state, images, labels, perm, cursor, step_key, batch_size)
        if k == 1:
            state, cursor, metrics = gan_step_at(*args)
        else:
            state, cursor, metrics = gan_steps_at(*args, steps=k)
        if on_step is not None:
            on_step(k)
    params = (state.g.params, state.d.params)
    return state, {
        **metrics,
        "first_bad_step": cursor[1],
        "params_finite": health.all_finite(params),
    }


def call_sizes(steps: int, per_call: int) -> list[int]:
    """`steps` split into calls of `per_call` steps, then single steps for the rest."""
    if per_call <= 1:
        return [1] * steps
    return [per_call] * (steps // per_call) + [1] * (steps % per_call)


@partial(jax.jit, static_argnames=("n", "latent_dim"))
def sample(
    g: GenState, key: jax.Array, n: int, latent_dim: int, labels: jnp.ndarray | None = None
) -> jnp.ndarray:
    """`n` images from the generator in inference mode (BatchNorm running averages); a
    conditional generator needs their `labels`.

    With an EMA the EMA weights are used, and BatchNorm normalises by the batch's own statistics:
    the running averages belong to the raw weights' activations, not to the averaged ones."""
    z = jax.random.normal(key, (n, latent_dim))
    if not isinstance(g, EMAGenState):
        variables = {"params": g.params, "batch_stats": g.batch_stats}
        return g.apply_fn(variables, z, labels, train=False)
    variables = {"params": g.ema_params, "batch_stats": g.batch_stats}
    return g.apply_fn(variables, z, labels, train=True, mutable=["batch_stats"])[0]


def balanced_labels(
    class_order: jnp.ndarray, n_seen: jnp.ndarray | int, start: int, n: int
) -> jnp.ndarray:
    """Labels `start` .. `start + n - 1` of the endless cycle over the first `n_seen` entries
    of `class_order`: any `n_seen` consecutive draws hold every seen class once, so replay is
    balanced. (`class_order` keeps a fixed length, so nothing recompiles as tasks go by.)"""
    return class_order[(start + jnp.arange(n)) % n_seen]
