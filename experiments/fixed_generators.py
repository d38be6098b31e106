"""Solver-side variants of a finished run, with its generators held fixed.

    python experiments/fixed_generators.py RUN_DIR '{"solver_epochs": 10}' ['{"soft_targets": 8}' ...]

Re-runs only the solver phases of RUN_DIR's config with the given fields changed, each task
replaying from the generator RUN_DIR saved after the task before. The GAN is ~95% of a run's
time, so a variant costs about a minute instead of ten, and the generator's quality is held
equal across variants. With no change ('{}') it reproduces the run's accuracy matrix exactly
(same keys, same generators). Changing a generator field has no effect here: the generators
are the saved ones.

For an unconditional GAN a variant is exactly the full run with that change: its generators
learn from the mix's images, never from the solver's labels (tests/test_loop.py checks it), so
they would be the same. A conditional GAN learns from the solver's labels of the replay, so
there a variant only approximates the full run.

Every variant's accuracy matrix is recorded in `experiments/results/tuning/fixed-generators.json`
(by run directory name, then the change as given).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from gr_jax import loop, metrics, runs, solver
from gr_jax.results import empty_history
from gr_jax.tasks import prepare_data

RECORD = Path(__file__).resolve().parent / "results" / "tuning" / "fixed-generators.json"


def solver_only(run_dir: str, changes: dict) -> np.ndarray:
    """The test accuracy matrix of RUN_DIR's run with `changes`, generators held fixed."""
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    cfg = dataclasses.replace(runs.load_config(run_dir), **changes)
    saved = runs.task_states(run_dir)  # {tasks done: state}
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    history = empty_history([], [])
    rows = []
    for t in range(cfg.num_tasks):
        g = saved[t].gan if t > 0 else state.gan  # the generator trained after task t
        previous = loop.RunState(solver=state.solver, gan=g, key=state.key)
        key, k_replay, k_solver, _ = loop.task_keys(state.key)
        train, _ = loop.replay_phase(cfg, t, previous, data, k_replay)
        s, _ = loop.solver_phase(cfg, t, previous, train, data, k_solver, history, False)
        state = loop.RunState(solver=s, gan=g, key=key)
        rows.append(
            solver.task_accuracies(s, data.test_x, data.test_y, data.task_of_class, cfg.num_tasks)
        )
    return np.array(rows)


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    run_dir = sys.argv[1]
    for arg in sys.argv[2:]:
        changes = json.loads(arg)
        r = solver_only(run_dir, changes)
        record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        record.setdefault(Path(run_dir).name, {})[json.dumps(changes, sort_keys=True)] = {
            "acc": float(metrics.acc(r)),
            "bwt": float(metrics.bwt(r)),
            "r_test": r.tolist(),
        }
        RECORD.write_text(json.dumps(record, indent=1))
        print(
            f"{arg}: ACC {metrics.acc(r):.4f} BWT {metrics.bwt(r):.4f} last row "
            f"{np.round(r[-1], 3).tolist()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
