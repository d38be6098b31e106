"""The notebook runs top to bottom on a small run."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from gr_jax import loop

from .conftest import tiny_config

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore_run.ipynb"


def test_notebook_runs_on_a_small_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    loop.run(tiny_config(final_gan=False), run_dir, bars=False)  # as `best`: no last GAN
    monkeypatch.setenv("GR_JAX_RUN_DIR", str(run_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "ACC" in text and "checkpoints after tasks: [1, 2]" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # matrix + curves, and one figure per task
    assert not any(o.output_type == "error" for o in outputs)
