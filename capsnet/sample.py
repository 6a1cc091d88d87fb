"""Test digits for the explorer: the full MNIST test set when the data layer finds it, else the shipped sample.

`assets/test_digits.npz` (written by `python -m capsnet.sample`) holds the first 100 test images of each class
with their indices in the test set, so pages work even where MNIST cannot be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsnet.data import DataUnavailable, load_dataset

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "assets" / "test_digits.npz"


@dataclass
class TestDigits:
    images: np.ndarray  # uint8 [n, 28, 28]
    labels: np.ndarray  # int [n]
    indices: np.ndarray  # position of each image in the MNIST test set
    source: str

    __test__ = False  # not a pytest class, despite the name


def load_sample(path: Path = SAMPLE_PATH) -> TestDigits:
    with np.load(path) as f:
        return TestDigits(f["x"], f["y"].astype(np.int64), f["index"].astype(np.int64), f"sample {path.name}")


def load_test_digits(dataset: str = "mnist") -> TestDigits:
    """The full test set if any local source has it (no downloads from the app), else the shipped sample."""
    try:
        data = load_dataset(dataset, allow_download=False)
        return TestDigits(data.x_test, data.y_test, np.arange(len(data.y_test)), data.source)
    except DataUnavailable:
        if dataset != "mnist" or not SAMPLE_PATH.is_file():
            raise
        return load_sample()


def write_sample(path: Path = SAMPLE_PATH, per_class: int = 100) -> Path:
    """The first `per_class` test images of each class, in test-set order, compressed."""
    data = load_dataset("mnist")
    indices = np.sort(np.concatenate([np.flatnonzero(data.y_test == d)[:per_class] for d in range(10)]))
    np.savez_compressed(path, x=data.x_test[indices], y=data.y_test[indices].astype(np.uint8),
                        index=indices.astype(np.int32))
    return path


if __name__ == "__main__":  # python -m capsnet.sample
    written = write_sample()
    print(f"{written}: {written.stat().st_size / 1024:.0f} KiB")
