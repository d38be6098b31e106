"""Command line: `gr-jax run` (one experiment) and `gr-jax sweep` (a grid of them x seeds).

`gr-jax run --preset NAME [--any-config-field VALUE ...]`.

Every field of `gr_jax.config.Config` is an option (underscores become dashes). Lists are
comma-separated (`--gen-epochs 10,15,20,25,30`); tasks are classes separated by commas,
tasks by slashes (`--tasks 0,1/2,3/4,5/6,7/8,9`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gr_jax.config import PRESETS, Config, ConfigError, field_docs, preset, validate

DEFAULT_CACHE = Path("~/.cache/gr_jax/jax_compilation_cache").expanduser()
# XLA's GPU kernels without atomics, and one fixed kernel choice instead of the timing-based
# autotuner's (docs/reproducibility.md, "Determinism"); the CPU backend ignores them
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true", "--xla_gpu_autotune_level=0")
# XLA's CPU backend hands convolutions to YNNPACK by default; its Eigen convolutions are faster
# for the conv GAN's larger layers (benchmarks/README.md). They round differently.
CPU_CONV_XLA_FLAGS = {
    "ynnpack": (),
    "eigen": ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",),
}
CPU_CONVS_HELP = (
    "library for convolutions on the CPU: ynnpack (XLA's default, what the recorded results "
    "used) or eigen (5-28%% faster conv GAN steps on CPUs, other rounding; adds to XLA_FLAGS)"
)
DETERMINISTIC_HELP = (
    "bitwise repeatable GPU runs: XLA's deterministic kernels and no autotuning "
    "(adds them to XLA_FLAGS; fast with --conv-impl slices)"
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _tasks(text: str) -> tuple[tuple[int, ...], ...]:
    try:
        return tuple(_int_list(part) for part in text.split("/"))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"tasks: classes separated by commas, tasks by slashes (0,1/2,3/4,5), got {text!r}"
        ) from None


def _cli_text(value: Any) -> str:
    """A config value as the command line writes it: 10,15,20 and 0,1/2,3 for tuples."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "/".join(_cli_text(v) for v in value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


METAVARS = {"tuple[int, ...]": "A,B,...", "tuple[tuple[int, ...], ...]": "A,B/C,D/..."}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_str(text: str) -> str | None:
    return None if text.lower() in ("", "none") else text


PARSERS = {
    "str": str,
    "bool": _bool,
    "str | None": _optional_str,
    "int": int,
    "float": float,
    "tuple[int, ...]": _int_list,
    "tuple[tuple[int, ...], ...]": _tasks,
}


def add_config_options(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    """One option per Config field; with `grid`, an option takes a list of values to sweep."""
    title = "config fields (override the preset)"
    if grid:
        title += "; several values make a grid axis: 'A,B,C', or 'A|B' for list-valued fields"
    group = parser.add_argument_group(title)
    docs = field_docs()
    for f in dataclasses.fields(Config):
        parse = PARSERS[f.type]
        meaning = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=(lambda text, parse=parse, t=f.type: _grid(text, parse, t)) if grid else parse,
            default=None,
            metavar=METAVARS.get(f.type, f.type.split("[")[0].upper().replace(" | NONE", "")),
            help=argparse.SUPPRESS
            if grid and f.name == "seed"  # refused below: a sweep takes --seeds
            else f"{meaning} (default: {_cli_text(getattr(Config(), f.name))}, or the preset's)",
        )


def _grid(text: str, parse, annotation: str) -> list:
    sep = "|" if annotation.startswith("tuple") else ","
    try:
        return [parse(part) for part in text.split(sep)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {e}") from None


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,5' -> [0, 3, 5]."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds: expected 'A-B' or 'A,B,C', got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"seeds: {text!r} is an empty range (write 'low-high')")
    if min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds: need non-negative seeds, got {text!r}")
    return seeds


def resolve_data_dir(overrides: dict[str, Any]) -> None:
    """A given data_dir made absolute, in place: config.json must find the data from any working
    directory (a resume, the notebook, the experiment scripts)."""
    if overrides.get("data_dir"):
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset (or, with --resume and no --preset, the run's saved config) plus overrides."""
    overrides: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Config)
        if getattr(args, f.name) is not None
    }
    resolve_data_dir(overrides)
    saved = args.out / "config.json" if getattr(args, "out", None) else None
    if getattr(args, "resume", False) and args.preset is None and saved and saved.is_file():
        try:
            base = Config.from_dict(json.loads(saved.read_text()))
        except ValueError as e:
            raise ConfigError(f"{saved} is not a valid gr_jax config: {e}") from e
        return validate(dataclasses.replace(base, **overrides))
    return preset(args.preset or "seed", **overrides)


# options that do nothing unless the run is of a kind: (field, what it needs, whether it has it)
ONLY_WITH: tuple[tuple[str, str, Callable[[Config, argparse.Namespace], bool]], ...] = (
    ("buffer_size", "--replay exact or buffer", lambda c, a: c.replay in ("exact", "buffer")),
    ("replay_share", "--replay-weighting fixed", lambda c, a: c.replay_weighting == "fixed"),
    ("test_fraction", "--dataset mnist-5k", lambda c, a: c.dataset == "mnist-5k"),
    ("gan_width", "--gan conv", lambda c, a: c.gan == "conv"),
    ("conv_impl", "--gan conv", lambda c, a: c.gan == "conv"),
    ("align_batch", "--replay-alignment > 0", lambda c, a: c.replay_alignment > 0),
    ("seed_axis", "--seeds", lambda c, a: getattr(a, "seeds", None) is not None),
)


def unused_options(args: argparse.Namespace, cfg: Config) -> list[str]:
    """Warnings for options given on the command line that this run does not use."""
    return [
        f"--{name.replace('_', '-')} has no effect here: it is used with {needs}"
        for name, needs, used in ONLY_WITH
        if getattr(args, name, None) is not None and not used(cfg, args)
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gr-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one experiment",
        usage="gr-jax run [--preset NAME] [--out DIR] [--resume | --overwrite] [--seeds S] "
        "[--FIELD VALUE ...] (--help lists them)",
    )
    run.set_defaults(subparser=run)
    run.add_argument(
        "--preset",
        default=None,
        help=f"one of {', '.join(PRESETS)} (default: seed; with --resume: the run's own config)",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="run directory (default runs/PRESET-TIME)"
    )
    run.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="'0-7' or '0,3,5': all these seeds in one program (instead of --seed; see --seed-axis)",
    )
    run.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host: same command on every host; "
        "on SLURM, Open MPI, TPU pods and GKE it finds its peers itself)",
    )
    run.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="with --distributed elsewhere: process 0's address, the same on every host",
    )
    run.add_argument(
        "--num-processes", type=int, default=None, help="with --coordinator: processes in all"
    )
    run.add_argument(
        "--process-id", type=int, default=None, help="with --coordinator: this one, 0 to N-1"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    add_process_options(run)
    add_kernel_options(run)
    add_config_options(run)
    sw = sub.add_parser(
        "sweep",
        help="a grid of runs x seeds, resumable, with a summary table",
        usage="gr-jax sweep --out DIR [--preset NAME] [--seeds S] [--FIELD A,B,... ...] "
        "(--help lists them)",
    )
    sw.set_defaults(subparser=sw)
    sw.add_argument("--preset", default="seed", help=f"one of {', '.join(PRESETS)}")
    sw.add_argument("--seeds", type=parse_seeds, default=[0], help="'0-4' or '0,1,2'")
    sw.add_argument("--out", type=Path, required=True, help="sweep directory")
    add_process_options(sw)
    add_kernel_options(sw)
    add_config_options(sw, grid=True)
    return parser


def add_process_options(p: argparse.ArgumentParser) -> None:
    """Progress bars and the compile cache, for `run` and `sweep`."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-compile-cache", action="store_true", help="do not use JAX's persistent compile cache"
    )
    p.add_argument(
        "--compile-cache-dir", type=Path, default=DEFAULT_CACHE, help="default: %(default)s"
    )


def add_kernel_options(p: argparse.ArgumentParser) -> None:
    """The options that choose XLA's kernels (through XLA_FLAGS), for `run` and `sweep`."""
    p.add_argument("--deterministic", action="store_true", help=DETERMINISTIC_HELP)
    p.add_argument(
        "--cpu-convs", choices=CPU_CONV_XLA_FLAGS, default="ynnpack", help=CPU_CONVS_HELP
    )


def jax_started() -> bool:
    """Whether this process has started a JAX backend (XLA_FLAGS are read then, only then)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without it: assume not, as before
        return False


def add_xla_flags(extra: tuple[str, ...]) -> None:
    """Add `extra` to XLA_FLAGS; a ConfigError if a flag is new and JAX has started a backend
    already, where it would do nothing while results.json recorded it as in force."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    new = [f for f in extra if f not in flags]
    if new and jax_started():
        raise ConfigError(
            f"{' '.join(new)} must be in XLA_FLAGS before JAX starts, and this process has "
            f"started it already; set XLA_FLAGS in the environment instead"
        )
    os.environ["XLA_FLAGS"] = " ".join(flags + new)


def enable_compile_cache(path: Path, parser: argparse.ArgumentParser) -> None:
    """JAX's persistent compilation cache in `path`; `parser`'s error if it cannot be a folder."""
    import jax

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(
            f"--compile-cache-dir {path}: {e.strerror or e}; choose another folder or pass "
            f"--no-compile-cache"
        )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _run_seeds(cfg: Config, seeds: list[int], out: Path, args: argparse.Namespace) -> int:
    from gr_jax import multiseed
    from gr_jax.metrics import SCALARS, format_matrix, format_scalars

    every = multiseed.run(
        cfg,
        seeds,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        bars=not args.no_progress,
        log=True,
    )
    s = multiseed.summary(every)
    print(format_matrix(s["r_test"]["mean"], f"test accuracy R, mean over seeds {seeds}"))
    means = {m: s[f"test_{m}"]["mean"] for m in SCALARS}
    stds = {m: s[f"test_{m}"]["std"] for m in SCALARS}
    print(format_scalars(means, stds) + "  (test split)")
    print(f"results: {out}/seed=*/results.json and {out / 'summary.json'}")
    return 0


def _resume_hint(out: Path, args: argparse.Namespace) -> str:
    from gr_jax import checkpoints

    done = checkpoints.latest_in(out)
    if not done:
        return f"{out} holds no finished task yet."
    kernels = (" --deterministic" if args.deterministic else "") + (
        f" --cpu-convs {args.cpu_convs}" if args.cpu_convs != "ynnpack" else ""
    )  # the same kernels as this process, or the resumed tasks round differently
    return (
        f"{out} keeps its checkpoint after task {done}; continue with: "
        f"gr-jax run --resume --out {out}{kernels}"
    )


def sweep_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from gr_jax.data import DataError
    from gr_jax.rundir import RunDirError
    from gr_jax.sweep import points, sweep

    grid = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Config)
        if getattr(args, f.name) is not None
    }
    if "seed" in grid:
        parser.error("sweep: give seeds with --seeds, not --seed")
    fixed = {k: v[0] for k, v in grid.items() if len(v) == 1}
    resolve_data_dir(fixed)
    axes = {k: v for k, v in grid.items() if len(v) > 1}
    try:  # the fixed values are checked with each combination of the axes' (they may need them)
        base = dataclasses.replace(preset(args.preset), **fixed)
        points(base, axes, args.seeds)
    except (ConfigError, TypeError) as e:
        parser.error(str(e))
    if not args.no_compile_cache:
        enable_compile_cache(args.compile_cache_dir, parser)
    try:
        _, diverged = sweep(base, axes, args.seeds, args.out, bars=not args.no_progress)
    except (ConfigError, DataError, RunDirError) as e:  # a point's divergence: `diverged`
        print(f"gr-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngr-jax: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    if diverged:
        print(
            f"gr-jax: {len(diverged)} point(s) diverged (counted in the summary's diverged "
            f"column): {', '.join(diverged)} (each has a diverged.json saying where)",
            file=sys.stderr,
        )
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parser = args.subparser  # its usage line in the errors below
    try:
        add_xla_flags(DETERMINISTIC_XLA_FLAGS if args.deterministic else ())
        add_xla_flags(CPU_CONV_XLA_FLAGS[args.cpu_convs])
    except ConfigError as e:
        parser.error(str(e))
    if args.command == "sweep":
        return sweep_main(parser, args)
    try:
        cfg = config_from_args(args)
    except (ConfigError, TypeError) as e:
        parser.error(str(e))
    from gr_jax.data import DataError
    from gr_jax.health import DivergenceError
    from gr_jax.loop import run
    from gr_jax.metrics import format_matrix, format_scalars, summary
    from gr_jax.rundir import RunDirError, read_json

    manual = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in manual) and not args.distributed:
        parser.error("--coordinator, --num-processes and --process-id go with --distributed")
    if args.resume and args.out is None:
        parser.error("--resume needs --out DIR")
    if args.resume and args.overwrite:
        parser.error("give either --resume (continue the run in --out) or --overwrite (replace it)")
    out = args.out or Path("runs") / f"{args.preset or 'seed'}-{time.strftime('%Y%m%d-%H%M%S')}"
    seeds = args.seeds
    if seeds is None and args.resume and (out / "seeds.json").exists():
        seeds = read_json(out / "seeds.json")
        if not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
            parser.error(f"{out / 'seeds.json'} is not a list of seeds")
        if args.seed is not None:
            parser.error(f"{out} holds seeds {seeds} run in one program: resume it without --seed")
    if seeds is not None and args.seed is not None:
        parser.error("give either --seed or --seeds")
    if args.distributed and seeds is None:
        parser.error("--distributed shares seeds run in one program between hosts: give --seeds")
    if args.distributed and args.out is None:  # a default name from each host's own clock
        parser.error("--distributed needs --out DIR, the same on every host")
    if args.distributed:
        import jax

        jax.distributed.initialize(*manual)
    if not args.no_compile_cache:
        enable_compile_cache(args.compile_cache_dir, parser)
    for warning in unused_options(args, cfg):
        print(f"gr-jax: warning: {warning}", file=sys.stderr)
    print(f"gr-jax: run directory {out}", file=sys.stderr)
    try:
        if seeds is not None:
            return _run_seeds(cfg, seeds, out, args)
        results = run(
            cfg,
            out,
            resume=args.resume,
            overwrite=args.overwrite,
            bars=not args.no_progress,
            log=True,
        )
    except (ConfigError, DataError, RunDirError) as e:
        print(f"gr-jax: error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"gr-jax: diverged: {e}. {_resume_hint(out, args)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\ngr-jax: interrupted. {_resume_hint(out, args)}", file=sys.stderr)
        return 130
    print(format_matrix(results["r_test"], "test accuracy R"))
    test = summary(results["r_test"], results["b_test"])  # a resumed older run: all metrics
    print(format_scalars(test) + "  (test split)")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
