"""The original study's experiments and their baselines, run in resumable pieces.

    python experiments/study.py list
    python experiments/study.py run GROUP [GROUP ...] --seeds 0,1,2   # runs/study/GROUP-sSEED
    python experiments/study.py report                                # tables and figures

`run` skips runs that are complete, resumes those that are not (from their last per-task
checkpoint), and copies each finished run's `results.json` to `experiments/results/`, the small
files that are committed. `report` reads only those files and writes `experiments/results/
summary.{json,csv,md}`, the main table of `docs/results.md` and the figures in `docs/figures/`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gr_jax import metrics
from gr_jax.config import Config, preset
from gr_jax.results import stored_bytes

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "study"
RESULTS = ROOT / "experiments" / "results"
FIGURES = ROOT / "docs" / "figures"


def _generator_bytes_images() -> int:
    """How many uint8 28x28 images fit in the bytes of the seed preset's generator parameters
    (float32): the size of the equal-memory stored-image baselines."""
    import jax

    from gr_jax.loop import new_gan

    cfg = preset("seed")
    g = new_gan(cfg, jax.random.PRNGKey(0)).g.params
    nbytes = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(g))
    return nbytes // (28 * 28)


GROUPS = {
    "gr-conv-1.2k": lambda: preset("seed", n_gen=1_200),
    "gr-conv-12k": lambda: preset("seed", n_gen=12_000),
    "gr-conv-120k": lambda: preset("seed", n_gen=120_000),
    # d_chunks 4, as these runs were made (before auto gave the MLP GAN 1: the same model)
    "gr-mlp-12k": lambda: preset("seed", n_gen=12_000, gan="mlp", d_chunks=4),
    "gr-conv-12k-tuned": lambda: preset("tuned"),
    "finetune": lambda: preset("seed", replay="none"),
    "joint": lambda: preset("seed", replay="joint"),
    "exact-12k": lambda: preset("seed", replay="exact", buffer_size=12_000),
    "exact-genbytes": lambda: preset("seed", replay="exact", buffer_size=_generator_bytes_images()),
    # a memory of real images kept from task to task (reservoir): what storing data costs
    "buffer-12k": lambda: preset("seed", replay="buffer", buffer_size=12_000),
    "buffer-genbytes": lambda: preset(
        "seed", replay="buffer", buffer_size=_generator_bytes_images()
    ),
}


def run_and_record(runs: list[tuple[str, Config]], run_root: Path, results: Path) -> list[str]:
    """Run (or resume, or skip) each named run in `run_root/NAME` and record its results.json as
    `results/NAME.json`; returns the diverged runs' `diverged.json` files (not recorded)."""
    from gr_jax.rundir import write_json
    from gr_jax.sweep import run_point

    diverged = []
    for name, cfg in runs:
        r = run_point(cfg, run_root / name)
        if r is None:
            diverged.append(str(run_root / name / "diverged.json"))
            continue
        results.mkdir(parents=True, exist_ok=True)
        write_json(results / f"{name}.json", r)
    return diverged


def run_group(group: str, seeds: list[int], data_dir: str | None) -> list[str]:
    """The group's runs for these seeds (see `run_and_record`)."""
    base = GROUPS[group]().to_dict()
    runs = [
        (f"{group}-s{seed}", preset("seed", **{**base, "seed": seed, "data_dir": data_dir}))
        for seed in seeds
    ]
    return run_and_record(runs, RUNS, RESULTS)


def exit_if_diverged(diverged: list[str]) -> None:
    """After all groups ran: name the runs that diverged, exit with status 3 if any did."""
    if diverged:
        print(f"diverged, so not recorded: {', '.join(diverged)}", file=sys.stderr)
        raise SystemExit(3)


def load_results() -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for f in sorted(RESULTS.glob("*-s*.json")):
        group = f.stem.rsplit("-s", 1)[0]
        groups.setdefault(group, []).append(json.loads(f.read_text()))
    return groups


def run_seconds(results: dict) -> float:
    """Wall seconds of a run's phases ("compile" is already part of them)."""
    return sum(v for t in results["timings"] for k, v in t.items() if k != "compile")


def summarize(groups: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for group, runs in groups.items():
        row: dict = {"group": group, "seeds": [r["config"]["seed"] for r in runs]}
        for metric in ("acc", "bwt", "fwt"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = metrics.mean_std(
                [r["test"][metric] for r in runs]
            )
        r_test = np.array([r["r_test"] for r in runs])
        row["r_test_mean"] = r_test.mean(0).round(4).tolist()
        row["r_test_std"] = r_test.std(0).round(4).tolist()
        row["minutes_mean"] = float(np.mean([run_seconds(r) for r in runs]) / 60)
        mem = runs[0]["memory"]
        row["model_bytes"] = mem["solver_param_bytes"] + (
            mem["generator_param_bytes"] if runs[0]["config"]["replay"] == "generative" else 0
        )
        # from the config, not the file: runs recorded before 2026-11-30 counted `exact` as
        # storing buffer_size images, though it draws them from all earlier images
        seen = np.asarray(mem["real_data_bytes_uint8_after_task"]) // (28 * 28)
        row["stored_real_bytes"] = stored_bytes(Config.from_dict(runs[0]["config"]), seen)
        rows.append(row)
    return rows


def write_tables(rows: list[dict], results: Path = RESULTS) -> str:
    """summary.{json,csv,md} in `results`; returns the Markdown table."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(rows, indent=1))
    head = "group,seeds,acc_mean,acc_std,bwt_mean,bwt_std,fwt_mean,fwt_std,minutes_mean\n"
    lines = [
        f"{r['group']},{len(r['seeds'])},{r['acc_mean']:.4f},{r['acc_std']:.4f},{r['bwt_mean']:.4f},"
        f"{r['bwt_std']:.4f},{r['fwt_mean']:.4f},{r['fwt_std']:.4f},{r['minutes_mean']:.1f}"
        for r in rows
    ]
    (results / "summary.csv").write_text(head + "\n".join(lines) + "\n")
    md = ["| group | seeds | ACC | BWT | FWT | minutes/run |", "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(
            f"| {r['group']} | {len(r['seeds'])} | {r['acc_mean']:.3f} ± {r['acc_std']:.3f} | "
            f"{r['bwt_mean']:+.3f} ± {r['bwt_std']:.3f} | {r['fwt_mean']:+.3f} ± {r['fwt_std']:.3f} "
            f"| {r['minutes_mean']:.1f} |"
        )
    text = "\n".join(md)
    (results / "summary.md").write_text(text + "\n")
    print(text)
    return text


MAIN_TABLE = "| method | seeds | ACC | BWT | FWT | minutes/run |\n|---|---|---|---|---|---|\n"


def fill_results_doc(rows_md: str, head: str = MAIN_TABLE) -> None:
    """Replace the rows of the table of docs/results.md that starts with `head` (its lines
    starting with "|" right after the header) by the summary rows."""
    doc = ROOT / "docs" / "results.md"
    if not doc.exists():
        return
    text = doc.read_text()
    start = end = text.index(head) + len(head)
    while text.startswith("|", end):
        end = text.index("\n", end) + 1
    rows = "".join(line + "\n" for line in rows_md.splitlines()[2:])
    doc.write_text(text[:start] + rows + text[end:])


def write_figures(groups: dict[str, list[dict]], rows: list[dict], figures: Path = FIGURES) -> None:
    """For each row: accuracy matrix + validation curves, and the replay's class histograms."""
    import matplotlib.pyplot as plt

    from gr_jax import plots

    figures.mkdir(parents=True, exist_ok=True)
    for row in rows:
        runs = groups[row["group"]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 2]})
        plots.accuracy_matrix(row["r_test_mean"], ax=axes[0], title="test R, mean over seeds")
        plots.validation_curves(
            runs[0], ax=axes[1], title=f"{row['group']}, seed {runs[0]['config']['seed']}"
        )
        fig.tight_layout()
        fig.savefig(figures / f"{row['group']}.png", dpi=110)
        plt.close(fig)
        counts = runs[0]["replay_class_counts"]
        if any(sum(c) for c in counts):
            fig, axes = plt.subplots(1, len(counts) - 1, figsize=(3 * (len(counts) - 1), 2.4))
            for t, ax in enumerate(np.atleast_1d(axes), start=1):
                plots.replay_histogram(counts[t], ax=ax, title=f"replay before task {t + 1}")
            fig.tight_layout()
            fig.savefig(figures / f"{row['group']}-replay.png", dpi=110)
            plt.close(fig)


def write_cost_figures(groups: dict[str, list[dict]]) -> None:
    """Memory vs tasks (generative replay's models vs a buffer of real data) and wall time per
    task and phase for each generative-replay group."""
    import matplotlib.pyplot as plt

    gen = [g for g in groups if g.startswith("gr-")]
    if not gen:
        return
    r = groups[gen[0]][0]
    mem = r["memory"]
    tasks = np.arange(1, len(r["r_test"]) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    models = (mem["solver_param_bytes"] + mem["generator_param_bytes"]) / 1e6
    ax.plot(tasks, [models] * len(tasks), "o-", label="solver + generator parameters")
    ax.plot(tasks, np.array(mem["real_data_bytes_float32_after_task"]) / 1e6, "s-",
            label="real data seen, float32")  # fmt: skip
    seen_uint8 = np.array(mem["real_data_bytes_uint8_after_task"])
    ax.plot(tasks, seen_uint8 / 1e6, "^-", label="real data seen, uint8")
    for group in (g for g in groups if g.startswith("buffer-")):  # what each keeps after a task
        n = groups[group][0]["config"]["buffer_size"]
        ax.plot(tasks, np.minimum(seen_uint8, n * 28 * 28) / 1e6, "v--",
                label=f"{group}: a memory of {n:,} real images, uint8")  # fmt: skip
    ax.set(xlabel="tasks learned", ylabel="MB", title="memory needed for replay")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "memory.png", dpi=110)
    plt.close(fig)

    phases = ("generate", "solver", "evaluate", "gan", "checkpoint")
    fig, axes = plt.subplots(1, len(gen), figsize=(3.6 * len(gen), 3), squeeze=False)
    for ax, g in zip(axes[0], gen):
        times = np.array(
            [[[t.get(p, 0.0) for p in phases] for t in run["timings"]] for run in groups[g]]
        )
        mean = times.mean(0)
        bottom = np.zeros(len(mean))
        for i, p in enumerate(phases):
            ax.bar(tasks, mean[:, i], bottom=bottom, label=p)
            bottom += mean[:, i]
        ax.set(xlabel="task", ylabel="seconds", title=f"{g}: time per task")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIGURES / "time-per-task.png", dpi=110)
    plt.close(fig)


def parse_args(description: str, groups: list[str]) -> argparse.Namespace:
    """`list`, `run GROUP... --seeds --data-dir`, `report`: the experiment scripts' commands."""
    p = argparse.ArgumentParser(description=description)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    r = sub.add_parser("run")
    r.add_argument("groups", nargs="+", choices=groups)
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--data-dir", default=None)
    sub.add_parser("report")
    return p.parse_args()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], sorted(GROUPS))
    if args.command == "list":
        for g in GROUPS:
            print(g)
    elif args.command == "run":
        seeds = [int(s) for s in args.seeds.split(",")]
        exit_if_diverged([d for g in args.groups for d in run_group(g, seeds, args.data_dir)])
    else:
        groups = load_results()
        rows = summarize(groups)
        fill_results_doc(write_tables(rows))
        write_figures(groups, rows)
        write_cost_figures(groups)


if __name__ == "__main__":
    main()
