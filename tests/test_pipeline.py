"""The NumPy input pipeline: the paper's shifts, and batches that depend only on (seed, epoch)."""

import numpy as np
import pytest

from capsnet.model import CapsNet
from capsnet.pipeline import TrainingBatches, random_shifts


def test_shifts_move_whole_pixels_within_bounds_and_fill_with_black():
    images = np.zeros((500, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 255  # a block well inside the border: shifts never cut it
    shifted = random_shifts(images, 2, np.random.default_rng(0))
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert (shifted.reshape(500, -1).sum(axis=1) == images[0].sum()).all()  # nothing lost, nothing invented
    offsets = {(int(np.flatnonzero(s.any(axis=1))[0]) - 10, int(np.flatnonzero(s.any(axis=0))[0]) - 12)
               for s in shifted}
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25, and no others
    white = random_shifts(np.full((200, 28, 28), 255, np.uint8), 2, np.random.default_rng(3))
    moved = white.reshape(200, -1).min(axis=1) == 0  # what moves in is black
    assert moved.sum() == 200 - (white.reshape(200, -1) == 255).all(axis=1).sum() and moved.mean() > 0.9


def test_batches_depend_only_on_seed_and_position_in_the_run():
    images = np.arange(300 * 28 * 28, dtype=np.uint64).reshape(300, 28, 28).astype(np.uint8)
    labels = np.arange(300) % 10
    batches = TrainingBatches(images, labels, 64, 0.1, seed=4, example=CapsNet.training_example)
    assert batches.steps_per_epoch == 4 and batches.num_batches is None  # full batches only; Keras counts epochs
    (x, one_hot), targets = batches[3]
    assert x.shape == (64, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert one_hot.shape == (64, 10) and (targets["reconstruction"] is x) and (targets["length"] is one_hot)
    first_epoch = [batches[i][0][0] for i in range(4)]
    second_epoch = [batches[i][0][0] for i in range(4, 8)]
    assert not np.array_equal(first_epoch[0], second_epoch[0])  # reshuffled
    numbered = np.zeros((300, 28, 28), np.uint8)
    numbered[:, 0, 0], numbered[:, 0, 1] = np.arange(300) // 256, np.arange(300) % 256
    unshifted = TrainingBatches(numbered, labels, 64, 0.0, seed=4, example=CapsNet.training_example)
    drawn = np.concatenate([unshifted[i][0][0][:, 0, :2, 0] for i in range(4)]) * 255
    assert len({(round(a), round(b)) for a, b in drawn}) == 256  # an epoch draws without replacement
    again = batches[1][0][0]  # asked twice, out of order, after later batches: the same batch
    np.testing.assert_array_equal(again, first_epoch[1])
    # a run resumed at epoch 1
    resumed = TrainingBatches(images, labels, 64, 0.1, seed=4, first_epoch=1, example=CapsNet.training_example)
    for i in range(4):
        np.testing.assert_array_equal(resumed[i][0][0], second_epoch[i])
    # a run resumed at step 3 of epoch 0: the rest of that epoch, then the next, as an uninterrupted run saw them
    mid_epoch = TrainingBatches(images, labels, 64, 0.1, seed=4, first_step=3, example=CapsNet.training_example)
    for i, expected in enumerate([first_epoch[3], *second_epoch]):
        np.testing.assert_array_equal(mid_epoch[i][0][0], expected)
    with pytest.raises(ValueError, match="first_step must be in"):
        TrainingBatches(images, labels, 64, 0.1, seed=4, first_step=4, example=CapsNet.training_example)
    small = TrainingBatches(images[:10], labels[:10], 64, 0.1, seed=4, example=CapsNet.training_example)
    assert small.steps_per_epoch == 1 and small[0][0][0].shape == (10, 28, 28, 1)
