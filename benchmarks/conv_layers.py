"""Each convolution of the seed preset's conv GAN alone: forward, input gradient and weight
gradient, in JAX (as XLA compiles it under the current XLA_FLAGS) and in PyTorch.

    python benchmarks/conv_layers.py
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \\
        python benchmarks/conv_layers.py      # what `gr-jax run --cpu-convs eigen` sets

Milliseconds per call at batch 64, medians of 7 repetitions of 20 calls after a warm-up;
PyTorch's gradient times are the forward-and-gradient call less its forward. With
`--alternatives`, each layer is also timed in the other forms that compute the same
convolution (below, `ALTERNATIVES`), each checked against XLA's result.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gr_jax.models import conv_by_slices

# name, input height, in channels, out channels, kernel, stride (width 48)
LAYERS = [
    ("G up 1: 3x3 96->192 on 7x7", 7, 96, 192, 3, 1),
    ("G up 2: 3x3 48->4 on 14x14", 14, 48, 4, 3, 1),
    ("D conv 1: 4x4/2 1->48 on 28x28", 28, 1, 48, 4, 2),
    ("D conv 2: 4x4/2 48->96 on 14x14", 14, 48, 96, 4, 2),
]


def median_ms(fn, reps: int = 7, inner: int = 20) -> float:
    fn()
    times = []
    for _ in range(reps):
        tick = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - tick) / inner)
    return float(np.median(times)) * 1e3


def xla_conv(x: jnp.ndarray, w: jnp.ndarray, s: int) -> jnp.ndarray:
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=dims)


def taps_conv(x: jnp.ndarray, w: jnp.ndarray, s: int) -> jnp.ndarray:
    """Stride-1 "SAME" conv, odd kernel: one matmul of every pixel with all taps' weights
    (cin -> kh*kw*cout), then each output pixel sums its neighbours' products (shifted slices).
    A form for layers with few output channels."""
    kh, kw, cin, cout = w.shape
    n, h, wd, _ = x.shape
    z = (x @ w.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)).reshape(n, h, wd, kh, kw, cout)
    z = jnp.pad(z, ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0), (0, 0), (0, 0)))
    return sum(z[:, a : a + h, b : b + wd, a, b] for a in range(kh) for b in range(kw))


def space_to_depth_conv(x: jnp.ndarray, w: jnp.ndarray, s: int) -> jnp.ndarray:
    """Stride-2 "SAME" conv, even kernel k: the padded input's 2x2 blocks as channels, then a
    stride-1 conv with a k/2 kernel (the same weights, rearranged): no strided convolution."""
    kh, kw, cin, cout = w.shape
    n, h, _, _ = x.shape
    oh = -(-h // 2)
    pad = (oh - 1) * 2 + kh - h
    hp = h + pad + (h + pad) % 2
    x = jnp.pad(x, ((0, 0), (pad // 2, hp - h - pad // 2), (pad // 2, hp - h - pad // 2), (0, 0)))
    x = x.reshape(n, hp // 2, 2, hp // 2, 2, cin).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, hp // 2, hp // 2, 4 * cin)
    w = w.reshape(kh // 2, 2, kw // 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    w = w.reshape(kh // 2, kw // 2, 4 * cin, cout)
    dims = ("NHWC", "HWIO", "NHWC")
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dims)
    return y[:, :oh, :oh]


# other forms of each layer, timed with --alternatives: (name, function, applies to (cin, cout, k, s))
ALTERNATIVES = [
    ('im2col matmul (`conv_impl="slices"`)', conv_by_slices, lambda ci, co, k, s: True),
    ("matmul to all taps + shifted sums", taps_conv, lambda ci, co, k, s: s == 1 and k % 2),
    ("space-to-depth + stride-1 conv", space_to_depth_conv, lambda ci, co, k, s: s == 2),
]


def passes(n: int, h: int, cin: int, cout: int, k: int, s: int, form=xla_conv) -> dict:
    """The layer's forward, input gradient and weight gradient at batch `n`, the convolution
    computed by `form`, as jax.vjp computes them: each a function of (the operand that changes
    between calls, a fixed one), with example operands."""
    x = jax.random.normal(jax.random.PRNGKey(0), (n, h, h, cin))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout)) * 0.1
    g = jnp.ones(jax.eval_shape(lambda x, w: xla_conv(x, w, s), x, w).shape)
    return {
        "fwd": (lambda x, w: form(x, w, s), (x, w)),
        "dx": (lambda g, w: jax.vjp(lambda x_: form(x_, w, s), x)[1](g)[0], (g, w)),
        "dw": (lambda g, x: jax.vjp(lambda w_: form(x, w_, s), w)[1](g)[0], (g, x)),
    }


def jax_times(n: int, h: int, cin: int, cout: int, k: int, s: int, form=xla_conv) -> list[float]:
    """fwd, dx and dw ms of the convolution computed by `form` (checked against XLA's)."""
    fns = passes(n, h, cin, cout, k, s, form)
    fwd, (x, w) = fns["fwd"]
    np.testing.assert_allclose(jax.jit(fwd)(x, w), xla_conv(x, w, s), rtol=1e-4, atol=1e-4)
    times = []
    for f, (a, b) in fns.values():
        f = jax.jit(f)
        times.append(median_ms(lambda f=f, a=a, b=b: f(a, b).block_until_ready()))
    return times


def torch_times(n: int, h: int, cin: int, cout: int, k: int, s: int) -> list[float]:
    import torch

    x = torch.randn(n, cin, h, h, requires_grad=True)
    w = (torch.randn(cout, cin, k, k) * 0.1).requires_grad_()
    pad = (k - 1) // 2 if s == 1 else 1  # "SAME" for these shapes
    conv = lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=pad)  # noqa: E731
    g = torch.ones_like(conv())
    with torch.no_grad():
        fwd = median_ms(conv)
    dx = median_ms(lambda: torch.autograd.grad(conv(), x, g))
    dw = median_ms(lambda: torch.autograd.grad(conv(), w, g))
    return [fwd, dx - fwd, dw - fwd]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--alternatives", action="store_true", help="also time other forms")
    args = p.parse_args()
    print("| layer | JAX fwd / dx / dw ms | PyTorch fwd / dx / dw ms |")
    print("|---|---|---|")
    for name, *shape in LAYERS:
        j = jax_times(args.batch, *shape)
        t = None if args.no_torch else torch_times(args.batch, *shape)
        fmt = lambda v: " / ".join(f"{x:.2f}" for x in v) if v else "-"  # noqa: E731
        print(f"| {name} | {fmt(j)} | {fmt(t)} |")
        if args.alternatives:
            for form_name, form, applies in ALTERNATIVES:
                if applies(*shape[1:]):
                    print(f"| ... as {form_name} | {fmt(jax_times(args.batch, *shape, form))} | |")


if __name__ == "__main__":
    main()
