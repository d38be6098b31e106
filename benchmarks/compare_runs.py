"""Are runs bitwise identical? Compares the results.json of runs with the first's.

    python benchmarks/compare_runs.py RUN_A RUN_B [RUN_C ...]

Each RUN is a run directory or a results.json file (such as the ones in experiments/results/).

For each run: identical or not (accuracy matrices, validation and GAN curves, replay class
counts, exactly), its ACC, and where it first parts from the first run: the first solver or
GAN curve entry (task, epoch) that differs. Used for determinism checks across processes on
accelerators (`docs/reproducibility.md`, "Determinism"); on the CPU the test suite does this.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("r_test", "r_val", "solver_curves", "gan_curves", "replay_class_counts")


def first_difference(a: dict, b: dict) -> str | None:
    """Where `b` first parts from `a`, or None when every compared entry is equal."""
    for name in ("gan_curves", "solver_curves"):
        for ca, cb in zip(a.get(name, []), b.get(name, []), strict=False):
            if ca != cb:
                return f"{name} task {ca['task'] + 1} epoch {ca['epoch'] + 1}"
    for name in KEYS:
        if a.get(name) != b.get(name):
            return name
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args()
    results = [json.loads((r / "results.json" if r.is_dir() else r).read_text()) for r in args.runs]
    base = results[0]
    for run, r in zip(args.runs, results, strict=True):
        diff = first_difference(base, r)
        state = "identical" if diff is None else f"differs from the first from {diff}"
        print(f"{run}: ACC {r['test']['acc']:.4f}, {state}")


if __name__ == "__main__":
    main()
