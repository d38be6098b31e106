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
