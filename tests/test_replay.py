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
