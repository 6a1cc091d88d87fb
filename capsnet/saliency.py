"""What the primary capsules see, and which pixels a decision depends on.

- `primary_lengths`: the length of every primary capsule (how sure it is that its feature is present), arranged as
  the network arranges them: one 6x6 map per capsule type.
- `conv1_function`: the first convolution's feature maps of one image (256 maps of 20x20 for the paper's network).
- `saliency`: gradient x input (Shrikumar et al. 2016; Ancona et al. 2018) of one class's score: the pixels whose ink
  raises the score (positive) or lowers it (negative). For a CapsNet the score is the class capsule's length; for the
  baseline CNN its logit, which like a capsule's length depends on that class alone (a softmax probability also
  falls when another class rises).
- `mosaic`, `diverging_rgb` and `sequential_rgb`: many small maps as one image, and colour scales for signed and
  non-negative values.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from capsnet.attack import AttackModel
from capsnet.compiled import compile_function
from capsnet.imaging import to_float


def primary_lengths(primary: np.ndarray, types: int) -> np.ndarray:
    """Primary capsules [grid * grid * types, dims] -> their lengths as [types, grid, grid]. The layer reshapes its
    [grid, grid, types * dims] convolution output to capsules, so capsule index = (row * grid + column) * types +
    type (see `capsnet.explorer.explore.coupling_map`)."""
    lengths = np.linalg.norm(np.asarray(primary, np.float32), axis=-1)
    grid = int(round(np.sqrt(len(lengths) // types)))
    return lengths.reshape(grid, grid, types).transpose(2, 0, 1)


def strongest_types(lengths: np.ndarray, count: int = 5) -> list[dict]:
    """The capsule types with the longest capsule anywhere on the grid ([types, grid, grid]), strongest first."""
    peaks = lengths.reshape(len(lengths), -1)
    order = np.argsort(peaks.max(axis=1))[::-1][:count]
    rows = []
    for kind in order:
        row, column = divmod(int(np.argmax(peaks[kind])), lengths.shape[2])
        rows.append({"type": int(kind), "longest": float(peaks[kind].max()), "at (row, column)": f"({row}, {column})"})
    return rows


def conv1_function(net: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """image [h, w] in [0, 1] -> the `conv1` layer's output for it, [rows, columns, filters] (compiled once)."""
    layer = net.eval.get_layer("conv1")
    features = keras.Model(net.eval.inputs, layer.output)
    shape = (1, *net.config.input_shape)
    compiled = compile_function(lambda x: features(x, training=False), [shape], xla=False)
    return lambda image: compiled(to_float(image).reshape(shape))[0]


def saliency(model: AttackModel, image: np.ndarray, target: int) -> np.ndarray:
    """Gradient x input of class `target`'s score for one image [h, w]: [h, w], positive where ink raises it."""
    image = to_float(image)
    return model.score_gradient(image[None], [target])[0] * image


def mosaic(maps: np.ndarray, columns: int, gap: int = 1, fill: float = np.nan) -> np.ndarray:
    """Maps [n, h, w] laid out row by row, `columns` to a row, `gap` pixels of `fill` between them."""
    count, height, width = maps.shape
    rows = -(-count // columns)
    out = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), fill, np.float32)
    for index, single in enumerate(maps):
        r, c = divmod(index, columns)
        out[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = single
    return out


GAP_COLOUR = (0.5, 0.5, 0.5)  # what NaN (a mosaic's gaps) becomes: grey, apart from both ends of every scale


def diverging_rgb(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Signed values [h, w] -> [h, w, 3] in [0, 1]: white at 0, red for positive, blue for negative, full at
    +-`limit` (default: the largest magnitude, so that any map uses the whole scale)."""
    values = np.asarray(values, np.float32)
    finite = np.nan_to_num(values)
    limit = float(np.abs(finite).max()) if limit is None else float(limit)
    t = np.clip(finite / limit, -1.0, 1.0) if limit > 0 else np.zeros_like(finite)
    positive, negative = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    rgb = np.stack([1 - negative, 1 - positive - negative, 1 - positive], axis=-1)
    rgb[np.isnan(values)] = GAP_COLOUR
    return rgb


# Stops of a dark-to-bright sequential scale (black, blue, teal, yellow), readable on light and dark themes.
_STOPS = np.array([[0.0, 0.0, 0.0], [0.15, 0.25, 0.65], [0.1, 0.65, 0.6], [1.0, 0.9, 0.2]], np.float32)


def sequential_rgb(values: np.ndarray, high: float | None = None) -> np.ndarray:
    """Non-negative values [h, w] -> [h, w, 3] in [0, 1], black at 0 and yellow at `high` (default: the largest)."""
    values = np.asarray(values, np.float32)
    finite = np.nan_to_num(values)
    high = float(finite.max()) if high is None else float(high)
    t = np.clip(finite / high, 0.0, 1.0) if high > 0 else np.zeros_like(finite)
    positions = np.linspace(0.0, 1.0, len(_STOPS))
    rgb = np.stack([np.interp(t, positions, _STOPS[:, channel]) for channel in range(3)], axis=-1)
    rgb[np.isnan(values)] = GAP_COLOUR
    return rgb.astype(np.float32)
