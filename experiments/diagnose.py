"""Where a finished run's final solver errs: the test confusion matrix, how many old-task images
go to the last task's classes, and what weight aligning (Zhao et al. 2020: rescale the newest
classes' output weights to the older classes' mean norm) would change.

    python experiments/diagnose.py RUN_DIR      # writes experiments/results/tuning/diagnosis-NAME.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from gr_jax import runs
from gr_jax.tasks import prepare_data

OUT = Path(__file__).resolve().parent / "results" / "tuning"


def diagnose(run_dir: str) -> dict:
    cfg = runs.load_config(run_dir)
    states = runs.task_states(run_dir)
    s = states[max(states)].solver
    data = prepare_data(cfg)
    y = np.asarray(data.test_y)
    new = np.asarray(cfg.tasks[-1])
    old = ~np.isin(y, new)

    def predict(params) -> np.ndarray:
        return np.asarray(jnp.argmax(s.apply_fn({"params": params}, data.test_x), -1))

    def scores(pred: np.ndarray) -> dict:
        return {
            "accuracy": float((pred == y).mean()),
            "old_tasks_accuracy": float((pred[old] == y[old]).mean()),
            "last_task_accuracy": float((pred[~old] == y[~old]).mean()),
            "old_to_last_task_classes": float(np.isin(pred[old], new).mean()),
        }

    pred = predict(s.params)
    confusion = np.zeros((cfg.num_classes, cfg.num_classes), int)
    np.add.at(confusion, (y, pred), 1)
    head = sorted(s.params)[-1]
    w = np.asarray(s.params[head]["kernel"])
    norms = np.linalg.norm(w, axis=0)
    is_new = np.isin(np.arange(cfg.num_classes), new)
    gamma = float(norms[~is_new].mean() / norms[is_new].mean())
    aligned = {**s.params, head: {**s.params[head], "kernel": w * np.where(is_new, gamma, 1.0)}}
    return {
        "run": Path(run_dir).name,
        "confusion_rows_true_cols_predicted": confusion.tolist(),
        "output_weight_norms": norms.tolist(),
        "final": scores(pred),
        "weight_aligning": {"gamma": gamma, **scores(predict(aligned))},
    }


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    d = diagnose(sys.argv[1])
    path = OUT / f"diagnosis-{d['run']}.json"
    path.write_text(json.dumps(d, indent=1))
    print(json.dumps({k: d[k] for k in ("final", "weight_aligning")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
