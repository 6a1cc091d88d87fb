"""Test images for the explorer: the model's full test set (MNIST or Fashion-MNIST) when the data layer finds it
offline, else the shipped sample of that dataset.

`assets/test_digits.npz` (MNIST) and `assets/fashion_mnist_test_sample.npz` (written by `python -m capsnet.sample`)
hold the first 100 test images of each class with their indices in the test set, so that pages work even where the
dataset cannot be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsnet.assets import SAMPLES
from capsnet.config import CLASS_NAMES, DATASETS, SOURCE_DATASET
from capsnet.data import DataUnavailable, load_dataset


@dataclass
class TestDigits:
    images: np.ndarray  # uint8 [n, 28, 28]
    labels: np.ndarray  # int [n]
    indices: np.ndarray  # position of each image in the MNIST test set
    source: str

    __test__ = False  # not a pytest class, despite the name


def load_sample(path: Path = SAMPLES["mnist"]) -> TestDigits:
    with np.load(path) as f:
        return TestDigits(f["x"], f["y"].astype(np.int64), f["index"].astype(np.int64), f"sample {path.name}")


def load_test_digits(dataset: str = "mnist") -> TestDigits:
    """The full test set if any local source has it (no downloads from the app), else the shipped sample."""
    try:
        data = load_dataset(dataset, allow_download=False)
        return TestDigits(data.x_test, data.y_test, np.arange(len(data.y_test)), data.source)
    except DataUnavailable:
        if dataset not in SAMPLES or not SAMPLES[dataset].is_file():
            raise
        return load_sample(SAMPLES[dataset])


def write_sample(dataset: str = "mnist", per_class: int = 100) -> Path:
    """The first `per_class` test images of each class, in test-set order, compressed, into SAMPLES[dataset]."""
    path = SAMPLES[dataset]
    data = load_dataset(dataset)
    classes = range(len(CLASS_NAMES[dataset]))
    indices = np.sort(np.concatenate([np.flatnonzero(data.y_test == c)[:per_class] for c in classes]))
    np.savez_compressed(path, x=data.x_test[indices], y=data.y_test[indices].astype(np.uint8),
                        index=indices.astype(np.int32))
    return path


if __name__ == "__main__":  # python -m capsnet.sample
    for name in DATASETS:
        if name in SOURCE_DATASET:
            continue  # made of another dataset's images
        written = write_sample(name)
        print(f"{written}: {written.stat().st_size / 1024:.0f} KiB")
