"""Seeds in one program equal the single-seed runs."""

import json
import re

import numpy as np
import pytest

from gr_jax import cli, loop, multiseed
from gr_jax.config import ConfigError

from .conftest import tiny_config

RESULT_KEYS = ("b_test", "b_val", "r_test", "r_val", "replay_class_counts", "solver_curves",
               "gan_curves")  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        dict(gan="mlp"),
        pytest.param(dict(gan="mlp", solver_dropout=0.3), marks=pytest.mark.slow),
        pytest.param(dict(gan="mlp", gan_lr_final=0.1), marks=pytest.mark.slow),
        dict(gan="conv"),
        pytest.param(dict(gan="conv", conv_impl="slices", d_mbdisc=4), marks=pytest.mark.slow),
    ],
)
def test_each_unrolled_seed_is_bitwise_its_single_seed_run(fields):
    """seed_axis="unroll" (the CPU default) runs each seed's own kernels, with the single-seed
    shapes as the program's parameters: every number of every seed, losses included, is
    exactly that of the single-seed run."""
    multi = multiseed.run(tiny_config(seed_axis="unroll", **fields), [0, 1], None, bars=False)
    for i, seed in enumerate([0, 1]):
        single = loop.run(tiny_config(seed=seed, **fields), None, bars=False)
        assert multi[i]["config"]["seed"] == seed
        for k in RESULT_KEYS:
            assert multi[i][k] == single[k], k
    assert multi[0]["solver_curves"] != multi[1]["solver_curves"]


@pytest.mark.parametrize(
    "fields", [dict(gan="mlp"), pytest.param(dict(gan="conv"), marks=pytest.mark.slow)]
)
def test_each_vmapped_seed_agrees_with_its_single_seed_run_to_rounding(fields):
    """seed_axis="vmap" (accelerators): batched kernels round differently, about 1e-7 relative
    per step; the first task's losses agree to that, the matrices to a few examples (rounding
    can flip a prediction, and later tasks train on replay drawn by generators that differ)."""
    multi = multiseed.run(tiny_config(seed_axis="vmap", **fields), [0, 1], None, bars=False)
    for i, seed in enumerate([0, 1]):
        single = loop.run(tiny_config(seed=seed, **fields), None, bars=False)
        m = multi[i]
        assert m["b_test"] == single["b_test"]  # one forward pass: no flips expected
        for a, b in zip(m["solver_curves"], single["solver_curves"], strict=True):
            if a["task"] == 0:
                assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        first = [(a, b) for a, b in zip(m["gan_curves"], single["gan_curves"]) if a["task"] == 0]
        for a, b in first:
            assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3, abs=1e-4)
        np.testing.assert_allclose(m["r_test"], single["r_test"], atol=0.02)
        np.testing.assert_allclose(m["r_val"], single["r_val"], atol=0.02)


def test_cli_seeds_writes_one_result_per_seed_and_a_summary(tmp_path, capsys):
    out = tmp_path / "multi"
    argv = [
        "run", "--preset", "quick", "--tasks", "0,1/2,3", "--n-gen", "64", "--gen-chunk", "64",
        "--solver-epochs", "1", "--gan", "mlp", "--gen-epochs", "1", "--gan-batch", "32",
        "--final-gan", "false",
        "--seeds", "3-5", "--out", str(out), "--no-progress", "--no-compile-cache",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [3, 4, 5]
    accs = [
        json.loads((out / f"seed={s}" / "results.json").read_text())["test"]["acc"]
        for s in (3, 4, 5)
    ]
    assert summary["test_acc"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["test_acc"]["std"] == pytest.approx(np.std(accs))
    assert np.array(summary["r_test"]["mean"]).shape == (2, 2)
    # it prints the summary's test numbers: mean ± std of ACC, BWT, FWT
    text = capsys.readouterr().out
    printed = re.search(r"ACC (\S+) ± (\S+)  BWT (\S+) ± (\S+)  FWT (\S+) ± (\S+)  \(test", text)
    expected = [
        round(summary[f"test_{m}"][k], 4) for m in ("acc", "bwt", "fwt") for k in ("mean", "std")
    ]
    assert [float(v) for v in printed.groups()] == expected
    # no GAN after the last task: only task 1's GAN epoch is in the curves
    seed_3 = json.loads((out / "seed=3" / "results.json").read_text())
    assert [(r["task"], r["epoch"]) for r in seed_3["gan_curves"]] == [(0, 0)]
    # what auto stood for: on one CPU device the seeds are unrolled (each bitwise its own run)
    assert seed_3["config_resolved"]["seed_axis"] == "unroll"
    # resuming a finished multi-seed run with other seeds is refused
    assert (
        cli.main(argv[:-6] + ["--seeds", "3-4", "--resume", "--out", str(out), "--no-progress"])
        == 2
    )
    # resuming it as it is returns its results unchanged, and writes a summary killed before it
    before = {s: (out / f"seed={s}" / "results.json").read_text() for s in (3, 4, 5)}
    (out / "summary.json").unlink()
    resume = ["run", "--resume", "--out", str(out), "--no-progress", "--no-compile-cache"]
    assert cli.main(resume) == 0
    assert json.loads((out / "summary.json").read_text()) == summary
    assert before == {s: (out / f"seed={s}" / "results.json").read_text() for s in (3, 4, 5)}


def test_programs_are_shared_by_runs_of_other_seeds_and_data_folders():
    """A second --seeds run of the config in one process (a notebook, a benchmark) neither
    traces nor compiles its programs again."""
    p = multiseed.programs(tiny_config(seed=3), 64)
    assert multiseed.programs(tiny_config(seed=5, data_dir="/elsewhere"), 64) is p
    assert multiseed.programs(tiny_config(seed=3, n_gen=128), 64) is not p


def test_every_config_field_is_supported_or_refused_by_seeds_in_one_program():
    """A new config field must be added to multiseed.SUPPORTED (once the task loop of seeds in
    one program honours it) or to config.BEYOND_OFF (refused unless off)."""
    import dataclasses

    from gr_jax.config import BEYOND_OFF, Config

    fields = {f.name for f in dataclasses.fields(Config)}
    assert fields == multiseed.SUPPORTED | set(BEYOND_OFF)
    assert not multiseed.SUPPORTED & set(BEYOND_OFF)


def test_a_field_it_does_not_know_is_refused_unless_at_its_default(monkeypatch):
    from gr_jax.config import ConfigError

    monkeypatch.setattr(multiseed, "SUPPORTED", multiseed.SUPPORTED - {"d_mbdisc"})
    with pytest.raises(ConfigError, match="d_mbdisc"):
        multiseed.run(tiny_config(d_mbdisc=4), [0, 1])


def test_baselines_are_refused():
    with pytest.raises(ConfigError, match="sweep"):
        multiseed.run(tiny_config(replay="joint"), [0, 1], None, bars=False)


SHARDED_SCRIPT = """
import json, sys
import jax
from gr_jax import multiseed
from tests.conftest import tiny_config
assert jax.device_count() == 4, jax.devices()
cfg = tiny_config(gan="mlp", d_chunks=int(sys.argv[1]))
import pathlib, tempfile
from gr_jax.config import ConfigError
out = pathlib.Path(tempfile.mkdtemp()) / "three"
try:
    multiseed.run(cfg, [0, 1, 2], out, bars=False)
    raise SystemExit("3 seeds ran on 4 devices")
except ConfigError as e:  # refused before the run directory is made
    assert "cannot be split evenly over 4 devices" in str(e) and not out.exists(), (e, out)
results = multiseed.run(cfg, [0, 1, 2, 3], None, bars=False)
json.dump([{k: r[k] for k in sys.argv[2:]} for r in results], sys.stdout)
"""


@pytest.mark.parametrize("d_chunks", [4, pytest.param(0, marks=pytest.mark.slow)])
def test_sharded_over_four_cpu_devices_equals_unsharded(d_chunks):
    """Four seeds over four (forced host) devices, each device unrolling its own seed inside
    `shard_map`, against the one-device run (whose seeds are bitwise their single-seed runs).

    With the MLP GAN's discriminator in 4 chunks every number is equal. In one chunk (auto)
    the accuracies (matrices, at initialisation), replay class counts and solver curves are
    equal and the GAN losses agree to 1e-6 relative: two of the four seeds part by ~1e-7.
    Not the device count (a single-seed MLP-GAN run is bitwise the same in a one- and a
    four-device process), so `shard_map`: it slices each device's seed out of stacked arrays,
    and XLA may then round a reduction 1 ulp apart."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    done = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, str(d_chunks), *RESULT_KEYS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = json.loads(done.stdout)
    cfg = tiny_config(gan="mlp", d_chunks=d_chunks)
    plain = multiseed.run(cfg, [0, 1, 2, 3], None, bars=False)
    for a, b in zip(sharded, plain, strict=True):
        if d_chunks == 4:
            assert a == {k: b[k] for k in RESULT_KEYS}
            continue
        assert {k: v for k, v in a.items() if k != "gan_curves"} == {
            k: b[k] for k in RESULT_KEYS if k != "gan_curves"
        }
        assert len(a["gan_curves"]) == len(b["gan_curves"])
        for ca, cb in zip(a["gan_curves"], b["gan_curves"], strict=True):
            assert ca.keys() == cb.keys()
            for k in ca:
                assert ca[k] == pytest.approx(cb[k], rel=1e-6, abs=0), (k, ca, cb)


@pytest.mark.slow
def test_seeds_killed_on_four_devices_resume_there_to_the_uninterrupted_results(tmp_path):
    """Four seeds on four (forced host) devices killed in task 2, then resumed in a new
    four-device process from the checkpoint after task 1: every seed's results are those of the
    uninterrupted one-device run (equal with the discriminator in 4 chunks, as above)."""
    import os
    import signal
    import subprocess
    import sys

    from gr_jax import faults

    from .conftest import REPO

    out = tmp_path / "seeds"
    flags = [
        "--preset", "quick", "--tasks", "0,1/2,3", "--n-gen", "256", "--gen-chunk", "128",
        "--solver-epochs", "2", "--solver-batch", "64", "--gan", "mlp", "--gan-width", "8",
        "--gen-epochs", "1", "--gan-batch", "32", "--d-chunks", "4", "--seeds", "0-3",
    ]  # fmt: skip
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")

    def gr_jax(*argv: str, fault: str | None = None) -> subprocess.CompletedProcess:
        run_env = {**env, faults.ENV: fault} if fault else env
        cmd = [sys.executable, "-m", "gr_jax.cli", "run", "--out", str(out), "--no-progress"]
        cmd += ["--no-compile-cache", *argv]
        return subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True)

    killed = gr_jax(*flags, fault="2:solver")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    again = gr_jax("--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "from the checkpoint after task 1" in again.stderr
    plain = multiseed.run(tiny_config(gan="mlp", d_chunks=4), [0, 1, 2, 3], None, bars=False)
    for s, b in zip(range(4), plain, strict=True):
        a = json.loads((out / f"seed={s}" / "results.json").read_text())
        assert {k: a[k] for k in RESULT_KEYS} == {k: b[k] for k in RESULT_KEYS}, s


@pytest.mark.parametrize("how", ["vmap", "unroll"])
def test_a_gan_epoch_of_many_seeds_copies_nothing_on_its_own(how):
    """As for one seed (test_steps): with implicit host-to-device copies refused, a GAN epoch
    of all seeds runs once its inputs are on the device."""
    import jax
    import jax.numpy as jnp

    cfg = tiny_config(gan="mlp", gan_batch=16, seed_axis=how)
    p = multiseed.programs(cfg, 64)
    assert p.listed == (how == "unroll")
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    x = jax.random.uniform(keys[0], (2, 64, 28, 28, 1))  # each seed its own mix
    y = jnp.tile(jnp.arange(64, dtype=jnp.int32) % 4, (2, 1))
    first, second = jax.vmap(jax.random.split, out_axes=1)(keys)
    if p.listed:
        keys, x, y, first, second = (multiseed.unstack(a, 2) for a in (keys, x, y, first, second))
    g = p.new_gans(keys)
    calls = []
    g, _ = multiseed._gan_epoch(p, g, x, y, 64, first, 16, 1, calls.append)
    with jax.transfer_guard("disallow"):
        g, m = multiseed._gan_epoch(p, g, x, y, 64, second, 16, 1, calls.append)
        jax.block_until_ready((g, m))
    assert calls == [1] * 8 and m["d_loss"].shape == (2,)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_hosts_run_the_seeds_as_one_program(tmp_path):
    """The multi-host path, on one machine: two processes (two CPU devices each) started with
    the same command join through `jax.distributed`; the seeds are sharded over all four
    devices, each process computes its own, and process 0 writes what every seed equals in the
    one-process run (bitwise)."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    argv = [
        "--preset", "quick", "--tasks", "0,1/2,3", "--n-gen", "64", "--gen-chunk", "64",
        "--solver-epochs", "1", "--gan", "mlp", "--gen-epochs", "1", "--gan-batch", "32",
        "--seeds", "0-3", "--no-progress", "--no-compile-cache",
    ]  # fmt: skip
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gr_jax.cli",
                "run",
                *argv,
                "--out",
                str(tmp_path / "multi"),
                "--distributed",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert cli.main(["run", *argv, "--out", str(tmp_path / "one")]) == 0
    for s in range(4):
        a, b = (
            json.loads((tmp_path / d / f"seed={s}" / "results.json").read_text())
            for d in ("multi", "one")
        )
        assert {k: a[k] for k in RESULT_KEYS} == {k: b[k] for k in RESULT_KEYS}
        assert a["environment"]["device_count"] == 4
    assert sorted(p.name for p in (tmp_path / "multi" / "checkpoints").iterdir()) == ["1", "2"]
