"""capsnet.saliency: the primary capsules' layout, conv1's maps against a convolution written out by hand, gradient x
input against a linear classifier, and the colour scales."""

import numpy as np
import pytest
from test_attack import W, linear_classifier

from capsnet import saliency
from capsnet.attack import AttackModel
from capsnet.explorer import explore
from capsnet.inference import load_capsnet
from capsnet.sample import load_sample


def test_primary_lengths_follow_the_layers_layout():
    """Capsule i sits at explore.capsule_position(i): give each a length that encodes its (type, row, column)."""
    types, dims = 32, 8
    primary = np.zeros((6 * 6 * types, dims), np.float32)
    for index in range(len(primary)):
        row, column, kind = explore.capsule_position(index)
        primary[index, index % dims] = (kind * 100 + row * 10 + column) / 4000  # the length itself
    lengths = saliency.primary_lengths(primary, types)
    assert lengths.shape == (types, 6, 6)
    kind, row, column = np.meshgrid(np.arange(types), np.arange(6), np.arange(6), indexing="ij")
    assert np.allclose(lengths, (kind * 100 + row * 10 + column) / 4000)
    top = saliency.strongest_types(lengths, count=2)
    assert [r["type"] for r in top] == [31, 30] and top[0]["at (row, column)"] == "(5, 5)"


def test_mosaic_places_maps_row_by_row():
    maps = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    tiled = saliency.mosaic(maps, columns=3, gap=1)
    assert tiled.shape == (2 * 2 + 1, 3 * 3 + 2)
    assert np.array_equal(tiled[0:2, 4:7], maps[1]) and np.array_equal(tiled[3:5, 4:7], maps[4])
    assert np.isnan(tiled[2]).all() and np.isnan(tiled[:, 3]).all() and np.isnan(tiled[3:5, 8:]).all()


def test_colour_scales():
    signed = np.array([[0.0, 2.0, -2.0, 1.0, np.nan]], np.float32)
    rgb = saliency.diverging_rgb(signed, limit=2.0)
    assert np.allclose(rgb[0, :4], [[1, 1, 1], [1, 0, 0], [0, 0, 1], [1, 0.5, 0.5]])
    assert np.allclose(rgb[0, 4], saliency.GAP_COLOUR)
    assert np.allclose(saliency.diverging_rgb(signed)[0, 1], [1, 0, 0])  # default limit: the largest magnitude
    assert np.allclose(saliency.diverging_rgb(np.zeros((2, 2)), limit=0.0), 1.0)  # nothing to show: white
    ramp = saliency.sequential_rgb(np.array([[0.0, 0.5, 1.0, 3.0]]), high=1.0)
    assert np.allclose(ramp[0, 0], 0) and np.allclose(ramp[0, 2], ramp[0, 3]) and ramp[0, 2].sum() > ramp[0, 1].sum()


def test_saliency_is_gradient_times_input():
    model = AttackModel.of(linear_classifier())
    image = np.array([[0.2, 0.0], [1.0, 0.5]], np.float32)
    for target in range(3):
        assert np.allclose(saliency.saliency(model, image, target), W[:, target].reshape(2, 2) * image)
    pixels = (image * 255).astype(np.uint8)  # uint8 pixels: converted, not read as 0-255 floats
    assert np.allclose(saliency.saliency(model, pixels, 0), saliency.saliency(model, pixels / np.float32(255), 0))


@pytest.fixture(scope="module")
def shipped():
    return load_capsnet()


def test_conv1_maps_are_the_first_convolution(shipped):
    image = load_sample().images[0].astype(np.float32) / 255
    maps = saliency.conv1_function(shipped)(image)
    assert maps.shape == (20, 20, 256) and maps.min() >= 0  # 28 - 9 + 1, ReLU
    kernel, bias = shipped.eval.get_layer("conv1").get_weights()
    for row, column, channel in [(0, 0, 0), (7, 11, 100), (19, 19, 255)]:
        window = image[row:row + 9, column:column + 9]
        by_hand = max(0.0, float(np.sum(window * kernel[:, :, 0, channel]) + bias[channel]))
        assert maps[row, column, channel] == pytest.approx(by_hand, abs=1e-4)
    assert np.allclose(saliency.conv1_function(shipped)(load_sample().images[0]), maps, atol=1e-5)  # uint8 too


def test_the_winning_capsules_saliency_lies_on_the_ink(shipped):
    image = load_sample().images[0].astype(np.float32) / 255
    model = AttackModel.of(shipped)
    winner = int(np.argmax(model.scores(image[None])[0]))
    heat = saliency.saliency(model, image, winner)
    assert np.abs(heat[image == 0]).max() == 0  # x times its gradient: nothing where there is no ink
    assert np.abs(heat).sum() > 0
    # Gradient x input sums to about the change in the score from a black image (first-order Taylor): it says what
    # the ink adds, so in sum it is positive for the winning class.
    assert heat.sum() > 0
