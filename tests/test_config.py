import dataclasses

import pytest

from gr_jax.config import BEYOND_OFF, PRESETS, Config, ConfigError, diff, preset, validate


def test_presets_are_valid():
    for name, cfg in PRESETS.items():
        assert validate(cfg) is cfg, name


def test_seed_preset_is_the_method_as_described():
    cfg = PRESETS["seed"]
    assert cfg.tasks == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert cfg.dataset == "mnist" and cfg.gan == "conv" and cfg.replay == "generative"
    assert cfg.n_gen == 12_000


# what the method leaves open: architectures, epochs, learning rates, latent size
LEFT_OPEN = {
    "solver_hidden",
    "solver_epochs",
    "solver_lr",
    "solver_batch",
    "solver_dropout",
    "solver_head",
    "gan_width",
    "d_mbstd",
    "d_mbdisc",
    "d_spectral",
    "gen_epochs",
    "gan_lr",
    "d_lr",
    "gan_lr_final",
    "gan_beta1",
    "gan_batch",
    "latent_dim",
}


def test_tuned_preset_changes_only_what_the_method_leaves_open():
    changed = set(diff(PRESETS["seed"], PRESETS["tuned"]))
    assert changed and changed <= LEFT_OPEN, changed - LEFT_OPEN
    assert {k: getattr(PRESETS["tuned"], k) for k in BEYOND_OFF} == BEYOND_OFF


def test_gen_epochs_per_task():
    cfg = preset("seed", gen_epochs=(10, 15, 20, 25, 30))
    assert [cfg.gen_epochs_for(t) for t in range(5)] == [10, 15, 20, 25, 30]
    assert preset("seed", gen_epochs=(7,)).gen_epochs_for(4) == 7


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"n_gen": -1}, "n_gen"),
        ({"solver_epochs": 0}, "solver_epochs"),
        ({"gan_batch": 0}, "gan_batch"),
        ({"gen_epochs": (1, 2)}, "gen_epochs"),
        ({"tasks": ((0, 1), (1, 2))}, "more than one task"),
        ({"tasks": ((0, 10),)}, "outside 0-9"),
        ({"tasks": ((0, 1), ())}, "no classes"),
        ({"gan": "vae"}, "gan must be one of"),
        ({"conv_impl": "fft"}, "conv_impl must be one of"),
        ({"dataset": "cifar"}, "dataset must be one of"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"solver_lr": 0.0}, "solver_lr"),
        ({"solver_hidden": ()}, "solver_hidden"),
        ({"d_lr": -1e-4}, "d_lr must be >= 0"),
        ({"solver_head": "mlp"}, "solver_head must be one of"),
        ({"gan_lr_final": 1.5}, "gan_lr_final must be in"),
        ({"gan_lr_final": 0.5, "keep_generator": True}, "keep_generator continues"),
    ],
)
def test_invalid_configs_name_the_problem(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate(dataclasses.replace(Config(), **overrides))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")


def test_dict_round_trip_and_diff():
    cfg = preset("seed", n_gen=1200, gen_epochs=(1, 2, 3, 4, 5))
    again = Config.from_dict(cfg.to_dict())
    assert again == cfg
    assert diff(cfg, again) == {}
    other = dataclasses.replace(cfg, n_gen=120_000, data_dir="/elsewhere")
    assert diff(cfg, other) == {"n_gen": (1200, 120_000)}
    with pytest.raises(ConfigError, match="unknown config field"):
        Config.from_dict({"n_gen": 1, "bogus": 2})


def test_d_chunks_auto_is_4_for_the_conv_gan_and_1_for_the_mlp_gan():
    assert preset("seed").d_chunks == 0
    assert preset("seed").discriminator_chunks == 4
    assert preset("seed", gan="mlp").discriminator_chunks == 1
    assert preset("seed", gan="mlp", d_chunks=4).discriminator_chunks == 4
    # a run made before auto (d_chunks 4 written out) is the same config as auto's conv GAN,
    # so it resumes and a sweep skips it; an MLP GAN run of then is not auto's
    old = dataclasses.replace(preset("seed"), d_chunks=4)
    assert diff(old, preset("seed")) == {}
    assert diff(dataclasses.replace(old, gan="mlp"), preset("seed", gan="mlp")) == {
        "d_chunks": (4, 1)
    }
    with pytest.raises(ConfigError, match="d_chunks must be >= 0"):
        preset("seed", gan_batch=30)  # auto's 4 chunks do not divide it
    with pytest.raises(ConfigError, match="d_chunks must be >= 0"):
        preset("seed", d_chunks=-1)


def test_bfloat16_only_for_the_conv_gan():
    assert preset("seed", gan_dtype="bfloat16").gan_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="only the conv GAN"):
        preset("seed", gan="mlp", gan_dtype="bfloat16")
    with pytest.raises(ConfigError, match="gan_dtype must be one of"):
        preset("seed", gan_dtype="float16")


def test_the_names_the_config_accepts_are_the_ones_the_code_knows(tmp_path):
    """config.py lists the choices (for the CLI, without JAX); each must have its code: an IDX
    dataset its checksums, a GAN its architecture, a replay its training-set rows."""
    import flax.linen as nn
    import numpy as np

    from gr_jax import config, data, models, tasks

    assert set(config.DATASETS) - {"mnist-5k"} == set(data.SHA256)
    for kind in config.GANS:
        g, d = models.make_gan(kind, 8)  # an unknown kind is a ValueError
        assert isinstance(g, nn.Module) and isinstance(d, nn.Module)
    train = [(np.zeros((3, 28, 28, 1)), np.zeros(3, np.int32))] * 2
    fake = tasks.TaskData(train, *(None,) * (len(dataclasses.fields(tasks.TaskData)) - 1))
    for replay in config.REPLAYS:
        assert tasks.capacity(preset("quick", replay=replay, buffer_size=5), fake) >= 3
    with pytest.raises(data.DataError, match="no checksums registered for dataset 'kmnist'"):
        data.load_idx_dataset("kmnist", tmp_path)
