"""The training input in NumPy, so it runs on every Keras backend, TensorFlow installed or not: shuffled batches
with the paper's augmentation (random shifts of up to 2 pixels, zero fill), one-hot labels, and the targets of both
outputs (the margin loss reads the label, the reconstruction loss the shifted image itself).

The order of an epoch's batches and their shifts depend only on (seed, epoch): a resumed run sees, from the epoch it
resumes at, the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from capsnet.imaging import to_float


def random_shifts(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image [h, w] of the batch moved by its own whole-pixel offset in [-max_shift, max_shift] on each axis;
    what moves in is zero (black). One vectorised gather: a window of every padded image."""
    if max_shift == 0:
        return images
    n, height, width = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return windows[np.arange(n), dy, dx]


def model_inputs(images: np.ndarray, labels: np.ndarray, num_classes: int):
    """uint8 [b, 28, 28] + int labels -> ((image, one-hot), {"length": one-hot, "reconstruction": image})."""
    x = to_float(images)[..., None]
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    return (x, one_hot), {"length": one_hot, "reconstruction": x}


class TrainingBatches(keras.utils.PyDataset):
    """An epoch of shuffled, shifted batches; Keras calls `on_epoch_end` between epochs."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shift_fraction: float, seed: int,
                 first_epoch: int = 0, num_classes: int = 10):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels, np.int64)
        self.batch_size, self.seed, self.num_classes = batch_size, seed, num_classes
        self.max_shift = int(shift_fraction * images.shape[1])
        self.epoch = first_epoch
        self.start_epoch(first_epoch)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])  # the same shifts whichever worker asks
        return model_inputs(random_shifts(self.images[chosen], self.max_shift, rng), self.labels[chosen],
                            self.num_classes)

    def on_epoch_end(self) -> None:
        self.start_epoch(self.epoch + 1)
