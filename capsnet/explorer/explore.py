"""Small pure functions behind the explorer's pages: picking examples, editing a capsule, routing maps.

They hold no Streamlit state, so the pages stay thin and these are tested like any other function.
"""

from __future__ import annotations

import numpy as np


def edit_capsule(capsules: np.ndarray, digit: int, values: np.ndarray, absolute: bool) -> np.ndarray:
    """Digit capsules [classes, dims] with capsule `digit` replaced by `values` (absolute) or shifted by them."""
    edited = np.array(capsules, np.float32, copy=True)
    values = np.asarray(values, np.float32)
    edited[digit] = values if absolute else edited[digit] + values
    return edited


def choose_examples(labels: np.ndarray, predicted: np.ndarray, count: int, seed: int | None = None,
                    digit: int | None = None, misclassified: bool = False) -> np.ndarray:
    """Positions of up to `count` examples of class `digit` (None: all), only the misclassified ones if asked;
    in order with `seed=None`, else a random draw that the same seed repeats."""
    keep = np.ones(len(labels), bool)
    if digit is not None:
        keep &= labels == digit
    if misclassified:
        keep &= predicted != labels
    positions = np.flatnonzero(keep)
    if seed is not None and len(positions) > count:
        positions = np.sort(np.random.default_rng(seed).choice(positions, count, replace=False))
    return positions[:count]


def one_per_class(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Indices of the first example of each class: fixed digits that stay the same across checkpoints."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(classes) if (labels == c).any()])


def coupling_map(couplings: np.ndarray, digit: int, grid: int = 6) -> np.ndarray:
    """How strongly each position's primary capsules send their output to digit capsule `digit`, per routing round:
    `couplings` [routings, classes, grid*grid*types] -> [routings, grid, grid], the mean over the capsule types.

    PrimaryCapsule reshapes its [grid, grid, types*dims] convolution output to [grid*grid*types, dims], so capsule
    index = (row*grid + col)*types + type: the type varies fastest."""
    to_digit = np.asarray(couplings, np.float32)[:, digit, :]
    routings, capsules = to_digit.shape
    return to_digit.reshape(routings, grid, grid, capsules // (grid * grid)).mean(axis=-1)
