"""Sweeps: one run directory per point of a grid of config values x seeds, resumable.

A point whose directory holds `results.json` is skipped, one with only a partial run is resumed
from its last checkpoint, so a long sweep can be run in pieces. A point that diverges is
recorded in its `diverged.json` and skipped from then on (runs are deterministic: it would
diverge again), so the other points still run. The summary groups the points by everything but
the seed: mean and (population) standard deviation of ACC, BWT and FWT (test split).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
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
    point that diverged (now or in an earlier call: `out/diverged.json` says where)."""
    from gr_jax.health import DivergenceError
    from gr_jax.loop import RunDirError, run

    for name, what in (("results.json", "a finished run"), (DIVERGED, "a diverged run")):
        if (out / name).exists():
            record = json.loads((out / name).read_text())
            changed = diff(Config.from_dict(record["config"]), cfg)
            if changed:
                raise RunDirError(f"{out} holds {what} of another config: {changed}")
            if name == DIVERGED:
                print(
                    f"{out.name}: diverged before ({record['error']}), skipped; "
                    f"delete {out / DIVERGED} to run it again",
                    file=sys.stderr,
                )
                return None
            print(f"{out.name}: complete, skipped", file=sys.stderr)
            return record
    resume = (out / "config.json").exists()
    print(f"{out.name}: {'resuming' if resume else 'starting'}", file=sys.stderr)
    try:
        return run(cfg, out, resume=resume, bars=bars)
    except DivergenceError as e:
        (out / DIVERGED).write_text(json.dumps({"config": cfg.to_dict(), "error": str(e)}))
        print(f"{out.name}: diverged: {e}; the sweep goes on without it", file=sys.stderr)
        return None


def summarize(results: list[dict], axes: list[str]) -> list[dict]:
    """Rows grouped by the swept fields (all seeds together): mean and std of each metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        cfg = Config.from_dict(r["config"])
        key = tuple(_text(getattr(cfg, a)) for a in axes)
        groups.setdefault(key, []).append(r)
    rows = []
    for key, runs in groups.items():
        row: dict[str, Any] = dict(zip(axes, key))
        row["seeds"] = len(runs)
        for m in METRICS:
            v = np.array([r["test"][m] for r in runs])
            row[f"{m}_mean"], row[f"{m}_std"] = float(v.mean()), float(v.std())
        rows.append(row)
    return rows


def write_summary(rows: list[dict], out: Path) -> str:
    """summary.csv and summary.md in `out`; returns the Markdown table."""
    if not rows:
        return ""
    cols = list(rows[0])
    csv = [",".join(cols)] + [",".join(_cell(r[c]) for c in cols) for r in rows]
    (out / "summary.csv").write_text("\n".join(csv) + "\n")
    axes = [c for c in cols if c != "seeds" and not c.endswith(("_mean", "_std"))]
    md = ["| " + " | ".join([*axes, "seeds", "ACC", "BWT", "FWT"]) + " |"]
    md.append("|" + "---|" * (len(axes) + 4))
    for r in rows:
        stats = [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" for m in METRICS]
        md.append("| " + " | ".join([*(str(r[a]) for a in axes), str(r["seeds"]), *stats]) + " |")
    text = "\n".join(md) + "\n"
    (out / "summary.md").write_text(text)
    return text


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def sweep(
    base: Config, axes: dict[str, list[Any]], seeds: list[int], out: Path, bars: bool = True
) -> tuple[list[dict], list[str]]:
    """Run (or skip, or resume) every point, then write the summary of the points that did not
    diverge; returns its rows and the names of the points that diverged."""
    out.mkdir(parents=True, exist_ok=True)
    results, diverged = [], []
    for name, cfg in points(base, axes, seeds):
        r = run_point(cfg, out / name, bars)
        if r is None:
            diverged.append(name)
        else:
            results.append(r)
    rows = summarize(results, list(axes))
    print(write_summary(rows, out))
    return rows, diverged
