"""The committed results files are what their experiment groups say they are: a group whose
config changed (a preset retuned) must not be reported from files of the old config."""

import collections
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from gr_jax.config import Config, diff

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import beyond  # noqa: E402
import study  # noqa: E402


def _files(module, results: Path) -> list[tuple[str, Path]]:
    found = []
    for f in sorted(results.glob("*-s*.json")):
        group = f.stem.rsplit("-s", 1)[0]
        if group in module.GROUPS:
            found.append((group, f))
    return found


@pytest.mark.parametrize(
    "module, results", [(study, study.RESULTS), (beyond, beyond.RESULTS)], ids=["study", "beyond"]
)
def test_results_files_match_their_groups_configs(module, results):
    files = _files(module, results)
    # every group is reported from 3 seeds or more, or is a candidate tried under tuning/
    seeds = collections.Counter(group for group, _ in files)
    tried = {f.stem.rsplit("-s", 1)[0] for f in (study.RESULTS / "tuning").glob("*-s*.json")}
    assert [g for g in module.GROUPS if seeds[g] < 3 and g not in tried] == []
    for group, f in files:
        saved = Config.from_dict(json.loads(f.read_text())["config"])
        expected = dataclasses.replace(module.GROUPS[group](), seed=saved.seed)
        assert not diff(saved, expected), (f.name, diff(saved, expected))


def test_a_diverging_run_is_named_and_the_others_recorded(tmp_path, capsys):
    from .conftest import tiny_config

    runs = [
        ("bad-s0", tiny_config(gan="mlp", gan_lr=1e30)),
        ("good-s0", tiny_config(gan="mlp")),
    ]
    diverged = study.run_and_record(runs, tmp_path / "runs", tmp_path / "results")
    assert diverged == [str(tmp_path / "runs" / "bad-s0" / "diverged.json")]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["good-s0.json"]
    recorded = json.loads((tmp_path / "results" / "good-s0.json").read_text())
    assert recorded == json.loads((tmp_path / "runs" / "good-s0" / "results.json").read_text())
    with pytest.raises(SystemExit) as e:
        study.exit_if_diverged(diverged)
    assert e.value.code == 3 and diverged[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, results, head",
    [(study, study.RESULTS, study.MAIN_TABLE), (beyond, beyond.RESULTS, beyond.BEYOND_TABLE)],
    ids=["study", "beyond"],
)
def test_the_committed_tables_are_what_report_makes_of_the_results_files(
    module, results, head, tmp_path, capsys
):
    """`report` run again on the committed results files writes the committed summary files,
    and its table is the one in docs/results.md: no number there is left from older files."""
    rows = study.summarize(module.load_results())
    table = study.write_tables(rows, tmp_path)
    capsys.readouterr()
    for name in ("summary.json", "summary.csv", "summary.md"):
        assert (tmp_path / name).read_text() == (results / name).read_text(), name
    doc = (study.ROOT / "docs" / "results.md").read_text()
    assert head + "".join(line + "\n" for line in table.splitlines()[2:]) in doc


def test_summarize_takes_means_over_seeds_and_counts_what_is_stored():
    def run(seed, acc, seconds, replay="generative"):
        cfg = Config(seed=seed, replay=replay, buffer_size=100).to_dict()
        return {
            "config": cfg,
            "test": {"acc": acc, "bwt": -acc / 10, "fwt": 0.0},
            "r_test": [[acc, 0.0], [acc, acc]],
            "timings": [{"gan": seconds, "compile": 99.0}, {"solver": seconds}],
            "memory": {
                "solver_param_bytes": 40,
                "generator_param_bytes": 2,
                "real_data_bytes_uint8_after_task": [784 * 50, 784 * 120],
            },
        }

    gen, exact = study.summarize(
        {
            "gen": [run(0, 0.6, 30.0), run(1, 0.8, 90.0)],
            "exact": [run(0, 0.5, 60.0, "exact")],
        }
    )
    assert gen["seeds"] == [0, 1] and gen["acc_mean"] == pytest.approx(0.7)
    assert gen["acc_std"] == pytest.approx(0.1)  # over the seeds, not a sample estimate
    assert gen["bwt_mean"] == pytest.approx(-0.07)
    assert gen["r_test_mean"] == [[0.7, 0.0], [0.7, 0.7]]
    assert gen["minutes_mean"] == pytest.approx(2.0)  # (60 + 180) / 2 s, compile inside phases
    assert gen["model_bytes"] == 42 and gen["stored_real_bytes"] == 0
    # exact replay keeps every earlier image (50 after task 1), and no generator
    assert exact["model_bytes"] == 40 and exact["stored_real_bytes"] == 50 * 784
