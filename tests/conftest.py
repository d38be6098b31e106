"""Shared fixtures: where the real data live, and a tiny config that runs in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gr_jax.config import Config, preset

REPO = Path(__file__).resolve().parent.parent


def mnist_dir() -> Path | None:
    """The MNIST IDX folder: GR_JAX_DATA_DIR if set, else ../shared/data/mnist beside the repo."""
    for candidate in (os.environ.get("GR_JAX_DATA_DIR"), REPO.parent / "shared/data/mnist"):
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_path() -> Path:
    path = mnist_dir()
    if path is None:
        pytest.skip("full MNIST not available (set GR_JAX_DATA_DIR)")
    return path


def tiny_config(**overrides) -> Config:
    """Two tasks of mnist-5k, a small conv GAN, one epoch each: the whole loop in seconds."""
    base = dict(
        tasks=((0, 1), (2, 3)),
        n_gen=256,
        gen_chunk=128,
        solver_epochs=2,
        solver_batch=64,
        gan_width=8,
        gen_epochs=(1,),
        gan_batch=32,
    )
    base.update(overrides)
    return preset("quick", **base)


@pytest.fixture
def tiny() -> Config:
    return tiny_config()


def prepare(cfg: Config, out: Path, resume: bool = False, overwrite: bool = False) -> None:
    """What `loop.run` does with its run directory before the first task (data aside); the
    directory's claim is let go at once."""
    from gr_jax import rundir

    checked = rundir.check(cfg, out, resume, overwrite)
    rundir.create(cfg, out, resume, overwrite, checked=checked).release()
