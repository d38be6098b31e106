"""The notebook runs top to bottom on small runs: finished, cut short, of several seeds; and
`gr_jax.runs`, which reads them for it."""

import json
import os
import shutil
from pathlib import Path

import jax
import nbformat
import pytest
from nbclient import NotebookClient

from gr_jax import faults, loop, multiseed, runs

from .conftest import tiny_config

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore_run.ipynb"


def execute(
    monkeypatch: pytest.MonkeyPatch,
    run_dir: Path | None,
    seed: int | None = None,
    where: Path = NOTEBOOK.parent,
) -> tuple[str, list]:
    """Run the notebook in `where` on `run_dir` (None: its default); its outputs' text and
    outputs, after checking that no cell failed or warned that tqdm lacks ipywidgets."""
    for name, value in (("GR_JAX_RUN_DIR", run_dir), ("GR_JAX_SEED", seed)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    text = "".join(o.get("text", "") for o in outputs)
    assert "TqdmWarning" not in text and "IProgress" not in text
    return text, outputs


def images(outputs: list) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


class Stop(Exception):
    """Raised at a fault point: the run ends there, as if killed."""


def stop_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def point(task: int, phase: str) -> None:
        if (task, phase) == (0, "checkpoint"):
            raise Stop

    monkeypatch.setattr(faults, "point", point)


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory) -> Path:
    """A finished run of seeds 0 and 1 in one program (an MLP GAN: the quicker one)."""
    out = tmp_path_factory.mktemp("seeds") / "run"
    multiseed.run(tiny_config(gan="mlp"), [0, 1], out, bars=False)
    return out


def test_notebook_runs_on_a_small_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    loop.run(tiny_config(final_gan=False), run_dir, bars=False)  # as `best`: no last GAN
    text, outputs = execute(monkeypatch, run_dir)
    assert "ACC" in text and "checkpoints after tasks: [1, 2]" in text
    assert "cut short" not in text and "a run of one seed" in text
    assert images(outputs) >= 3  # matrix + curves, and one figure per task


def test_notebook_takes_the_newest_run_in_runs_and_shows_a_run_cut_short(tmp_path, monkeypatch):
    """Without GR_JAX_RUN_DIR: the newest run folder in ../runs, here one stopped after its
    first task's checkpoint (no results.json): shown as far as it goes."""
    (tmp_path / "notebooks").mkdir()
    older = tmp_path / "runs" / "quick-20260101-000000"
    older.mkdir(parents=True)
    (older / "config.json").write_text(tiny_config().to_json())
    os.utime(older / "config.json", (0, 0))
    run_dir = tmp_path / "runs" / "quick-20260102-000000"
    stop_after_first_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        loop.run(tiny_config(), run_dir, bars=False)
    assert not (run_dir / "results.json").exists()
    text, outputs = execute(monkeypatch, None, where=tmp_path / "notebooks")
    assert f"the newest run folder in ../runs, ../runs/{run_dir.name}" in text
    assert "cut short: 1 of 2 tasks done" in text and "checkpoints after tasks: [1]" in text
    assert "(over the 1 task done)" in text
    assert images(outputs) >= 2  # matrix + curves, and the one task's figure


def test_notebook_shows_the_summary_and_one_seed_of_a_seeds_run(seeds_run, monkeypatch):
    text, outputs = execute(monkeypatch, seeds_run, seed=1)
    summary = json.loads((seeds_run / "summary.json").read_text())
    acc = summary["test_acc"]
    assert f"ACC {acc['mean']:+.4f} ± {acc['std']:.4f}" in text
    for s in (0, 1):
        t = json.loads((seeds_run / f"seed={s}" / "results.json").read_text())["test"]
        assert f"seed {s}: ACC {t['acc']:.4f}" in text
    assert "seed 1 of seeds [0, 1]" in text and "checkpoints after tasks: [1, 2]" in text
    assert images(outputs) >= 4  # mean matrix, matrix + curves, one figure per task


def test_runs_reads_a_seeds_run_one_seed_at_a_time(seeds_run):
    assert runs.run_seeds(seeds_run) == [0, 1]
    assert runs.locate(seeds_run) == (seeds_run, 0)  # the first seed by default
    assert runs.locate(seeds_run / "seed=1") == (seeds_run, 1)
    for bad in ((seeds_run, 2), (seeds_run / "seed=1", 0)):
        with pytest.raises(ValueError):
            runs.locate(*bad)
    for s in (0, 1):
        assert runs.load_config(seeds_run, s).seed == s
        saved = json.loads((seeds_run / f"seed={s}" / "results.json").read_text())
        assert runs.load_results(seeds_run, s) == saved
        # read from the last checkpoint: what results.json says, ACC, BWT and FWT included
        partial = runs.partial_results(seeds_run, s)
        same = [k for k in partial if k != "timings"]  # the last checkpoint's own: after it
        assert {k: partial[k] for k in same} == {k: saved[k] for k in same}
        states = runs.task_states(seeds_run, s)
        key = jax.random.split(jax.random.PRNGKey(s), 3)[0]  # as loop.state_from_key, then
        for done in (1, 2):  # seed s's own key after each task: its own state
            key = loop.task_keys(key)[0]
            assert (states[done].key == key).all()


def test_runs_reads_a_seeds_run_cut_short_from_its_last_checkpoint(seeds_run, tmp_path):
    """As a run stopped after its first task's checkpoint leaves it: no results, no summary."""
    cut = tmp_path / "run"
    shutil.copytree(seeds_run, cut)
    for path in ("seed=0", "seed=1", "checkpoints/2"):
        shutil.rmtree(cut / path)
    (cut / "summary.json").unlink()
    for s in (0, 1):
        full = runs.load_results(seeds_run, s)
        r = runs.load_results(cut, s)
        assert r["tasks_done"] == 1 and r["r_test"] == full["r_test"][:1]
        assert r["test"] == {"acc": r["r_test"][0][0], "bwt": 0.0, "fwt": 0.0}
    summary = runs.load_summary(cut)
    assert summary["seeds"] == [0, 1] and len(summary["r_test"]["mean"]) == 1


def test_newest_run_is_the_run_folder_started_last(tmp_path):
    with pytest.raises(FileNotFoundError):
        runs.newest_run(tmp_path)
    for name, started in (("b", 2), ("a", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        os.utime(tmp_path / name / "config.json", (started, started))
    (tmp_path / "c").mkdir()  # no config.json: no run
    assert runs.newest_run(tmp_path) == tmp_path / "b"
