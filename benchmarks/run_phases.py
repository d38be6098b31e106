"""Wall time of whole runs, split by task and phase, from their results.json files.

    python benchmarks/run_phases.py RUN_DIR_OR_RESULTS_JSON [...]
    python benchmarks/run_phases.py experiments/results/gr-conv-12k-s*.json

Prints, for each file, seconds per task and phase (generate + label, solver, evaluate, GAN,
checkpoint; compile is the part of them spent tracing and compiling) and the total, then the
median total over the files. To produce a run to measure, alone on the machine:
`gr-jax run --preset seed --n-gen 12000 --out runs/seed-12k --no-progress`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PHASES = ("generate", "solver", "evaluate", "gan", "checkpoint", "compile")


def load(path: str) -> dict:
    p = Path(path)
    return json.loads((p / "results.json" if p.is_dir() else p).read_text())


def table(results: dict) -> tuple[str, float]:
    rows = ["| task | " + " | ".join(PHASES) + " | total |", "|---" * (len(PHASES) + 2) + "|"]
    grand = 0.0
    for t, timings in enumerate(results["timings"], start=1):
        total = sum(v for k, v in timings.items() if k != "compile")
        grand += total
        cells = [f"{timings[p]:.1f}" if p in timings else "-" for p in PHASES]
        rows.append(f"| {t} | " + " | ".join(cells) + f" | {total:.1f} |")
    return "\n".join(rows), grand


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit(__doc__)
    totals = []
    for path in paths:
        r = load(path)
        text, total = table(r)
        env = r["environment"]
        print(
            f"\n{path}: n_gen={r['config']['n_gen']}, gan={r['config']['gan']}, "
            f"{env['device_kind']} x{env['device_count']}, {env['cpu_cores']} cores\n{text}"
        )
        print(f"total {total:.0f} s = {total / 60:.1f} min")
        totals.append(total)
    print(f"\nmedian total over {len(totals)} run(s): {np.median(totals) / 60:.1f} min")


if __name__ == "__main__":
    main(sys.argv[1:])
