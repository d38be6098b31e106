"""Sweeps: one run directory per point of a grid of config values x seeds, resumable.

A point whose directory holds `results.json` is skipped, one with only a partial run is resumed
from its last checkpoint, so a long sweep can be run in pieces. A point that diverges is
recorded in its `diverged.json` (where, and in what environment) and the other points still
run; later calls in the same environment skip it (runs are bitwise repeatable there: it would
diverge again), in another one they resume it from its last checkpoint. The summary groups the
points by everything but the seed: mean and (population) standard deviation of ACC, BWT and
FWT (test split), and how many seeds diverged, over every point the directory holds with the
sweep's fixed config (points an earlier call ran for other values of the axes or other seeds
too), and a warning names the points run with other XLA flags than this process's.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gr_jax import metrics
from gr_jax.config import Config, ConfigError, diff, validate


def _text(value: Any) -> str:
    """A value as a point's name and the summary show it: tasks `0-1_2-3` (no `/`: one folder)."""
    if isinstance(value, tuple):
        return (
            "_".join(_text(v) for v in value)
            if value and isinstance(value[0], tuple)
            else ("-".join(str(v) for v in value))
        )
    return str(value)


def points(base: Config, axes: dict[str, list[Any]], seeds: list[int]) -> list[tuple[str, Config]]:
    """(directory name, config) for every combination of the axes' values and every seed; a
    ConfigError for repeated seeds or values, or naming every combination that is not valid."""
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"--seeds: repeated seeds in {seeds}")
    for name, values in axes.items():
        texts = [_text(v) for v in values]
        if len(set(texts)) < len(texts):
            raise ConfigError(f"--{name.replace('_', '-')}: repeated values in {', '.join(texts)}")
    if "data_dir" in axes:  # diff ignores it: every value would be the same run
        raise ConfigError("data_dir cannot be a sweep axis: where the data lie changes no result")
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    out, bad = [], []
    for overrides in combos:
        label = ",".join(f"{n}={_text(v)}" for n, v in overrides.items())
        try:
            cfgs = [validate(dataclasses.replace(base, **overrides, seed=s)) for s in seeds]
        except ConfigError as e:
            if not axes:
                raise
            bad.append(f"{label}: {e}")
            continue
        out += [((label + "," if label else "") + f"seed={c.seed}", c) for c in cfgs]
    if bad:
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ConfigError(
            f"{len(bad)} of the {len(combos)} grid points are not valid configs: "
            f"{'; '.join(bad[:5])}{more}"
        )
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
        try:
            saved = Config.from_dict(record["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{out / name} does not hold a gr_jax run's config: {e!r}") from e
        changed = diff(saved, cfg)
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
        # from the stored matrices: runs recorded before a metric was added have it too
        values = [metrics.summary(r["r_test"], r["b_test"]) for r in runs]
        for m in metrics.SCALARS:
            stats = metrics.mean_std([v[m] for v in values]) if runs else (None, None)
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
    names = [m.upper() for m in metrics.SCALARS]
    md = ["| " + " | ".join([*axes, *counts, *names]) + " |"]
    md.append("|" + "---|" * (len(axes) + len(counts) + len(names)))
    for r in rows:
        stats = [
            "-" if r[f"{m}_mean"] is None else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}"
            for m in metrics.SCALARS
        ]
        cells = [*(str(r[a]) for a in axes), *(str(r[c]) for c in counts), *stats]
        md.append("| " + " | ".join(cells) + " |")
    text = "\n".join(md) + "\n"
    write_text(out / "summary.md", text)
    return text


def _cell(v: Any) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _earlier(
    out: Path, base: Config, axes: list[str], grid: set[tuple]
) -> tuple[list[tuple[str, Config, dict | None]], list[str]]:
    """The points in `out` that earlier calls finished (results.json) or saw diverge
    (diverged.json), outside the grid (whose keys, axis values and seed, are in `grid`) and
    with `base`'s config but for the axes and the seed: (name, config, results or None); and
    the names of the points of other configs."""
    from gr_jax.rundir import read_json

    found, other = [], []
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        for name in ("results.json", DIVERGED):
            record = read_json(d / name)
            if record is None:
                continue
            try:
                cfg = Config.from_dict(record["config"])
            except (ConfigError, KeyError, TypeError):
                other.append(d.name)
                break
            key = (*(_text(getattr(cfg, a)) for a in axes), cfg.seed)
            if set(diff(cfg, base)) <= {*axes, "seed"}:
                if key not in grid:
                    grid.add(key)
                    found.append((d.name, cfg, record if name == "results.json" else None))
            else:
                other.append(d.name)
            break
    return found, other


def _flags(record: dict) -> set[str]:
    """The XLA_FLAGS `record` says its run (each task of it) ran with."""
    envs = [record.get("environment"), *record.get("environments", [])]
    return {
        " ".join(e["xla_flags"].split()) for e in envs if isinstance(e, dict) and "xla_flags" in e
    }


def sweep(
    base: Config, axes: dict[str, list[Any]], seeds: list[int], out: Path, bars: bool = True
) -> tuple[list[dict], list[str]]:
    """Run (or skip, or resume) every point, then write the summary of them and of the points
    earlier calls left in `out` with the same fixed config (the diverged points counted in it);
    returns its rows and the names of this grid's points that diverged."""
    from gr_jax.rundir import RunDirError, read_json

    grid = points(base, axes, seeds)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is not a directory: give --out a new or a sweep directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot make the sweep directory {out}: {e.strerror}") from e
    outcomes, diverged, names = [], [], []
    for name, cfg in grid:
        r = run_point(cfg, out / name, bars)
        outcomes.append((cfg, r))
        names.append(name)
        if r is None:
            diverged.append(name)
    keys = {(*(_text(getattr(c, a)) for a in axes), c.seed) for c, _ in outcomes}
    earlier, other = _earlier(out, base, list(axes), keys)
    if earlier:
        print(
            f"summary: also {len(earlier)} point(s) that earlier calls left in {out}: "
            f"{', '.join(n for n, _, _ in earlier)}",
            file=sys.stderr,
        )
    if other:
        print(f"summary: leaves out {len(other)} point(s) of other configs", file=sys.stderr)
    outcomes += [(cfg, r) for _, cfg, r in earlier]
    names += [n for n, _, _ in earlier]
    flags = " ".join(os.environ.get("XLA_FLAGS", "").split())
    records = [r or read_json(out / n / DIVERGED) or {} for n, (_, r) in zip(names, outcomes)]
    mixed = [n for n, r in zip(names, records) if _flags(r) - {flags}]
    if mixed:
        print(
            f"gr-jax: warning: {len(mixed)} point(s) in the summary ran with other XLA_FLAGS "
            f"than this process's ({flags!r}), so other kernels or rounding: {', '.join(mixed)} "
            f"(environment.xla_flags in their results.json)",
            file=sys.stderr,
        )
    rows = summarize(outcomes, list(axes))
    print(write_summary(rows, out))
    return rows, diverged
