import dataclasses
import json
import re

import pytest

from gr_jax import cli
from gr_jax.config import Config, field_docs

TINY = [
    "--tasks", "0,1/2,3", "--n-gen", "128", "--gen-chunk", "64", "--solver-epochs", "1",
    "--gan", "mlp", "--gen-epochs", "1,1", "--gan-batch", "32",
]  # fmt: skip


def test_run_prints_matrix_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--preset", "quick", "--out", str(out), "--no-progress", "--no-compile-cache"]
    assert cli.main(argv + TINY) == 0
    text = capsys.readouterr().out
    assert "after T2" in text
    cfg = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    # what it prints are the results' test numbers: the matrix's rows and ACC, BWT, FWT
    printed = re.search(r"ACC (\S+)  BWT (\S+)  FWT (\S+)  \(test split\)", text)
    t = results["test"]
    assert [float(v) for v in printed.groups()] == [round(t[m], 4) for m in ("acc", "bwt", "fwt")]
    rows = [line.split()[-2:] for line in text.splitlines() if line.startswith("after T")]
    assert [[float(v) for v in row] for row in rows] == [
        [round(a, 3) for a in row] for row in results["r_test"]
    ]
    assert cfg["gan"] == "mlp" and cfg["gen_epochs"] == [1, 1] and cfg["tasks"] == [[0, 1], [2, 3]]
    assert cfg["d_chunks"] == 0 and results["config_resolved"] == {"d_chunks": 1, "gan_scan": 1}
    # a second run into the same directory is refused, with exit code 2
    assert cli.main(argv + TINY) == 2
    assert "--overwrite" in capsys.readouterr().err
    # resuming it with another option value is refused, naming the field
    assert cli.main(argv + TINY + ["--resume", "--n-gen", "64"]) == 2
    assert re.search(r"another config .*n_gen", capsys.readouterr().err)


def test_resuming_seeds_run_in_one_program_reads_their_seeds_json(tmp_path, capsys):
    out = tmp_path / "seeds"
    out.mkdir()
    (out / "seeds.json").write_text('{"seeds": [0, 1]}')
    argv = ["run", "--resume", "--out", str(out), "--no-compile-cache"]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and "is not a list of seeds" in capsys.readouterr().err
    (out / "seeds.json").write_text("[0, 1]")
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--seed", "1"])
    assert e.value.code == 2 and "resume it without --seed" in capsys.readouterr().err


def test_every_config_field_is_an_option():
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--gen-epochs", "10,15,20,25,30", "--gan", "mlp"])
    cfg = cli.config_from_args(args)
    assert cfg.gen_epochs == (10, 15, 20, 25, 30) and cfg.gan == "mlp"
    text = parser._subparsers._group_actions[0].choices["run"].format_help()
    for f in dataclasses.fields(Config):
        assert "--" + f.name.replace("_", "-") in text


def test_every_config_field_has_its_comment_as_help(capsys):
    """The help of a field's option is the comment at the field in config.py (section lines
    left out), so `gr-jax run --help` says what each field means."""
    docs = field_docs()
    assert [f.name for f in dataclasses.fields(Config) if len(docs.get(f.name, "")) < 10] == []
    assert not any("---" in d for d in docs.values())
    assert docs["replay"].startswith('"generative" (the method)')  # below a section line
    assert docs["seed"] == "seeds initialisation, shuffling, latents"  # on the field's line
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--d-chunks INT the D batch is split into this many independent chunks" in text
    assert "0 = auto, 4 for the conv GAN" in text and "(default: 0, or the preset's)" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--n-gen", "-5"], "n_gen must be >= 0"),
        (["run", "--solver-dropout", "1.0"], "solver_dropout must be in [0, 1)"),
        (["run", "--solver-dropout", "-0.1"], "solver_dropout must be in [0, 1)"),
        (["run", "--preset", "nope"], "unknown preset"),
        (["run", "--gen-epochs", "1,2"], "gen_epochs"),
        (["run", "--gen-epochs", "a,b"], "comma-separated integers"),
        (["run", "--resume"], "--resume needs --out"),
        (["run", "--distributed"], "--distributed shares seeds run in one program"),
        (["run", "--seed", "1", "--seeds", "0-1"], "give either --seed or --seeds"),
        (["run", "--coordinator", "host:1234"], "go with --distributed"),
        (["run", "--process-id", "0"], "go with --distributed"),
        (["run", "--out", "x", "--resume", "--overwrite"], "give either --resume"),
        (["run", "--seeds", "3-1"], "'3-1' is an empty range"),
        (["run", "--solver-lr", "nan"], "solver_lr must be a finite number, got nan"),
        (["run", "--tasks", "((0,1),(2,3))"], "tasks by slashes"),
        (["run", "--gen-epochs", "-1"], "gen_epochs must be >= 0, got (-1,)"),
        (["run", "--distributed", "--seeds", "0-1"], "--distributed needs --out DIR"),
    ],
)
def test_bad_input_exits_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv + ["--no-compile-cache"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith(f"usage: gr-jax {argv[0]} ")  # the command's own


def test_resuming_a_run_whose_config_json_is_not_a_config_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"n_gen": "many", "no_such_field": 1}))
    argv = ["run", "--resume", "--out", str(out), "--no-progress", "--no-compile-cache"]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{out / 'config.json'} is not a valid gr_jax config" in err
    assert list(out.iterdir()) == [out / "config.json"]  # nothing written


def test_options_the_config_does_not_use_are_named():
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--buffer-size", "100", "--replay-share", "0.3"])
    warnings = cli.unused_options(args, cli.config_from_args(args))
    assert len(warnings) == 2 and "--buffer-size has no effect here" in warnings[0]
    args = parser.parse_args(["run", "--replay", "buffer", "--buffer-size", "100"])
    assert cli.unused_options(args, cli.config_from_args(args)) == []
    args = parser.parse_args(["run", "--gan", "mlp", "--gan-width", "7", "--seed-axis", "vmap"])
    warnings = cli.unused_options(args, cli.config_from_args(args))
    assert [w.split()[0] for w in warnings] == ["--gan-width", "--seed-axis"]
    args = parser.parse_args(["run", "--seeds", "0-1", "--seed-axis", "vmap"])
    assert cli.unused_options(args, cli.config_from_args(args)) == []


def test_the_resume_hint_keeps_the_kernels_of_the_run(tmp_path):
    import argparse

    assert "no finished task" in cli._resume_hint(tmp_path, argparse.Namespace())
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir()  # unfinished: not counted
    args = argparse.Namespace(deterministic=True, cpu_convs="eigen")
    hint = cli._resume_hint(tmp_path, args)
    assert hint.endswith(f"--resume --out {tmp_path} --deterministic --cpu-convs eigen")
    assert "after task 2" in hint


def test_a_relative_data_dir_is_saved_absolute(tmp_path, monkeypatch):
    """config.json must find the data from any working directory (a resume from elsewhere)."""
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["run", "--data-dir", "data/mnist"])
    assert cli.config_from_args(args).data_dir == str(tmp_path.resolve() / "data/mnist")


def test_help_shows_list_defaults_as_they_are_typed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--tasks A,B/C,D/..." in text and "(default: 0,1/2,3/4,5/6,7/8,9, or" in text


def test_xla_flags_after_jax_started_are_refused_not_recorded(monkeypatch, capsys):
    """In a process that has started JAX, `--cpu-convs eigen` could not take effect: refused
    before any work, and XLA_FLAGS (which results.json records) is left as it was."""
    import os

    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--preset", "quick", "--cpu-convs", "eigen", "--no-compile-cache"])
    assert e.value.code == 2 and "before JAX starts" in capsys.readouterr().err
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"
    # flags already in force are no change, so that still runs
    cli.add_xla_flags(("--xla_cpu_enable_fast_math=false",))


CONV_HLO = """
import sys
from gr_jax import cli
cli.add_xla_flags(cli.CPU_CONV_XLA_FLAGS[sys.argv[1]])
import jax, jax.numpy as jnp
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
x, w = jnp.ones((8, 7, 7, 16)), jnp.ones((3, 3, 16, 32))
print(jax.jit(conv).lower(x, w).compile().as_text())
"""


def test_cpu_convs_eigen_takes_convolutions_away_from_ynnpack():
    """`--cpu-convs eigen` changes what XLA compiles a convolution to: no YNNPACK fusion."""
    import subprocess
    import sys

    hlo = {
        lib: subprocess.run(
            [sys.executable, "-c", CONV_HLO, lib], capture_output=True, text=True, check=True
        ).stdout
        for lib in cli.CPU_CONV_XLA_FLAGS
    }
    assert "convolution(" in hlo["eigen"] and "ynn" not in hlo["eigen"]
    assert hlo["eigen"] != hlo["ynnpack"]


def test_the_compile_cache_is_on_by_default_and_a_second_run_reads_it(tmp_path):
    """`gr-jax run` without cache options writes compiled programs to ~/.cache/gr_jax; a second
    run of the same config loads them instead of compiling (JAX logs each cache hit);
    `--no-compile-cache` leaves no cache behind."""
    import os
    import subprocess
    import sys

    def gr_jax(home, out, *extra):
        env = dict(os.environ, HOME=str(home), JAX_LOG_COMPILES="1")
        cmd = [sys.executable, "-m", "gr_jax.cli", "run", "--preset", "quick", "--no-progress"]
        done = subprocess.run(
            [*cmd, "--out", str(tmp_path / out), *TINY, *extra],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    home = tmp_path / "home"
    cache = home / ".cache/gr_jax/jax_compilation_cache"
    first = gr_jax(home, "a")
    stored = {f.name.removesuffix("-cache") for f in cache.iterdir()}
    assert any(k.startswith("jit_train_epoch") for k in stored)
    assert "Persistent compilation cache hit" not in first
    second = gr_jax(home, "b")
    hits = set(re.findall(r"Persistent compilation cache hit for '\w+' with key '([^']+)'", second))
    assert hits == stored  # every program the first run stored, the second read back
    off = gr_jax(tmp_path / "home2", "c", "--no-compile-cache")
    assert not (tmp_path / "home2" / ".cache").exists() and "cache hit" not in off
