"""MultiMNIST: the pair generator, the two-label loss and metric, the grown network, and a short training that
learns to name both digits."""

from __future__ import annotations

import numpy as np
import pytest

from capsnet import multimnist
from capsnet.config import ModelConfig, TrainConfig
from capsnet.losses import margin_loss, reconstruction_weight, set_accuracy

# sha256 of the fixed test set (overlays, labels, shifts, sources) made from the real MNIST test split: the same
# pairs on every machine, from any source of MNIST that holds the same pixels.
TEST_SET_SHA256 = "de827fff2b0bdb764fc76e9864d0b455d101072a49089df38f02cadc249055fb"


@pytest.fixture(scope="module")
def pairs(mnist):
    return multimnist.test_pairs(mnist.x_test, mnist.y_test)


def test_the_test_set_is_fixed_and_follows_the_rule(mnist, pairs):
    assert len(pairs) == len(mnist.x_test) == 10_000
    assert pairs.images.shape == (10_000, 36, 36) and pairs.digits.shape == (10_000, 2, 36, 36)
    assert pairs.checksum() == TEST_SET_SHA256
    assert multimnist.test_pairs(mnist.x_test, mnist.y_test).checksum() == TEST_SET_SHA256  # regenerated
    assert np.array_equal(pairs.sources[:, 0], np.arange(10_000))  # every test digit leads one pair
    # Two different classes, from the split's labels, shifted by whole pixels within +-4.
    assert (pairs.labels[:, 0] != pairs.labels[:, 1]).all()
    assert np.array_equal(pairs.labels, mnist.y_test[pairs.sources])
    assert np.abs(pairs.shifts).max() == 4 and set(np.unique(pairs.shifts)) == set(range(-4, 5))
    # The pixel rule: min(a + b, 255) of the two shifted digits.
    expected = np.minimum(pairs.digits[:, 0].astype(int) + pairs.digits[:, 1], 255)
    assert np.array_equal(pairs.images, expected)
    assert (pairs.images == 255).any()  # overlapping ink saturates


def test_each_digit_is_its_source_moved_by_its_shift(mnist, pairs):
    for i in (0, 17, 4242):
        for k in range(2):
            source = mnist.x_test[pairs.sources[i, k]]
            dy, dx = pairs.shifts[i, k]
            placed = np.zeros((36, 36), np.uint8)
            placed[4 + dy:4 + dy + 28, 4 + dx:4 + dx + 28] = source  # a 4-pixel margin: nothing is cut
            assert np.array_equal(pairs.digits[i, k], placed)


def test_ink_moved_past_the_edge_is_cut():
    digit = np.full((1, 28, 28), 200, np.uint8)
    moved = multimnist.shifted_in_frame(digit, [[0, 6]], frame=32)  # 2-pixel margin, moved 6 right
    assert moved.shape == (1, 32, 32)
    assert (moved[0, 2:30, 8:] == 200).all() and (moved[0, :, :8] == 0).all()
    assert moved.sum() == 200 * 28 * 24  # four columns fell off the right edge


def test_the_same_seed_gives_the_same_training_pairs(mnist):
    images, labels = mnist.x_train[:2000], mnist.y_train[:2000]
    first = multimnist.PairBatches(images, labels, 50, seed=3)
    again = multimnist.PairBatches(images, labels, 50, seed=3)
    other = multimnist.PairBatches(images, labels, 50, seed=4)
    (x, one_hot), targets = first[5]
    (x_again, _), _ = again[5]
    (x_other, _), _ = other[5]
    assert np.array_equal(x, x_again) and not np.array_equal(x, x_other)
    # A resumed run (starting at epoch 1) sees what an uninterrupted one sees at epoch 1.
    resumed = multimnist.PairBatches(images, labels, 50, seed=3, first_epoch=1)
    assert np.array_equal(resumed[0][0][0], first[first.steps_per_epoch][0][0])
    # ... and one resumed in the middle of an epoch what it would have seen from that step on.
    mid_epoch = multimnist.PairBatches(images, labels, 50, seed=3, first_epoch=1, first_step=7)
    assert np.array_equal(mid_epoch[0][0][0], first[first.steps_per_epoch + 7][0][0])
    # The targets: both classes for the margin loss, each digit's own image for its reconstruction.
    assert x.shape == (50, 36, 36, 1) and one_hot.shape == (50, 2, 10)
    assert (targets["length"].sum(axis=1) == 2).all() and targets["length"].max() == 1
    assert targets["reconstruction"].shape == (50, 2, 36, 36, 1)
    assert np.allclose(np.minimum(targets["reconstruction"].sum(axis=1), 1.0), x, atol=1 / 255)


def test_margin_loss_with_two_classes_present():
    lengths = np.array([[0.95, 0.5, 0.2, 0.05, 0, 0, 0, 0, 0, 0]], np.float32)
    both = np.zeros((1, 10), np.float32)
    both[0, [0, 1]] = 1
    # Present: max(0, 0.9 - |v|)^2 -> 0 for 0.95, 0.16 for 0.5. Absent: 0.5 max(0, |v| - 0.1)^2 -> 0.005 for 0.2.
    assert float(margin_loss(both, lengths)[0]) == pytest.approx(0.16 + 0.005, abs=1e-6)


def test_set_accuracy_needs_every_present_class_longest():
    both = np.zeros((3, 10), np.float32)
    both[:, [2, 7]] = 1
    lengths = np.full((3, 10), 0.1, np.float32)
    lengths[0, [2, 7]] = [0.8, 0.6]  # both longest
    lengths[1, [2, 3]] = [0.8, 0.6]  # one right, one wrong
    lengths[2, [2, 7, 4]] = [0.8, 0.5, 0.55]  # the second digit third
    assert list(np.asarray(set_accuracy(both, lengths))) == [1.0, 0.0, 0.0]
    one = np.eye(10, dtype=np.float32)[[2, 7, 3]]
    assert list(np.asarray(set_accuracy(one, lengths))) == [1.0, 0.0, 0.0]  # one class: plain accuracy


def test_pair_report_on_constructed_cases():
    labels = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
    lengths = np.zeros((4, 10))
    lengths[0, [2, 1]] = [0.9, 0.8]  # both, in the other order: right
    lengths[1, [3, 9]] = [0.9, 0.8]  # one
    lengths[2, [0, 9]] = [0.9, 0.8]  # none
    lengths[3, [8, 7]] = [0.7, 0.6]
    report = multimnist.pair_report(lengths, labels)
    assert report["errors"] == 2 and report["error"] == 0.5
    assert report["at_least_one_accuracy"] == 0.75
    assert multimnist.pick_pair(lengths, labels, 8) == 3 and multimnist.pick_pair(lengths, labels, 4) == 1


def test_the_reconstruction_weight_is_the_papers_for_any_image():
    assert reconstruction_weight(0.392, (28, 28, 1)) == pytest.approx(0.392)
    # MultiMNIST: the MSE runs over two 36x36 reconstructions; 0.0005 * SSE of each is 0.0005 * 2 * 1296 * MSE.
    assert reconstruction_weight(0.392, (36, 36, 1), digits=2) == pytest.approx(0.0005 * 2 * 1296)


def test_the_multimnist_network_decodes_each_digit_with_its_own_label(pairs):
    from capsnet.model import build_network

    config = TrainConfig(dataset="multimnist", model=ModelConfig(conv_filters=16, primary_channels=4,
                                                                 decoder_units=(16, 32)))
    assert config.model.input_shape == (36, 36, 1)
    net = build_network(config.model)
    (x, one_hot), targets = multimnist.model_inputs(pairs[:4])
    lengths, reconstructions = net.train.predict([x, one_hot], verbose=0)
    assert lengths.shape == (4, 10) and reconstructions.shape == (4, 2, 36, 36, 1)
    # The same as the decoder view masked by each label in turn.
    _, _, capsules = net.eval.predict(x, verbose=0)
    for k in range(2):
        alone = net.decoder.predict([capsules, one_hot[:, k]], verbose=0)
        np.testing.assert_allclose(reconstructions[:, k], alone, atol=1e-5)


def test_a_grown_network_starts_from_the_shipped_capsnet(mnist):
    from capsnet.inference import load_network
    from capsnet.model import build_network
    from capsnet.transfer import initial_weights

    source = load_network()
    target = build_network(TrainConfig(dataset="multimnist").model)
    initial_weights(target, source)
    for layer in ("conv1", "primary_capsules"):
        grown, original = target.eval.get_layer(layer).get_weights(), source.eval.get_layer(layer).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(grown, original, strict=True))
    w_source = source.eval.get_layer("digit_capsules").get_weights()[0].reshape(10, 6, 6, 32, 16, 8)
    w_target = target.eval.get_layer("digit_capsules").get_weights()[0].reshape(10, 10, 10, 32, 16, 8)
    # The 36x36 frame adds 4 pixels a side: 2 primary positions at stride 2. Inner positions map one to one.
    assert np.array_equal(w_target[:, 2:8, 2:8], w_source)
    assert np.array_equal(w_target[:, 0, 0], w_source[:, 0, 0]) and np.array_equal(w_target[:, 9, 9], w_source[:, 5, 5])
    # A centred digit in the larger frame: the inner 6x6 positions see what the source's saw, and vote as they did.
    digits = mnist.x_test[:3]
    framed = multimnist.shifted_in_frame(digits, np.zeros((3, 2), int))
    votes = source.routing.predict(digits[..., None] / 255.0, verbose=0)["predictions"].reshape(3, 10, 6, 6, 32, 16)
    grown = target.routing.predict(framed[..., None] / 255.0, verbose=0)["predictions"].reshape(3, 10, 10, 10, 32, 16)
    np.testing.assert_allclose(grown[:, :, 2:8, 2:8], votes, atol=1e-4)


@pytest.mark.slow
def test_a_short_training_names_both_digits_well_above_chance(mnist, tmp_path):
    from capsnet.data import Dataset
    from capsnet.rundir import RunDir
    from capsnet.train import train

    data = Dataset(mnist.x_train[:3000], mnist.y_train[:3000], mnist.x_test[:500], mnist.y_test[:500], "test")
    narrow = ModelConfig(conv_filters=64, primary_channels=8, decoder_units=(64, 128))
    config = TrainConfig(dataset="multimnist", epochs=3, batch_size=50, precision="float32", model=narrow)
    net = train(config, tmp_path / "run", data=data, verbose=0)
    pairs = multimnist.test_pairs(data.x_test, data.y_test)
    lengths, top, reconstructions = multimnist.predict_pairs(net, pairs.images)
    report = multimnist.pair_report(lengths, pairs.labels)
    # Chance: 1 in 45 for the pair, ~38% for at least one of two guesses.
    assert report["accuracy"] > 0.2, report
    assert report["at_least_one_accuracy"] > 0.7, report
    epochs = RunDir(tmp_path / "run").epoch_records()
    assert epochs[-1]["val_accuracy"] == pytest.approx(report["accuracy"], abs=0.02)  # the logged metric is it
    assert reconstructions.shape == (500, 2, 36, 36)
