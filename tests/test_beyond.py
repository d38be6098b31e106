"""The options beyond the original method: conditional GAN, soft targets, replay weighting,
fresh replay, keeping the generator, hinge loss, an EMA of the generator, replay alignment,
random shifts of the solver's training images."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gr_jax import gan, health, loop, multiseed, replay, runs, solver
from gr_jax.cli import main
from gr_jax.config import BEYOND_OFF, PRESETS, ConfigError, preset
from gr_jax.tasks import prepare_data

from .conftest import tiny_config


def _shapes() -> jnp.ndarray:
    """Class 0: a filled disc; class 1: a filled square (64 copies each)."""
    yy, xx = np.mgrid[:28, :28]
    disc = np.where((yy - 14) ** 2 + (xx - 14) ** 2 < 36, 1.0, -1.0)
    square = np.where((abs(yy - 14) < 9) & (abs(xx - 14) < 9), 1.0, -1.0)
    imgs = np.concatenate([np.repeat(disc[None], 64, 0), np.repeat(square[None], 64, 0)])
    return jnp.asarray(imgs[..., None].astype(np.float32))


def test_seed_preset_has_every_option_off():
    seed = PRESETS["seed"]
    assert {k: getattr(seed, k) for k in BEYOND_OFF} == BEYOND_OFF


def test_conditional_gan_draws_the_class_it_is_asked_for():
    data = _shapes()
    labels = jnp.repeat(jnp.arange(2, dtype=jnp.int32), 64)
    targets = data[jnp.asarray([0, 64])]
    state = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 16, 16, 2e-3, 0.5, num_classes=10)
    for e in range(20):
        state, m = gan.train_epoch(state, data, labels, 128, jax.random.PRNGKey(e), 32)
    ys = jnp.repeat(jnp.arange(2, dtype=jnp.int32), 32)
    imgs = gan.sample(state.g, jax.random.PRNGKey(9), 64, 16, ys)
    # distance of each sample to the disc and to the square: it must be nearer its own class
    dist = jnp.mean((imgs[:, None] - targets[None]) ** 2, axis=(2, 3, 4))
    nearest = np.asarray(jnp.argmin(dist, -1))
    assert (nearest == np.asarray(ys)).mean() > 0.9, nearest


def test_conditional_discriminator_depends_on_the_label():
    state = gan.create_gan_state(jax.random.PRNGKey(0), "conv", 8, 16, 2e-4, 0.5, num_classes=10)
    x = _shapes()[:4]
    d = lambda y: state.d.apply_fn({"params": state.d.params}, x, y)  # noqa: E731
    # the projection embedding starts random: labels change the logit
    assert float(jnp.abs(d(jnp.zeros(4, jnp.int32)) - d(jnp.ones(4, jnp.int32))).max()) > 0


def test_hinge_loss_gan_learns_and_reports_hinge_losses():
    data = _shapes()[:64]
    labels = jnp.zeros((64,), jnp.int32)
    ns = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 16, 16, 2e-3, 0.5)
    hinge = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 16, 16, 2e-3, 0.5, loss="hinge")
    _, m_ns = gan.gan_step(ns, data, labels, jax.random.PRNGKey(1))
    _, m_h = gan.gan_step(hinge, data, labels, jax.random.PRNGKey(1))
    # the step's latents are those `sample` draws with the same key (an MLP G has no BatchNorm)
    fake = gan.sample(hinge.g, jax.random.PRNGKey(1), 64, 16)
    d = lambda x: hinge.d.apply_fn({"params": hinge.d.params}, x)  # noqa: E731
    expected_hinge = jax.nn.relu(1 - d(data)).mean() + jax.nn.relu(1 + d(fake)).mean()
    expected_ns = jax.nn.softplus(-d(data)).mean() + jax.nn.softplus(d(fake)).mean()
    assert float(m_h["d_loss"]) == pytest.approx(float(expected_hinge), rel=1e-5)
    assert float(m_ns["d_loss"]) == pytest.approx(float(expected_ns), rel=1e-5)
    before = float(jnp.mean((gan.sample(hinge.g, jax.random.PRNGKey(9), 64, 16) - data) ** 2))
    for e in range(20):
        hinge, _ = gan.train_epoch(hinge, data, labels, 64, jax.random.PRNGKey(e), 32)
    after = float(jnp.mean((gan.sample(hinge.g, jax.random.PRNGKey(9), 64, 16) - data) ** 2))
    assert after < 0.25 * before


def test_balanced_labels_cycle_over_the_seen_classes():
    order = jnp.asarray([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    ys = np.asarray(gan.balanced_labels(order, 4, 3, 400))
    assert np.bincount(ys, minlength=10).tolist() == [100] * 4 + [0] * 6
    assert ys[:3].tolist() == [3, 0, 1]


def test_replay_loss_soft_targets_and_weighting():
    key = jax.random.PRNGKey(0)
    logits = jax.random.normal(key, (6, 10))
    labels = jnp.asarray([0, 1, 2, 3, 4, 5])
    is_replay = jnp.asarray([False, False, True, True, True, True])
    soft = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (6, 10)))
    hard = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    plain = solver.ReplayLoss(is_replay)
    assert float(plain.loss(logits, labels)) == pytest.approx(float(hard.mean()), rel=1e-6)
    t = 2.0
    distil = t * t * optax.softmax_cross_entropy(logits / t, soft)
    expected = jnp.where(is_replay, distil, hard).mean()
    got = solver.ReplayLoss(is_replay, soft, None, t).loss(logits, labels)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    weighted = solver.ReplayLoss(is_replay, None, jnp.asarray(0.8)).loss(logits, labels)
    expected = 0.8 * hard[2:].mean() + 0.2 * hard[:2].mean()
    assert float(weighted) == pytest.approx(float(expected), rel=1e-6)


def test_replay_rows_without_replay_train_like_the_plain_epoch():
    x = jax.random.uniform(jax.random.PRNGKey(0), (256, 28, 28, 1))
    y = jax.random.randint(jax.random.PRNGKey(1), (256,), 0, 10)
    make = lambda: solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3)  # noqa: E731
    n = jnp.asarray(256)
    a, _ = solver.train_epoch(make(), x, y, n, jax.random.PRNGKey(3), 32)
    rows = solver.ReplayRows(n_real=n, share=jnp.asarray(0.5))  # no replay row in any batch
    b, _ = solver.train_epoch(make(), x, y, n, jax.random.PRNGKey(3), 32, rows)
    for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


def _expected_loss(logits, labels, is_replay, soft=None, share=None, t=1.0) -> float:
    """The solver's loss with replay, written out in NumPy (float64) from its definition: hard
    cross-entropy on real rows, T^2 x cross-entropy with the soft targets at temperature T on
    replay rows, and with `share` the replay rows' mean weighted against the real rows'."""
    z = np.asarray(logits, np.float64)
    labels, is_replay = np.asarray(labels), np.asarray(is_replay, bool)

    def log_softmax(a):
        shifted = a - a.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    losses = -log_softmax(z)[np.arange(len(labels)), labels]
    if soft is not None:
        distil = -t * t * (np.asarray(soft, np.float64) * log_softmax(z / t)).sum(-1)
        losses = np.where(is_replay, distil, losses)
    if share is None:
        return float(losses.mean())
    return float(share * losses[is_replay].mean() + (1 - share) * losses[~is_replay].mean())


def test_replay_rows_mark_the_rows_from_n_real_on_and_take_their_soft_targets():
    soft = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (8, 10)))
    rows = solver.ReplayRows(jnp.asarray(3), soft, jnp.asarray(0.8), 2.0)
    idx = np.asarray([5, 1, 3, 0, 2, 7])
    b = rows.batch(jnp.asarray(idx))
    assert np.asarray(b.is_replay).tolist() == [True, False, True, False, False, True]
    np.testing.assert_array_equal(np.asarray(b.soft), np.asarray(soft)[idx])
    assert float(b.share) == pytest.approx(0.8) and b.temperature == 2.0


def test_an_epoch_with_replay_rows_weights_and_distils_the_rows_from_n_real_on():
    """One step over a whole mixed set (3 real rows, 5 replay), share 0.8, soft targets at
    T = 2: the epoch's loss is the definition's (rows shuffled: the loss does not depend on
    their order within the batch)."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1))
    y = jnp.asarray([0, 1, 2, 3, 4, 5, 6, 7])
    soft = jax.nn.softmax(3 * jax.random.normal(jax.random.PRNGKey(1), (8, 10)))
    make = lambda: solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3)  # noqa: E731
    s = make()
    logits = s.apply_fn({"params": s.params}, x)
    rows = solver.ReplayRows(jnp.asarray(3), soft, jnp.asarray(0.8), 2.0)
    _, m = solver.train_epoch(make(), x, y, jnp.asarray(8), jax.random.PRNGKey(3), 8, rows)
    is_replay = np.arange(8) >= 3
    expected = _expected_loss(logits, y, is_replay, soft, 0.8, 2.0)
    assert float(m["loss"]) == pytest.approx(expected, rel=1e-5)
    # and the definition tells the two sides apart: the mask reversed gives another loss
    assert abs(_expected_loss(logits, y, ~is_replay, soft, 0.8, 2.0) - expected) > 1e-3


def test_soft_rows_are_one_hot_labels_then_the_replays_soft_targets():
    y = jnp.asarray([1, 0, 2, 5, 5, 9, 3, 3])
    gen_soft = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (3, 10)))
    rows = np.asarray(replay.soft_rows(y, jnp.asarray(2), gen_soft, 10))
    np.testing.assert_array_equal(rows[:2], np.eye(10)[[1, 0]])
    np.testing.assert_array_equal(rows[2:5], np.asarray(gen_soft))
    np.testing.assert_array_equal(rows[5:], np.eye(10)[[9, 3, 3]])  # padding: its own labels


def test_soft_targets_without_fresh_replay_distil_the_generated_rows_only():
    """`replay_phase` with soft targets and stored (not fresh) replay: the replay rows' targets
    are the previous solver's softmax at temperature T, the real rows' their one-hot labels."""
    cfg = tiny_config(soft_targets=2.0)
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    train, _ = loop.replay_phase(cfg, 1, state, data, jax.random.PRNGKey(5))
    n_real, n = train.n_real, train.n
    assert n - n_real == cfg.n_gen and train.soft is not None
    soft = np.asarray(train.soft)
    np.testing.assert_array_equal(soft[:n_real], np.eye(10)[np.asarray(train.y[:n_real])])
    logits = state.solver.apply_fn({"params": state.solver.params}, train.x[n_real:n])
    np.testing.assert_allclose(
        soft[n_real:n], np.asarray(jax.nn.softmax(logits / 2.0)), rtol=1e-5, atol=1e-7
    )


def test_a_fresh_replay_step_weights_and_distils_its_generated_half():
    """One step of fresh replay against its batch built by hand as the docstring says (the
    step's key folded with the step number, split into latent, label, shift and dropout keys):
    real half first, the generator's half labelled by the teacher; share 0.8 and T = 2."""
    g = gan.create_gan_state(jax.random.PRNGKey(0), "mlp", 8, 16, 2e-4, 0.5).g
    teacher = solver.create_solver_state(jax.random.PRNGKey(1), (32,), 1e-3)
    student = solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3)
    x = jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))
    y = jnp.asarray([0, 1, 2, 3, 4, 5, 6, 7])
    perm = jnp.asarray([6, 2, 7, 0, 1, 3, 4, 5])
    zero = jnp.zeros((), jnp.float32)
    cursor = (jnp.zeros((), jnp.int32), jnp.asarray(health.NO_BAD_STEP), zero, zero)
    key = jax.random.PRNGKey(4)
    _, after = replay.fresh_step_at(
        student, teacher, g, x, y, perm, cursor, key, 8, 16, share=jnp.asarray(0.8),
        temperature=2.0,
    )  # fmt: skip
    k_z = jax.random.split(jax.random.fold_in(key, 0), 4)[0]
    gen_x = gan.sample(g, k_z, 4, 16)
    t_logits = teacher.apply_fn({"params": teacher.params}, gen_x)
    batch_x = jnp.concatenate([x[perm[:4]], gen_x])
    batch_y = np.concatenate([np.asarray(y)[np.asarray(perm[:4])], np.argmax(t_logits, -1)])
    soft = np.concatenate([np.eye(10)[batch_y[:4]], np.asarray(jax.nn.softmax(t_logits / 2.0))])
    logits = student.apply_fn({"params": student.params}, batch_x)
    expected = _expected_loss(logits, batch_y, np.arange(8) >= 4, soft, 0.8, 2.0)
    assert float(after[2]) == pytest.approx(expected, rel=1e-5)
    assert abs(_expected_loss(logits, batch_y, np.arange(8) < 4, soft, 0.8, 2.0) - expected) > 1e-3


def test_conditional_replay_stays_balanced_across_chunks(monkeypatch):
    """Chunks of 7 for 3 seen classes: each chunk continues the class cycle where the last one
    stopped, so 30 images are 10 of each class (not 3 chunks restarting at the first class)."""
    asked = []

    def record(g, s, key, n, latent_dim, gen_labels=None, temperature=0.0):
        asked.append(np.asarray(gen_labels))
        return jnp.zeros((n, 28, 28, 1)), jnp.asarray(gen_labels, jnp.int32), None

    monkeypatch.setattr(replay, "sample_and_label", record)
    order = jnp.asarray([4, 0, 7, 1, 2, 3, 5, 6, 8, 9])
    _, ys, _ = replay.generate_replay(None, None, jax.random.PRNGKey(0), 30, 16, 7, order, 3)
    assert len(asked) == 5 and np.bincount(np.asarray(ys), minlength=10)[[4, 0, 7]].tolist() == [
        10,
        10,
        10,
    ]
    assert set(np.asarray(ys).tolist()) == {0, 4, 7}


def test_generated_soft_targets_are_the_teacher_distribution():
    g = gan.create_gan_state(jax.random.PRNGKey(0), "conv", 8, 16, 2e-4, 0.5, num_classes=10).g
    s = solver.create_solver_state(jax.random.PRNGKey(1), (32,), 1e-3)
    order = jnp.arange(10, dtype=jnp.int32)
    x, y, soft = replay.generate_replay(g, s, jax.random.PRNGKey(2), 300, 16, 100, order, 4, 2.0)
    assert soft.shape == (300, 10)
    np.testing.assert_allclose(np.asarray(soft.sum(-1)), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(soft, -1)), np.asarray(y))
    logits = s.apply_fn({"params": s.params}, x)
    np.testing.assert_allclose(
        np.asarray(soft), np.asarray(jax.nn.softmax(logits / 2.0)), rtol=1e-4, atol=1e-6
    )


def test_fresh_replay_trains_on_the_teachers_labels():
    """Real data are all class 0; the teacher says every generated image is a 3: after fresh
    replay the student calls generated images 3, and still calls real ones 0."""
    key = jax.random.PRNGKey(0)
    g = gan.create_gan_state(key, "mlp", 8, 16, 2e-4, 0.5).g
    teacher = solver.create_solver_state(jax.random.PRNGKey(1), (32,), 1e-3)
    bias = teacher.params["Dense_1"]["bias"].at[3].set(100.0)
    teacher = teacher.replace(
        params={**teacher.params, "Dense_1": {**teacher.params["Dense_1"], "bias": bias}}
    )
    student = solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3)
    x = _shapes()[:64]
    y = jnp.zeros((64,), jnp.int32)
    for e in range(10):
        student, m = replay.fresh_epoch(
            student, teacher, g, x, y, 64, jax.random.PRNGKey(e), 32, 16
        )
    assert np.isfinite(float(m["loss"])) and int(m["first_bad_step"]) == health.NO_BAD_STEP
    generated = gan.sample(g, jax.random.PRNGKey(99), 64, 16)
    assert (np.asarray(solver.predict(student, generated)) == 3).mean() > 0.9
    assert (np.asarray(solver.predict(student, x)) == 0).mean() > 0.9


def test_random_shift_translates_each_image_by_its_own_offset():
    """Digits in [-1, 1] on a background of -1: the background is what comes in at the border."""
    images = jax.random.uniform(jax.random.PRNGKey(0), (32, 28, 28, 1), minval=-1.0)
    images = images.at[:, :2].set(-1).at[:, -2:].set(-1).at[:, :, :2].set(-1).at[:, :, -2:].set(-1)
    assert solver.random_shift(jax.random.PRNGKey(1), images, 0) is images
    shifted = np.asarray(solver.random_shift(jax.random.PRNGKey(1), images, 2))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
    offsets = set()
    for i in range(32):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, dy : dy + 28, dx : dx + 28], shifted[i])
        ]
        assert found, f"image {i} is not a translation by at most 2 pixels"
        offsets.add(found[0])
    assert len(offsets) > 5  # each image draws its own offset
    # the border was blank, so nothing is cut off: every pixel is kept
    np.testing.assert_allclose(shifted.sum((1, 2, 3)), np.asarray(images).sum((1, 2, 3)), 1e-5)


@pytest.mark.parametrize("fresh", [False, True])
def test_solver_shift_trains_on_shifted_images_repeatably(fresh):
    key = jax.random.PRNGKey(3)
    g = gan.create_gan_state(key, "mlp", 8, 16, 2e-4, 0.5).g
    teacher = solver.create_solver_state(jax.random.PRNGKey(1), (32,), 1e-3)
    x, y = _shapes(), jnp.repeat(jnp.arange(2), 64)

    def epoch(shift):
        s = solver.create_solver_state(jax.random.PRNGKey(2), (32,), 1e-3)
        if fresh:
            return replay.fresh_epoch(s, teacher, g, x, y, 128, key, 32, 16, shift=shift)[0]
        return solver.train_epoch(s, x, y, jnp.asarray(128), key, 32, shift=shift)[0]

    leaves = lambda s: jax.tree_util.tree_leaves(s.params)  # noqa: E731
    same = lambda a, b: all(map(np.array_equal, leaves(a), leaves(b)))  # noqa: E731
    assert same(epoch(2), epoch(2))
    assert not same(epoch(2), epoch(0))


def test_generator_ema_averages_the_weights_and_is_what_replay_samples():
    data = _shapes()
    labels = jnp.zeros((128,), jnp.int32)
    make = lambda ema: gan.create_gan_state(  # noqa: E731
        jax.random.PRNGKey(0), "mlp", 16, 16, 2e-3, 0.5, ema=ema
    )
    plain, with_ema = make(0.0), make(0.9)
    assert not isinstance(plain.g, gan.EMAGenState)
    key = jax.random.PRNGKey(1)
    ema0 = with_ema.g.ema_params
    plain, _ = gan.gan_step(plain, data[:64], labels[:64], key)
    stepped, _ = gan.gan_step(with_ema, data[:64], labels[:64], key)
    # the raw weights take the same step as without an EMA; the EMA moves 10% of the way
    same = jax.tree_util.tree_map(np.allclose, plain.g.params, stepped.g.params)
    assert all(jax.tree_util.tree_leaves(same))
    expected = jax.tree_util.tree_map(lambda e, p: 0.9 * e + 0.1 * p, ema0, stepped.g.params)
    close = jax.tree_util.tree_map(
        lambda a, b: np.allclose(a, b, atol=1e-7), expected, stepped.g.ema_params
    )
    assert all(jax.tree_util.tree_leaves(close))
    z_key = jax.random.PRNGKey(5)
    from_ema = gan.sample(stepped.g, z_key, 8, 16)
    as_plain = lambda params: gan.GenState.create(  # noqa: E731
        apply_fn=stepped.g.apply_fn, params=params, tx=stepped.g.tx, batch_stats={}
    )
    from_raw = gan.sample(as_plain(stepped.g.params), z_key, 8, 16)
    by_hand = gan.sample(as_plain(stepped.g.ema_params), z_key, 8, 16)
    np.testing.assert_array_equal(from_ema, by_hand)
    assert not np.allclose(from_ema, from_raw)


def test_replay_alignment_pulls_the_generator_to_the_anchor():
    data = _shapes()
    labels = jnp.repeat(jnp.arange(2, dtype=jnp.int32), 64)
    make = lambda seed: gan.create_gan_state(  # noqa: E731
        jax.random.PRNGKey(seed), "mlp", 16, 16, 2e-3, 0.5, num_classes=10
    )
    anchor = make(1).g  # another generator: what "the previous task's" drew
    z = jax.random.normal(jax.random.PRNGKey(9), (64, 16))
    old = jnp.full((64,), 5, jnp.int32)  # an old class, absent from the data

    def distance(g):
        draw = lambda g: g.apply_fn({"params": g.params}, z, old, train=False)  # noqa: E731
        return float(jnp.mean((draw(g) - draw(anchor)) ** 2))

    results = {}
    for weight in (0.0, 10.0):
        state = make(0)
        if weight:
            state = state.anchored(anchor, jnp.asarray([5, 0, 1]), 1, weight, batch=16)
        for e in range(10):
            state, m = gan.train_epoch(state, data, labels, 128, jax.random.PRNGKey(e), 32)
        assert ("align_loss" in m) == bool(weight)
        results[weight] = distance(state.g)
    # aligned, the generator draws class 5 like the anchor; not aligned, it drifts elsewhere
    assert results[10.0] < 0.2 * results[0.0], results


def test_keep_generator_continues_the_previous_gan():
    cfg = tiny_config(keep_generator=True, gen_epochs=(1, 0))
    data = prepare_data(cfg)
    state = loop.init_state(cfg)
    train, _ = loop.replay_phase(cfg, 1, state, data, jax.random.PRNGKey(0))
    kept = loop.gan_phase(
        cfg, 1, state.gan, train, jax.random.PRNGKey(1), {"gan_curves": []}, False
    )
    leaves = lambda g: jax.tree_util.tree_leaves(g.g.params)  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(leaves(kept), leaves(state.gan)))
    reset_cfg = dataclasses.replace(cfg, keep_generator=False)
    reset = loop.gan_phase(
        reset_cfg, 1, state.gan, train, jax.random.PRNGKey(1), {"gan_curves": []}, False
    )
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(reset), leaves(state.gan)))


@pytest.mark.parametrize(
    "last", [{"replay_alignment": 1.0, "align_batch": 8}, {"gan_ema": 0.9}], ids=["align", "ema"]
)
def test_all_options_together_run_end_to_end(last, tmp_path):
    """Every option beyond the method at once; replay alignment and the EMA generator go one
    at a time (the anchor would be the raw generator, the replay the EMA's: refused together)."""
    cfg = tiny_config(
        conditional=True,
        soft_targets=2.0,
        replay_weighting="tasks",
        fresh_replay=True,
        keep_generator=True,
        gan_loss="hinge",
        solver_shift=1,
        **last,
    )
    r = loop.run(cfg, tmp_path / "run", bars=False)
    assert np.isfinite(r["test"]["acc"]) and r["r_test"][1][1] > 0.5
    # alignment from the second task on, to the first task's generator
    aligned = [("align_loss" in row) for row in r["gan_curves"]]
    assert aligned == [row["task"] > 0 and "replay_alignment" in last for row in r["gan_curves"]]
    # the anchor lives only inside the GAN phase: checkpoints hold the plain GAN state
    states = runs.task_states(tmp_path / "run")
    assert all(s.gan.anchor is None for s in states.values())
    # conditional replay before task 2 asks for classes 0 and 1 equally: the solver, which
    # knows only those two classes, labels them 0 or 1
    counts = r["replay_class_counts"][1]
    assert sum(counts) == 256 and sum(counts[2:]) == 0


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"replay_weighting": "half"}, "replay_weighting"),
        ({"replay_share": 1.0}, "replay_share"),
        ({"soft_targets": -1.0}, "soft_targets"),
        ({"gan_loss": "wgan"}, "gan_loss"),
        ({"gan_ema": 1.0}, "gan_ema"),
        ({"d_mbstd": True, "gan_batch": 8, "d_chunks": 8}, "d_mbstd"),
        ({"d_mbdisc": 8, "gan_batch": 8, "d_chunks": 8}, "d_mbdisc needs at least 2"),
        ({"d_mbdisc": -1}, "d_mbdisc must be >= 0"),
        ({"conditional": True, "replay": "none"}, "conditional needs replay='generative'"),
        ({"soft_targets": 2.0, "replay": "joint"}, "soft_targets needs replay='generative'"),
        (
            {"replay_weighting": "tasks", "replay": "exact", "buffer_size": 100},
            "replay_weighting 'tasks' needs replay='generative'",
        ),
        ({"fresh_replay": True, "solver_batch": 63}, "even"),
        ({"conditional": 1}, "conditional must be bool"),
        ({"replay_alignment": 1.0}, "replay_alignment needs conditional"),
        (
            {"replay_alignment": 1.0, "conditional": True, "gan_ema": 0.9},
            "replay_alignment with gan_ema",
        ),
        ({"gan_ema": 0.9, "gen_chunk": 1}, "gan_ema draws replay in batches"),
        ({"replay_alignment": -1.0, "conditional": True}, "replay_alignment must be >= 0"),
        ({"align_batch": -1}, "align_batch must be >= 0"),
        ({"solver_shift": -1}, "solver_shift must be in"),
        ({"solver_shift": 14}, "solver_shift must be in"),
    ],
)
def test_bad_beyond_options_are_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        preset("seed", **overrides)


def test_cli_reads_booleans_and_rejects_others(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--preset", "quick", "--conditional", "maybe"])
    assert e.value.code == 2 and "expected true or false" in capsys.readouterr().err


def test_multiseed_refuses_the_options_it_does_not_run():
    with pytest.raises(ConfigError, match="conditional"):
        multiseed.run(tiny_config(conditional=True), [0, 1], bars=False)
