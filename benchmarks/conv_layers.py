"""Each convolution of the seed preset's conv GAN alone: forward, input gradient and weight
gradient, in JAX (as XLA compiles it under the current XLA_FLAGS) and in PyTorch.

    python benchmarks/conv_layers.py
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution \\
        python benchmarks/conv_layers.py      # what `gr-jax run --cpu-convs eigen` sets

Milliseconds per call at batch 64, medians of 7 repetitions of 20 calls after a warm-up;
PyTorch's gradient times are the forward-and-gradient call less its forward.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

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


def jax_times(n: int, h: int, cin: int, cout: int, k: int, s: int) -> list[float]:
    x = jax.random.normal(jax.random.PRNGKey(0), (n, h, h, cin))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout)) * 0.1

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=dims)

    fwd = jax.jit(conv)
    g = fwd(x, w) * 0 + 1
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    return [
        median_ms(lambda: fwd(x, w).block_until_ready()),
        median_ms(lambda: dx(x, w, g).block_until_ready()),
        median_ms(lambda: dw(x, w, g).block_until_ready()),
    ]


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
    args = p.parse_args()
    print("| layer | JAX fwd / dx / dw ms | PyTorch fwd / dx / dw ms |")
    print("|---|---|---|")
    for name, *shape in LAYERS:
        j = jax_times(args.batch, *shape)
        t = None if args.no_torch else torch_times(args.batch, *shape)
        fmt = lambda v: " / ".join(f"{x:.2f}" for x in v) if v else "-"  # noqa: E731
        print(f"| {name} | {fmt(j)} | {fmt(t)} |")


if __name__ == "__main__":
    main()
