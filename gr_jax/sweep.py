"""Sweeps: one run directory per point of a grid of config values x seeds, resumable.

A point whose directory holds `results.json` is skipped, one with only a partial run is resumed
from its last checkpoint, so a long sweep can be run in pieces. A point that diverges is
recorded in its `diverged.json` (where, and in what environment) and the other points still
run; later calls in the same environment skip it (runs are bitwise repeatable there: it would
diverge again), in another one they resume it from its last checkpoint. The summary groups the
points by everything but the seed: mean and (population) standard deviation of ACC, BWT and
FWT (test split), and how many seeds diverged.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gr_jax.config import Config, diff, validate

METRICS = ("acc", "bwt", "fwt")


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return (
            "/".join(_text(v) for v in value)
            if value and isinstance(value[0], tuple)
            else ("-".join(str(v) for v in value))
        )
    return str(value)


def points(base: Config, axes: dict[str, list[Any]], seeds: list[int]) -> list[tuple[str, Config]]:
    """(directory name, config) for every combination of the axes' values and every seed."""
    names = list(axes)
    out = []
    for values in itertools.product(*(axes[n] for n in names)):
        overrides = dict(zip(names, values))
        for seed in seeds:
            cfg = validate(dataclasses.replace(base, **overrides, seed=seed))
            label = ",".join(f"{n}={_text(v)}" for n, v in overrides.items())
            out.append(((label + "," if label else "") + f"seed={seed}", cfg))
    return out


DIVERGED = "diverged.json"


def run_point(cfg: Config, out: Path, bars: bool = True) -> dict | None:
    """Results of the run in `out`: read if complete, resumed if partial, else run; None for a
    point that diverged, now or in an earlier call in the same environment (`out/diverged.json`
    says where and in what environment; in another one, other machines, flags or code round
    differently, so the point resumes from its last checkpoint)."""
    from gr_jax import provenance
    from gr_jax.health import DivergenceError
    from gr_jax.loop import run
    from gr_jax.rundir import RunDirError, read_json, write_json

    for name, what in (("results.json", "a finished run"), (DIVERGED, "a diverged run")):
        record = read_json(out / name)  # None also for a file cut short: the run redoes it
        if record is None:
            continue
        changed = diff(Config.from_dict(record["config"]), cfg)
        if changed:
            raise RunDirError(f"{out} holds {what} of another config: {changed}")
        if name == "results.json":
            print(f"{out.name}: complete, skipped", file=sys.stderr)
            return record
        env, then = provenance.environment(), record.get("environment")
        if then == env:
            print(
                f"{out.name}: diverged before in this environment ({record.get('error')}), "
                f"skipped; delete {out / DIVERGED} to run it again",
                file=sys.stderr,
            )
            return None
        if then is None:
            why = "recorded without its environment, by an older gr_jax"
        else:
            why = f"in another environment: {', '.join(k for k in env if then.get(k) != env[k])} differ"
        print(f"{out.name}: diverged before ({why}); resuming it", file=sys.stderr)
        (out / DIVERGED).unlink()
    resume = (out / "config.json").exists()
    print(f"{out.name}: {'resuming' if resume else 'starting'}", file=sys.stderr)
    try:
        return run(cfg, out, resume=resume, bars=bars)
    except DivergenceError as e:
        record = {"config": cfg.to_dict(), "error": str(e), "environment": provenance.environment()}
        write_json(out / DIVERGED, record)
        print(f"{out.name}: diverged: {e}; the sweep goes on without it", file=sys.stderr)
        return None


def summarize(outcomes: Sequence[tuple[Config, dict | None]], axes: list[str]) -> list[dict]:
    """Rows grouped by the swept fields (all seeds together, in the grid's order) from each
    point's (config, results; None if it diverged): the seeds that finished, how many
    diverged, and the mean and (population) std of each metric over the finished ones (None
    for a group whose seeds all diverged)."""
    groups: dict[tuple, list[dict | None]] = {}
    for cfg, r in outcomes:
        groups.setdefault(tuple(_text(getattr(cfg, a)) for a in axes), []).append(r)
    rows = []
    for key, outs in groups.items():
        runs = [r for r in outs if r is not None]
        row: dict[str, Any] = dict(zip(axes, key))
        row["seeds"], row["diverged"] = len(runs), len(outs) - len(runs)
        for m in METRICS:
            v = np.array([r["test"][m] for r in runs])
            stats = (float(v.mean()), float(v.std())) if len(v) else (None, None)
            row[f"{m}_mean"], row[f"{m}_std"] = stats
        rows.append(row)
    return rows


def write_summary(rows: list[dict], out: Path) -> str:
    """summary.csv and summary.md in `out` (each written whole); returns the Markdown table."""
    from gr_jax.rundir import write_text

    if not rows:
        return ""
    cols = list(rows[0])
    csv = [",".join(cols)] + [",".join(_cell(r[c]) for c in cols) for r in rows]
    write_text(out / "summary.csv", "\n".join(csv) + "\n")
    counts = ["seeds", "diverged"]
    axes = [c for c in cols if c not in counts and not c.endswith(("_mean", "_std"))]
    md = ["| " + " | ".join([*axes, *counts, "ACC", "BWT", "FWT"]) + " |"]
    md.append("|" + "---|" * (len(axes) + len(counts) + 3))
    for r in rows:
        stats = [
            "-" if r[f"{m}_mean"] is None else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}"
            for m in METRICS
        ]
        cells = [*(str(r[a]) for a in axes), *(str(r[c]) for c in counts), *stats]
        md.append("| " + " | ".join(cells) + " |")
    text = "\n".join(md) + "\n"
    write_text(out / "summary.md", text)
    return text


def _cell(v: Any) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def sweep(
    base: Config, axes: dict[str, list[Any]], seeds: list[int], out: Path, bars: bool = True
) -> tuple[list[dict], list[str]]:
    """Run (or skip, or resume) every point, then write the summary (the diverged points
    counted in it); returns its rows and the names of the points that diverged."""
    out.mkdir(parents=True, exist_ok=True)
    outcomes, diverged = [], []
    for name, cfg in points(base, axes, seeds):
        r = run_point(cfg, out / name, bars)
        outcomes.append((cfg, r))
        if r is None:
            diverged.append(name)
    rows = summarize(outcomes, list(axes))
    print(write_summary(rows, out))
    return rows, diverged
