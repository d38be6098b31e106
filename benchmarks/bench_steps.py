"""Throughput of the jitted train steps: steps/s and samples/s, median of several repetitions.

    python benchmarks/bench_steps.py [--reps 5] [--steps 50] [--batches 64,128] [--json FILE]

Prints one row per (model, batch): the solver step, the MLP GAN step and the conv GAN step
(the `seed` preset's architecture), each run as the training loops run them (the solver as a
jitted `lax.fori_loop` epoch, the GANs as a Python loop of jitted steps over device data).
Also: the conv GAN step's FLOPs per sample (from XLA's cost analysis), its achieved GFLOP/s,
and the machine's measured peak on a large f32 matmul, so the fraction of peak is visible.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from gr_jax import gan, solver
from gr_jax.config import PRESETS
from gr_jax.provenance import environment


def _timed(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def jax_solver_epoch(batch: int, steps: int):
    """A function running one solver epoch of `steps` batches, as the task loop runs it."""
    cfg = PRESETS["seed"]
    n = batch * steps
    x = jax.random.uniform(jax.random.PRNGKey(0), (n, 28, 28, 1)) * 2 - 1
    y = jax.random.randint(jax.random.PRNGKey(1), (n,), 0, 10)
    box = [solver.create_solver_state(jax.random.PRNGKey(2), cfg.solver_hidden, cfg.solver_lr)]

    def epoch():
        box[0], _ = solver.train_epoch(box[0], x, y, jnp.asarray(n), jax.random.PRNGKey(3), batch)
        jax.block_until_ready(box[0])

    return epoch


def jax_gan_epoch(kind: str, batch: int, steps: int):
    """A function running one GAN epoch of `steps` batches, as the task loop runs it."""
    cfg = PRESETS["seed"]
    n = batch * steps
    x = jax.random.uniform(jax.random.PRNGKey(0), (n, 28, 28, 1)) * 2 - 1
    box = [
        gan.create_gan_state(
            jax.random.PRNGKey(2), kind, cfg.gan_width, cfg.latent_dim, cfg.gan_lr, cfg.gan_beta1
        )
    ]

    def epoch():
        box[0], _ = gan.train_epoch(box[0], x, n, jax.random.PRNGKey(3), batch)
        jax.block_until_ready(box[0])

    return epoch


def torch_epoch(model: str, batch: int, steps: int):
    """The PyTorch reference's epoch: shuffled batches sliced from in-memory tensors."""
    import torch
    import torch_reference as ref

    cfg = PRESETS["seed"]
    torch.manual_seed(0)
    n = batch * steps
    x = torch.rand(n, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (n,))
    if model == "solver":
        trainer = ref.SolverTrainer(cfg.solver_hidden, cfg.solver_lr)
    else:
        trainer = ref.GAN(model, cfg.gan_width, cfg.latent_dim, cfg.gan_lr, cfg.gan_beta1)

    def epoch():
        perm = torch.randperm(n)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            if model == "solver":
                trainer.step(x[idx], y[idx])
            else:
                trainer.step(x[idx])

    return epoch


def bench(makers: dict, batch: int, steps: int, reps: int) -> dict[str, float]:
    """Median seconds per epoch for each implementation, repetitions interleaved."""
    epochs = {name: make(batch, steps) for name, make in makers.items()}
    for fn in epochs.values():
        fn()  # warm-up: compiles
    times = {name: [] for name in epochs}
    for _ in range(reps):
        for name, fn in epochs.items():
            times[name].append(_timed(fn))
    return {name: float(np.median(t)) for name, t in times.items()}


def gan_step_flops(kind: str, batch: int) -> float:
    """FLOPs of one D+G update on a batch, from XLA's cost analysis of the compiled step."""
    cfg = PRESETS["seed"]
    state = gan.create_gan_state(
        jax.random.PRNGKey(0), kind, cfg.gan_width, cfg.latent_dim, cfg.gan_lr, cfg.gan_beta1
    )
    real = jnp.zeros((batch, 28, 28, 1))
    compiled = jax.jit(gan.gan_step).lower(state, real, jax.random.PRNGKey(1)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda a, b: a @ b)
    f(a, a).block_until_ready()
    seconds = float(np.median([_timed(lambda: f(a, a).block_until_ready()) for _ in range(reps)]))
    return 2 * n**3 / seconds / 1e9


MODELS = {
    "solver": ("solver (MLP 784-400-400-10)", lambda b, s: jax_solver_epoch(b, s)),
    "mlp": ("MLP GAN", lambda b, s: jax_gan_epoch("mlp", b, s)),
    "conv": ("conv GAN", lambda b, s: jax_gan_epoch("conv", b, s)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="steps per timed repetition")
    p.add_argument("--batches", default="64,128", help="comma-separated batch sizes")
    p.add_argument("--models", default="solver,mlp,conv")
    p.add_argument(
        "--torch", action="store_true", help="also run the PyTorch reference, interleaved"
    )
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    env = environment()
    if args.torch:
        import torch

        torch.set_num_threads(env["cpu_cores"])
        env["torch"] = torch.__version__
    print(
        f"# device: {env['device_kind']} x{env['device_count']} ({env['backend']}), "
        f"{env['cpu_cores']} CPU cores, jax {env['packages']['jax']}"
        + (f", torch {env['torch']}" if args.torch else "")
        + f", {time.strftime('%Y-%m-%d')}; median of {args.reps} interleaved repetitions "
        f"of {args.steps} steps after warm-up"
    )
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for model in args.models.split(","):
            label, make = MODELS[model]
            makers = {"jax": make}
            if args.torch:
                makers["torch"] = lambda b, s, m=model: torch_epoch(m, b, s)
            t = bench(makers, batch, args.steps, args.reps)
            row = {"model": label, "batch": batch}
            for impl, seconds in t.items():
                row[f"{impl}_steps_per_s"] = args.steps / seconds
                row[f"{impl}_samples_per_s"] = args.steps * batch / seconds
            if args.torch:
                row["speedup_vs_torch"] = t["torch"] / t["jax"]
            rows.append(row)
            print(row, flush=True)
    cols = ["jax_steps_per_s", "jax_samples_per_s"]
    if args.torch:
        cols += ["torch_steps_per_s", "torch_samples_per_s", "speedup_vs_torch"]
    print("\n| model | batch | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + " |")
    peak = matmul_peak()
    result = {"rows": rows, "matmul_peak_gflops": peak, "environment": env}
    conv64 = [r for r in rows if r["model"] == "conv GAN" and r["batch"] == 64]
    if conv64:
        flops = gan_step_flops("conv", 64) / 64
        achieved = flops * conv64[0]["jax_samples_per_s"] / 1e9
        result.update(conv_gan_mflop_per_sample=flops / 1e6, conv_gan_gflops=achieved)
        print(
            f"\nconv GAN: {flops / 1e6:.0f} MFLOP per sample per D+G step (XLA cost analysis); "
            f"{achieved:.0f} GFLOP/s achieved at batch 64; f32 matmul peak {peak:.0f} GFLOP/s: "
            f"{achieved / peak:.0%} of peak"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
