"""Seeds per hour with K seeds in one program (`gr-jax run --seeds`), K = 1, 2, 4, 8.

    python benchmarks/seeds_per_hour.py --preset quick --ks 1,2,4,8 --json OUT.json [--gan mlp]
    python benchmarks/seeds_per_hour.py --preset seed --changes '{"n_gen": 1200}' --ks 1,2

`--changes` sets config fields (JSON), e.g. '{"seed_axis": "vmap"}' to vmap the seeds on a CPU.

Each K runs the whole task loop once for seeds 0..K-1, after one untimed K=1 warm-up run, and
reports wall seconds, the part spent compiling (anywhere in the run; each K > 1 compiles its own
programs: the seed axis is part of their shapes; small on CPU, most of a run on a GPU), seeds
per hour, the cost of K seeds relative to one, with and without compiling, and seconds by
phase. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax

from gr_jax import multiseed, timing
from gr_jax.config import preset
from gr_jax.provenance import environment

PHASES = ("generate", "solver", "evaluate", "gan", "compile")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--gan", default=None, help="override the preset's GAN (conv or mlp)")
    p.add_argument("--changes", default="{}", help="config fields changed, as JSON")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    cfg = preset(args.preset, **json.loads(args.changes))
    if args.gan:
        cfg = dataclasses.replace(cfg, gan=args.gan)
    ks = [int(k) for k in args.ks.split(",")]

    multiseed.run(cfg, [0], bars=False)  # warm-up: compile once
    rows = []
    for k in ks:
        tick = time.perf_counter()
        with timing.compile_seconds() as compiling:  # in the tasks and before them
            results = multiseed.run(cfg, list(range(k)), bars=False)
        wall = time.perf_counter() - tick
        acc = [r["test"]["acc"] for r in results]
        compile_s = compiling[0]
        phases = {ph: sum(t.get(ph, 0.0) for t in results[0]["timings"]) for ph in PHASES}
        phases["compile_in_tasks"] = phases.pop("compile")  # compile_seconds: the whole run
        rows.append(
            {
                "k": k,
                "seconds": wall,
                "compile_seconds": compile_s,
                "seeds_per_hour": 3600 * k / wall,
                "seeds_per_hour_compiled": 3600 * k / (wall - compile_s),
                "acc": acc,
                "phases": phases,
            }
        )
        print(
            f"K={k}: {wall:.1f} s ({compile_s:.1f} s compiling), {3600 * k / wall:.1f} seeds/hour",
            flush=True,
        )
    base = rows[0]["seconds"] / rows[0]["k"]
    print(f"\n{args.preset} preset {args.changes}, gan={cfg.gan}, seed_axis="
          f"{multiseed.seed_axis(cfg)}, {jax.devices()[0].device_kind} "
          f"x{jax.device_count()}, {os.cpu_count()} cores")  # fmt: skip
    base_run = (rows[0]["seconds"] - rows[0]["compile_seconds"]) / rows[0]["k"]
    print(
        "| K seeds | wall s | compile s | seeds/hour | cost vs 1 seed | same, compiled |\n"
        "|---|---|---|---|---|---|"
    )
    for r in rows:
        r["cost_vs_one"] = r["seconds"] / base  # K seeds against one seed
        r["cost_vs_one_compiled"] = (r["seconds"] - r["compile_seconds"]) / base_run
        print(f"| {r['k']} | {r['seconds']:.0f} | {r['compile_seconds']:.0f} | "
              f"{r['seeds_per_hour']:.1f} | {r['cost_vs_one']:.2f}x | "
              f"{r['cost_vs_one_compiled']:.2f}x |")  # fmt: skip
    print("\nSeconds by phase over all tasks (compile: the part of them spent compiling; "
          "other: the rest of the wall time: data loading, initial states and evaluation, "
          "their compiling included)\n| K seeds | " + " | ".join(PHASES) + " | other |\n"
          + "|---" * (len(PHASES) + 2) + "|")  # fmt: skip
    for r in rows:
        summed = sum(v for ph, v in r["phases"].items() if ph != "compile_in_tasks")
        cells = " | ".join(f"{v:.1f}" for v in r["phases"].values())
        print(f"| {r['k']} | {cells} | {r['seconds'] - summed:.1f} |")
    if args.json:
        out = {"config": cfg.to_dict(), "rows": rows, "environment": environment()}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
