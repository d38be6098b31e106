"""The solver (an MLP classifier) and the two GANs (MLP and DCGAN-like convolutional).

Images are (N, 28, 28, 1) in [-1, 1]. Generators map latents (N, latent_dim) to images;
discriminators map images to one logit each. With `num_classes > 0` a GAN is class-conditional:
the generator sees a one-hot label next to its latent, and the discriminator adds a projection
term <embed(y), features> to its logit (Miyato & Koyama 2018), which costs almost nothing.

What the GAN step (`gan.gan_step`) and replay (`gan.sample`) ask of a new architecture, added
as a branch of `make_gan` and a name in `config.GANS`:
- the generator is `G(z, y=None, train=bool)` -> (N, 28, 28, 1) in [-1, 1], taking `y` (labels,
  None when unconditional) even if it ignores it; its only mutable collection is
  `batch_stats` (empty without BatchNorm);
- the discriminator is `D(x, y=None)` -> (N,) logits, called with its parameters alone: no
  BatchNorm or other state, and per example, so that `d_chunks` leaves the model unchanged
  (minibatch features `mbstd`/`mbdisc` see each chunk as its own batch);
- convolutions made with `conv(...)` follow `conv_impl`, the seeds-vmapping fast path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gr_jax.config import CONV_IMPLS


class CosineHead(nn.Module):
    """Logits as a learnt scale times the cosine between the features and each class's weight
    vector (Hou et al. 2019): no class can win by the norm of its weights alone, which in a
    class-incremental head grows with how recently the class was trained."""

    num_classes: int
    init_scale: float = 10.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        w = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.num_classes))
        scale = self.param("scale", nn.initializers.constant(self.init_scale), ())
        x = x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)
        return scale * (x @ (w / (jnp.linalg.norm(w, axis=0, keepdims=True) + 1e-6)))


class Solver(nn.Module):
    """MLP classifier with one 10-way head (class-incremental: no task id), linear or (`head`
    "cosine") a `CosineHead`; with `dropout` > 0 each hidden layer's units are dropped at that
    rate in training (`train=True`, which then needs a "dropout" key)."""

    hidden: Sequence[int] = (400, 400)
    num_classes: int = 10
    dropout: float = 0.0
    head: str = "linear"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        if self.head == "cosine":
            return CosineHead(self.num_classes)(x)
        return nn.Dense(self.num_classes)(x)


def depth_to_space(x: jnp.ndarray, r: int = 2) -> jnp.ndarray:
    """(N, H, W, r*r*C) -> (N, r*H, r*W, C): sub-pixel (pixel-shuffle) upsampling."""
    n, h, w, c = x.shape
    c_out = c // (r * r)
    x = x.reshape(n, h, w, r, r, c_out)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * r, w * r, c_out)


def conv_by_slices(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
    """A "SAME"-padded convolution (no bias) as shifted strided slices of `x`, stacked, times
    the kernel reshaped to a matrix: the same math as `lax.conv_general_dilated`.

    Why: vmapped over per-seed weights a convolution becomes a grouped convolution, slow on
    XLA's backends; this form becomes a batched matrix product (`conv_impl="slices"`).
    """
    kh, kw, cin, cout = kernel.shape
    _, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    cols = [
        x[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(cols, -1) @ kernel.reshape(kh * kw * cin, cout)


SPECTRAL_ITERS = 20


def spectral_normalize(w: jnp.ndarray, iters: int = SPECTRAL_ITERS) -> jnp.ndarray:
    """`w` divided by its largest singular value as a matrix (last axis: outputs), for a
    spectrally normalised discriminator (Miyato et al. 2018).

    The singular value comes from `iters` power iterations on the smaller Gram matrix of the
    weights, started afresh from a fixed vector at every call: no state to carry between steps
    (Miyato et al. keep one vector across steps instead), so the layer stays a pure function of
    its parameters. The estimate is never above the true value. As in Miyato et al., gradients
    do not flow through the singular vector, only through sigma = |W v|.
    """
    m = w.reshape(-1, w.shape[-1])
    tall = m.shape[0] >= m.shape[1]
    gram = jax.lax.stop_gradient(m.T @ m if tall else m @ m.T)
    v = jnp.full((gram.shape[0],), gram.shape[0] ** -0.5, w.dtype)
    for _ in range(iters):
        v = gram @ v
        v = v / (jnp.linalg.norm(v) + 1e-12)
    sigma = jnp.linalg.norm(m @ v if tall else v @ m)
    return w / (sigma + 1e-12)


class KernelConv(nn.Module):
    """`nn.Conv` with "SAME" padding (same parameters: names, shapes, initialisers) computed by
    `impl` ("slices": `conv_by_slices`; "xla": XLA's convolution), its kernel spectrally
    normalised first if `spectral`."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    impl: str = "xla"
    spectral: bool = False
    dtype: jnp.dtype | None = None  # computation dtype (parameters stay float32)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        if self.spectral:
            kernel = spectral_normalize(kernel)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.impl == "slices":
            return conv_by_slices(x, kernel, self.strides) + bias
        s = (self.strides, self.strides)
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, s, "SAME", dimension_numbers=dims) + bias


class SpectralDense(nn.Module):
    """`nn.Dense` (same parameters) with its kernel spectrally normalised before use."""

    features: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        shape = (x.shape[-1], self.features)
        kernel = spectral_normalize(self.param("kernel", nn.initializers.lecun_normal(), shape))
        return x @ kernel + self.param("bias", nn.initializers.zeros_init(), (self.features,))


def embed_init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Flax's default embedding initialiser (`nn.linear.default_embed_init`: a normal sample
    times the square root of 1 / fan-in), with the same values whether it runs op by op or
    jitted: in one program XLA fuses the sample with its scale and rounds some entries 1 ulp
    differently, and the initial GANs are made in one program (`gan.create_gan_state`)."""
    fan_in = shape[-2] * (math.prod(shape) / shape[-2] / shape[0])  # as `variance_scaling`
    sample = jax.lax.optimization_barrier(jax.random.normal(key, shape, dtype))
    return sample * jnp.sqrt(jnp.array(1.0 / fan_in, dtype))


class SpectralEmbed(nn.Module):
    """`nn.Embed` (same parameters) with its table spectrally normalised before use."""

    num_embeddings: int
    features: int

    @nn.compact
    def __call__(self, y: jnp.ndarray) -> jnp.ndarray:
        shape = (self.num_embeddings, self.features)
        table = self.param("embedding", embed_init, shape)
        return spectral_normalize(table)[y]


def dense(features: int, name: str, spectral: bool = False) -> nn.Module:
    """A dense layer, spectrally normalised if `spectral`; named explicitly so that both give
    the same parameter tree."""
    return SpectralDense(features, name=name) if spectral else nn.Dense(features, name=name)


def conv(
    features: int,
    kernel: int,
    strides: int,
    impl: str,
    name: str,
    spectral: bool = False,
    dtype: jnp.dtype | None = None,
) -> nn.Module:
    """A "SAME" convolution layer computed by `impl` ("xla": `nn.Conv`, `KernelConv` when
    spectral; "slices":
    `conv_by_slices`) in `dtype` (None: the parameters' float32), spectrally normalised if
    `spectral`, named explicitly so that all give the same parameter tree."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; choose from {CONV_IMPLS}")
    if impl == "xla" and not spectral:
        return nn.Conv(features, (kernel, kernel), strides, padding="SAME", dtype=dtype, name=name)
    return KernelConv(features, (kernel, kernel), strides, impl, spectral, dtype, name=name)


class SubPixelUp(nn.Module):
    """2x upsampling as a stride-1 conv to 4*features channels plus depth-to-space.

    It can express everything a k4 s2 transposed conv can, and its weight gradient is ~2.5x
    faster on XLA's CPU backend (README.md, "Performance notes").
    """

    features: int
    kernel: int = 3
    conv_impl: str = "xla"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = conv(4 * self.features, self.kernel, 1, self.conv_impl, "Conv_0", dtype=self.dtype)(x)
        return depth_to_space(x, 2)


def with_label(z: jnp.ndarray, y: jnp.ndarray | None, num_classes: int) -> jnp.ndarray:
    """The generator's input: the latent, and for a conditional GAN the one-hot label."""
    if num_classes == 0:
        return z
    return jnp.concatenate([z, jax.nn.one_hot(y, num_classes, dtype=z.dtype)], -1)


def projection_logit(
    h: jnp.ndarray,
    y: jnp.ndarray | None,
    num_classes: int,
    dense_name: str,
    spectral: bool = False,
) -> jnp.ndarray:
    """The discriminator's logit from its last features `h` (N, F), plus the projection term
    for a conditional GAN; all spectrally normalised if `spectral`. Called inside a compact
    module."""
    logit = dense(1, dense_name, spectral)(h)[:, 0]
    if num_classes == 0:
        return logit
    if spectral:
        embed = SpectralEmbed(num_classes, h.shape[-1], name="embed")
    else:
        embed = nn.Embed(num_classes, h.shape[-1], embedding_init=embed_init, name="embed")
    return logit + jnp.sum(embed(y) * h, -1)


class ConvGenerator(nn.Module):
    """DCGAN-like: z -> 7x7x(2w) -> 14x14xw -> 28x28x1, BatchNorm + ReLU, tanh output.

    With `dtype` (e.g. bfloat16) the dense layer and convolutions compute in it; parameters,
    BatchNorm and the output image stay float32."""

    width: int = 64
    kernel: int = 3
    num_classes: int = 0
    conv_impl: str = "xla"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(
        self, z: jnp.ndarray, y: jnp.ndarray | None = None, train: bool = True
    ) -> jnp.ndarray:
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        x = nn.Dense(7 * 7 * 2 * self.width, dtype=self.dtype)(with_label(z, y, self.num_classes))
        x = nn.relu(norm()(x)).reshape(z.shape[0], 7, 7, 2 * self.width)
        up = lambda f: SubPixelUp(f, self.kernel, self.conv_impl, self.dtype)  # noqa: E731
        x = nn.relu(norm()(up(self.width)(x)))
        return jnp.tanh(up(1)(x).astype(jnp.float32))


def minibatch_std(x: jnp.ndarray) -> jnp.ndarray:
    """`x` with one more channel (last axis): the mean over features of their standard deviation
    across the batch (Karras et al. 2018). It lets the discriminator see a batch's diversity, so
    a generator that drops modes, and makes too-similar batches, is caught."""
    spread = jnp.mean(jnp.sqrt(jnp.var(x, axis=0) + 1e-8))
    return jnp.concatenate([x, jnp.full((*x.shape[:-1], 1), spread, x.dtype)], -1)


class MinibatchDiscrimination(nn.Module):
    """`h` (N, F) with `kernels` more features: for each image and kernel, its summed closeness
    exp(-L1 distance) to the other images of the batch in a learnt `dims`-dimensional
    projection (Salimans et al. 2016). Unlike the minibatch std (one number for the whole
    batch), each image learns which others it is like: a generator whose images collapse onto
    a few modes makes images with many close neighbours."""

    kernels: int
    dims: int = 5

    @nn.compact
    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
        m = nn.Dense(self.kernels * self.dims, use_bias=False, name="project")(h)
        m = m.reshape(h.shape[0], self.kernels, self.dims)
        closeness = jnp.exp(-jnp.abs(m[:, None] - m[None]).sum(-1))  # (N, N, kernels)
        return jnp.concatenate([h, closeness.sum(1) - 1.0], -1)  # each image's own 1 left out


class ConvDiscriminator(nn.Module):
    """DCGAN-like: 28x28x1 -> 14x14xw -> 7x7x(2w) -> logit, LeakyReLU(0.2), no normalisation
    unless `spectral` (every layer spectrally normalised); with `mbstd`, the 7x7 features get a
    minibatch-std channel before the logit; with `mbdisc` > 0 that many minibatch-discrimination
    features (not spectrally normalised)."""

    width: int = 64
    num_classes: int = 0
    mbstd: bool = False
    mbdisc: int = 0
    conv_impl: str = "xla"
    spectral: bool = False
    dtype: jnp.dtype | None = None  # the convolutions' computation dtype; the logit is float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray | None = None) -> jnp.ndarray:
        for i, features in enumerate((self.width, 2 * self.width)):
            layer = conv(features, 4, 2, self.conv_impl, f"Conv_{i}", self.spectral, self.dtype)
            x = nn.leaky_relu(layer(x), 0.2)
        x = x.astype(jnp.float32)
        if self.mbstd:
            x = minibatch_std(x)
        h = x.reshape(x.shape[0], -1)
        if self.mbdisc:
            h = MinibatchDiscrimination(self.mbdisc)(h)
        return projection_logit(h, y, self.num_classes, "Dense_0", self.spectral)


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
    """784 -> 512 -> 256 -> logit, LeakyReLU(0.2); `mbstd`, `mbdisc` and `spectral` as in the
    conv discriminator."""

    hidden: Sequence[int] = (512, 256)
    num_classes: int = 0
    mbstd: bool = False
    mbdisc: int = 0
    spectral: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, y: jnp.ndarray | None = None) -> jnp.ndarray:
        x = x.reshape(x.shape[0], -1)
        for i, h in enumerate(self.hidden):
            x = nn.leaky_relu(dense(h, f"Dense_{i}", self.spectral)(x), 0.2)
        if self.mbstd:
            x = minibatch_std(x)
        if self.mbdisc:
            x = MinibatchDiscrimination(self.mbdisc)(x)
        return projection_logit(x, y, self.num_classes, f"Dense_{len(self.hidden)}", self.spectral)


def make_gan(
    kind: str,
    width: int = 64,
    *,
    num_classes: int = 0,
    mbstd: bool = False,
    conv_impl: str = "xla",
    spectral: bool = False,
    dtype: str = "float32",
    mbdisc: int = 0,
) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for `kind` "conv" or "mlp"; conditional if num_classes > 0;
    a minibatch-std discriminator if `mbstd`, `mbdisc` minibatch-discrimination kernels, a
    spectrally normalised one if `spectral`; the conv GAN's convolutions by `conv_impl`, its
    heavy layers computed in `dtype`."""
    if kind == "conv":
        compute = None if dtype == "float32" else jnp.dtype(dtype)
        return (
            ConvGenerator(width, num_classes=num_classes, conv_impl=conv_impl, dtype=compute),
            ConvDiscriminator(
                width,
                num_classes=num_classes,
                mbstd=mbstd,
                mbdisc=mbdisc,
                conv_impl=conv_impl,
                spectral=spectral,
                dtype=compute,
            ),
        )
    if kind == "mlp":
        return (
            MLPGenerator(num_classes=num_classes),
            MLPDiscriminator(
                num_classes=num_classes, mbstd=mbstd, mbdisc=mbdisc, spectral=spectral
            ),
        )
    raise ValueError(f"unknown GAN kind {kind!r}")
