"""Testing a trained network: accuracy (a CapsNet or the baseline CNN), real-vs-reconstructed grids and latent-space
manipulation grids (CapsNet)."""

from __future__ import annotations

import keras
import numpy as np

from capsnet.config import DIGIT_SIZE
from capsnet.imaging import tile, to_float
from capsnet.model import CapsNet

MANIPULATION_OFFSETS = np.round(np.arange(-0.25, 0.2501, 0.05), 2)  # 11 columns, as in the paper's figure 4


def predict_all(net: CapsNet, images: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, ...]:
    """uint8 or float images [n, 28, 28] -> (lengths [n, 10], reconstructions [n, 28, 28], capsules [n, 10, 16])."""
    x = as_model_input(images, net.config.input_shape)
    lengths, recon, capsules = net.eval.predict(x, batch_size=batch_size, verbose=0)
    return lengths, recon[..., 0], capsules


def class_scores(net: keras.Model, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """uint8 or float images [n, 28, 28] -> [n, classes]: a CapsNet's capsule lengths, or a CNN's probabilities
    (what accuracy compares, whichever the network)."""
    if isinstance(net, CapsNet):
        return predict_all(net, images, batch_size)[0]
    return net.eval.predict(as_model_input(images, net.config.input_shape), batch_size=batch_size, verbose=0)


def as_model_input(images: np.ndarray, input_shape: tuple[int, ...] = (DIGIT_SIZE, DIGIT_SIZE, 1)) -> np.ndarray:
    """A batch of images, [n, h, w] or [n, h, w, 1] (the model's size), uint8 or floats in [0, 1] -> the model's
    float32 input. Anything else raises a ValueError that says what came (`imaging.to_float` converts)."""
    x = to_float(images)
    shape = tuple(input_shape)
    if x.ndim < 2 or x.shape[1:] not in ((shape, shape[:2]) if shape[-1] == 1 else (shape,)):
        raise ValueError(f"expected a batch of images of shape [n, {', '.join(map(str, shape[:2]))}], got an array "
                         f"of shape {x.shape}")
    return x.reshape((-1, *shape))


def accuracy_report(lengths: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> dict:
    predicted = np.argmax(lengths, axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    accuracy = float(np.mean(predicted == labels))
    return {
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "errors": int(np.sum(predicted != labels)),
        "count": int(len(labels)),
        "per_class_accuracy": [round(float(a), 6) for a in per_class],
        "confusion": confusion.tolist(),
    }






def manipulation_rows(capsules: np.ndarray, digit: int, offsets: np.ndarray = MANIPULATION_OFFSETS) -> np.ndarray:
    """Every single-dimension edit of capsule `digit`: [dims * len(offsets), classes, dims], row-major by dimension."""
    dims = capsules.shape[-1]
    edited = np.repeat(capsules[None], dims * len(offsets), axis=0).astype(np.float32)
    for d in range(dims):
        edited[d * len(offsets):(d + 1) * len(offsets), digit, d] += offsets
    return edited


def manipulation_grid(net: CapsNet, capsules: np.ndarray, digit: int,
                      offsets: np.ndarray = MANIPULATION_OFFSETS) -> np.ndarray:
    """Decode every edit of `manipulation_rows`: one image, a row per capsule dimension, a column per offset."""
    expected = (net.config.num_classes, net.config.digit_dim)
    if np.shape(capsules) != expected or not 0 <= digit < expected[0]:
        raise ValueError(f"expected digit capsules of shape {expected} and a class from 0 to {expected[0] - 1}, got "
                         f"shape {np.shape(capsules)} and class {digit!r}")
    edited = manipulation_rows(capsules, digit, offsets)
    one_hot = np.zeros((len(edited), capsules.shape[0]), np.float32)
    one_hot[:, digit] = 1.0
    images = net.decoder.predict([edited, one_hot], batch_size=len(edited), verbose=0)[..., 0]
    return tile(images, len(offsets))










def pick_example(lengths: np.ndarray, labels: np.ndarray, digit: int) -> int:
    """Index of the first test image of class `digit` that the model classifies correctly (else of that class)."""
    of_class = np.flatnonzero(labels == digit)
    correct = of_class[np.argmax(lengths[of_class], axis=1) == digit]
    return int(correct[0] if len(correct) else of_class[0])
