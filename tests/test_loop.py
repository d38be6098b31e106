import json

import jax
import numpy as np
import pytest

from gr_jax import checkpoints, loop, provenance, runs
from gr_jax.replay import reservoir_update
from gr_jax.results import empty_history, make_results, stored_bytes
from gr_jax.tasks import capacity, prepare_data

from .conftest import prepare, tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    results = loop.run(tiny_config(), out, bars=False)
    return out, results


def stopped_after_task_1(cfg, out, environment: dict | None = None):
    """`out` as a run killed after its first task leaves it; the state and history it saved
    (`environment`: the one the first task is noted to have run in)."""
    prepare(cfg, out, resume=False, overwrite=False)
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    history = empty_history(*loop._accuracies(state.solver, data, cfg))
    if environment is not None:
        provenance.note_environment(history, environment, 0)
    state = loop.run_task(cfg, 0, state, data, history)
    checkpoints.save(checkpoints.manager(out), 1, state, history)
    return state, history


def test_end_to_end_results(tiny_run):
    out, r = tiny_run
    assert np.asarray(r["r_test"]).shape == (2, 2) and np.asarray(r["r_val"]).shape == (2, 2)
    # class-incremental: before task 2 is trained, its classes are never predicted
    assert r["r_test"][0][1] == 0.0
    assert r["r_test"][0][0] > 0.9 and r["r_test"][1][1] > 0.9
    assert set(r["test"]) == {"acc", "bwt", "fwt"}
    assert r["test"]["acc"] == pytest.approx(np.mean(r["r_test"][-1]))
    # one validation row per solver epoch, accuracies for every task
    assert len(r["solver_curves"]) == 2 * 2 and len(r["solver_curves"][0]["val_accuracy"]) == 2
    assert len(r["gan_curves"]) == 2
    # replay before task 2: n_gen images, classes counted from the solver's labels
    assert r["replay_class_counts"][0] == [0] * 10
    assert sum(r["replay_class_counts"][1]) == 256
    assert set(r["timings"][1]) == {
        "generate",
        "solver",
        "evaluate",
        "gan",
        "checkpoint",
        "compile",
    }
    # task 1 compiles most (all of it when no earlier test of this process has run the config)
    assert r["timings"][0]["compile"] >= r["timings"][1]["compile"] >= 0
    # memory: parameters counted from the architectures, images from the task sizes
    cfg = tiny_config()
    widths = (28 * 28, *cfg.solver_hidden, 10)
    mem = r["memory"]
    assert mem["solver_param_bytes"] == 4 * sum(a * b + b for a, b in zip(widths, widths[1:]))
    fresh = loop.new_gan(cfg, jax.random.PRNGKey(0))
    count = lambda tree: sum(x.size for x in jax.tree_util.tree_leaves(tree))  # noqa: E731
    assert mem["generator_param_bytes"] == 4 * count(fresh.g.params)
    assert mem["discriminator_param_bytes"] == 4 * count(fresh.d.params)
    seen = np.cumsum([len(y) for _, y in prepare_data(cfg).train])
    assert mem["real_data_bytes_uint8_after_task"] == (seen * 28 * 28).tolist()
    assert mem["real_data_bytes_float32_after_task"] == (seen * 28 * 28 * 4).tolist()
    assert mem["replay_buffer_bytes_uint8"] == 0
    assert r["environment"]["cpu_cores"] >= 1
    assert r["environment"]["jax_threefry_partitionable"] is jax.config.jax_threefry_partitionable
    assert r["environments"] == [{"tasks_done_before": 0, **r["environment"]}]
    saved = json.loads((out / "results.json").read_text())
    assert saved["r_test"] == r["r_test"]
    assert json.loads((out / "config.json").read_text())["n_gen"] == 256


def test_one_checkpoint_per_task_restores_exactly(tiny_run):
    out, r = tiny_run
    mngr = checkpoints.manager(out)
    assert sorted(mngr.all_steps()) == [1, 2]
    cfg = tiny_config()
    state, meta = checkpoints.restore(mngr, 2, loop.init_state(cfg))
    assert meta["r_test"] == r["r_test"] and meta["tasks_done"] == 2
    data = prepare_data(cfg)
    val, test = loop._accuracies(state.solver, data, cfg)
    assert test == r["r_test"][-1]


def test_a_checkpoint_restores_every_leaf_of_the_state_bitwise(tmp_path):
    cfg = tiny_config()
    out = tmp_path / "r"
    state, history = stopped_after_task_1(cfg, out)
    restored, meta = checkpoints.restore(checkpoints.manager(out), 1, loop.init_state(cfg))
    assert meta["tasks_done"] == 1 and meta["r_test"] == history["r_test"]
    saved, back = jax.tree.leaves(state), jax.tree.leaves(restored)
    assert len(saved) == len(back) > 20  # solver and GAN weights, Adam moments, steps, key
    for a, b in zip(saved, back):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and np.array_equal(a, b)
        # TrainState's step counters come back as Python ints, as TrainState.create makes them
        assert a.dtype == b.dtype or (a.shape == () and a.dtype.kind == b.dtype.kind == "i")
    assert not np.array_equal(state.key, loop.init_state(cfg).key)  # the key moved on


def test_replay_weight_schedules():
    at = lambda cfg: [loop.replay_weight_at(cfg, t) for t in range(4)]  # noqa: E731
    assert at(tiny_config()) == [None] * 4  # "mix": every example alike
    tasks = at(tiny_config(replay_weighting="tasks"))
    assert np.allclose(tasks, [0.0, 1 / 2, 2 / 3, 3 / 4])
    fixed = at(tiny_config(replay_weighting="fixed", replay_share=0.3))
    assert np.allclose(fixed, [0.0, 0.3, 0.3, 0.3])


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_run):
    _, r = tiny_run
    again = loop.run(tiny_config(), None, bars=False)
    assert again["r_test"] == r["r_test"] and again["solver_curves"] == r["solver_curves"]
    other = loop.run(tiny_config(seed=1), None, bars=False)
    assert other["solver_curves"] != r["solver_curves"]


def test_an_unconditional_gan_does_not_depend_on_the_solver(tiny_run):
    """What experiments/fixed_generators.py relies on: the GAN learns from the mix's images, not
    from the solver's labels, so a solver-side change leaves every generator as it was."""
    _, r = tiny_run
    other = loop.run(tiny_config(solver_lr=3e-4), None, bars=False)
    assert other["solver_curves"] != r["solver_curves"]
    assert other["gan_curves"] == r["gan_curves"]


@pytest.mark.parametrize("skipping", [{"final_gan": False}, {"gen_epochs": (1, 0)}])
def test_without_the_final_gan_the_numbers_are_the_same_and_the_last_generator_kept(
    skipping, tmp_path, tiny_run
):
    out, r = tiny_run
    assert not loop.trains_gan(tiny_config(**skipping), 1) and loop.trains_gan(tiny_config(), 1)
    skip = loop.run(tiny_config(**skipping), tmp_path / "r", bars=False)
    assert skip["r_test"] == r["r_test"] and skip["solver_curves"] == r["solver_curves"]
    assert skip["gan_curves"] == r["gan_curves"][:1]  # task 1's GAN epoch only
    assert skip["timings"][1]["gan"] < 0.1 * r["timings"][1]["gan"]
    cfg = tiny_config()
    after_1, _ = checkpoints.restore(checkpoints.manager(out), 1, loop.init_state(cfg))
    last, _ = checkpoints.restore(checkpoints.manager(tmp_path / "r"), 2, loop.init_state(cfg))
    same = jax.tree.map(np.array_equal, after_1.gan.g.params, last.gan.g.params)
    assert all(jax.tree.leaves(same))


def test_resume_after_the_first_task_gives_the_same_results(tmp_path, tiny_run):
    _, full = tiny_run
    cfg = tiny_config()
    # stop by hand after task 1, as a killed run would have
    out = tmp_path / "r"
    stopped_after_task_1(cfg, out)
    resumed = loop.run(cfg, out, resume=True, bars=False)
    assert resumed["r_test"] == full["r_test"] and resumed["r_val"] == full["r_val"]
    assert resumed["gan_curves"] == full["gan_curves"]


def test_an_environment_is_noted_once_while_it_does_not_change(capsys):
    env = provenance.environment()
    history: dict = {}
    assert provenance.note_environment(history, env, 0) == []
    history = json.loads(json.dumps(history))  # as a checkpoint's meta comes back
    for t in (1, 2):
        changed = provenance.note_environment(history, provenance.environment(), t)
        provenance.warn_if_changed(changed, t)
    assert history["environments"] == [{"tasks_done_before": 0, **env}]
    assert capsys.readouterr().err == ""


def test_a_run_resumed_elsewhere_records_both_environments_and_warns(tmp_path, capsys):
    cfg = tiny_config()
    out = tmp_path / "r"
    elsewhere = {**provenance.environment(), "xla_flags": "--elsewhere", "cpu_cores": 64}
    stopped_after_task_1(cfg, out, elsewhere)
    resumed = loop.run(cfg, out, resume=True, bars=False)
    assert "task 2 runs in another environment than task 1 (cpu_cores, xla_flags differ)" in (
        capsys.readouterr().err
    )
    first, second = resumed["environments"]
    assert (first["tasks_done_before"], first["xla_flags"]) == (0, "--elsewhere")
    assert second == {"tasks_done_before": 1, **resumed["environment"]}


def test_bad_data_stops_before_the_run_it_would_replace_is_deleted(tmp_path):
    from gr_jax.data import DataError

    out = tmp_path / "run"
    prepare(tiny_config(), out, resume=False, overwrite=False)
    (out / "results.json").write_text("{}")
    missing = tiny_config(dataset="mnist", data_dir=str(tmp_path / "no-mnist-here"))
    with pytest.raises(DataError, match="missing from .*: train-images"):
        loop.run(missing, out, overwrite=True, bars=False)
    assert (out / "results.json").read_text() == "{}"


def test_resuming_a_finished_run_returns_its_results_unchanged(tiny_run, monkeypatch):
    out, results = tiny_run
    before = (out / "results.json").read_text()
    monkeypatch.setattr(loop, "prepare_data", lambda cfg: pytest.fail("a finished run ran"))
    assert loop.run(tiny_config(), out, resume=True, bars=False) == json.loads(before)
    assert (out / "results.json").read_text() == before


def test_batch_larger_than_a_task_is_refused():
    from gr_jax.config import ConfigError

    with pytest.raises(ConfigError, match="solver_batch=5000 is larger"):
        prepare_data(tiny_config(solver_batch=5000))


@pytest.mark.parametrize("fields", [{}, {"gan_lr_final": 0.0, "d_lr": 4e-4}])
def test_nothing_compiles_after_the_first_replay_task(caplog, fields):
    """Fixed shapes everywhere: task 3 runs entirely on programs compiled in tasks 1 and 2 (also
    with the GAN's learning-rate decay, whose length changes from task to task)."""
    import logging

    cfg = tiny_config(tasks=((0, 1), (2, 3), (4, 5)), **fields)
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    history = empty_history(*loop._accuracies(state.solver, data, cfg))
    for t in range(2):
        state = loop.run_task(cfg, t, state, data, history)
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            loop.run_task(cfg, 2, state, data, history)
            compiles = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
            caplog.clear()
            jax.jit(lambda x: x * 3 + 1)(np.float32(2))  # the log this test reads says so
            assert any("Compiling" in r.getMessage() for r in caplog.records)
    finally:
        jax.config.update("jax_log_compiles", False)
    assert compiles == []


@pytest.mark.parametrize("replay", ["none", "exact", "buffer", "joint"])
def test_baseline_training_sets(replay):
    cfg = tiny_config(replay=replay, buffer_size=100, tasks=((0, 1), (2, 3), (4, 5)))
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    if replay == "buffer":  # the memory after two tasks, as _run_phases leaves it
        n0, n1 = (len(y) for _, y in data.train[:2])
        kept = reservoir_update(np.full(100, -1, np.int32), 0, n0, seed=0)
        state = state.replace(buffer=reservoir_update(kept, n0, n1, seed=1))
    train, counts = loop.replay_phase(cfg, 2, state, data, jax.random.PRNGKey(0))
    x, y, n = train.x, train.y, train.n
    sizes = [len(labels) for _, labels in data.train]
    expected = {"none": sizes[2], "joint": sum(sizes)}.get(replay, sizes[2] + 100)
    assert n == expected and x.shape[0] == capacity(cfg, data) >= n
    labels = np.asarray(y)
    assert set(labels[: sizes[2]]) == {4, 5}
    assert set(labels[sizes[2] : n]) <= {0, 1, 2, 3}
    assert sum(counts) == n - sizes[2]
    if replay == "exact":  # drawn from both earlier tasks, and again the same for the same key
        assert set(labels[sizes[2] : n]) == {0, 1, 2, 3}
        y2 = loop.replay_phase(cfg, 2, state, data, jax.random.PRNGKey(0))[0].y
        np.testing.assert_array_equal(labels, np.asarray(y2))


def test_the_buffer_baseline_keeps_its_memory_across_tasks_and_checkpoints(tmp_path):
    cfg = tiny_config(replay="buffer", buffer_size=300, tasks=((0, 1), (2, 3), (4, 5)))
    r = loop.run(cfg, tmp_path / "r", bars=False)
    counts = r["replay_class_counts"]
    assert [sum(c) for c in counts] == [0, 300, 300] and sum(counts[2][4:]) == 0
    assert r["memory"]["replay_buffer_bytes_uint8"] == 300 * 28 * 28
    states = runs.task_states(tmp_path / "r")
    n0 = len(prepare_data(cfg).train[0][1])
    b1, b2 = (np.asarray(states[t].buffer) for t in (1, 2))
    assert (b1 >= 0).all() and b1.max() < n0  # full, of task 1 alone
    assert set(b2[b2 < n0]) < set(b1)  # task 1's images it still keeps were kept before
    # the state is in every checkpoint: resuming after task 1 gives the same run
    short = tmp_path / "s"
    stopped_after_task_1(cfg, short)
    resumed = loop.run(cfg, short, resume=True, bars=False)
    assert resumed["r_test"] == r["r_test"] and resumed["replay_class_counts"] == counts


def test_memory_counts_what_each_baseline_keeps():
    seen = np.array([100, 250, 400])
    bytes_ = lambda **kw: stored_bytes(tiny_config(**kw), seen) // (28 * 28)  # noqa: E731
    assert bytes_(replay="buffer", buffer_size=1000) == 250
    assert bytes_(replay="buffer", buffer_size=120) == 120
    assert bytes_(replay="exact", buffer_size=120) == 250  # it draws from all of them
    assert bytes_(replay="joint") == 250 and bytes_(replay="none") == bytes_() == 0


def test_memory_counts_the_generators_ema_weights_as_well():
    """With an EMA of the generator, replay samples the averaged weights while the raw ones
    train: both are kept, twice the generator's parameters."""
    history = empty_history([0.0, 0.0], [0.0, 0.0])
    history["r_test"] = history["r_val"] = [[1.0, 0.0], [1.0, 1.0]]

    def generator_bytes(cfg):
        data = prepare_data(cfg)
        results = make_results(cfg, loop.init_state(cfg), history, data, 0.0, env={})
        return results["memory"]["generator_param_bytes"]

    assert generator_bytes(tiny_config(gan_ema=0.99)) == 2 * generator_bytes(tiny_config())


def test_a_checkpoint_from_before_the_buffer_field_restores(tmp_path):
    """Checkpoints written before RunState had its `buffer` field (None unless replay="buffer")
    still resume; a checkpoint that holds a buffer is never restored without it."""
    cfg = tiny_config()
    state = loop.init_state(cfg)
    old = {"solver": state.solver, "gan": state.gan, "key": state.key}  # the old RunState's tree
    checkpoints.save(checkpoints.manager(tmp_path / "old"), 1, old, {"tasks_done": 1})
    mngr = checkpoints.manager(tmp_path / "old")
    assert checkpoints.saved_fields(mngr, 1) == {"solver": True, "gan": True, "key": True}
    restored, meta = checkpoints.restore(mngr, 1, loop.init_state(cfg))
    assert restored.buffer is None and meta == {"tasks_done": 1}
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, restored, state)))
    buffered = loop.init_state(tiny_config(replay="buffer", buffer_size=10))
    checkpoints.save(checkpoints.manager(tmp_path / "new"), 1, buffered, {"tasks_done": 1})
    with pytest.raises(ValueError, match="holds buffer, which the state it is restored into"):
        checkpoints.restore(checkpoints.manager(tmp_path / "new"), 1, loop.init_state(cfg))


def test_a_run_on_full_mnist(mnist_path):
    """The tiny run on the full IDX data: every task's images come from its classes, and the
    solver learns each task when it comes."""
    cfg = tiny_config(dataset="mnist", data_dir=str(mnist_path), gan="mlp", solver_epochs=1)
    data = prepare_data(cfg)
    assert [sorted(set(y.tolist())) for _, y in data.train] == [[0, 1], [2, 3]]
    assert sum(len(y) for _, y in data.train) == round(0.9 * (5923 + 6742 + 5958 + 6131))
    r = loop.run(cfg, None, bars=False)
    assert r["r_test"][0][0] > 0.98 and r["r_test"][1][1] > 0.9


def test_the_validation_split_follows_split_seed_not_the_run_seed():
    first = prepare_data(tiny_config())
    other_run = prepare_data(tiny_config(seed=1))
    other_split = prepare_data(tiny_config(split_seed=1))
    assert np.array_equal(first.val_x, other_run.val_x) and len(first.val_y) == len(
        other_split.val_y
    )
    assert not np.array_equal(first.val_x, other_split.val_x)
