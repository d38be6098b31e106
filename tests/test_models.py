import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gr_jax import gan, models


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


def test_cosine_head_ignores_the_norms_of_class_weights_and_features():
    """A class's weight vector made 10x longer wins more with a linear head, not a cosine one;
    the cosine head's logits are bounded by its learnt scale."""
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (5, 28, 28, 1))
    for head, moves in (("linear", True), ("cosine", False)):
        model = models.Solver((32,), head=head)
        params = model.init(key, x)["params"]
        name = "CosineHead_0" if head == "cosine" else "Dense_1"
        longer = jax.tree_util.tree_map(lambda p: p, params)
        longer[name] = {**params[name], "kernel": params[name]["kernel"].at[:, 3].multiply(10.0)}
        a, b = model.apply({"params": params}, x), model.apply({"params": longer}, x)
        assert (not np.allclose(a, b, atol=1e-4)) == moves, head
    scale = float(params["CosineHead_0"]["scale"])
    assert scale == 10.0 and float(jnp.abs(a).max()) <= scale + 1e-4
    n = sum(p.size for p in jax.tree_util.tree_leaves(params))
    assert n == 784 * 32 + 32 + 32 * 10 + 1  # no bias, one scale


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


def test_minibatch_discrimination_scores_each_image_by_its_neighbours():
    key = jax.random.PRNGKey(0)
    batch = jax.random.uniform(key, (8, 28, 28, 1), minval=-1, maxval=1)
    same_first = batch.at[1:].set(batch[0])
    for kind in ("conv", "mlp"):
        d = models.make_gan(kind, 8, mbdisc=6)[1]
        v = d.init(key, batch)
        assert v["params"]["MinibatchDiscrimination_0"]["project"]["kernel"].shape[-1] == 6 * 5
        # image 0 is the same in both batches, its neighbours are not
        assert abs(float(d.apply(v, batch)[0]) - float(d.apply(v, same_first)[0])) > 1e-5, kind
    layer = models.MinibatchDiscrimination(4, dims=3)
    h = jax.random.normal(key, (5, 16))
    lv = layer.init(key, h)
    out = layer.apply(lv, h)
    assert out.shape == (5, 20) and jnp.array_equal(out[:, :16], h)
    # identical images: each is as close as can be to the 4 others; far-apart ones: to none
    same = layer.apply(lv, jnp.repeat(h[:1], 5, 0))[:, 16:]
    far = layer.apply(lv, h * 1e3)[:, 16:]
    np.testing.assert_allclose(same, 4.0, rtol=1e-6)
    assert float(far.max()) < 1e-3 and bool((out[:, 16:] > far).all())


def test_slice_convolutions_are_the_same_model_as_xla_convolutions():
    key, kz, kx = jax.random.split(jax.random.PRNGKey(0), 3)
    z = jax.random.normal(kz, (8, 16))
    x = jax.random.uniform(kx, (8, 28, 28, 1), minval=-1, maxval=1)
    xla, slices = (
        models.make_gan("conv", 8, mbstd=True),
        models.make_gan("conv", 8, mbstd=True, conv_impl="slices"),
    )
    gv = xla[0].init(key, z, train=False)
    dv = xla[1].init(key, x)
    # same parameter names, shapes and initial values: checkpoints load either way
    for a, b in ((gv, slices[0].init(key, z, train=False)), (dv, slices[1].init(key, x))):
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
        assert all(jnp.array_equal(u, v) for u, v in zip(*map(jax.tree_util.tree_leaves, (a, b))))

    def loss(gan, g_params, d_params):
        g, d = gan
        vs = {"params": g_params, "batch_stats": gv["batch_stats"]}
        fake = g.apply(vs, z, train=True, mutable=["batch_stats"])[0]
        return d.apply({"params": d_params}, fake).sum() - d.apply({"params": d_params}, x).sum()

    grads = [
        jax.value_and_grad(lambda g, d, m=m: loss(m, g, d), argnums=(0, 1))(
            gv["params"], dv["params"]
        )
        for m in (xla, slices)
    ]
    assert float(grads[0][0]) == pytest.approx(float(grads[1][0]), rel=1e-5)
    for a, b in zip(*(jax.tree_util.tree_leaves(g[1]) for g in grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the BatchNorm running statistics a training pass updates
    stats = [
        m[0].apply(gv, z, train=True, mutable=["batch_stats"])[1]["batch_stats"]
        for m in (xla, slices)
    ]
    for a, b in zip(*map(jax.tree_util.tree_leaves, stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_slice_convolutions_in_bfloat16_stay_close_to_float32():
    key, kz, kx = jax.random.split(jax.random.PRNGKey(3), 3)
    z = jax.random.normal(kz, (8, 16))
    x = jax.random.uniform(kx, (8, 28, 28, 1), minval=-1, maxval=1)
    f32 = models.make_gan("conv", 8, conv_impl="xla")
    bf16 = models.make_gan("conv", 8, conv_impl="slices", dtype="bfloat16")
    gv, dv = f32[0].init(key, z, train=False), f32[1].init(key, x)
    outs = [(g.apply(gv, z, mutable=["batch_stats"])[0], d.apply(dv, x)) for g, d in (f32, bf16)]
    for a, b in zip(*outs, strict=True):  # images, then logits
        assert b.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.03)
        assert not np.array_equal(a, b)  # it did compute in bfloat16


def test_conv_by_slices_matches_strided_and_odd_sized_convolutions():
    kx, kk = jax.random.split(jax.random.PRNGKey(1))
    for h, k, s in ((7, 3, 1), (7, 4, 2), (9, 3, 2), (6, 5, 3)):
        x = jax.random.normal(kx, (2, h, h, 3))
        w = jax.random.normal(kk, (k, k, 3, 4))
        ref = jax.lax.conv_general_dilated(
            x, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        np.testing.assert_allclose(models.conv_by_slices(x, w, s), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (4, 4, 8, 16), (64, 1), (10, 64)])
def test_spectral_normalize_gives_unit_spectral_norm(shape):
    w = jax.random.normal(jax.random.PRNGKey(1), shape)
    m = np.asarray(models.spectral_normalize(w)).reshape(-1, shape[-1])
    top = np.linalg.svd(m, compute_uv=False)[0]
    # the power iteration's estimate is never above the true value: top >= 1
    assert 1 - 1e-5 <= top <= 1.03, top


@pytest.mark.parametrize("kind,impl", [("conv", "xla"), ("conv", "slices"), ("mlp", "xla")])
def test_spectral_discriminator_ignores_the_scale_of_its_weights(kind, impl):
    key = jax.random.PRNGKey(0)
    x = jax.random.uniform(key, (4, 28, 28, 1), minval=-1, maxval=1)
    y = jnp.arange(4)
    plain = models.make_gan(kind, 8, num_classes=10, conv_impl=impl)[1]
    spectral = models.make_gan(kind, 8, num_classes=10, conv_impl=impl, spectral=True)[1]
    v = plain.init(key, x, y)
    # the same parameters as the plain discriminator: names, shapes and initial values
    sv = spectral.init(key, x, y)
    assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(sv)
    assert all(jnp.array_equal(a, b) for a, b in zip(*map(jax.tree_util.tree_leaves, (v, sv))))
    # biases are 0 at init, so scaling every weight matrix by 5 scales each layer's output by 5
    # unless the layer divides by the matrix's spectral norm
    scaled = jax.tree_util.tree_map(lambda p: 5 * p, v)
    for d, invariant in ((plain, False), (spectral, True)):
        a, b = d.apply(v, x, y), d.apply(scaled, x, y)
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5) == invariant, (kind, invariant)
    grads = jax.grad(lambda p: spectral.apply({"params": p}, x, y).sum())(v["params"])
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))


def test_spectral_convolutions_agree_across_implementations():
    key = jax.random.PRNGKey(0)
    x = jax.random.uniform(key, (4, 28, 28, 1), minval=-1, maxval=1)
    xla, slices = (
        models.make_gan("conv", 8, spectral=True, conv_impl=impl)[1] for impl in ("xla", "slices")
    )
    v = xla.init(key, x)
    np.testing.assert_allclose(xla.apply(v, x), slices.apply(v, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "slices"])
def test_bfloat16_gan_is_the_same_model_rounded_differently(impl):
    """gan_dtype="bfloat16": the same parameters (float32), float32 images and logits, values
    within bfloat16's rounding of the float32 model's; the heavy layers really compute in it."""
    key, kz, kx = jax.random.split(jax.random.PRNGKey(0), 3)
    z = jax.random.normal(kz, (8, 16))
    y = jnp.arange(8) % 10
    x = jax.random.uniform(kx, (8, 28, 28, 1), minval=-1, maxval=1)
    (g32, d32), (g16, d16) = (
        models.make_gan("conv", 8, num_classes=10, mbstd=True, conv_impl=impl, dtype=dt)
        for dt in ("float32", "bfloat16")
    )
    gv, dv = g32.init(key, z, y, train=False), d32.init(key, x, y)
    assert jax.tree_util.tree_structure(g16.init(key, z, y, train=False)) == (
        jax.tree_util.tree_structure(gv)
    )
    dtypes = {a.dtype for a in jax.tree_util.tree_leaves(g16.init(key, z, y))}
    assert dtypes == {jnp.dtype("float32")}
    img32, img16 = g32.apply(gv, z, y, train=False), g16.apply(gv, z, y, train=False)
    logit32, logit16 = d32.apply(dv, x, y), d16.apply(dv, x, y)
    assert img16.dtype == logit16.dtype == jnp.float32
    np.testing.assert_allclose(img16, img32, atol=0.05)
    np.testing.assert_allclose(logit16, logit32, atol=0.05 * float(jnp.abs(logit32).max()) + 0.01)
    assert float(jnp.abs(img16 - img32).max()) > 1e-4  # rounded: not the float32 model
    hlo = jax.jit(lambda v: g16.apply(v, z, y, train=False)).lower(gv).as_text()
    assert "bf16" in hlo


@pytest.mark.parametrize("shape", [(10, 4704), (10, 96), (3, 7)])
def test_embed_init_is_flax_default_with_the_same_values_jitted(shape):
    key = jax.random.PRNGKey(4)
    eager = nn.linear.default_embed_init(key, shape)
    ours = jax.jit(models.embed_init, static_argnums=1)(key, shape)
    np.testing.assert_array_equal(ours, eager)
    np.testing.assert_array_equal(models.embed_init(key, shape), eager)


@pytest.mark.parametrize(
    "kind,fields",
    [("conv", dict(num_classes=10, spectral=True, mbstd=True)), ("mlp", dict(num_classes=10))],
)
def test_initial_gans_made_in_one_program_equal_those_made_op_by_op(kind, fields):
    gen, disc = models.make_gan(kind, 8, **fields)
    key = jax.random.PRNGKey(5)
    jitted = gan._init_variables(gen, disc, 16)(key)
    kg, kd = jax.random.split(key)
    y0 = jnp.zeros((1,), jnp.int32)
    eager = (
        gen.init(kg, jnp.zeros((1, 16)), y0, train=False),
        disc.init(kd, jnp.zeros((1, 28, 28, 1)), y0),
    )
    assert jax.tree_util.tree_structure(jitted) == jax.tree_util.tree_structure(eager)
    for a, b in zip(*map(jax.tree_util.tree_leaves, (jitted, eager)), strict=True):
        np.testing.assert_array_equal(a, b)
