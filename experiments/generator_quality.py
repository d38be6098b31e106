"""How good is a generator as a source of replay? An independent judge's view.

    python experiments/generator_quality.py runs RUN_DIR [RUN_DIR ...]
    python experiments/generator_quality.py probe NAME '{"gan_lr": 4e-4}' [--epochs 20] [--classes 0,1]

The judge ("oracle") is an MLP like the solver, trained on all ten classes of the run's dataset's
real training data (5 epochs, seed 0: 0.974 test accuracy on MNIST); it never sees generated
images. For a generator that should draw the classes `seen`, we sample `n` images and report
what the oracle makes of them:

- `unseen`: the share it assigns to a class the generator never learnt: images that are not a
  plausible digit of the seen classes, which replay then teaches the solver as one of them;
- `sure`: the share it labels with probability > 0.9 (recognisable digits);
- `fewest` / `most`: the smallest and largest count of a seen class (mode dropping).

`runs` judges every generator a run saved (after tasks 1 .. T), with the latent key fixed, so
runs can be compared generation by generation. `probe` trains a fresh GAN of the `tuned` preset
(with the given fields changed; the probes recorded before 2026-11-28 were of `tuned` v2, which
`"gan_lr_final": 1.0` gives back) on the real training images of `--classes` only, and judges it
after every epoch: a cheap stand-in for one task's GAN phase when choosing GAN settings (about a
minute per 1,000 steps on the 2-core CPU). Everything is recorded in
`experiments/results/tuning/generator-quality.json`.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from gr_jax import data, gan, loop, metrics, runs, solver
from gr_jax.config import Config, preset

RECORD = Path(__file__).resolve().parent / "results" / "tuning" / "generator-quality.json"
JUDGE_KEY = jax.random.PRNGKey(12345)  # the latents every generator is judged on


@functools.cache
def oracle_for(dataset: str, data_dir: str | None, epochs: int = 5) -> TrainState:
    """An MLP trained on all ten classes of `dataset`'s real training split (never on generated
    data): the judge."""
    cfg = Config(dataset=dataset, data_dir=data_dir)
    s = data.load_splits(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.test_fraction, 0)
    x, y = jnp.asarray(s.train_x), jnp.asarray(s.train_y)
    state = solver.create_solver_state(jax.random.PRNGKey(0), (400, 400), 1e-3)
    for e in range(epochs):
        state, _ = solver.train_epoch(
            state, x, y, jnp.asarray(len(y)), jax.random.PRNGKey(e + 1), 128
        )
    acc = float(jnp.mean(solver.predict(state, jnp.asarray(s.test_x)) == s.test_y))
    print(f"oracle for {dataset}: test accuracy {acc:.4f}", flush=True)
    return state


def judge(oracle: TrainState, images: jnp.ndarray, seen: list[int]) -> dict:
    """The oracle's verdict on generated `images` that should show the classes `seen`."""
    logits = oracle.apply_fn({"params": oracle.params}, images)
    return metrics.judged_replay(np.asarray(jax.nn.softmax(logits)), seen)


def sample(g: gan.GenState, latent_dim: int, n: int) -> jnp.ndarray:
    """`n` images from `g`, drawn from the same latents for every generator judged."""
    return jnp.concatenate(
        [gan.sample(g, k, 1_000, latent_dim) for k in jax.random.split(JUDGE_KEY, n // 1_000)]
    )


def judge_run(run_dir: str, n: int) -> list[dict]:
    """The verdict on every generator `run_dir` saved (after tasks 1 .. T)."""
    cfg = runs.load_config(run_dir)
    if cfg.conditional:
        raise SystemExit(
            f"{run_dir}: judging needs an unconditional generator; a conditional one draws the "
            "classes it is asked for, so its class counts say nothing about mode dropping"
        )
    oracle = oracle_for(cfg.dataset, cfg.data_dir)
    rows = []
    for done, state in sorted(runs.task_states(run_dir).items()):
        seen = [c for classes in cfg.tasks[:done] for c in classes]
        rows.append(
            {"after_task": done, **judge(oracle, sample(state.gan.g, cfg.latent_dim, n), seen)}
        )
        print(Path(run_dir).name, rows[-1], flush=True)
    return rows


def probe(changes: dict, classes: list[int], epochs: int, n: int) -> list[dict]:
    """Train a fresh GAN (`tuned` + `changes`) on the real images of `classes`, judging it
    after every epoch."""
    cfg = preset("tuned", **changes)
    if cfg.conditional:
        raise SystemExit("probe: judging needs an unconditional generator (conditional=false)")
    oracle = oracle_for(cfg.dataset, cfg.data_dir)
    s = data.load_splits(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.test_fraction, 0)
    keep = np.isin(s.train_y, classes)
    x, y = jnp.asarray(s.train_x[keep]), jnp.asarray(s.train_y[keep])
    init_key, train_key = loop.gan_keys(jax.random.PRNGKey(cfg.seed))
    g = loop.new_gan(cfg, init_key).decaying_over(epochs * (len(y) // cfg.gan_batch))
    rows = []
    for e in range(epochs):
        g, _ = gan.train_epoch(
            g,
            x,
            y,
            len(y),
            jax.random.fold_in(train_key, e),
            cfg.gan_batch,
            steps_per_call=gan.scan_steps(cfg.gan_scan),
        )
        rows.append({"epoch": e + 1, **judge(oracle, sample(g.g, cfg.latent_dim, n), classes)})
        print(rows[-1], flush=True)
    return rows


def record(key: str, rows: list[dict]) -> None:
    saved = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    saved[key] = rows
    RECORD.write_text(json.dumps(saved, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs", help="judge every generator saved by these runs")
    r.add_argument("run_dirs", nargs="+")
    q = sub.add_parser("probe", help="train a GAN on some classes' real data, judge each epoch")
    q.add_argument("name")
    q.add_argument("changes", help="config fields changed from the `tuned` preset, as JSON")
    q.add_argument("--epochs", type=int, default=20)
    q.add_argument("--classes", default="0,1")
    p.add_argument("--n", type=int, default=10_000, help="images judged per generator")
    args = p.parse_args()
    if args.n < 1_000 or args.n % 1_000:
        p.error("--n must be a positive multiple of 1000")
    if args.cmd == "runs":
        for run_dir in args.run_dirs:
            record(f"run {Path(run_dir).name}", judge_run(run_dir, args.n))
    else:
        classes = [int(c) for c in args.classes.split(",")]
        changes = json.loads(args.changes)
        rows = probe(changes, classes, args.epochs, args.n)
        record(f"probe {args.name} classes {args.classes}: {json.dumps(changes)}", rows)


if __name__ == "__main__":
    main()
