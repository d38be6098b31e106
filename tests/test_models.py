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


def test_minibatch_std_discriminator_sees_the_rest_of_the_batch():
    key = jax.random.PRNGKey(0)
    batch = jax.random.uniform(key, (8, 28, 28, 1), minval=-1, maxval=1)
    same_first = batch.at[1:].set(batch[0])  # image 0 in a batch with no diversity
    for kind in ("conv", "mlp"):
        plain, mbstd = models.make_gan(kind, 8)[1], models.make_gan(kind, 8, mbstd=True)[1]
        for d, depends in ((plain, False), (mbstd, True)):
            v = d.init(key, batch)
            a, b = d.apply(v, batch)[0], d.apply(v, same_first)[0]
            # image 0 is the same in both batches: only the minibatch-std D may score it apart
            assert (abs(float(a) - float(b)) > 1e-5) == depends, (kind, depends)
    # the extra channel: near 0 for identical images, the spread for varied ones
    assert float(models.minibatch_std(jnp.ones((4, 3)))[0, -1]) < 1e-3
    assert float(models.minibatch_std(batch)[0, 0, 0, -1]) > 0.3
