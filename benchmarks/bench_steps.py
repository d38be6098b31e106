"""Throughput of the jitted train steps, next to a PyTorch reference and the machine's peak.

    python benchmarks/bench_steps.py --batches 64,128 --reps 5 --steps 50 --torch --check

One row per (model, batch): the solver step, the MLP GAN step and the conv GAN step (the
`seed` preset's architectures), each run as the task loop runs them (the solver as a jitted
`lax.fori_loop` epoch, the GANs as a Python loop of jitted steps over device data); steps/s and
samples/s are medians of `--reps` repetitions after a warm-up. FLOPs per sample come from XLA's
cost analysis of the compiled step, so achieved GFLOP/s and the fraction of the machine's f32
matmul peak are printed too. `--torch` runs the PyTorch reference (benchmarks/torch_reference.py)
interleaved with ours; `--check` also prints its equivalence check.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gr_jax import gan, solver
from gr_jax.config import PRESETS, auto_d_chunks
from gr_jax.provenance import environment


def _timed(fn: Callable[[], None]) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def jax_solver_epoch(batch: int, steps: int) -> Callable[[], None]:
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


def jax_gan_epoch(
    kind: str,
    batch: int,
    steps: int,
    per_call: int = 1,
    dtype: str = "float32",
    d_chunks: int = 0,
) -> Callable[[], None]:
    """A function running one GAN epoch of `steps` batches, as the task loop runs it; `dtype`
    and `d_chunks` are the config fields `gan_dtype` and `d_chunks` (0: auto)."""
    cfg = PRESETS["seed"]
    n = batch * steps
    x = jax.random.uniform(jax.random.PRNGKey(0), (n, 28, 28, 1)) * 2 - 1
    labels = jnp.zeros((n,), jnp.int32)
    box = [
        gan.create_gan_state(
            jax.random.PRNGKey(2),
            kind,
            cfg.gan_width,
            cfg.latent_dim,
            cfg.gan_lr,
            cfg.gan_beta1,
            d_chunks=d_chunks or auto_d_chunks(kind),
            dtype=dtype,
        )
    ]

    def epoch():
        box[0], _ = gan.train_epoch(
            box[0], x, labels, n, jax.random.PRNGKey(3), batch, steps_per_call=per_call
        )
        jax.block_until_ready(box[0])

    return epoch


def torch_epoch(model: str, batch: int, steps: int, device: str = "cpu") -> Callable[[], None]:
    """The PyTorch reference's epoch: shuffled batches sliced from in-memory tensors (on
    `device`), ending with a device sync so the time covers the work. "conv-bf16" is the conv
    GAN under `torch.autocast` in bfloat16 (float32 weights and optimizer, as ours)."""
    import torch
    import torch_reference as ref

    cfg = PRESETS["seed"]
    torch.manual_seed(0)
    n = batch * steps
    x = torch.rand(n, 1, 28, 28, device=device) * 2 - 1
    y = torch.randint(0, 10, (n,), device=device)
    if model == "solver":
        trainer = ref.SolverTrainer(cfg.solver_hidden, cfg.solver_lr, device=device)
    else:
        trainer = ref.GAN(
            model.removesuffix("-bf16"),
            cfg.gan_width,
            cfg.latent_dim,
            cfg.gan_lr,
            cfg.gan_beta1,
            device=device,
            autocast=model.endswith("-bf16"),
        )

    def epoch():
        perm = torch.randperm(n, device=device)
        for i in range(steps):
            idx = perm[i * batch : (i + 1) * batch]
            if model == "solver":
                trainer.step(x[idx], y[idx])
            else:
                trainer.step(x[idx])
        if device != "cpu":
            torch.cuda.synchronize()

    return epoch


def bench(
    makers: dict[str, Callable[[int, int], Callable[[], None]]], batch: int, steps: int, reps: int
) -> dict[str, list[float]]:
    """Seconds per epoch of each repetition for each implementation, repetitions interleaved
    (so that the implementations share the machine's slow and fast moments)."""
    epochs = {name: make(batch, steps) for name, make in makers.items()}
    for fn in epochs.values():
        fn()  # warm-up: compiles
    times = {name: [] for name in epochs}
    for _ in range(reps):
        for name, fn in epochs.items():
            times[name].append(_timed(fn))
    return times


def paired_ratios(reference: list[float], ours: list[float]) -> list[float]:
    """Per repetition, the reference's time over ours next to it (> 1: ours faster): on a
    shared machine whose speed drifts, these vary less than a ratio of two medians."""
    return [r / o for r, o in zip(reference, ours, strict=True)]


def flops_per_sample(model: str, batch: int) -> float:
    """FLOPs of one train step per example, from XLA's cost analysis of the step compiled for
    the CPU (on a GPU that analysis leaves out the convolutions, which run in cuDNN)."""
    with jax.default_device(jax.devices("cpu")[0]):
        return _flops_per_sample(model, batch)


def _flops_per_sample(model: str, batch: int) -> float:
    cfg = PRESETS["seed"]
    x = jnp.zeros((batch, 28, 28, 1))
    if model == "solver":
        state = solver.create_solver_state(jax.random.PRNGKey(0), cfg.solver_hidden, cfg.solver_lr)
        lowered = solver.train_step.lower(state, x, jnp.zeros((batch,), jnp.int32))
    else:
        state = gan.create_gan_state(
            jax.random.PRNGKey(0),
            model.removesuffix("-bf16"),
            cfg.gan_width,
            cfg.latent_dim,
            cfg.gan_lr,
            cfg.gan_beta1,
            d_chunks=auto_d_chunks(model.removesuffix("-bf16")),
            dtype="bfloat16" if model.endswith("-bf16") else "float32",
        )
        labels = jnp.zeros((batch,), jnp.int32)
        lowered = jax.jit(gan.gan_step).lower(state, x, labels, jax.random.PRNGKey(1))
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch


def matmul_peak(n: int, reps: int = 5, dtype: str = "float32") -> float:
    """GFLOP/s of an n x n matmul in `dtype` at JAX's default precision (TF32 on recent GPUs
    for float32)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, a).block_until_ready()
    seconds = float(np.median([_timed(lambda: f(a, a).block_until_ready()) for _ in range(reps)]))
    return 2 * n**3 / seconds / 1e9


MODELS = {
    "solver": ("solver (MLP 784-400-400-10)", lambda b, s, k, c: jax_solver_epoch(b, s)),
    "mlp": ("MLP GAN", lambda b, s, k, c: jax_gan_epoch("mlp", b, s, k, d_chunks=c)),
    "conv": ("conv GAN", lambda b, s, k, c: jax_gan_epoch("conv", b, s, k, d_chunks=c)),
    "conv-bf16": (
        "conv GAN, bfloat16 compute",
        lambda b, s, k, c: jax_gan_epoch("conv", b, s, k, "bfloat16", c),
    ),
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
    p.add_argument("--check", action="store_true", help="with --torch: check equivalence")
    p.add_argument(
        "--torch-device", default="cpu", help="the reference's device (cpu, or cuda with TF32)"
    )
    p.add_argument(
        "--gan-scan",
        type=int,
        default=0,
        help="GAN steps per dispatched program, as the config field gan_scan (0: auto)",
    )
    p.add_argument(
        "--d-chunks", type=int, default=0, help="the GANs' config field d_chunks (0: auto)"
    )
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    env = environment()
    env["d_chunks"] = args.d_chunks
    if args.torch:
        import torch

        torch.set_num_threads(env["cpu_cores"])
        env["torch"] = torch.__version__
        env["torch_device"] = args.torch_device
        if args.torch_device != "cpu":  # as JAX's default precision on these GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            env["torch_device_name"] = torch.cuda.get_device_name()
    per_call = gan.scan_steps(args.gan_scan)
    env["gan_steps_per_call"] = per_call
    print(
        f"# device: {env['device_kind']} x{env['device_count']} ({env['backend']}), "
        f"{env['cpu_cores']} CPU cores, jax {env['packages']['jax']}"
        + (f", torch {env['torch']} on {args.torch_device}" if args.torch else "")
        + f", {per_call} GAN step(s) per call, d_chunks {args.d_chunks or 'auto'}"
        + f", {time.strftime('%Y-%m-%d')}; median of {args.reps} interleaved repetitions "
        f"of {args.steps} steps after warm-up"
    )
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for model in args.models.split(","):
            label, make = MODELS[model]
            makers = {"jax": lambda b, s, make=make: make(b, s, per_call, args.d_chunks)}
            if args.torch:
                makers["torch"] = lambda b, s, m=model: torch_epoch(m, b, s, args.torch_device)
            times = bench(makers, batch, args.steps, args.reps)
            row = {"model": label, "key": model, "batch": batch}
            for impl, rep_times in times.items():
                seconds = float(np.median(rep_times))
                row[f"{impl}_seconds_per_rep"] = rep_times
                row[f"{impl}_steps_per_s"] = args.steps / seconds
                row[f"{impl}_samples_per_s"] = args.steps * batch / seconds
                row[f"{impl}_samples_per_s_range"] = [
                    args.steps * batch / max(rep_times),
                    args.steps * batch / min(rep_times),
                ]
            if args.torch:
                ratios = paired_ratios(times["torch"], times["jax"])
                row["speedup_vs_torch"] = float(np.median(ratios))
                row["speedup_vs_torch_range"] = [min(ratios), max(ratios)]
            rows.append(row)
            print(f"{label}, batch {batch}: done", flush=True)
    size = 2048 if env["backend"] == "cpu" else 8192
    peak = matmul_peak(size)
    peak_bf16 = matmul_peak(size, dtype="bfloat16")
    for r in rows:
        flops = flops_per_sample(r["key"], r["batch"])
        r["mflop_per_sample"] = flops / 1e6
        row_peak = peak_bf16 if r["key"].endswith("-bf16") else peak
        for impl in ("jax", "torch"):
            if f"{impl}_samples_per_s" in r:
                r[f"{impl}_gflops"] = flops * r[f"{impl}_samples_per_s"] / 1e9
                r[f"{impl}_fraction_of_peak"] = r[f"{impl}_gflops"] / row_peak
    cols = ["jax_steps_per_s", "jax_samples_per_s", "jax_gflops", "jax_fraction_of_peak"]
    if args.torch:
        cols += [
            "torch_samples_per_s",
            "torch_gflops",
            "torch_fraction_of_peak",
            "speedup_vs_torch",
        ]
    print("\n| model | batch | MFLOP/sample | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = [
            f"{r[c]:.2f}" if "fraction" in c or "speedup" in c else f"{r[c]:.0f}" for c in cols
        ]
        if args.torch:
            lo, hi = r["speedup_vs_torch_range"]
            cells[-1] += f" ({lo:.2f}-{hi:.2f})"
        print(
            f"| {r['model']} | {r['batch']} | {r['mflop_per_sample']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    print(
        f"\nmatmul peak (jax, default precision): f32 {peak:.0f} GFLOP/s, bf16 {peak_bf16:.0f} "
        "GFLOP/s (the fraction of bfloat16 rows is of the latter). FLOPs per step from XLA's "
        "cost analysis of the jitted step; the PyTorch reference runs the same step, so the "
        "same FLOPs."
        + (
            " speedup_vs_torch: the median of the repetitions' paired ratios (each JAX"
            " repetition against the reference's next to it), their range in brackets."
            if args.torch
            else ""
        )
    )
    if args.check and args.torch:
        import torch_reference

        print("\nequivalence (same initial weights, batch and latents):")
        for row in torch_reference.check_equivalence(PRESETS["seed"].gan_width):
            print(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "rows": rows,
                    "matmul_peak_gflops": peak,
                    "matmul_peak_bf16_gflops": peak_bf16,
                    "environment": env,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
