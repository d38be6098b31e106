import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gr_jax import batching, gan, replay, solver


def _blobs(n=256, seed=0):
    """Two separable classes of 28x28 images: dark (label 0) and bright (label 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = (y[:, None, None, None] * 1.0 - 0.5 + 0.3 * rng.normal(size=(n, 28, 28, 1))).astype(
        np.float32
    )
    return jnp.asarray(x), jnp.asarray(y)


def test_valid_permutation_keeps_padding_last():
    perm = np.asarray(batching.valid_permutation(jax.random.PRNGKey(0), jnp.asarray(7), 10))
    assert sorted(perm[:7].tolist()) == list(range(7))
    assert sorted(perm[7:].tolist()) == [7, 8, 9]


def test_solver_loss_falls_and_steps_are_pure():
    x, y = _blobs()
    state = solver.create_solver_state(jax.random.PRNGKey(0), (32,), 1e-3)
    params_before = jax.tree_util.tree_map(np.asarray, state.params)
    _, loss0, _ = solver.apply_model(state, x, y)
    new, m = solver.train_step(state, x, y)
    # the old state is untouched (pure step)
    for a, b in zip(
        jax.tree_util.tree_leaves(params_before), jax.tree_util.tree_leaves(state.params)
    ):
        np.testing.assert_array_equal(a, np.asarray(b))
    for e in range(3):
        new, m = solver.train_epoch(new, x, y, jnp.asarray(256), jax.random.PRNGKey(e), 32)
    _, loss1, acc1 = solver.apply_model(new, x, y)
    assert float(loss1) < 0.5 * float(loss0)
    assert float(acc1) > 0.95
    accs = solver.task_accuracies(new, x, y, jnp.array([0, 1] + [2] * 8), 2)
    assert accs.shape == (2,) and float(accs.min()) > 0.9


def test_solver_states_of_one_setting_share_their_compiled_programs():
    traces = []

    @jax.jit
    def predict(state, images):
        traces.append(1)  # runs only when jit traces (compiles) anew
        return solver.predict(state, images)

    images = jnp.zeros((2, 28, 28, 1))
    for seed in (0, 1):  # a second run of one config, in the same process
        predict(solver.create_solver_state(jax.random.PRNGKey(seed), (8,), 1e-3), images)
    assert len(traces) == 1
    predict(solver.create_solver_state(jax.random.PRNGKey(0), (8,), 2e-3), images)
    assert len(traces) == 2  # another learning rate: another program


def test_train_epoch_ignores_padding():
    # NaN padding would poison the parameters if any padded row were ever read.
    x, y = _blobs(128)
    garbage_x = jnp.concatenate([x, jnp.full((64, 28, 28, 1), jnp.nan)])
    garbage_y = jnp.concatenate([y, jnp.zeros(64, jnp.int32)])
    state = solver.create_solver_state(jax.random.PRNGKey(0), (16,), 1e-3)
    b, _ = solver.train_epoch(
        state, garbage_x, garbage_y, jnp.asarray(128), jax.random.PRNGKey(1), 32
    )
    assert np.isfinite(np.asarray(b.params["Dense_0"]["kernel"])).all()


@pytest.mark.parametrize("fresh", [False, True])
def test_solver_dropout_is_random_in_training_only_and_repeatable(fresh):
    x, y = _blobs(128)
    key = jax.random.PRNGKey(3)
    make = lambda p: solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3, p)  # noqa: E731
    s = make(0.5)
    logits = lambda s: np.asarray(s.apply_fn({"params": s.params}, x))  # noqa: E731
    # evaluation is deterministic and the same function as the model without dropout
    np.testing.assert_array_equal(logits(s), logits(make(0.0)))
    train = lambda k: s.apply_fn({"params": s.params}, x, train=True, rngs={"dropout": k})  # noqa: E731
    a, b = np.asarray(train(key)), np.asarray(train(jax.random.PRNGKey(4)))
    assert not np.array_equal(a, b) and not np.array_equal(a, logits(s))

    def epoch(p):
        s = make(p)
        if fresh:
            g = gan.create_gan_state(key, "mlp", 8, 16, 2e-4, 0.5).g
            return replay.fresh_epoch(s, make(0.0), g, x, y, 128, key, 32, 16, dropout=p > 0)[0]
        return solver.train_epoch(s, x, y, jnp.asarray(128), key, 32, dropout=p > 0)[0]

    leaves = lambda s: jax.tree_util.tree_leaves(s.params)  # noqa: E731
    same = lambda a, b: all(map(np.array_equal, leaves(a), leaves(b)))  # noqa: E731
    assert same(epoch(0.5), epoch(0.5))
    assert not same(epoch(0.5), epoch(0.0))


def _target():
    yy, xx = np.mgrid[:28, :28]
    img = np.where((yy - 14) ** 2 + (xx - 14) ** 2 < 36, 1.0, -1.0).astype(np.float32)
    return jnp.asarray(np.broadcast_to(img[None, :, :, None], (128, 28, 28, 1)).copy())


labels = jnp.zeros((128,), jnp.int32)  # unconditional GANs ignore them


def test_gan_learns_a_single_image():
    """After a short training on copies of one image, samples come far closer to it."""
    data = _target()
    for kind in ("mlp", "conv"):
        state = gan.create_gan_state(jax.random.PRNGKey(0), kind, 16, 16, 2e-3, 0.5)

        def distance(s):
            imgs = gan.sample(s.g, jax.random.PRNGKey(9), 64, 16)
            return float(jnp.mean((imgs - data[:1]) ** 2))

        before = distance(state)
        for e in range(20):
            state, m = gan.train_epoch(state, data, labels, 128, jax.random.PRNGKey(e), 32)
        after = distance(state)
        assert np.isfinite(float(m["d_loss"])) and np.isfinite(float(m["g_loss"]))
        assert after < 0.25 * before, (kind, before, after)


def test_a_gan_epoch_without_labels_or_row_count_is_the_epoch_over_all_rows():
    """For notebooks: labels None (unconditional) and n_valid None (every row) give the same
    epoch as zero labels and the row count; impossible epochs are named errors."""
    data = _target()
    make = lambda: gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5)  # noqa: E731
    a, _ = gan.train_epoch(make(), data, labels, 128, jax.random.PRNGKey(1), 32)
    b, _ = gan.train_epoch(make(), data, None, None, jax.random.PRNGKey(1), 32)
    host, _ = gan.train_epoch(make(), np.asarray(data), None, None, jax.random.PRNGKey(1), 32)
    for u, v, w in zip(*(jax.tree_util.tree_leaves(t) for t in (a, b, host)), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        np.testing.assert_array_equal(np.asarray(u), np.asarray(w))
    imgs = b.sample(jax.random.PRNGKey(2), 5)
    np.testing.assert_array_equal(imgs, gan.sample(b.g, jax.random.PRNGKey(2), 5, 16))
    assert imgs.shape == (5, 28, 28, 1)
    with pytest.raises(ValueError, match="an epoch of 16 images has no batch of 32"):
        gan.train_epoch(make(), data, None, 16, jax.random.PRNGKey(1), 32)
    chunked = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5, d_chunks=3)
    with pytest.raises(ValueError, match="batch_size 32 does not split into 3 D chunks"):
        gan.train_epoch(chunked, data, None, None, jax.random.PRNGKey(1), 32)
    conditional = gan.create_gan_state(
        jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5, num_classes=10
    )
    with pytest.raises(ValueError, match="a conditional GAN trains on labelled images"):
        gan.train_epoch(conditional, data, None, None, jax.random.PRNGKey(1), 32)


def test_gan_step_is_deterministic_in_its_key():
    data = _target()[:32]
    s0 = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5)
    a, _ = gan.gan_step(s0, data, labels[:32], jax.random.PRNGKey(1))
    b, _ = gan.gan_step(s0, data, labels[:32], jax.random.PRNGKey(1))
    c, _ = gan.gan_step(s0, data, labels[:32], jax.random.PRNGKey(2))
    leaves = lambda s: jax.tree_util.tree_leaves(s.g.params)  # noqa: E731
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b)))
    assert not all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c)))


def _moved(a, b) -> float:
    """Largest change of any weight between two parameter trees."""
    return max(
        float(jnp.max(jnp.abs(x - y))) for x, y in zip(*map(jax.tree_util.tree_leaves, (a, b)))
    )


def test_discriminator_learning_rate_is_its_own():
    """With `d_lr` the discriminator's first Adam step (about lr * sign(grad)) scales with it;
    the generator's, taken through the updated discriminator, stays about lr."""
    data, key = _target()[:32], jax.random.PRNGKey(0)
    moved = {}
    for d_lr in (0.0, 8e-4):
        s0 = gan.create_gan_state(key, "mlp", 8, 16, 2e-4, 0.5, d_lr=d_lr)
        s1, _ = gan.gan_step(s0, data, labels[:32], jax.random.PRNGKey(1))
        moved[d_lr] = (_moved(s0.d.params, s1.d.params), _moved(s0.g.params, s1.g.params))
    assert moved[0.0][0] == pytest.approx(2e-4, rel=0.05)
    assert moved[8e-4][0] == pytest.approx(8e-4, rel=0.05)
    assert moved[0.0][1] == pytest.approx(2e-4, rel=0.05)
    assert moved[8e-4][1] == pytest.approx(2e-4, rel=0.05)


def test_gan_learning_rates_decay_linearly_over_the_steps_set():
    """`lr_final` scales Adam's steps from 1 down to it over `decaying_over(n)` steps, for both
    networks; without it the optimizer is plain Adam (the state of earlier checkpoints)."""
    assert not isinstance(
        gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5).g.opt_state[-1],
        gan.LinearDecayState,
    )
    tx = gan.scale_by_linear_decay(0.25)
    state = tx.init(None)._replace(total=jnp.asarray(4))
    scales = []
    for _ in range(6):
        u, state = tx.update({"w": jnp.ones(())}, state)
        scales.append(float(u["w"]))
    assert scales == pytest.approx([1.0, 0.8125, 0.625, 0.4375, 0.25, 0.25])
    # at lr_final 0 over one step, the second step moves nothing
    data = _target()[:32]
    s = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5, lr_final=0.0)
    s1, _ = gan.gan_step(s.decaying_over(1), data, labels[:32], jax.random.PRNGKey(1))
    s2, _ = gan.gan_step(s1, data, labels[:32], jax.random.PRNGKey(2))
    assert _moved(s.g.params, s1.g.params) > 1e-4 and _moved(s.d.params, s1.d.params) > 1e-4
    assert _moved(s1.g.params, s2.g.params) == 0.0 and _moved(s1.d.params, s2.d.params) == 0.0


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_chunked_discriminator_step_equals_the_plain_one(kind):
    """d_chunks is a speed option (auto picks 4 for the conv GAN, 1 for the MLP GAN): the
    same step, rounded differently."""
    data = _target()[:32]
    key = jax.random.PRNGKey(0)
    one = gan.create_gan_state(key, kind, 8, 16, 2e-4, 0.5, d_chunks=1)
    four = gan.create_gan_state(key, kind, 8, 16, 2e-4, 0.5, d_chunks=4)
    a, ma = gan.gan_step(one, data, labels[:32], jax.random.PRNGKey(1))
    b, mb = gan.gan_step(four, data, labels[:32], jax.random.PRNGKey(1))
    for k in ma:
        np.testing.assert_allclose(float(ma[k]), float(mb[k]), rtol=1e-5, atol=1e-6)
    # Adam's first step is ~lr * sign(grad): rounding in near-zero gradients can move a weight
    # by a fraction of lr (2e-4), so compare to a quarter of one update.
    for x, y in zip(jax.tree_util.tree_leaves((a.g, a.d)), jax.tree_util.tree_leaves((b.g, b.d))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=5e-5)


def test_scanned_gan_steps_equal_the_loop_of_steps():
    """`gan_scan` (several steps per dispatched program, for accelerators) is a speed option:
    the same steps with the same keys, so the same GAN as one step per call."""
    data = jnp.concatenate([_target()] * 2)[:224]  # 7 steps of 32: calls of 3, 3, then 1
    ys = jnp.zeros((224,), jnp.int32)
    out = {}
    for per_call in (1, 3):
        state = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5)
        calls = []
        state, m = gan.train_epoch(
            state, data, ys, 224, jax.random.PRNGKey(5), 32, calls.append, per_call
        )
        out[per_call] = (jax.tree_util.tree_leaves(state.g.params), float(m["d_loss"]), calls)
    assert out[1][2] == [1] * 7 and out[3][2] == [3, 3, 1]
    for x, y in zip(out[1][0], out[3][0]):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert out[1][1] == pytest.approx(out[3][1], abs=1e-6)
    assert gan.call_sizes(7, 50) == [1] * 7 and gan.scan_steps(5) == 5


@pytest.mark.parametrize("per_call", [1, 3])
def test_an_epoch_copies_nothing_between_host_and_device_on_its_own(per_call):
    """Batches are sliced on the device and metrics stay there: with JAX's transfer guard
    refusing implicit copies, whole epochs of the solver and the GAN run (the GAN's epoch puts
    its two counters on the device explicitly, once). The CPU backend guards host-to-device
    copies only (its arrays live in host memory); on an accelerator the guard covers both."""
    x, y = _blobs(224)
    n = jnp.asarray(224)
    s = solver.create_solver_state(jax.random.PRNGKey(0), (32,), 1e-3)
    g = gan.create_gan_state(jax.random.PRNGKey(1), "conv", 8, 16, 2e-4, 0.5)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(2), 4)
    s, _ = solver.train_epoch(s, x, y, n, k1, 32)  # the step counters become device arrays
    g, _ = gan.train_epoch(g, x, y, 224, k2, 32, steps_per_call=per_call)
    with jax.transfer_guard("disallow"):
        s, m = solver.train_epoch(s, x, y, n, k3, 32)
        g, gm = gan.train_epoch(g, x, y, 224, k4, 32, steps_per_call=per_call)
        jax.block_until_ready((s, m, g, gm))
    # metrics come back as device arrays: no step waited to read one
    assert all(isinstance(v, jax.Array) for v in (*m.values(), *gm.values()))
    with (
        pytest.raises(Exception, match="Disallowed host-to-device"),
        jax.transfer_guard("disallow"),
    ):
        solver.train_epoch(s, x, y, 224, k1, 32)  # the guard is on: a Python count is refused
