"""The learning-rate schedule: lr * lr_decay ** epoch, and a new schedule from the epoch a resumed run goes on in."""

import json

import pytest

from capsnet.config import TrainConfig


def test_the_decay_defaults_to_the_datasets_own():
    """The reference's 0.9 for single digits; for MultiMNIST the authors' 0.96 per 2,000 steps of 128 pairs."""
    assert TrainConfig().lr_decay == TrainConfig(dataset="fashion_mnist").lr_decay == 0.9
    assert TrainConfig(dataset="multimnist").lr_decay == pytest.approx(0.96 ** (60_000 / (2_000 * 128)), abs=5e-4)
    assert TrainConfig(dataset="multimnist", lr_decay=0.9).lr_decay == 0.9  # given, it is kept
    assert TrainConfig.from_dict({"dataset": "multimnist", "lr_decay": 0.9}).lr_decay == 0.9  # a run's own


def test_the_default_schedule_decays_per_epoch():
    config = TrainConfig(lr=0.002, lr_decay=0.5)
    assert [config.learning_rate(e) for e in range(4)] == pytest.approx([0.002, 0.001, 0.0005, 0.00025])


def test_a_change_goes_on_from_the_rate_the_schedule_gave_and_keeps_earlier_epochs():
    config = TrainConfig(lr=0.001, lr_decay=0.9).with_lr_change(3, lr_decay=0.5)
    assert config.lr_changes == [{"epoch": 3, "lr": pytest.approx(0.001 * 0.9**3), "lr_decay": 0.5}]
    assert [config.learning_rate(e) for e in range(5)] == pytest.approx(
        [0.001, 0.0009, 0.00081, 0.000729, 0.0003645])
    # A new rate without a new decay keeps the decay in force; a later change starts from the rate before it.
    later = config.with_lr_change(5, lr=0.01)
    assert later.learning_rate(4) == pytest.approx(0.0003645)
    assert later.learning_rate(6) == pytest.approx(0.005)
    assert (config.lr, config.lr_decay) == (0.001, 0.9)  # the initial schedule stays what the run began with


def test_a_change_at_an_earlier_epoch_replaces_those_after_it():
    config = TrainConfig().with_lr_change(5, lr_decay=0.5).with_lr_change(8, lr_decay=0.1).with_lr_change(6, lr=1e-4)
    assert [c["epoch"] for c in config.lr_changes] == [5, 6]
    assert config.lr_changes[-1] == {"epoch": 6, "lr": 1e-4, "lr_decay": 0.5}
    assert config.learning_rate(9) == pytest.approx(1e-4 * 0.5**3)


def test_the_changes_survive_config_json():
    config = TrainConfig(dataset="multimnist").with_lr_change(11, lr_decay=0.99)
    reloaded = TrainConfig.from_dict(json.loads(config.to_json()))
    assert reloaded.lr_changes == config.lr_changes
    assert reloaded.learning_rate(20) == pytest.approx(config.learning_rate(20))
