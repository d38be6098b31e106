import json

import pytest

from gr_jax import cli
from gr_jax.config import preset
from gr_jax.sweep import points

from .conftest import tiny_config

TINY = [
    "--preset", "quick", "--tasks", "0,1/2,3", "--gen-chunk", "64", "--solver-epochs", "1",
    "--gan", "mlp", "--gen-epochs", "1", "--gan-batch", "32", "--no-progress",
    "--no-compile-cache",
]  # fmt: skip


def test_grid_points_are_every_combination_with_every_seed():
    pts = points(preset("seed"), {"n_gen": [1200, 12000], "gan": ["conv", "mlp"]}, [0, 1, 2])
    assert len(pts) == 12 and len({name for name, _ in pts}) == 12
    assert pts[0][0] == "n_gen=1200,gan=conv,seed=0"
    assert {(c.n_gen, c.gan, c.seed) for _, c in pts} == {
        (n, g, s) for n in (1200, 12000) for g in ("conv", "mlp") for s in (0, 1, 2)
    }


def test_sweep_runs_skips_and_summarizes(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--n-gen", "64,128", "--seeds", "0-1", "--out", str(out)]
    assert cli.main(argv) == 0
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == sorted(f"n_gen={n},seed={s}" for n in (64, 128) for s in (0, 1))
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("n_gen,seeds,diverged,acc_mean") and len(rows) == 3
    assert "| n_gen | seeds | diverged | ACC | BWT | FWT |" in (out / "summary.md").read_text()
    first = json.loads((out / "n_gen=64,seed=1" / "results.json").read_text())
    assert first["config"]["n_gen"] == 64 and first["config"]["seed"] == 1
    # a second call finds every point complete and runs nothing
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert capsys.readouterr().err.count("complete, skipped") == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", "3"], "--seeds"),
        (["--n-gen", "5,-1"], "n_gen must be >= 0"),
        (["--seeds", "x"], "seeds"),
        (["--seeds", "0,0"], "--seeds: repeated seeds in [0, 0]"),
        (["--n-gen", "64,64"], "--n-gen: repeated values in 64, 64"),
        (["--data-dir", "a,b"], "data_dir cannot be a sweep axis"),
        (
            ["--replay", "buffer,exact", "--buffer-size", "0,100"],
            "2 of the 4 grid points are not valid configs: replay=buffer,buffer_size=0: "
            "replay='buffer' needs buffer_size > 0",
        ),
    ],
)
def test_sweep_rejects_bad_input(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", *TINY, "--out", str(tmp_path), *extra])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_finished_point_of_another_config_is_refused(tmp_path):
    from gr_jax.rundir import RunDirError
    from gr_jax.sweep import run_point

    out = tmp_path / "p"
    out.mkdir()
    other = tiny_config(n_gen=128)
    (out / "results.json").write_text(json.dumps({"config": other.to_dict()}))
    with pytest.raises(RunDirError, match="n_gen"):
        run_point(tiny_config(), out, bars=False)
    assert run_point(other, out, bars=False) == {"config": json.loads(other.to_json())}


def test_a_diverging_point_is_recorded_skipped_and_the_rest_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--gan-lr", "1e30,2e-4", "--seeds", "0", "--out", str(out)]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "1 point(s) diverged" in err and "gan_lr=1e+30,seed=0" in err
    bad, good = out / "gan_lr=1e+30,seed=0", out / "gan_lr=0.0002,seed=0"
    record = json.loads((bad / "diverged.json").read_text())
    assert "task 1, GAN, epoch 1" in record["error"] and record["environment"]["cpu_cores"] >= 1
    assert (good / "results.json").exists() and not (bad / "results.json").exists()
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("gan_lr,seeds,diverged,acc_mean")  # rows in the grid's order
    assert rows[1] == "1e+30,0,1" + "," * 6 and rows[2].startswith("0.0002,1,0,0.")
    assert "| 1e+30 | 0 | 1 | - | - | - |" in (out / "summary.md").read_text()
    # the next call skips the diverged point instead of diverging again, and runs nothing
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "diverged before in this environment" in err and "complete, skipped" in err
    assert "starting" not in err and "resuming" not in err
    # in another environment (another machine, flags or commit) it runs again
    record["environment"]["xla_flags"] = "--elsewhere"
    (bad / "diverged.json").write_text(json.dumps(record))
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "diverged before (in another environment: xla_flags differ); resuming it" in err
    assert json.loads((bad / "diverged.json").read_text())["environment"]["xla_flags"] != (
        "--elsewhere"
    )


def test_summary_labels_list_valued_axes_as_the_directories_do():
    from gr_jax.sweep import summarize

    cfgs = [tiny_config(tasks=t) for t in (((0, 1), (2, 3)), ((0, 1, 2), (3, 4)))]
    matrices = {"r_test": [[0.5, 0.0], [0.5, 0.5]], "b_test": [0.0, 0.0]}
    results = [{"config": c.to_dict(), **matrices} for c in cfgs]
    rows = summarize(list(zip(cfgs, results)), ["tasks"])
    assert [r["tasks"] for r in rows] == ["0-1_2-3", "0-1-2_3-4"]  # no `/`: one folder each
    names = [name for name, _ in points(tiny_config(), {"tasks": [c.tasks for c in cfgs]}, [0])]
    assert names == ["tasks=0-1_2-3,seed=0", "tasks=0-1-2_3-4,seed=0"]


def test_a_diverged_record_from_an_older_gr_jax_is_resumed_and_said_so(tmp_path, capsys):
    from gr_jax.sweep import DIVERGED, run_point

    cfg = tiny_config(gan="mlp", gan_lr=1e30, tasks=((0, 1),))
    out = tmp_path / "p"
    out.mkdir()
    (out / DIVERGED).write_text(json.dumps({"config": cfg.to_dict(), "error": "task 1"}))
    assert run_point(cfg, out, bars=False) is None  # diverges again, now recorded in full
    assert "recorded without its environment, by an older gr_jax); resuming it" in (
        capsys.readouterr().err
    )
    assert "environment" in json.loads((out / DIVERGED).read_text())


def test_grid_options_split_list_valued_fields_at_bars():
    args = cli.build_parser().parse_args(
        [
            "sweep",
            "--out",
            "x",
            "--tasks",
            "0,1/2,3|0,1,2/3,4",
            "--gen-epochs",
            "5|1,2",
            "--n-gen",
            "64,128",
        ]
    )
    assert args.tasks == [((0, 1), (2, 3)), ((0, 1, 2), (3, 4))]
    assert args.gen_epochs == [(5,), (1, 2)] and args.n_gen == [64, 128]


def test_axes_are_checked_together_not_each_alone(tmp_path, monkeypatch):
    """`--replay buffer,exact` needs `--buffer-size` > 0, swept or fixed: every combination is
    valid, though no value is with the preset's buffer_size 0."""
    grids = []

    def fake(base, axes, *_, **__):
        grids.append(axes)
        return [], []

    monkeypatch.setattr("gr_jax.sweep.sweep", fake)
    for extra in (["--replay", "buffer,exact"], ["--replay", "buffer"]):
        argv = ["sweep", *TINY, *extra, "--buffer-size", "100,1000", "--out", str(tmp_path)]
        assert cli.main(argv) == 0
    assert grids == [
        {"replay": ["buffer", "exact"], "buffer_size": [100, 1000]},
        {"buffer_size": [100, 1000]},
    ]


def test_a_relative_data_dir_is_swept_absolute(tmp_path, monkeypatch):
    """As for `gr-jax run`: every point's config.json must find the data from anywhere."""
    bases = []
    monkeypatch.setattr("gr_jax.sweep.sweep", lambda base, *_, **__: bases.append(base) or ([], []))
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", *TINY, "--data-dir", "data/mnist", "--out", "s"]
    assert cli.main(argv) == 0
    assert bases[0].data_dir == str(tmp_path.resolve() / "data/mnist")


def test_out_that_is_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert cli.main(["sweep", *TINY, "--out", str(afile)]) == 2
    assert f"gr-jax: error: {afile} is not a directory" in capsys.readouterr().err
    assert afile.read_text() == "mine"


def test_a_point_whose_results_hold_no_config_is_named(tmp_path, capsys):
    (tmp_path / "seed=0").mkdir()
    (tmp_path / "seed=0" / "results.json").write_text('{"test": {}}')
    assert cli.main(["sweep", *TINY, "--out", str(tmp_path)]) == 2
    assert "results.json does not hold a gr_jax run's config" in capsys.readouterr().err


def _finished(out, name, cfg, acc, xla_flags=""):
    """A point's directory holding a results.json (no run: the sweep skips it)."""
    (out / name).mkdir(parents=True)
    record = {
        "config": cfg.to_dict(),
        "r_test": [[acc, acc], [acc, acc]],  # ACC acc, BWT 0, FWT 0 with b_test
        "b_test": [acc, acc],
        "test": {"acc": acc, "bwt": 0.0, "fwt": 0.0},
        "environment": {"xla_flags": xla_flags},
    }
    (out / name / "results.json").write_text(json.dumps(record))


def test_summary_covers_earlier_points_of_the_same_fixed_config(tmp_path, capsys, monkeypatch):
    """Points an earlier call ran (other values, other seeds) join the summary, points of
    another fixed config do not, and the points run with other XLA flags are named."""
    from gr_jax.sweep import sweep

    monkeypatch.setenv("XLA_FLAGS", "")
    out, base = tmp_path / "sweep", tiny_config()
    _finished(out, "n_gen=64,seed=0", tiny_config(n_gen=64), 0.25)
    _finished(out, "n_gen=256,seed=0", tiny_config(n_gen=256), 0.5, "--elsewhere")
    _finished(out, "n_gen=64,seed=1", tiny_config(n_gen=64, seed=1), 0.75)
    _finished(out, "n_gen=128,seed=0", tiny_config(n_gen=128), 0.5)
    _finished(out, "gan_lr=0.1,seed=0", tiny_config(gan_lr=0.1), 0.0)  # another fixed config
    rows, diverged = sweep(base, {"n_gen": [64, 256]}, [0], out, bars=False)
    assert diverged == []
    assert [(r["n_gen"], r["seeds"], r["acc_mean"]) for r in rows] == [
        ("64", 2, 0.5),
        ("256", 1, 0.5),
        ("128", 1, 0.5),
    ]
    assert (out / "summary.csv").read_text().count("\n") == 4
    err = capsys.readouterr().err
    assert "also 2 point(s) that earlier calls left" in err and "n_gen=128,seed=0" in err
    assert "leaves out 1 point(s) of other configs" in err
    assert "1 point(s) in the summary ran with other XLA_FLAGS" in err
    assert err.rstrip().endswith("n_gen=256,seed=0 (environment.xla_flags in their results.json)")
