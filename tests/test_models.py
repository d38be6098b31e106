import jax
import jax.numpy as jnp
import numpy as np

from gr_jax import models


def test_depth_to_space_moves_channels_to_pixels():
    x = jnp.arange(1 * 2 * 2 * 4, dtype=jnp.float32).reshape(1, 2, 2, 4)
    y = models.depth_to_space(x)
    assert y.shape == (1, 4, 4, 1)
    # Pixel (0, 0)'s four channels fill the top-left 2x2 block in row-major order.
    assert np.asarray(y[0, :2, :2, 0]).tolist() == [[0, 1], [2, 3]]


def test_shapes_and_output_ranges():
    key = jax.random.PRNGKey(0)
    z = jax.random.normal(key, (3, 16))
    img = jnp.zeros((3, 28, 28, 1))
    for kind in ("conv", "mlp"):
        g, d = models.make_gan(kind, 8)
        gv = g.init(key, z, train=False)
        out = g.apply(gv, z, train=False)
        assert out.shape == (3, 28, 28, 1)
        assert float(jnp.abs(out).max()) <= 1.0
        dv = d.init(key, img)
        assert d.apply(dv, img).shape == (3,)
    solver = models.Solver((32,))
    sv = solver.init(key, img)
    assert solver.apply(sv, img).shape == (3, 10)
    # 784*32+32 + 32*10+10 parameters
    n = sum(x.size for x in jax.tree_util.tree_leaves(sv))
    assert n == 784 * 32 + 32 + 32 * 10 + 10
