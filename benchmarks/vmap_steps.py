"""Cost of K seeds per train step: the programs `gr-jax run --seeds` runs, timed alone.

    python benchmarks/vmap_steps.py --preset seed --ks 1,2,4,8 --reps 5 --json OUT.json
    python benchmarks/vmap_steps.py --preset seed --changes '{"seed_axis": "vmap"}' ...

The seeds are vmapped or unrolled as `seed_axis` says (`--changes`; "auto" unrolls on CPU).

For each K, a GAN epoch as `gr-jax run --seeds` runs it (`multiseed._gan_epoch`: shuffle, then
`gan_scan` steps per call, 1 on CPU and 50 on accelerators) and a seed-vmapped solver epoch, on
random images for K fresh seeds; medians of `--reps` timed epochs after a warm-up epoch, per
step. The ratio column is one K-seed step against one single-seed step: 1x means the extra
seeds are free, K means the program gained nothing over running the seeds one after another.
The warm-up epoch's extra time over a timed one is reported as compile seconds.
With `--profile`, one more GAN epoch per K runs under `jax.profiler` and the table says where
its device time goes: kernels per step, the time some kernel runs ("busy") against the traced
wall time, and the costliest kernels (on a CPU, XLA's per-op events stand in for kernels).
Whole runs (data, generation, evaluation and compiling included) are `seeds_per_hour.py`'s job.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from jax.profiler import ProfileData
from profile_step import busy_time

from gr_jax import gan, multiseed
from gr_jax.config import preset
from gr_jax.provenance import environment


def _median_seconds(fn, reps: int) -> tuple[float, float]:
    """(median seconds of `reps` calls, extra seconds of the first, compiling, call)."""
    tick = time.perf_counter()
    jax.block_until_ready(fn())  # warm-up, compiles
    first = time.perf_counter() - tick
    times = []
    for _ in range(reps):
        tick = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - tick)
    median = statistics.median(times)
    return median, first - median


def kernel_events(xplane: str) -> list[tuple[str, str, int, int]]:
    """(HLO op, kernel name, start ns, duration ns) of every kernel in a profiler trace: the
    device planes' stream lines, or where there is no device plane (a CPU), the host events
    that name an HLO op."""
    data = ProfileData.from_file(xplane)
    devices = [p for p in data.planes if p.name.startswith("/device:")]
    out = []
    for plane in devices or [p for p in data.planes if p.name.startswith("/host:CPU")]:
        for line in plane.lines:
            if devices and not line.name.startswith("Stream"):
                continue
            for e in line.events:
                stats = dict(e.stats)
                if devices or "hlo_op" in stats:
                    op = str(stats.get("hlo_op", e.name))
                    out.append((op, e.name, int(e.start_ns), int(e.duration_ns)))
    return out


def profile(fn, steps: int, top: int) -> dict:
    """Where one traced call of `fn` (`steps` train steps) spends its device time, per step."""
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            tick = time.perf_counter()
            jax.block_until_ready(fn())
            wall = time.perf_counter() - tick
        (path,) = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        events = kernel_events(path)
    if not events:
        raise SystemExit("the trace holds no kernel events")
    # keyed by kernel: XLA peels a loop's first step, whose kernels carry other HLO op names
    by_kernel: dict[str, list] = collections.defaultdict(lambda: [0, 0, set()])
    for op, name, _, dur in events:
        by_kernel[name][0] += 1
        by_kernel[name][1] += dur
        by_kernel[name][2].add(op)
    ranked = sorted(by_kernel.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "traced_wall_step_s": wall / steps,
        "kernels_per_step": len(events) / steps,
        "kernel_sum_step_s": sum(e[3] for e in events) / steps / 1e9,
        "busy_step_s": busy_time([(e[2], e[2] + e[3]) for e in events]) / steps / 1e9,
        "top": [
            {
                "kernel": name[:90],
                "ops": sorted(ops)[:3],
                "per_step": n / steps,
                "step_s": ns / steps / 1e9,
            }
            for name, (n, ns, ops) in ranked
        ],
    }


def print_profile(k: int, step_s: float, prof: dict) -> None:
    wall, busy = prof["traced_wall_step_s"], prof["busy_step_s"]
    print(f"\nK={k} traced GAN step: {1e3 * wall:.3f} ms wall, {prof['kernels_per_step']:.0f} "
          f"kernels, busy {1e3 * busy:.3f} ms ({busy / wall:.0%} of the traced step, "
          f"{busy / step_s:.0%} of the untraced {1e3 * step_s:.3f} ms), kernels summed "
          f"{1e3 * prof['kernel_sum_step_s']:.3f} ms")  # fmt: skip
    print("| kernel | HLO ops (up to 3) | per step | us per step |\n|---|---|---|---|")
    for r in prof["top"]:
        ops = ", ".join(r["ops"])
        print(f"| {r['kernel']} | {ops} | {r['per_step']:.2f} | {1e6 * r['step_s']:.1f} |")


def measure(cfg, k: int, calls: int, reps: int, top: int = 0, solver: bool = True) -> dict:
    """Seconds per GAN step and per solver step with `k` seeds vmapped."""
    per_call = gan.scan_steps(cfg.gan_scan)
    n = max(cfg.gan_batch * per_call * calls, cfg.solver_batch * 16)
    p = multiseed.programs(cfg, n)
    keys = jax.random.split(jax.random.PRNGKey(0), k)
    x = jax.random.uniform(keys[0], (k, n, 28, 28, 1)) * 2 - 1
    y = jax.random.randint(keys[0], (k, n), 0, 10)
    solvers = multiseed.init_states(cfg, list(range(k))).solver
    # unrolled seeds: one tree per seed
    keys, x, y, solvers = (multiseed.as_programs_take(p, a, k) for a in (keys, x, y, solvers))
    box = {"g": p.new_gans(keys), "s": solvers}

    def gan_epoch():  # the epoch of a run: shuffle, then n // gan_batch steps
        box["g"], _ = multiseed._gan_epoch(
            p, box["g"], x, y, n, keys, cfg.gan_batch, per_call, lambda _: None
        )
        return box["g"]

    def solver_epoch():
        box["s"], _ = p.solver_epoch(box["s"], x, y, jnp.asarray(n), keys)
        return box["s"]

    gan_s, gan_compile = _median_seconds(gan_epoch, reps)
    solver_s, solver_compile = _median_seconds(solver_epoch, reps) if solver else (None, None)
    prof = {"profile": profile(gan_epoch, n // cfg.gan_batch, top)} if top else {}
    return {
        "k": k,
        "seed_axis": multiseed.seed_axis(cfg),
        "gan_step_s": gan_s / (n // cfg.gan_batch),
        "solver_step_s": solver_s and solver_s / (n // cfg.solver_batch),
        "gan_compile_s": gan_compile,
        "solver_compile_s": solver_compile,
        "gan_per_call": per_call,
        **prof,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="seed")
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--calls", type=int, default=4, help="GAN calls per timed repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--changes", default="{}", help="config fields changed, as JSON")
    p.add_argument("--json", default=None)
    p.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="also trace a GAN epoch per K and list its TOP costliest kernels")  # fmt: skip
    p.add_argument("--gan-only", action="store_true", help="time the GAN step alone")
    args = p.parse_args()
    cfg = preset(args.preset, **json.loads(args.changes))
    rows = []
    for k in (int(s) for s in args.ks.split(",")):
        rows.append(measure(cfg, k, args.calls, args.reps, args.profile, not args.gan_only))
        r = rows[-1]
        solver = ""
        if not args.gan_only:
            solver = (f", solver step {1e3 * r['solver_step_s']:.3f} ms (compile "
                      f"{r['solver_compile_s']:.1f} s)")  # fmt: skip
        print(f"K={k} ({r['seed_axis']}): GAN step {1e3 * r['gan_step_s']:.2f} ms (compile "
              f"{r['gan_compile_s']:.1f} s){solver}", flush=True)  # fmt: skip
        if args.profile:
            print_profile(k, r["gan_step_s"], r["profile"])
    base = rows[0]
    print(f"\n{args.preset} preset {args.changes} ({cfg.gan} GAN), {jax.devices()[0].device_kind} "
          f"x{jax.device_count()}, {os.cpu_count()} cores; K=1 row is the base")  # fmt: skip
    print("| K seeds | GAN step ms | cost vs 1 seed | solver step ms | cost vs 1 seed |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["gan_cost_vs_one"] = r["gan_step_s"] / base["gan_step_s"] * base["k"]
        solver = "- | -"
        if not args.gan_only:
            r["solver_cost_vs_one"] = r["solver_step_s"] / base["solver_step_s"] * base["k"]
            solver = f"{1e3 * r['solver_step_s']:.3f} | {r['solver_cost_vs_one']:.2f}x"
        print(f"| {r['k']} | {1e3 * r['gan_step_s']:.2f} | {r['gan_cost_vs_one']:.2f}x | "
              f"{solver} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": cfg.to_dict(), "rows": rows, "environment": environment()}, f,
                      indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
