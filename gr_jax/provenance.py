"""What a result depends on besides its config: packages, devices, cores, flags, commit."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "gr_jax")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit(root: Path = PACKAGE_ROOT) -> str | None:
    """The commit of the checkout gr_jax runs from (`root`, holding gr_jax/), with '+dirty.'
    and a hash of the changes if it has any (tracked files' diff and the package's untracked
    files, so two different edits read differently), or None: also when gr_jax is not tracked
    there (an installed copy inside another repository). Once per process: the code it
    imported."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    try:
        git("ls-files", "--error-unmatch", "gr_jax/provenance.py")
        head = git("rev-parse", "HEAD").strip()
        changes = git("diff", "HEAD")
        new = git("ls-files", "--others", "--exclude-standard", "gr_jax").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    for name in sorted(new):
        changes += f"\nuntracked {name}\n" + (root / name).read_text(errors="replace")
    if not changes:
        return head
    return f"{head}+dirty.{hashlib.sha256(changes.encode()).hexdigest()[:12]}"


def cpu_cores() -> int | None:
    """The CPU cores this process may run on (None where the OS does not say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment() -> dict[str, Any]:
    """What a result's bits depend on besides its config, the code's commit included."""
    devices = jax.devices()
    return {
        "packages": {p: _version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "cpu_cores": cpu_cores(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # how keys are split and folded (what random bits every key gives)
        "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "git_commit": git_commit(),
    }


def note_environment(history: dict, env: dict[str, Any], task: int) -> list[str]:
    """Record in `history["environments"]` that task `task` (0-based) runs in `env`, unless the
    task before it ran in the same one; returns the fields that changed (a run resumed on
    another machine, with other flags or other code), for a warning."""
    envs = history.setdefault("environments", [])
    last = {k: v for k, v in envs[-1].items() if k != "tasks_done_before"} if envs else None
    if last == env:
        return []
    envs.append({"tasks_done_before": task, **env})
    return [] if last is None else sorted(k for k in env if last.get(k) != env[k])


def warn_if_changed(changed: list[str], task: int) -> None:
    """Say on stderr that task `task` (0-based) runs in another environment than the one before."""
    if changed:
        print(
            f"gr_jax: warning: task {task + 1} runs in another environment than task {task} "
            f"({', '.join(changed)} differ); its results may differ in the last bits from an "
            f"uninterrupted run's (results.json's `environments` lists each one)",
            file=sys.stderr,
        )
