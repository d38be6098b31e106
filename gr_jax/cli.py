"""Command line: `gr-jax run --preset NAME [--any-config-field VALUE ...]`.

Every field of `gr_jax.config.Config` is an option (underscores become dashes). Lists are
comma-separated (`--gen-epochs 10,15,20,25,30`); tasks are classes separated by commas,
tasks by slashes (`--tasks 0,1/2,3/4,5/6,7/8,9`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from gr_jax.config import PRESETS, Config, ConfigError, preset, validate

DEFAULT_CACHE = Path("~/.cache/gr_jax/jax_compilation_cache").expanduser()


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _tasks(text: str) -> tuple[tuple[int, ...], ...]:
    return tuple(_int_list(part) for part in text.split("/"))


def _optional_str(text: str) -> str | None:
    return None if text.lower() in ("", "none") else text


PARSERS = {
    "str": str,
    "str | None": _optional_str,
    "int": int,
    "float": float,
    "tuple[int, ...]": _int_list,
    "tuple[tuple[int, ...], ...]": _tasks,
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config fields (override the preset)")
    for f in dataclasses.fields(Config):
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=PARSERS[f.type],
            default=None,
            metavar=f.type.split("[")[0].upper().replace(" | NONE", ""),
            help=f"default: {getattr(Config(), f.name)!r} (or the preset's)",
        )


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset (or, with --resume and no --preset, the run's saved config) plus overrides."""
    overrides: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Config)
        if getattr(args, f.name) is not None
    }
    saved = args.out / "config.json" if getattr(args, "out", None) else None
    if getattr(args, "resume", False) and args.preset is None and saved and saved.is_file():
        try:
            base = Config.from_dict(json.loads(saved.read_text()))
        except ValueError as e:
            raise ConfigError(f"{saved} is not a valid gr_jax config: {e}") from e
        return validate(dataclasses.replace(base, **overrides))
    return preset(args.preset or "seed", **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gr-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one experiment")
    run.add_argument(
        "--preset",
        default=None,
        help=f"one of {', '.join(PRESETS)} (default: seed; with --resume: the run's own config)",
    )
    run.add_argument(
        "--out", type=Path, default=None, help="run directory (default runs/PRESET-TIME)"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--no-compile-cache", action="store_true", help="do not use JAX's persistent compile cache"
    )
    run.add_argument("--compile-cache-dir", type=Path, default=DEFAULT_CACHE)
    add_config_options(run)
    return parser


def enable_compile_cache(path: Path) -> None:
    import jax

    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _resume_hint(out: Path) -> str:
    from gr_jax import checkpoints

    done = checkpoints.latest(checkpoints.manager(out)) if (out / "checkpoints").exists() else None
    if not done:
        return f"{out} holds no finished task yet."
    return (
        f"{out} keeps its checkpoint after task {done}; continue with: "
        f"gr-jax run --resume --out {out}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ConfigError, TypeError) as e:
        parser.error(str(e))
    from gr_jax.data import DataError
    from gr_jax.health import DivergenceError
    from gr_jax.loop import RunDirError, run
    from gr_jax.metrics import format_matrix

    if not args.no_compile_cache:
        enable_compile_cache(args.compile_cache_dir)
    if args.resume and args.out is None:
        parser.error("--resume needs --out DIR")
    out = args.out or Path("runs") / f"{args.preset or 'seed'}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        results = run(
            cfg, out, resume=args.resume, overwrite=args.overwrite, bars=not args.no_progress
        )
    except (ConfigError, DataError, RunDirError) as e:
        print(f"gr-jax: error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"gr-jax: diverged: {e}. {_resume_hint(out)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\ngr-jax: interrupted. {_resume_hint(out)}", file=sys.stderr)
        return 130
    print(format_matrix(results["r_test"], "test accuracy R"))
    t = results["test"]
    print(f"ACC {t['acc']:.4f}  BWT {t['bwt']:+.4f}  FWT {t['fwt']:+.4f}  (test split)")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
