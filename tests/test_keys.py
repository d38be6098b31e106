"""PRNG keys are split explicitly and never reused: every key a run splits, folds in or draws
from is recorded (op by op under `jax.disable_jit`, so every key is a concrete value) and the
record is checked for reuse, each problem named with the places in gr_jax that made it."""

from __future__ import annotations

import collections
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax._src.random as jax_src_random
import jax.numpy as jnp
import numpy as np
import pytest

from gr_jax import loop, solver

from .conftest import tiny_config

PACKAGE = Path(loop.__file__).resolve().parent

# Functions that draw from a key. Flax's initialisers are `jax.nn.initializers`, which call
# jax._src.random's functions (truncated_normal, normal, uniform), not jax.random's: both
# modules are patched.
DRAWS = (
    "bits",
    "uniform",
    "randint",
    "normal",
    "truncated_normal",
    "bernoulli",
    "permutation",
    "choice",
    "categorical",
    "gumbel",
)


@dataclass(frozen=True)
class Use:
    """One use of a key: "split" (data: into how many), "fold" (data: the value folded in),
    "draw" (data: the function), or "made" (the key is an output of a split or fold_in);
    `where` is "gr_jax/file.py:line", `who` "file.py:function"."""

    kind: str
    key: tuple[int, ...]
    data: Any
    where: str
    who: str

    def __str__(self) -> str:
        return f"{self.kind} {self.data} at {self.where} ({self.who})"


def key_value(key: jax.Array) -> tuple[int, ...]:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return tuple(np.asarray(key).ravel().tolist())


def site_of(frame) -> tuple[str, str, frozenset[str]]:
    """(where, who, callers) of a key's use from `frame`, a jax.random function's caller: the
    innermost gr_jax frame as "gr_jax/file.py:line" and "file.py:function" (without one, a key
    a test uses itself, `frame`'s), and every gr_jax function on the stack."""
    gr_jax = [f for f in iter_frames(frame) if f.f_code.co_filename.startswith(str(PACKAGE))]
    inner = gr_jax[0] if gr_jax else frame
    path = Path(inner.f_code.co_filename)
    shown = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
    return f"{shown}:{inner.f_lineno}", function_of(inner), frozenset(map(function_of, gr_jax))


def iter_frames(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back


def function_of(frame) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"


class KeyTrace:
    """Records, through `monkeypatch`, every split, fold_in and draw of a key by jax.random (or
    jax._src.random). Only the outermost call is the caller's: a draw's own inner calls (`normal`
    drawing a `uniform`) are not recorded, nor are uses inside `jax.eval_shape` (Flax's apply
    checks each parameter's shape with one of its initialiser: abstract keys, never drawn).
    Concrete keys go to `uses`; the sites of traced ones, which this cannot check, to `traced`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.uses: list[Use] = []
        self.traced: list[str] = []
        # every gr_jax function on the stack at a use, and each draw as "file.py:function:draw"
        self.reached: set[str] = set()
        self.depth = 0
        monkeypatch.setattr(jax, "eval_shape", self.wrap(jax.eval_shape, None))
        for module in (jax.random, jax_src_random):
            monkeypatch.setattr(module, "split", self.wrap(jax_src_random.split, self.on_split))
            monkeypatch.setattr(module, "fold_in", self.wrap(jax_src_random.fold_in, self.on_fold))
            for name in DRAWS:
                fn = self.wrap(getattr(jax_src_random, name), self.on_draw(name))
                monkeypatch.setattr(module, name, fn)

    def wrap(self, fn, record):
        def wrapper(key, *args, **kwargs):
            outermost = self.depth == 0
            self.depth += 1
            try:
                out = fn(key, *args, **kwargs)
            finally:
                self.depth -= 1
            if outermost and record is not None:
                where, who, callers = site_of(sys._getframe(1))
                if isinstance(key, jax.core.Tracer):
                    self.traced.append(where)
                else:
                    self.reached |= callers
                    record(key_value(key), out, where, who, *args, **kwargs)
            return out

        return wrapper

    def on_split(self, key, out, where, who, num=2):
        self.uses.append(Use("split", key, int(num), where, who))
        self.uses.extend(Use("made", key_value(k), "by split", where, who) for k in out)

    def on_fold(self, key, out, where, who, data):
        self.uses.append(Use("fold", key, int(np.asarray(data)), where, who))
        self.uses.append(Use("made", key_value(out), "by fold_in", where, who))

    def on_draw(self, name):
        def record(key, out, where, who, *args, **kwargs):
            self.uses.append(Use("draw", key, name, where, who))
            self.reached.add(f"{who}:{name}")

        return record

    def problems(self) -> list[str]:
        """Every key reused, with all its uses: drawn from twice, drawn from and also split or
        folded, split twice, split and folded (fold_in(k, i) is split(k, n)[i] in this JAX),
        folded with the same data twice, or made twice (by any splits and folds)."""
        by_key: dict[tuple[int, ...], list[Use]] = collections.defaultdict(list)
        for u in self.uses:
            by_key[u.key].append(u)
        found = []
        for key, uses in by_key.items():
            n = collections.Counter(u.kind for u in uses)
            folds = collections.Counter(u.data for u in uses if u.kind == "fold")
            reasons = [
                *(["drawn from twice"] if n["draw"] > 1 else []),
                *(["drawn from and split or folded"] if n["draw"] and n["split"] + n["fold"] else []),
                *(["split twice"] if n["split"] > 1 else []),
                *(["split and folded"] if n["split"] and n["fold"] else []),
                *[f"fold_in(key, {d}) twice" for d, c in folds.items() if c > 1],
                *(["made twice"] if n["made"] > 1 else []),
            ]  # fmt: skip
            if reasons:
                seen = collections.Counter(map(str, uses))  # in order of first use
                listed = "; ".join(f"{u} (x{c})" if c > 1 else u for u, c in seen.items())
                found.append(f"key {list(key)}: {', '.join(reasons)}: {listed}")
        return found

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, f"{len(problems)} key(s) reused:\n" + "\n".join(problems[:20])


@pytest.fixture
def key_trace(monkeypatch) -> KeyTrace:
    return KeyTrace(monkeypatch)


# Runs as small as they get with every key user still running: one class a task (~150
# training images with these fractions), the MLP GAN, a few replay images in two chunks; two
# epochs and at least two steps in each, so a key reused across epochs or steps shows.
SMALL = dict(
    gan="mlp",
    tasks=((0,), (1,)),
    val_fraction=0.45,
    test_fraction=0.45,
    latent_dim=8,
    n_gen=16,
    gen_chunk=8,
    solver_hidden=(16,),
    solver_epochs=2,
    solver_batch=64,
    gen_epochs=(2,),
    gan_batch=64,
)

# name: (config overrides, key users the run must reach: functions, and draws in a function)
RUNS = {
    "method": (
        {},
        {
            "loop.py:state_from_key",
            "loop.py:task_keys",
            "loop.py:gan_keys",
            "replay.py:generate_replay",
            "gan.py:sample:normal",
            "batching.py:valid_permutation:uniform",
            "gan.py:gan_step:normal",
        },
    ),
    "beyond": (
        dict(
            conditional=True,
            fresh_replay=True,
            keep_generator=True,
            soft_targets=2.0,
            replay_weighting="tasks",
            solver_shift=1,
            solver_dropout=0.2,
            replay_alignment=1.0,
            align_batch=8,
        ),
        {
            "replay.py:fresh_step_at:randint",
            "gan.py:sample:normal",
            "gan.py:_alignment_batch:randint",
            "models.py:embed_init:normal",
            "solver.py:random_shift:randint",
            "models.py:__call__:bernoulli",
        },
    ),
    # the solver's shifts and dropout outside fresh replay, EMA replay, GAN steps in a scan
    "ema-shift-dropout-scan": (
        dict(gan_ema=0.9, solver_shift=1, solver_dropout=0.2, gan_scan=2),
        {"solver.py:random_shift:randint", "models.py:__call__:bernoulli", "gan.py:gan_steps_at"},
    ),
    "exact": (dict(replay="exact", buffer_size=100), {"loop.py:replay_phase:randint"}),
    "buffer": (
        dict(replay="buffer", buffer_size=100, tasks=((0,), (1,), (2,))),
        {"loop.py:_run_phases:randint"},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_a_run_never_reuses_a_key(name, key_trace):
    """A whole run, op by op: every key it uses is concrete (so checked), every key user of
    its options is reached, and no key is reused."""
    overrides, users = RUNS[name]
    with jax.disable_jit():
        loop.run(tiny_config(**{**SMALL, **overrides}), None, bars=False)
    assert not key_trace.traced, f"keys traced, not checked, at {sorted(set(key_trace.traced))}"
    assert users <= key_trace.reached, f"key users not reached: {users - key_trace.reached}"
    key_trace.assert_clean()


# Hand-written reuses, one of each kind the trace reports (the key `k` is fresh in each).
REUSES = {
    "drawn from twice": lambda k: (jax.random.normal(k, ()), jax.random.uniform(k, ())),
    "drawn from and split or folded": lambda k: (jax.random.normal(k, ()), jax.random.split(k)),
    "split twice": lambda k: (jax.random.split(k), jax.random.split(k, 3)),
    "split and folded": lambda k: (jax.random.split(k, 3), jax.random.fold_in(k, 7)),
    "fold_in(key, 5) twice": lambda k: (jax.random.fold_in(k, 5), jax.random.fold_in(k, 5)),
    "made twice": lambda k: (jax.random.split(k)[1], jax.random.fold_in(k, 1)),
}


@pytest.mark.parametrize("reason", REUSES)
def test_the_trace_reports_each_kind_of_reuse_where_it_happened(reason, key_trace):
    reuse = REUSES[reason]
    reuse(jax.random.PRNGKey(3))
    where = f"tests/test_keys.py:{reuse.__code__.co_firstlineno}"
    assert any(reason in p and where in p for p in key_trace.problems()), key_trace.problems()


def test_the_trace_passes_keys_split_and_used_once(key_trace):
    _, k_a, k_b = jax.random.split(jax.random.PRNGKey(3), 3)
    jax.random.normal(k_a, (2,))
    steps = [jax.random.fold_in(k_b, i) for i in range(3)]
    jax.random.uniform(jax.random.split(steps[0])[1])
    assert key_trace.uses and not key_trace.traced
    key_trace.assert_clean()


def test_the_trace_names_the_gr_jax_line_of_a_reuse(key_trace, monkeypatch):
    """A solver epoch (its steps stubbed out: only its keys matter) whose random shifts each
    draw twice from their key is reported, at the draw's line in gr_jax/solver.py; without
    the double draw the same epoch is clean."""
    monkeypatch.setattr(solver, "train_step", lambda s, *_: (s, {"loss": 0.0, "accuracy": 0.0}))
    state = solver.create_solver_state(jax.random.PRNGKey(0), (8,), 1e-3)
    images, labels = jnp.zeros((64, 28, 28, 1)), jnp.zeros((64,), jnp.int32)

    def epoch():
        key_trace.uses.clear()
        with jax.disable_jit():
            solver.train_epoch(
                state, images, labels, jnp.asarray(64), jax.random.PRNGKey(1), 32, None, 1, True
            )
        return key_trace.problems()

    assert epoch() == [] and "solver.py:random_shift:randint" in key_trace.reached
    shift = solver.random_shift
    monkeypatch.setattr(solver, "random_shift", lambda k, x, m: shift(k, shift(k, x, m), m))
    problems = epoch()
    source, first = inspect.getsourcelines(shift)
    line = first + next(i for i, text in enumerate(source) if "jax.random.randint" in text)
    draw = f"draw randint at gr_jax/solver.py:{line} (solver.py:random_shift)"
    assert len(problems) == 2  # one key in each of the epoch's two steps
    assert all("drawn from twice" in p and f"{draw} (x2)" in p for p in problems), problems
