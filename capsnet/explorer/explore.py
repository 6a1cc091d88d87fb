"""Small pure functions behind the explorer's pages: picking examples, editing a capsule, routing maps.

They hold no Streamlit state, so the pages stay thin and these are tested like any other function.
"""

from __future__ import annotations

import numpy as np

from capsnet.config import ModelConfig

PAPER = ModelConfig()  # the paper's MNIST CapsNet, for callers that have no model at hand


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


def coupling_map(couplings: np.ndarray, digit: int, config: ModelConfig = PAPER) -> np.ndarray:
    """How strongly each position's primary capsules send their output to digit capsule `digit`, per routing round:
    `couplings` [routings, classes, grid*grid*types] -> [routings, grid, grid], the mean over the capsule types.

    PrimaryCapsule reshapes its [grid, grid, types*dims] convolution output to [grid*grid*types, dims], so capsule
    index = (row*grid + col)*types + type: the type varies fastest."""
    to_digit = np.asarray(couplings, np.float32)[:, digit, :]
    grid = config.primary_grid
    return to_digit.reshape(len(to_digit), grid, grid, config.primary_channels).mean(axis=-1)


# --- the Routing page -----------------------------------------------------------------------------------------------

def capsule_position(index: int, config: ModelConfig = PAPER) -> tuple[int, int, int]:
    """Primary capsule `index` -> (row, column, type): the layout `coupling_map` describes."""
    position, capsule_type = divmod(int(index), config.primary_channels)
    row, column = divmod(position, config.primary_grid)
    return row, column, capsule_type


def receptive_field(row: int, column: int, config: ModelConfig = PAPER) -> tuple[int, int, int]:
    """The input pixels a primary capsule at (row, column) sees: (top, left, size) of a square. Its convolution
    reads `primary_kernel` conv1 outputs from `primary_strides * row`, and each of those reads `conv_kernel` pixels."""
    return config.primary_strides * row, config.primary_strides * column, config.receptive_field


def contributions(predictions: np.ndarray, couplings: np.ndarray, digit: int) -> np.ndarray:
    """[primary capsules]: what each primary capsule sends to capsule `digit` in a round, c_ij * |u_hat j|i|."""
    return np.asarray(couplings)[digit] * np.linalg.norm(np.asarray(predictions)[digit], axis=-1)


def vote_projection(predictions: np.ndarray, couplings: np.ndarray, digit: int) -> tuple[np.ndarray, np.ndarray]:
    """The votes u_hat j|i of every primary capsule for capsule `digit`, projected on their two principal
    components, and their coupling-weighted mean (where routing puts the capsule before squashing it, divided by
    the total coupling), projected the same way: ([primary capsules, 2], [2])."""
    votes = np.asarray(predictions, np.float64)[digit]
    weights = np.asarray(couplings, np.float64)[digit]
    centre = votes.mean(axis=0)
    _, _, axes = np.linalg.svd(votes - centre, full_matrices=False)
    components = axes[:2].T  # [16, 2]
    agreed = weights @ votes / weights.sum()
    return ((votes - centre) @ components).astype(np.float32), ((agreed - centre) @ components).astype(np.float32)


def sender_heatmap(sent: np.ndarray, config: ModelConfig = PAPER) -> np.ndarray:
    """[image size, image size]: each primary capsule's contribution `sent` spread over its receptive field and
    summed, scaled to [0, 1]: where in the input the winning capsule's votes come from."""
    grid, size = config.primary_grid, config.input_shape[0]
    heat = np.zeros((size, size), np.float64)
    per_position = np.asarray(sent, np.float64).reshape(grid, grid, config.primary_channels).sum(axis=-1)
    for row in range(grid):
        for column in range(grid):
            top, left, side = receptive_field(row, column, config)
            heat[top:top + side, left:left + side] += per_position[row, column] / side ** 2
    return (heat / heat.max() if heat.max() > 0 else heat).astype(np.float32)


def top_senders(sent: np.ndarray, couplings: np.ndarray, config: ModelConfig, count: int) -> list[dict]:
    """The `count` primary capsules that send the most to a class capsule (`sent`, `contributions`; `couplings`
    [primary capsules], to that class): where each sits and which pixels it sees, as table rows."""
    rows = []
    for index in np.argsort(sent)[::-1][:count]:
        row, column, kind = capsule_position(index, config)
        top, left, size = receptive_field(row, column, config)
        rows.append({"capsule": int(index), "position": f"({row}, {column})", "type": kind,
                     "coupling": float(couplings[index]), "sent": float(sent[index]),
                     "pixels": f"rows {top}–{top + size - 1}, cols {left}–{left + size - 1}"})
    return rows


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A grey digit [h, w] with `heat` [h, w] in [0, 1] laid over it in red: [h, w, 3] in [0, 1]."""
    grey = 0.75 * np.asarray(image, np.float32)
    heat = np.asarray(heat, np.float32)
    return np.stack([np.clip(grey + heat, 0, 1), grey * (1 - heat), grey * (1 - heat)], axis=-1)
