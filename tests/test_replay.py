import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gr_jax import batching, gan, replay, solver


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
    x = jnp.asarray(batching.pad_to(real_x, 12))
    y = jnp.asarray(batching.pad_to(real_y, 12))
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


def test_reservoir_update_draws_every_subset_of_the_examples_seen_alike():
    """A memory of 3 after tasks of 3, 2 and 2 examples: each of the C(7, 3) = 35 subsets of
    the 7 examples comes out equally often (chi-square over 7,000 draws, 34 degrees of
    freedom: 72 is its 99.99th percentile; a sampler favouring recent or early examples, or
    keeping the counts right but not the subsets, lands far above)."""
    reps, counts = 7000, collections.Counter()
    for seed in range(reps):
        b = np.full(3, -1, np.int32)
        for i, (before, n) in enumerate(((0, 3), (3, 2), (5, 2))):
            b = replay.reservoir_update(b, before, n, seed=3 * seed + i)
        counts[tuple(b)] += 1
    assert len(counts) == math.comb(7, 3)
    expected = reps / math.comb(7, 3)
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < 72


def test_kept_replay_gathers_the_buffer_across_tasks():
    tasks = [
        (np.arange(3.0)[:, None], np.array([0, 0, 1])),
        (np.arange(3.0, 5)[:, None], np.array([2, 3])),
    ]
    x, y = replay.kept_replay(tasks, np.array([1, 4, -1], np.int32))
    assert x.ravel().tolist() == [1.0, 4.0] and y.tolist() == [0, 3]
