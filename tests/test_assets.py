"""What ships in assets/: the test-digit sample, the pretrained model and its card, and the tool that makes them."""

import json

import numpy as np
import pytest

from capsnet.assets import BASELINE_CARD, BASELINE_MODEL, PRETRAINED_CARD, PRETRAINED_MODEL, SAMPLES
from capsnet.baseline import BaselineCNN
from capsnet.config import ModelConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.evaluate import accuracy_report, class_scores, predict_all
from capsnet.inference import load_capsnet, load_network
from capsnet.model import CapsNet
from capsnet.sample import load_sample
from capsnet.tools.publish import publish
from capsnet.train import train


def test_sample_digits_are_the_test_images_they_claim_to_be(mnist):
    sample = load_sample(SAMPLES["mnist"])
    assert len(sample.images) == 1000
    np.testing.assert_array_equal(sample.images, mnist.x_test[sample.indices])
    np.testing.assert_array_equal(sample.labels, mnist.y_test[sample.indices])
    assert np.bincount(sample.labels, minlength=10).tolist() == [100] * 10


@pytest.mark.slow
def test_shipped_model_reproduces_its_card(mnist):
    if not PRETRAINED_MODEL.is_file():
        pytest.skip("no pretrained model in assets/ yet")
    card = json.loads(PRETRAINED_CARD.read_text())
    net = load_capsnet()  # the default: the same path the app takes
    lengths, _, _ = predict_all(net, mnist.x_test)
    accuracy = accuracy_report(lengths, mnist.y_test)["accuracy"]
    assert abs(accuracy - card["test_accuracy"]) <= 0.0005
    assert card["test_images"] == 10000 and card["config"]["model"]["routings"] == 3


def test_shipped_baseline_cnn_reproduces_its_card(mnist):
    """The CNN the Robustness page compares with: a CNN, of the size the README states, as accurate as its card says,
    with sweeps on the first 1,000 test digits whose untransformed points agree with that accuracy."""
    card = json.loads(BASELINE_CARD.read_text())
    net = load_network(BASELINE_MODEL)
    assert isinstance(net, BaselineCNN) and net.eval.count_params() == card["parameters"] == 857738
    assert card["config"]["model"]["kind"] == "cnn" and card["epochs_trained"] == card["config"]["epochs"] == 50
    report = accuracy_report(class_scores(net, mnist.x_test), mnist.y_test)
    assert abs(report["accuracy"] - card["test_accuracy"]) <= 0.0005 and card["test_images"] == 10000
    first_thousand = accuracy_report(class_scores(net, mnist.x_test[:1000]), mnist.y_test[:1000])["accuracy"]
    rotation = card["affine_sweeps"]["rotation"]
    assert rotation["accuracy"][rotation["values"].index(0.0)] == pytest.approx(first_thousand, abs=0.002)


@pytest.mark.slow
def test_publish_writes_a_model_file_and_a_truthful_card(mnist, tmp_path):
    """On a narrow CapsNet, which evaluates the 10,000 test images quickly; the paper's size is checked apart."""
    assert CapsNet().eval.count_params() == 8215568
    run = tmp_path / "run"
    data = Dataset(mnist.x_train[:200], mnist.y_train[:200], mnist.x_test[:100], mnist.y_test[:100], mnist.source)
    narrow = ModelConfig(conv_filters=16, primary_channels=4, decoder_units=(32, 64))
    train(TrainConfig(epochs=1, batch_size=50, model=narrow), run, data=data, verbose=0)
    model, card_path = tmp_path / "assets" / "capsnet.keras", tmp_path / "assets" / "model_card.json"
    card = publish(run, model, card_path, sweep_digits=20)
    assert model.is_file() and json.loads(card_path.read_text()) == card and card["model"] == "capsnet.keras"
    assert card["parameters"] == CapsNet(narrow).eval.count_params() and card["affine_sweeps_test_digits"] == 20
    assert card["config"]["model"]["conv_filters"] == 16
    assert set(card["affine_sweeps"]) == {"rotation", "scale", "shear", "translation"}
    assert card["epochs_trained"] == 1 and card["test_images"] == 10000
    assert card["training"]["sessions"] == 1 and card["config"]["batch_size"] == 50
    lengths, _, _ = predict_all(load_capsnet(model), mnist.x_test)
    assert accuracy_report(lengths, mnist.y_test)["accuracy"] == card["test_accuracy"]
    assert len(card["data"]["sha256_of_arrays"]) == 64
