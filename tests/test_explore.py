"""capsnet.explore: the routing map's reshape order, on a constructed array and on a real (untrained) network."""

from __future__ import annotations

import numpy as np

from capsnet.explorer.explore import coupling_map


def test_coupling_map_reads_position_major_type_minor():
    routings, classes, grid, types = 3, 10, 6, 32
    row, col, kind = np.meshgrid(np.arange(grid), np.arange(grid), np.arange(types), indexing="ij")
    # PrimaryCapsule's order: index = (row*grid + col)*types + type. Each position holds row*10 + col, plus a
    # per-type offset with mean 0, so the mean over types gives back row*10 + col only if types vary fastest.
    by_position = (row * 10 + col + (kind - (types - 1) / 2)).reshape(-1)
    couplings = np.zeros((routings, classes, grid * grid * types), np.float32)
    couplings[:, 7] = by_position + 1000 * np.arange(routings)[:, None]  # each round distinguishable, digit 7 only
    maps = coupling_map(couplings, digit=7)
    assert maps.shape == (routings, grid, grid)
    expected = (np.arange(grid)[:, None] * 10 + np.arange(grid)[None, :]).astype(np.float32)
    for round_ in range(routings):
        np.testing.assert_allclose(maps[round_], expected + 1000 * round_, atol=1e-3)
    assert not coupling_map(couplings, digit=3).any()  # another class's couplings


def test_first_round_of_a_real_network_is_uniform(random_model):
    from capsnet.inference import Predictor, load_capsnet

    predictor = Predictor(load_capsnet(random_model))
    image = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    couplings = predictor.couplings(image)
    assert couplings.shape == (predictor.net.config.routings, 10, 1152)
    np.testing.assert_allclose(couplings.sum(axis=1), 1.0, atol=1e-5)  # a softmax over the classes, every round
    maps = coupling_map(couplings, predictor.predict(image).digit)
    np.testing.assert_allclose(maps[0], 0.1, atol=1e-6)  # round 1: every capsule splits evenly over 10 classes
