"""The solver (an MLP classifier) and the two GANs (MLP and DCGAN-like convolutional).

Images are (N, 28, 28, 1) in [-1, 1]. Generators map latents (N, latent_dim) to images;
discriminators map images to one logit each. With `num_classes > 0` a GAN is class-conditional:
the generator sees a one-hot label next to its latent, and the discriminator adds a projection
term <embed(y), features> to its logit (Miyato & Koyama 2018), which costs almost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Solver(nn.Module):
    """MLP classifier with one 10-way head (class-incremental: no task id)."""

    hidden: Sequence[int] = (400, 400)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.num_classes)(x)


def depth_to_space(x: jnp.ndarray, r: int = 2) -> jnp.ndarray:
    """(N, H, W, r*r*C) -> (N, r*H, r*W, C): sub-pixel (pixel-shuffle) upsampling."""
    n, h, w, c = x.shape
    c_out = c // (r * r)
    x = x.reshape(n, h, w, r, r, c_out)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * r, w * r, c_out)


class SubPixelUp(nn.Module):
    """2x upsampling as a stride-1 conv to 4*features channels plus depth-to-space.

    It can express everything a k4 s2 transposed conv can, and its weight gradient is ~2.5x
    faster on XLA's CPU backend (README.md, "Performance notes").
    """

    features: int
    kernel: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.Conv(4 * self.features, (self.kernel, self.kernel), padding="SAME")(x)
        return depth_to_space(x, 2)


def with_label(z: jnp.ndarray, y: jnp.ndarray | None, num_classes: int) -> jnp.ndarray:
    """The generator's input: the latent, and for a conditional GAN the one-hot label."""
    if num_classes == 0:
        return z
    return jnp.concatenate([z, jax.nn.one_hot(y, num_classes, dtype=z.dtype)], -1)


def projection_logit(
    h: jnp.ndarray, y: jnp.ndarray | None, num_classes: int, name: str = "embed"
) -> jnp.ndarray:
    """The discriminator's logit from its last features `h` (N, F), plus the projection term
    for a conditional GAN. Called inside a compact module."""
    logit = nn.Dense(1)(h)[:, 0]
    if num_classes == 0:
        return logit
    return logit + jnp.sum(nn.Embed(num_classes, h.shape[-1], name=name)(y) * h, -1)


class ConvGenerator(nn.Module):
    """DCGAN-like: z -> 7x7x(2w) -> 14x14xw -> 28x28x1, BatchNorm + ReLU, tanh output."""

    width: int = 64
    kernel: int = 3
    num_classes: int = 0

    @nn.compact
    def __call__(
        self, z: jnp.ndarray, y: jnp.ndarray | None = None, train: bool = True
    ) -> jnp.ndarray:
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        x = nn.Dense(7 * 7 * 2 * self.width)(with_label(z, y, self.num_classes))
        x = nn.relu(norm()(x)).reshape(z.shape[0], 7, 7, 2 * self.width)
        x = nn.relu(norm()(SubPixelUp(self.width, self.kernel)(x)))
        return jnp.tanh(SubPixelUp(1, self.kernel)(x))


def minibatch_std(x: jnp.ndarray) -> jnp.ndarray:
    """`x` with one more channel (last axis): the mean over features of their standard deviation
    across the batch (Karras et al. 2018). It lets the discriminator see a batch's diversity, so
    a generator that drops modes, and makes too-similar batches, is caught."""
    spread = jnp.mean(jnp.sqrt(jnp.var(x, axis=0) + 1e-8))
    return jnp.concatenate([x, jnp.full((*x.shape[:-1], 1), spread, x.dtype)], -1)


class ConvDiscriminator(nn.Module):
    """DCGAN-like: 28x28x1 -> 14x14xw -> 7x7x(2w) -> logit, LeakyReLU(0.2), no normalisation;
    with `mbstd`, the 7x7 features get a minibatch-std channel before the logit."""

    width: int = 64
    num_classes: int = 0
    mbstd: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray | None = None) -> jnp.ndarray:
        x = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=2, padding="SAME")(x), 0.2)
        x = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=2, padding="SAME")(x), 0.2)
        if self.mbstd:
            x = minibatch_std(x)
        return projection_logit(x.reshape(x.shape[0], -1), y, self.num_classes)


class MLPGenerator(nn.Module):
    """z -> 256 -> 512 -> 784, LeakyReLU(0.2), tanh output."""

    hidden: Sequence[int] = (256, 512)
    num_classes: int = 0

    @nn.compact
    def __call__(
        self, z: jnp.ndarray, y: jnp.ndarray | None = None, train: bool = True
    ) -> jnp.ndarray:
        x = with_label(z, y, self.num_classes)
        for h in self.hidden:
            x = nn.leaky_relu(nn.Dense(h)(x), 0.2)
        return jnp.tanh(nn.Dense(28 * 28)(x)).reshape(z.shape[0], 28, 28, 1)


class MLPDiscriminator(nn.Module):
    """784 -> 512 -> 256 -> logit, LeakyReLU(0.2); `mbstd` as in the conv discriminator."""

    hidden: Sequence[int] = (512, 256)
    num_classes: int = 0
    mbstd: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray | None = None) -> jnp.ndarray:
        x = x.reshape(x.shape[0], -1)
        for h in self.hidden:
            x = nn.leaky_relu(nn.Dense(h)(x), 0.2)
        if self.mbstd:
            x = minibatch_std(x)
        return projection_logit(x, y, self.num_classes)


def make_gan(
    kind: str, width: int = 64, num_classes: int = 0, mbstd: bool = False
) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for `kind` "conv" or "mlp"; conditional if num_classes > 0;
    a minibatch-std discriminator if `mbstd`."""
    if kind == "conv":
        return (
            ConvGenerator(width, num_classes=num_classes),
            ConvDiscriminator(width, num_classes=num_classes, mbstd=mbstd),
        )
    if kind == "mlp":
        return (
            MLPGenerator(num_classes=num_classes),
            MLPDiscriminator(num_classes=num_classes, mbstd=mbstd),
        )
    raise ValueError(f"unknown GAN kind {kind!r}")
