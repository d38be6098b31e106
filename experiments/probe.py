"""The first K tasks of a preset with some fields changed: a cheap probe of a generator-side
change (the accuracy on task 1 after task 2 is the first sign of how well a generator replays).

    python experiments/probe.py PRESET K '{"gan_ema": 0.999}' [--seed S]

Prints the test accuracy row after each task and records the rows in
`experiments/results/tuning/probes.json` (by preset, K, seed, then the change as given).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gr_jax import loop
from gr_jax.config import preset
from gr_jax.results import empty_history
from gr_jax.tasks import prepare_data

RECORD = Path(__file__).resolve().parent / "results" / "tuning" / "probes.json"


def probe(name: str, k: int, changes: dict, seed: int) -> list[list[float]]:
    """Test accuracy rows after each of the first `k` tasks."""
    changes = {key: tuple(v) if isinstance(v, list) else v for key, v in changes.items()}
    cfg = preset(name, seed=seed, **changes)
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    history = empty_history([], [])
    started = time.perf_counter()
    for t in range(k):
        state = loop.run_task(cfg, t, state, data, history)
        row = " ".join(f"{a:.3f}" for a in history["r_test"][-1])
        print(f"after task {t + 1}: {row} ({time.perf_counter() - started:.0f} s)", flush=True)
    return history["r_test"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset")
    p.add_argument("k", type=int)
    p.add_argument("changes", type=json.loads)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rows = probe(a.preset, a.k, a.changes, a.seed)
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    key = f"{a.preset} K={a.k} seed={a.seed}"
    record.setdefault(key, {})[json.dumps(a.changes, sort_keys=True)] = rows
    RECORD.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
