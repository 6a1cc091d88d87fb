"""Affine transformations and the accuracy sweeps of the Robustness page."""

import numpy as np
import pytest

from capsnet.affine import SWEEPS, Affine, accuracy_sweeps, sweep_images, transform
from capsnet.evaluate import predict_all
from capsnet.imaging import to_uint8
from capsnet.inference import load_capsnet
from capsnet.sample import load_sample


def bar() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:22, 12:16] = 1.0  # a vertical bar, centred: (13.5, 13.5)
    return image


def test_identity_shift_rotation_and_scale_do_what_they_say():
    image = bar()
    np.testing.assert_allclose(transform(image, Affine()), image, atol=1e-5)
    np.testing.assert_allclose(transform(image, Affine(shift_x=3, shift_y=-2)), np.roll(image, (-2, 3), (0, 1)),
                               atol=1e-5)
    np.testing.assert_allclose(transform(image, Affine(rotation=90)), np.rot90(image), atol=1e-4)  # counter-clockwise
    half = transform(image, Affine(scale=0.5))
    rows = np.flatnonzero(half.max(axis=1) > 0.5)
    assert rows.max() - rows.min() + 1 == 8  # 16 rows of ink become 8
    sheared = transform(image, Affine(shear=30))
    top, bottom = (np.average(np.arange(28), weights=sheared[r]) for r in (7, 20))
    assert top < 13.5 < bottom  # x moves with y: the bar leans
    assert transform(np.stack([image] * 3), Affine(rotation=10)).shape == (3, 28, 28)


def test_translations_have_the_same_length_in_different_directions():
    images = np.stack([bar()] * 20)
    moved = sweep_images(images, "translation", 5.0)
    centre = np.array([13.5, 13.5])  # in pixel indices
    grid = np.indices((28, 28)).reshape(2, -1)
    centroids = np.array([grid @ m.ravel() / m.sum() for m in moved])
    np.testing.assert_allclose(np.linalg.norm(centroids - centre, axis=1), 5.0, atol=0.05)
    assert len({tuple(np.round(c)) for c in centroids}) > 5  # directions differ from image to image


@pytest.mark.slow
def test_accuracy_falls_as_the_transformations_grow():
    sample = load_sample()
    images, labels = sample.images[:60], sample.labels[:60]
    net = load_capsnet()
    sweeps = accuracy_sweeps(lambda batch: predict_all(net, to_uint8(batch))[0], images, labels)
    assert set(sweeps) == set(SWEEPS)
    for name, sweep in sweeps.items():
        untouched = sweep["values"].index(1.0 if name == "scale" else 0.0)
        assert sweep["accuracy"][untouched] == pytest.approx(1.0, abs=0.02), name  # the shipped model, 99.67%
    assert sweeps["rotation"]["accuracy"][0] < 0.8 and sweeps["translation"]["accuracy"][-1] < 0.8
    assert sweeps["scale"]["accuracy"][0] < sweeps["scale"]["accuracy"][4]
