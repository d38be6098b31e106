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
    results = [{"config": c.to_dict(), "test": {"acc": 0.5, "bwt": 0.0, "fwt": 0.0}} for c in cfgs]
    rows = summarize(list(zip(cfgs, results)), ["tasks"])
    assert [r["tasks"] for r in rows] == ["0-1/2-3", "0-1-2/3-4"]
    names = [name for name, _ in points(tiny_config(), {"tasks": [c.tasks for c in cfgs]}, [0])]
    assert names == ["tasks=0-1/2-3,seed=0", "tasks=0-1-2/3-4,seed=0"]


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
