"""What ships in assets/: the test-digit sample, the pretrained model and its card, and the tool that makes them."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from capsnet import multimnist
from capsnet.assets import (
    BASELINE_CARD,
    BASELINE_MODEL,
    MULTIMNIST_CARD,
    MULTIMNIST_MODEL,
    PRETRAINED_CARD,
    PRETRAINED_MODEL,
    SAMPLES,
)
from capsnet.baseline import BaselineCNN
from capsnet.config import ModelConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.evaluate import accuracy_report, class_scores, predict_all
from capsnet.inference import load_capsnet, load_network
from capsnet.model import CapsNet
from capsnet.rundir import RunDir
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


@pytest.mark.slow
def test_the_shipped_multimnist_model_reproduces_its_card(mnist):
    """On the fixed test pairs (the same 10,000 wherever MNIST is), by the paper's metric, through the app's loading
    path; an interim model's card names the checkpoint's epoch."""
    if not MULTIMNIST_MODEL.is_file():
        pytest.skip("no MultiMNIST model in assets/ yet")
    card = json.loads(MULTIMNIST_CARD.read_text())
    net = load_network(MULTIMNIST_MODEL)
    assert net.config.dataset == "multimnist" and net.config.input_shape == (36, 36, 1)
    pairs = multimnist.test_pairs(mnist.x_test, mnist.y_test)
    assert card["test_set"]["sha256"] == pairs.checksum() and card["test_images"] == len(pairs) == 10000
    report = multimnist.pair_report(class_scores(net, pairs.images), pairs.labels)
    assert abs(report["accuracy"] - card["test_accuracy"]) <= 0.0005
    assert abs(report["at_least_one_accuracy"] - card["at_least_one_accuracy"]) <= 0.0005
    # The curve is the run's, to its last epoch; pairs seen are the shipped checkpoint's.
    assert card["error_vs_pairs_seen"][card["epochs_trained"] - 1][0] == card["pairs_seen"]
    if "interim" in card:
        interim = card["interim"]
        assert 1 <= interim["checkpoint_epoch"] == card["epochs_trained"] <= len(card["error_vs_pairs_seen"])
        assert interim["run_epochs"] == len(card["error_vs_pairs_seen"]) < interim["epochs_planned"]


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


@pytest.mark.slow
def test_an_unfinished_run_ships_its_best_checkpoint_and_says_so(mnist, tmp_path):
    """A run stopped after its first epoch (SIGTERM, as the Train page's Stop sends): `publish` refuses it unless
    asked, then ships the best checkpoint with a card that names its epoch and matches its validation."""
    run = tmp_path / "run"
    data = Dataset(mnist.x_train[:200], mnist.y_train[:200], mnist.x_test, mnist.y_test, mnist.source)
    narrow = ModelConfig(conv_filters=16, primary_channels=4, decoder_units=(32, 64))

    def stop_after_the_first_epoch():
        deadline = time.monotonic() + 600
        while not RunDir(run).epoch_records() and time.monotonic() < deadline:
            time.sleep(0.1)
        if RunDir(run).epoch_records():
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler finishes the step and stops

    threading.Thread(target=stop_after_the_first_epoch, daemon=True).start()
    train(TrainConfig(epochs=50, batch_size=50, model=narrow), run, data=data, verbose=0)
    epochs = RunDir(run).epoch_records()
    assert RunDir(run).read_raw_status()["state"] == "stopped" and 1 <= len(epochs) < 50
    model, card_path = tmp_path / "assets" / "capsnet.keras", tmp_path / "assets" / "model_card.json"
    with pytest.raises(FileNotFoundError, match="--unfinished"):
        publish(run, model, card_path, sweep_digits=20)
    assert not model.exists()
    card = publish(run, model, card_path, sweep_digits=20, unfinished=True)
    best = max(epochs, key=lambda record: record["val_accuracy"])
    assert card["interim"] == {"checkpoint_epoch": best["epoch"] + 1, "epochs_planned": 50, "run_state": "stopped",
                               "run_epochs": len(epochs)}
    assert abs(card["test_accuracy"] - best["val_accuracy"]) <= 0.0005 and card["test_images"] == 10000
    lengths, _, _ = predict_all(load_capsnet(model), mnist.x_test)
    assert accuracy_report(lengths, mnist.y_test)["accuracy"] == card["test_accuracy"]
