import numpy as np
import pytest

from gr_jax import metrics

# Hand-computed example: 3 tasks.
R = np.array(
    [
        [0.9, 0.1, 0.0],
        [0.5, 0.8, 0.2],
        [0.3, 0.6, 0.7],
    ]
)
B = np.array([0.1, 0.05, 0.1])


def test_acc_is_mean_of_last_row():
    assert metrics.acc(R) == pytest.approx((0.3 + 0.6 + 0.7) / 3)


def test_bwt_by_hand():
    # (R[2,0]-R[0,0] + R[2,1]-R[1,1]) / 2 = (-0.6 - 0.2) / 2
    assert metrics.bwt(R) == pytest.approx(-0.4)


def test_fwt_by_hand():
    # (R[0,1]-b[1] + R[1,2]-b[2]) / 2 = (0.05 + 0.1) / 2
    assert metrics.fwt(R, B) == pytest.approx(0.075)


def test_no_forgetting_gives_zero_bwt():
    r = np.triu(np.full((4, 4), 0.9)) + np.tril(np.full((4, 4), 0.9), -1)
    assert metrics.bwt(r) == pytest.approx(0.0)
    assert metrics.summary(r, np.zeros(4))["acc"] == pytest.approx(0.9)


def test_single_task():
    assert metrics.bwt(np.array([[0.7]])) == 0.0
    assert metrics.fwt(np.array([[0.7]]), np.array([0.1])) == 0.0


def test_tree_bytes():
    tree = {"a": np.zeros((3, 4), np.float32), "b": [np.zeros(5, np.float32)]}
    assert metrics.tree_bytes(tree) == (12 + 5) * 4


def test_format_matrix_has_every_row():
    text = metrics.format_matrix(R)
    assert text.count("after T") == 3 and "0.700" in text


def test_judged_replay_counts_unseen_unsure_and_dropped_classes():
    # 5 images meant to show classes 0 and 1; the judge says 0, 0, 1, 7 (unseen), 0 (unsure)
    probs = np.full((5, 10), 0.01)
    for i, (c, p) in enumerate([(0, 0.95), (0, 0.95), (1, 0.95), (7, 0.95), (0, 0.5)]):
        probs[i, c] = p
    v = metrics.judged_replay(probs, [0, 1])
    assert v["unseen"] == pytest.approx(1 / 5)
    assert v["sure"] == pytest.approx(4 / 5)
    assert (v["fewest"], v["most"], v["counts"]) == (1, 3, [3, 1])


def test_mean_std_over_seeds_is_the_population_std():
    mean, std = metrics.mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and std == pytest.approx(np.sqrt(0.08 / 3))


def test_a_metric_added_to_summary_reaches_every_table_and_print(monkeypatch, tmp_path):
    """One place to add a scalar metric (`metrics.summary` and `SCALARS`): the sweep and
    multi-seed tables recompute it from the stored matrices, so runs recorded before it have
    it too, and the Markdown table and printed line grow a column."""
    from gr_jax import metrics, multiseed, sweep
    from gr_jax.config import Config

    plain = metrics.summary
    monkeypatch.setattr(metrics, "SCALARS", (*metrics.SCALARS, "aia"))
    monkeypatch.setattr(
        metrics, "summary", lambda r, b: {**plain(r, b), "aia": float(np.mean(np.tril(r)))}
    )
    old = {  # a results file from before "aia" existed
        "config": {"seed": 0},
        "r_test": [[0.9, 0.0], [0.7, 0.9]],
        "b_test": [0.1, 0.1],
        "r_val": [[0.9, 0.0], [0.7, 0.9]],
        "b_val": [0.1, 0.1],
        "test": plain(np.array([[0.9, 0.0], [0.7, 0.9]]), np.array([0.1, 0.1])),
    }
    rows = sweep.summarize([(Config(n_gen=5), old)], ["n_gen"])
    assert rows[0]["aia_mean"] == pytest.approx(0.625) and rows[0]["acc_mean"] == 0.8
    table = sweep.write_summary(rows, tmp_path).splitlines()
    assert "AIA" in table[0] and len({line.count("|") for line in table}) == 1
    assert multiseed.summary([old, old])["test_aia"] == {"mean": 0.625, "std": 0.0}
    printed = metrics.format_scalars({"acc": 0.8, "bwt": -0.2, "fwt": 0.01, "aia": 0.625})
    assert printed == "ACC 0.8000  BWT -0.2000  FWT +0.0100  AIA +0.6250"
