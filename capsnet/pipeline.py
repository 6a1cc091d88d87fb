"""The training input in NumPy, so it runs on every Keras backend, TensorFlow installed or not: shuffled batches
with the paper's augmentation (random shifts of up to 2 pixels, zero fill) and one-hot labels, arranged as the
network's training view takes them (`training_example`): for a CapsNet, the targets of both outputs (the margin
loss reads the label, the reconstruction loss the shifted image itself).

The order of an epoch's batches and their shifts depend only on (seed, epoch): a resumed run sees, from the step it
resumes at, the batches an uninterrupted run would have seen (`BatchStream`, which MultiMNIST's pairs share).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from capsnet.imaging import to_float

Example = Callable[[np.ndarray, np.ndarray], tuple]  # (images [b, 28, 28, 1], one-hot [b, classes]) -> (x, y)


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


def model_inputs(images: np.ndarray, labels: np.ndarray, num_classes: int, example: Example):
    """uint8 [b, h, w] + int labels -> the training view's (inputs, targets), as the network's `training_example`
    arranges them."""
    return example(to_float(images)[..., None], np.eye(num_classes, dtype=np.float32)[labels])


class BatchStream(keras.utils.PyDataset):
    """An endless stream of training batches, epoch after epoch, from a position in the run; `fit` takes
    `steps_per_epoch` of them. Subclasses say what batch `index` of `epoch` is (`batch`), as a pure function of the
    seed and that position: Keras may restart, prefetch or shard the stream (a strategy reads a batch before training
    to build the model, then starts again) without changing what the model sees, and a run resumed in the middle of
    an epoch (`first_epoch`, `first_step`) sees what an uninterrupted one would have. Every batch is full, so its
    shape never changes: an epoch is `len(images) // batch_size` batches of a fresh permutation, and the few images
    left over change from epoch to epoch.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0,
                 first_step: int = 0):
        super().__init__()
        if len(images) == 0:
            raise ValueError("no training images")
        self.images, self.labels = images, np.asarray(labels, np.int64)
        self.batch_size = min(batch_size, len(images))
        self.seed = seed
        self.steps_per_epoch = len(images) // self.batch_size
        if not 0 <= first_step < self.steps_per_epoch:
            raise ValueError(f"first_step must be in [0, {self.steps_per_epoch}), got {first_step}")
        self.start = first_epoch * self.steps_per_epoch + first_step  # steps of the run before this stream's first
        self.cached_order: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    @property
    def num_batches(self) -> None:
        return None  # endless: Keras counts the epochs

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of the images that `epoch` visits."""
        cached = self.cached_order  # one (epoch, order) tuple, replaced whole: Keras may read from several threads
        if cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.images)))
            self.cached_order = cached
        return cached[1]

    def chosen(self, epoch: int, index: int) -> np.ndarray:
        """The images of batch `index` of `epoch`."""
        return self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]

    def batch(self, epoch: int, index: int):
        """Batch `index` of `epoch` (counted from the run's start, wherever this stream starts)."""
        raise NotImplementedError

    def __getitem__(self, position: int):
        epoch, index = divmod(self.start + position, self.steps_per_epoch)
        return self.batch(epoch, index)


class TrainingBatches(BatchStream):
    """MNIST-like training batches: shuffled, each image shifted by up to `shift_fraction` of its size."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shift_fraction: float, seed: int,
                 first_epoch: int = 0, num_classes: int = 10, *, first_step: int = 0, example: Example):
        super().__init__(images, labels, batch_size, seed, first_epoch, first_step)
        self.num_classes, self.example = num_classes, example
        self.max_shift = int(shift_fraction * images.shape[1])

    def batch(self, epoch: int, index: int):
        chosen = self.chosen(epoch, index)
        rng = np.random.default_rng([self.seed, epoch, index])
        return model_inputs(random_shifts(self.images[chosen], self.max_shift, rng), self.labels[chosen],
                            self.num_classes, self.example)
