"""Exact resume after SIGKILL, atomic checkpoints, divergence, Ctrl-C, fuzzed configs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_jax import checkpoints, cli, faults, health, loop
from gr_jax.config import Config, ConfigError
from gr_jax.health import DivergenceError

from .conftest import tiny_config

TINY = [
    "--preset", "quick", "--tasks", "0,1/2,3", "--n-gen", "256", "--gen-chunk", "128",
    "--solver-epochs", "2", "--solver-batch", "64", "--gan-width", "8", "--gen-epochs", "2",
    "--gan-batch", "32", "--no-progress",
]  # fmt: skip


def gr_jax(
    out: Path,
    *extra: str,
    fault: str | None = None,
    cache: Path | None = None,
    command: str = "run",
):
    env = dict(os.environ)
    env.pop(faults.ENV, None)
    if fault:
        env[faults.ENV] = fault
    cmd = [sys.executable, "-m", "gr_jax.cli", command, "--out", str(out), *extra]
    if cache is not None:
        cmd += ["--compile-cache-dir", str(cache)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def final_params(out: Path) -> list[np.ndarray]:
    mngr = checkpoints.manager(out)
    state, _ = checkpoints.restore(mngr, mngr.latest_step(), loop.init_state(tiny_config()))
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


def same_results(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for k in ("r_test", "r_val", "test", "val", "solver_curves", "gan_curves"):
        assert ra[k] == rb[k], k
    for x, y in zip(final_params(a), final_params(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    cache = root / "cache"
    done = gr_jax(root / "run", *TINY, cache=cache)
    assert done.returncode == 0, done.stderr
    return root / "run", cache


def test_two_processes_same_config_bitwise_identical(reference, tmp_path):
    """The second process also asks for GPU-deterministic kernels: recorded, and on the CPU
    (which ignores those flags) the same bits."""
    ref, cache = reference
    again = gr_jax(tmp_path / "run", *TINY, "--deterministic", cache=cache)
    assert again.returncode == 0, again.stderr
    same_results(ref, tmp_path / "run")
    env = json.loads((tmp_path / "run" / "results.json").read_text())["environment"]
    assert env["cpu_cores"] >= 1 and env["device_kind"] and env["packages"]["jax"]
    assert "git_commit" in env
    assert all(f in env["xla_flags"].split() for f in cli.DETERMINISTIC_XLA_FLAGS)


KILL_POINTS = ["2:solver", "1:checkpoint"]
SLOW_KILL_POINTS = ["1:generate", "1:solver", "1:gan", "2:generate", "2:gan"]


def _kill_and_resume(point: str, reference, tmp_path) -> None:
    ref, cache = reference
    out = tmp_path / "run"
    killed = gr_jax(out, *TINY, fault=point, cache=cache)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "results.json").exists()
    resumed = gr_jax(out, "--resume", "--no-progress", cache=cache)
    assert resumed.returncode == 0, resumed.stderr
    same_results(ref, out)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_is_bitwise_identical(point, reference, tmp_path):
    _kill_and_resume(point, reference, tmp_path)


@pytest.mark.parametrize("fault, code", [("2:solver", -signal.SIGKILL), ("2:gan:int", 130)])
def test_a_sweep_killed_inside_a_point_resumes_that_point_bitwise(fault, code, reference, tmp_path):
    """The same sweep command, run again after a SIGKILL (or a Ctrl-C: exit code 130 and what
    to do) in task 2, resumes the point from its task-1 checkpoint and ends with the results of
    an uninterrupted run."""
    ref, cache = reference
    sweep = tmp_path / "sweep"
    args = (*TINY, "--seeds", "0")
    killed = gr_jax(sweep, *args, fault=fault, cache=cache, command="sweep")
    assert killed.returncode == code, killed.stderr[-3000:]
    if code == 130:
        assert "interrupted; run the same command again to continue" in killed.stderr
    assert not (sweep / "summary.csv").exists()
    again = gr_jax(sweep, *args, cache=cache, command="sweep")
    assert again.returncode == 0, again.stderr
    assert "seed=0: resuming" in again.stderr
    same_results(ref, sweep / "seed=0")
    assert (sweep / "summary.csv").read_text().splitlines()[0].startswith("seeds,diverged,acc_mean")


@pytest.mark.slow
def test_seeds_in_one_program_killed_resume_to_the_single_seed_run(reference, tmp_path):
    """`--seeds 0-1` killed by SIGKILL in task 2's GAN, then `--resume`: seed 0 ends with
    exactly the results of the uninterrupted single-seed run (unrolled seeds are bitwise
    single-seed runs on a CPU, and resuming changes no bit)."""
    ref, cache = reference
    out = tmp_path / "seeds"
    killed = gr_jax(out, *TINY, "--seeds", "0-1", fault="2:gan", cache=cache)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "summary.json").exists()
    again = gr_jax(out, "--resume", "--no-progress", cache=cache)
    assert again.returncode == 0, again.stderr
    assert "from the checkpoint after task 1" in again.stderr
    ra, rb = (
        json.loads(f.read_text()) for f in (ref / "results.json", out / "seed=0/results.json")
    )
    for k in ("r_test", "r_val", "test", "val", "solver_curves", "gan_curves"):
        assert ra[k] == rb[k], k


@pytest.mark.slow
@pytest.mark.parametrize("point", SLOW_KILL_POINTS)
def test_sigkill_everywhere_then_resume_is_bitwise_identical(point, reference, tmp_path):
    _kill_and_resume(point, reference, tmp_path)


def test_interrupted_checkpoint_write_is_ignored(reference, tmp_path):
    """A checkpoint folder left half-written (as Orbax leaves one when killed mid-write:
    a temporary name, no commit marker) is never taken for the newest one."""
    ref, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    shutil.rmtree(out / "checkpoints" / "2")
    partial = out / "checkpoints" / "2.orbax-checkpoint-tmp-1234567890"
    shutil.copytree(ref / "checkpoints" / "2" / "state", partial / "state")
    assert checkpoints.latest(checkpoints.manager(out)) == 1
    (out / "results.json").unlink()
    resumed = gr_jax(out, "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "after task 1" in resumed.stderr
    same_results(ref, out)


def test_ctrl_c_leaves_a_resumable_run(reference, tmp_path):
    """SIGINT (Ctrl-C) in task 2's GAN training: exit code 130 with a message naming --resume,
    and the resumed run ends with exactly the uninterrupted run's results. The signal comes
    from a fault point, so it always lands inside the run (a timer could miss a fast run)."""
    ref, cache = reference
    out = tmp_path / "run"
    proc = gr_jax(out, *TINY, fault="2:gan:int", cache=cache)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted" in proc.stderr and "--resume" in proc.stderr
    assert (out / "checkpoints" / "1" / "commit_success.txt").exists()
    assert not (out / "results.json").exists()
    resumed = gr_jax(out, "--resume", "--no-progress", cache=cache)
    assert resumed.returncode == 0, resumed.stderr
    same_results(ref, out)


def test_divergence_is_named_and_the_last_checkpoint_survives(tmp_path, monkeypatch):
    cfg = tiny_config()
    real_prepare = loop.prepare_data

    def poisoned(cfg):
        data = real_prepare(cfg)
        x, y = data.train[1]
        data.train[1] = (np.full_like(x, np.nan), y)
        return data

    monkeypatch.setattr(loop, "prepare_data", poisoned)
    with pytest.raises(DivergenceError, match=r"task 2, solver, epoch 1: .* at step 1 of the"):
        loop.run(cfg, tmp_path / "run", bars=False)
    mngr = checkpoints.manager(tmp_path / "run")
    assert mngr.all_steps() == [1]
    state, meta = checkpoints.restore(mngr, 1, loop.init_state(cfg))
    assert meta["tasks_done"] == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state))


def test_a_divergence_among_seeds_in_one_program_names_them():
    bad = np.array([health.NO_BAD_STEP, 3, health.NO_BAD_STEP, health.NO_BAD_STEP])
    finite = np.array([True, True, True, False])
    health.check(
        {"first_bad_step": np.full(4, health.NO_BAD_STEP), "params_finite": np.ones(4, bool)}, ""
    )
    with pytest.raises(
        DivergenceError,
        match=r"^task 2, GAN, epoch 1 \(seed index 1, 3\): .* at step 4 of the epoch$",
    ):
        health.check({"first_bad_step": bad, "params_finite": finite}, "task 2, GAN, epoch 1")


def test_absurd_learning_rate_diverges_with_a_message(tmp_path, capsys):
    argv = ["run", "--out", str(tmp_path / "r"), *TINY, "--gan-lr", "1e30", "--no-compile-cache"]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "task 1, GAN, epoch 1" in err


def test_corrupt_data_stops_before_training(tmp_path, mnist_path, capsys):
    bad = tmp_path / "mnist"
    shutil.copytree(mnist_path, bad)
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    argv = ["run", "--preset", "seed", "--data-dir", str(bad), "--out", str(tmp_path / "r")]
    assert cli.main(argv + ["--no-compile-cache", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "sha256" in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_checkpoint_of_another_model_size_is_refused_by_name(tmp_path):
    """Found from the checkpoint's metadata, before Orbax starts reads that fail noisily."""
    small = loop.init_state(tiny_config(gan_width=8))
    with checkpoints.manager(tmp_path) as mngr:
        checkpoints.save(mngr, 1, small, {"tasks_done": 1})
        with pytest.raises(checkpoints.CheckpointError, match=r"Conv_0.* saved \(4, 4, 1, 8\)"):
            checkpoints.restore(mngr, 1, loop.init_state(tiny_config(gan_width=16)))
        state, meta = checkpoints.restore(mngr, 1, loop.init_state(tiny_config(gan_width=8)))
        assert meta == {"tasks_done": 1}


def test_a_damaged_checkpoint_is_a_message_naming_it(tmp_path):
    cfg = tiny_config(gan_width=8)
    with checkpoints.manager(tmp_path) as mngr:
        checkpoints.save(mngr, 1, loop.init_state(cfg), {"tasks_done": 1})
    data = [f for f in (tmp_path / "checkpoints/1/state").rglob("*") if f.is_file()]
    for f in data:
        if f.stat().st_size > 10_000:  # the arrays' files, not the small metadata
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with checkpoints.manager(tmp_path) as mngr:
        with pytest.raises(checkpoints.CheckpointError, match=r"after task 1 .*move .* aside"):
            checkpoints.restore(mngr, 1, loop.init_state(cfg))


def test_out_that_cannot_be_a_folder_is_refused_before_the_data_load(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    for out, message in [("afile", "is a file, not a folder"), ("afile/sub", "afile is a file")]:
        argv = ["run", "--out", str(tmp_path / out), *TINY, "--no-compile-cache"]
        assert cli.main(argv + ["--data-dir", str(tmp_path / "no-data")]) == 2  # not a DataError
        assert message in capsys.readouterr().err
    argv = [
        "run",
        "--out",
        str(tmp_path / "r"),
        *TINY,
        "--compile-cache-dir",
        str(tmp_path / "afile"),
    ]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and "--compile-cache-dir" in capsys.readouterr().err


def test_a_training_set_larger_than_memory_is_refused_before_the_run_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"set by n_gen.* GiB of memory"):
        loop.run(tiny_config(n_gen=10**11), tmp_path / "r", bars=False)
    assert not (tmp_path / "r").exists()


def test_a_diverged_run_ends_with_its_message_not_a_traceback(tmp_path):
    """The checkpoint managers are closed: no Orbax errors after the message at exit."""
    argv = ["run", "--out", str(tmp_path / "r"), *TINY, "--gan-lr", "1e30", "--no-compile-cache"]
    cmd = [sys.executable, "-m", "gr_jax.cli", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "diverged" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_each_finished_task_is_logged(tmp_path, capsys):
    loop.run(tiny_config(gan="mlp", gen_epochs=(1,), solver_epochs=1), tmp_path / "r", log=True)
    err = capsys.readouterr().err
    assert re.search(r"r: task 1/2 done in \d+ s; test accuracy on tasks 1-1: 0\.\d{3} \(mean", err)
    assert "task 2/2 done" in err


# --- fuzzing: no input may end in a traceback instead of a message ----------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 12), max_size=6),
    st.lists(st.lists(st.integers(-3, 12), max_size=4), max_size=6),
)
field_names = [f for f in Config.__dataclass_fields__] + ["bogus"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(field_names), values, max_size=6))
def test_fuzzed_config_dicts_are_valid_or_a_config_error(d):
    try:
        cfg = Config.from_dict(d)
    except ConfigError:
        return
    # a config that was accepted is stored and read back as itself (what --resume compares)
    stored = json.loads(cfg.to_json())
    assert Config.from_dict(stored) == cfg and all(stored[k] == v for k, v in d.items())


option_names = ["--" + f.replace("_", "-") for f in Config.__dataclass_fields__]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(option_names), st.text(alphabet="0123456789-,/.aeX ", max_size=8)
        ),
        max_size=4,
    )
)
def test_fuzzed_command_lines_parse_or_exit_2(pairs):
    argv = ["run"] + [x for pair in pairs for x in pair]
    parser = cli.build_parser()
    try:
        args = parser.parse_args(argv)
        cli.config_from_args(args)
    except SystemExit as e:
        assert e.code == 2
    except ConfigError:
        pass


def test_the_commit_is_of_gr_jax_own_checkout_and_sees_new_files(tmp_path):
    import subprocess

    from gr_jax import provenance

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    assert provenance.git_commit(tmp_path) is None  # a repository without gr_jax in it
    (tmp_path / "gr_jax").mkdir()
    (tmp_path / "gr_jax" / "provenance.py").write_text("# code\n")
    git("add", "gr_jax")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    head = provenance.git_commit.__wrapped__(tmp_path)
    assert head is not None and "+dirty" not in head
    (tmp_path / "gr_jax" / "new.py").write_text("A = 1\n")  # untracked code the run may import
    dirty = provenance.git_commit.__wrapped__(tmp_path)
    (tmp_path / "gr_jax" / "new.py").write_text("A = 2\n")
    assert (
        dirty.startswith(head + "+dirty.") and provenance.git_commit.__wrapped__(tmp_path) != dirty
    )
