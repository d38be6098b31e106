import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gr_jax import gan, replay, solver


def test_generate_replay_draws_n_gen_images_labelled_by_the_solver():
    g = gan.create_gan_state(jax.random.PRNGKey(0), "conv", 8, 16, 2e-4, 0.5).g
    s = solver.create_solver_state(jax.random.PRNGKey(1), (32,), 1e-3)
    x, y, soft = replay.generate_replay(g, s, jax.random.PRNGKey(2), 250, 16, chunk=100)
    assert soft is None
    assert x.shape == (250, 28, 28, 1) and y.shape == (250,) and y.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(y), np.asarray(solver.predict(s, x)))
    # chunks draw different latents: no repeated images
    assert float(jnp.abs(x[:100] - x[100:200]).max()) > 0
    x2, _, _ = replay.generate_replay(g, s, jax.random.PRNGKey(2), 250, 16, chunk=100)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
    with pytest.raises(ValueError, match="n_gen must be >= 1"):
        replay.generate_replay(g, s, jax.random.PRNGKey(2), 0, 16, chunk=100)


def test_mix_puts_replay_right_after_the_real_data():
    real_x = np.ones((5, 28, 28, 1), np.float32)
    real_y = np.full(5, 7, np.int32)
    x = jnp.asarray(replay.pad_to(real_x, 12))
    y = jnp.asarray(replay.pad_to(real_y, 12))
    gx, gy = -jnp.ones((4, 28, 28, 1)), jnp.full(4, 3, jnp.int32)
    mx, my = replay.mix(x, y, jnp.asarray(5), gx, gy)
    assert mx.shape == (12, 28, 28, 1)
    assert np.asarray(my).tolist() == [7] * 5 + [3] * 4 + [0] * 3
    assert float(mx[4].mean()) == 1.0 and float(mx[5].mean()) == -1.0 and float(mx[9].mean()) == 0


def test_reservoir_update_keeps_a_nested_sample_of_everything_seen():
    empty = np.full(50, -1, np.int32)
    after_1 = replay.reservoir_update(empty, 0, 30, seed=0)
    assert after_1[:30].tolist() == list(range(30)) and (after_1[30:] == -1).all()
    after_2 = replay.reservoir_update(after_1, 30, 40, seed=1)
    assert (after_2 >= 0).all() and len(set(after_2)) == 50 and after_2.max() < 70
    after_3 = replay.reservoir_update(after_2, 70, 100, seed=2)
    assert len(set(after_3)) == 50 and after_3.max() < 170
    # an example the memory dropped never comes back
    for before, after, n_before in ((after_1, after_2, 30), (after_2, after_3, 70)):
        assert set(after[after < n_before]) <= set(before)
    assert np.array_equal(after_3, replay.reservoir_update(after_2, 70, 100, seed=2))
    with pytest.raises(ValueError, match="holds 30 examples"):
        replay.reservoir_update(after_1, 40, 10, seed=0)


def test_reservoir_update_is_uniform_over_all_examples_seen():
    """After tasks of 4, 6 and 10 examples, each of the 20 is in a memory of 5 with
    probability 1/4, whichever task it came from (std of each frequency here: 0.007)."""
    reps, hits = 4000, np.zeros(20)
    for seed in range(reps):
        b = np.full(5, -1, np.int32)
        for i, (before, n) in enumerate(((0, 4), (4, 6), (10, 10))):
            b = replay.reservoir_update(b, before, n, seed=3 * seed + i)
        hits[b] += 1
    assert np.abs(hits / reps - 0.25).max() < 0.035


def test_kept_replay_gathers_the_buffer_across_tasks():
    tasks = [
        (np.arange(3.0)[:, None], np.array([0, 0, 1])),
        (np.arange(3.0, 5)[:, None], np.array([2, 3])),
    ]
    x, y = replay.kept_replay(tasks, np.array([1, 4, -1], np.int32))
    assert x.ravel().tolist() == [1.0, 4.0] and y.tolist() == [0, 3]
