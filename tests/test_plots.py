"""The figures: what they draw, also for a run that has not finished all its tasks."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gr_jax import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def partial_results(tasks_done: int = 2, num_tasks: int = 5, epochs: int = 3) -> dict:
    """A results dict as after `tasks_done` of `num_tasks` tasks."""
    rng = np.random.default_rng(0)
    curves = [
        {"task": t, "val_accuracy": rng.uniform(size=num_tasks).tolist()}
        for t in range(tasks_done)
        for _ in range(epochs)
    ]
    return {"solver_curves": curves, "r_test": rng.uniform(size=(tasks_done, num_tasks))}


def test_accuracy_matrix_labels_rows_by_task_done_and_columns_by_task():
    ax = plots.accuracy_matrix(partial_results()["r_test"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["T1", "T2", "T3", "T4", "T5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["after T1", "after T2"]
    assert len(ax.texts) == 2 * 5


def test_validation_curves_draw_each_task_from_when_it_is_learnt():
    r = partial_results()
    ax = plots.validation_curves(r)
    lines = ax.get_lines()
    curves = [ln for ln in lines if ln.get_label().startswith("task")]
    assert [ln.get_label() for ln in curves] == ["task 1", "task 2"]
    assert list(curves[0].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(curves[1].get_xdata()) == [4, 5, 6]
    np.testing.assert_array_equal(
        curves[1].get_ydata(), [c["val_accuracy"][1] for c in r["solver_curves"][3:]]
    )
    assert len(lines) - len(curves) == 1  # one task boundary


def test_sample_grid_and_replay_histogram():
    images = np.linspace(-1, 1, 10 * 28 * 28).reshape(10, 28, 28, 1)
    ax = plots.sample_grid(images, labels=np.arange(10), ncols=4)
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (3 * 30, 4 * 30)
    np.testing.assert_allclose(grid[1:29, 1:29], (images[0, ..., 0] + 1) / 2)
    assert [t.get_text() for t in ax.texts] == [str(k) for k in range(10)]
    ax = plots.replay_histogram([5, 0, 3])
    assert [p.get_height() for p in ax.patches] == [5, 0, 3]
