"""Affine transformations of digits, and how accuracy falls as they grow: the paper's affNIST idea, measured here.

The paper trains on MNIST with random shifts of up to 2 pixels and tests on affNIST (MNIST digits under random
small affine transformations): 79% for CapsNet against 66% for a CNN of similar accuracy on MNIST. Here each kind of
transformation is swept on its own — rotation, scaling, shear and translation well beyond the 2 pixels seen in
training — so the curves show where each model starts to fail.

A transformation acts about the image's centre: scale, then shear, then rotate, then shift. Pixels are resampled
bilinearly; what comes in from outside the frame is black, as MNIST's background.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from capsnet.config import DIGIT_SIZE

SIZE = DIGIT_SIZE


@dataclass(frozen=True)
class Affine:
    rotation: float = 0.0  # degrees, counter-clockwise
    scale: float = 1.0
    shear: float = 0.0  # degrees: x moves by tan(shear) * y
    shift_x: float = 0.0  # pixels, to the right
    shift_y: float = 0.0  # pixels, down

    def matrix(self) -> np.ndarray:
        """The forward map [3, 3], about the centre: output = M @ (x, y, 1), in PIL's continuous coordinates (pixel
        (i, j) covers [j, j + 1) x [i, i + 1), so the centre of a 28-pixel image is 14.0)."""
        angle = math.radians(self.rotation)
        rotate = np.array([[math.cos(angle), math.sin(angle), 0], [-math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
        shear = np.array([[1, math.tan(math.radians(self.shear)), 0], [0, 1, 0], [0, 0, 1]])
        scale = np.diag([self.scale, self.scale, 1.0])
        centre = SIZE / 2
        to_centre = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1]])
        back = np.array([[1, 0, centre + self.shift_x], [0, 1, centre + self.shift_y], [0, 0, 1]])
        return back @ rotate @ shear @ scale @ to_centre


def transform(images: np.ndarray, affine: Affine) -> np.ndarray:
    """[n, 28, 28] or [28, 28] in [0, 1] (or uint8) -> the same shape, float32 in [0, 1], transformed."""
    batch = np.asarray(images)
    single = batch.ndim == 2
    batch = batch[None] if single else batch
    if batch.dtype == np.uint8:
        batch = batch.astype(np.float32) / 255.0
    # PIL maps each output pixel back to the input: it wants the inverse, as its first two rows.
    inverse = tuple(np.linalg.inv(affine.matrix())[:2].ravel())
    out = np.stack([np.asarray(Image.fromarray(np.asarray(image, np.float32), mode="F").transform(
        (SIZE, SIZE), Image.Transform.AFFINE, inverse, resample=Image.Resampling.BILINEAR, fillcolor=0.0))
        for image in batch]).astype(np.float32)
    out = np.clip(out, 0.0, 1.0)
    return out[0] if single else out


# --- sweeps ---------------------------------------------------------------------------------------------------

SWEEP_DIGITS = 1000  # the first test digits a model is swept on (model cards, the Robustness page, `test --affine`)

SWEEPS: dict[str, tuple[str, list[float]]] = {  # name -> (unit, values)
    "rotation": ("degrees", [float(a) for a in range(-60, 61, 10)]),
    "scale": ("×", [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]),
    "shear": ("degrees", [float(a) for a in range(-40, 41, 10)]),
    "translation": ("pixels", [float(d) for d in range(0, 9)]),
}


def sweep_affine(name: str, value: float, index: int, seed: int = 0) -> Affine:
    """The transformation of image `index` at point `value` of sweep `name`. Translations go in a direction drawn per
    image (seeded), so that a distance means the same for every model whatever the digit's shape."""
    if name == "translation":
        angle = np.random.default_rng([seed, index]).uniform(0, 2 * math.pi)
        return Affine(shift_x=value * math.cos(angle), shift_y=value * math.sin(angle))
    return Affine(**{name: value})


def sweep_images(images: np.ndarray, name: str, value: float, seed: int = 0) -> np.ndarray:
    if name != "translation":
        return transform(images, sweep_affine(name, value, 0, seed))
    return np.stack([transform(image, sweep_affine(name, value, i, seed)) for i, image in enumerate(images)])


def accuracy_sweeps(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
                    seed: int = 0) -> dict[str, dict]:
    """Test accuracy under every point of every sweep. `classify`: float images [n, 28, 28] -> class scores
    [n, classes]. Returns {sweep: {"unit", "values", "accuracy"}}."""
    labels = np.asarray(labels)
    results = {}
    for name, (unit, values) in SWEEPS.items():
        accuracy = [float(np.mean(np.argmax(classify(sweep_images(images, name, v, seed)), axis=1) == labels))
                    for v in values]
        results[name] = {"unit": unit, "values": values, "accuracy": accuracy}
    return results


def describe(affine: Affine) -> str:
    changed = {k: v for k, v in asdict(affine).items() if v != asdict(Affine())[k]}
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in changed.items()) or "untransformed"
