"""Training for real on MNIST: the network learns, the run directory is written, and resume continues a run."""

import dataclasses
import json
import re
import signal

import h5py
import keras
import numpy as np
import pytest

from capsnet.config import ModelConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.evaluate import accuracy_report, predict_all
from capsnet.inference import Predictor, load_capsnet
from capsnet.rundir import RunDir
from capsnet.train import TrainingDiverged, train

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def small(mnist, n_train: int, n_test: int) -> Dataset:
    return Dataset(mnist.x_train[:n_train], mnist.y_train[:n_train], mnist.x_test[:n_test], mnist.y_test[:n_test],
                   mnist.source)


def test_overfits_a_few_hundred_images(mnist, tmp_path):
    data = small(mnist, 300, 100)
    config = TrainConfig(epochs=15, batch_size=50, shift_fraction=0.0, lr_decay=1.0, model=ModelConfig(routings=3))
    net = train(config, tmp_path / "run", data=data, verbose=0)
    lengths, _, _ = predict_all(net, data.x_train)
    assert accuracy_report(lengths, data.y_train)["accuracy"] >= 0.95


def test_run_directory_and_resume(mnist, tmp_path):
    data = small(mnist, 200, 100)
    run = RunDir(tmp_path / "run")
    config = TrainConfig(epochs=1, batch_size=50, log_every=2)
    train(config, run.path, data=data, verbose=0)
    for path in (run.config_file, run.status_file, run.metrics_file, run.log_csv, run.log_png, run.last_checkpoint,
                 run.best_checkpoint, run.final_model):
        assert path.is_file(), path
    assert run.read_status()["state"] == "finished"
    assert json.loads(run.config_file.read_text())["lam_recon"] == 0.392
    steps = run.step_records()
    assert [s["step"] for s in steps] == [2, 4]
    assert {"loss", "margin_loss", "recon_loss", "accuracy", "lr", "samples_per_sec"} <= set(steps[0])

    # Resume with more epochs: the counter, the learning-rate schedule and the log continue where they stopped.
    config.epochs = 2
    train(config, run.path, resume=True, data=data, verbose=0)
    epochs = run.epoch_records()
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[1]["lr"] == pytest.approx(config.lr * config.lr_decay)
    assert [s["global_step"] for s in run.step_records()] == [2, 4, 6, 8]
    assert run.checkpoint_state()["epochs_completed"] == 2
    assert len(run.read_log_csv()) == 2


def test_resume_discards_records_of_an_interrupted_epoch(mnist, tmp_path):
    data = small(mnist, 200, 50)
    run = RunDir(tmp_path / "run")
    config = TrainConfig(epochs=1, batch_size=50, log_every=1)
    train(config, run.path, data=data, verbose=0)
    # What a kill -9 halfway through epoch 2 leaves: step records past the checkpoint and a torn last line.
    with open(run.metrics_file, "a") as f:
        f.write(json.dumps({"kind": "step", "epoch": 1, "step": 1, "global_step": 5}) + "\n")
        f.write('{"kind": "step", "epo')
    assert run.read_metrics()[-1]["global_step"] == 5
    config.epochs = 2
    train(config, run.path, resume=True, data=data, verbose=0)
    assert [s["global_step"] for s in run.step_records()] == list(range(1, 9))


class InterruptAt(keras.callbacks.Callback):
    """At the end of step `step` (from 1) of epoch `epoch`: SIGTERM this process (what Stop does), or crash. Keeps
    every epoch's logs, to see afterwards what validation added to them."""

    def __init__(self, epoch: int, step: int, how: str):
        super().__init__()
        self.at, self.how, self.epoch_logs = (epoch, step), how, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch + 1) == self.at and self.how == "stop":
            signal.raise_signal(signal.SIGTERM)
        if (self.epoch, batch + 1) == self.at and self.how == "crash":
            raise RuntimeError("the process died here")

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs[epoch] = logs  # the dict itself: the run's callbacks fill it after this one


def final_weights(run: RunDir) -> list[np.ndarray]:
    return load_capsnet(run.final_model).get_weights()


def test_a_run_stopped_or_killed_mid_epoch_resumes_at_its_step_as_if_never_interrupted(mnist, tmp_path):
    """Two epochs of 4 steps, uninterrupted; stopped at step 2 of epoch 0 and resumed; crashed at step 3 of epoch 1
    with a checkpoint after every step and resumed. Both interrupted runs end with the uninterrupted run's weights:
    they resumed at the step their checkpoint was written, on the batches the uninterrupted run saw then."""
    data = small(mnist, 200, 100)
    whole, stopped, crashed = (RunDir(tmp_path / name) for name in ("whole", "stopped", "crashed"))
    config = TrainConfig(epochs=2, batch_size=50, log_every=1)
    train(config, whole.path, data=data, verbose=0)

    stop = InterruptAt(epoch=0, step=2, how="stop")
    train(config, stopped.path, data=data, verbose=0, callbacks=[stop])
    assert stopped.read_status()["state"] == "stopped"
    state = stopped.checkpoint_state()
    assert state.pop("epoch_seconds") > 0  # the time the cut epoch took, for its record once it is finished
    assert state == {"epochs_completed": 0, "steps_completed": 2, "best_val_accuracy": -1.0}
    with h5py.File(stopped.last_checkpoint, "r") as f:
        assert f["optimizer/vars/0"][()] == 2  # Adam's step counter: the weights of exactly two steps
    assert "val_loss" not in stop.epoch_logs[0]  # the cut epoch is not validated
    assert not stopped.epoch_records() and [s["step"] for s in stopped.step_records()] == [1, 2]
    train(config, stopped.path, resume=True, data=data, verbose=0)

    crash = InterruptAt(epoch=1, step=3, how="crash")
    with pytest.raises(RuntimeError, match="died here"):
        train(dataclasses.replace(config, checkpoint_minutes=1e-9), crashed.path, data=data, verbose=0,
              callbacks=[crash])
    assert "val_loss" in crash.epoch_logs[0]
    assert crashed.checkpoint_state()["epochs_completed"] == 1 and crashed.checkpoint_state()["steps_completed"] == 2
    train(config, crashed.path, resume=True, data=data, verbose=0)

    expected = final_weights(whole)
    for run, resumed_at in ((stopped, {0: 2}), (crashed, {1: 2})):
        assert run.read_status()["state"] == "finished"
        # Two Adam steps more or less (an epoch redone from its start) move weights by ~1e-3: far outside this.
        for got, want in zip(final_weights(run), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert [s["global_step"] for s in run.step_records()] == list(range(1, 9))  # each step once
        assert {e["epoch"]: e.get("resumed_at_step") for e in run.epoch_records()} == {0: None, 1: None, **resumed_at}


def test_a_loss_that_becomes_nan_fails_the_run_and_keeps_the_last_good_checkpoint(mnist, tmp_path):
    run = RunDir(tmp_path / "run")
    # The learning rate grows 1e8-fold an epoch, 0.001 -> 1e5 -> 1e13: a good first epoch, then overflow.
    config = TrainConfig(epochs=3, batch_size=50, lr_decay=1e8, log_every=1)
    with pytest.raises(TrainingDiverged) as failure:
        train(config, run.path, data=small(mnist, 100, 50), verbose=0)
    found = re.fullmatch(r"(validation )?loss became (-?inf|nan) at epoch (\d)(, step [12])?; "
                         r"the last good checkpoint \(epoch (\d)\) is kept", str(failure.value))
    assert found, failure.value
    kept = int(found[5])
    assert kept == int(found[3]) - 1 >= 1
    status = run.read_status()
    assert status["state"] == "failed" and status["message"] == str(failure.value)

    # Nothing of the broken epoch is kept: no record, no checkpoint, no final model; what is kept is finite.
    assert [r["epoch"] for r in run.epoch_records()] == list(range(kept))
    assert run.checkpoint_state()["epochs_completed"] == kept
    with h5py.File(run.last_checkpoint, "r") as f:
        assert f["optimizer/vars/0"][()] == 2 * kept  # Adam's step counter: the checkpoint was not written again
        arrays = []
        f.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    assert arrays and all(np.isfinite(a).all() for a in arrays)
    assert all(np.isfinite(w).all() for w in load_capsnet(run.best_checkpoint).get_weights())
    assert not run.final_model.exists()


def test_predictor_matches_the_batch_model(random_model, mnist):
    net = load_capsnet(random_model)
    predictor = Predictor(net)
    image = mnist.x_test[0] / 255.0
    single = predictor.predict(image)
    lengths, recon, capsules = predict_all(net, mnist.x_test[:1])
    np.testing.assert_allclose(single.lengths, lengths[0], atol=1e-5)
    np.testing.assert_allclose(single.capsules, capsules[0], atol=1e-5)
    np.testing.assert_allclose(single.reconstruction, recon[0], atol=1e-5)
    # Decoding the unedited winning capsule reproduces the reconstruction.
    np.testing.assert_allclose(predictor.decode(single.capsules, single.digit), single.reconstruction, atol=1e-5)
    couplings = predictor.couplings(image)
    assert couplings.shape == (3, 10, 1152)
    np.testing.assert_allclose(couplings.sum(axis=1), 1.0, atol=1e-5)


def test_fashion_mnist_and_the_baseline_cnn_train_through_the_same_recipe(tmp_path):
    """Fashion-MNIST from Debian's package, a short run for each network kind: the run records its dataset, and the
    CNN's files load through the one loading path as a CNN (test accuracy after 3 epochs of 600 images: > 30%)."""
    from capsnet.baseline import BaselineCNN
    from capsnet.config import CNNConfig
    from capsnet.data import load_dataset
    from capsnet.evaluate import class_scores
    from capsnet.inference import load_network

    fashion = load_dataset("fashion_mnist", allow_download=False)
    data = Dataset(fashion.x_train[:600], fashion.y_train[:600], fashion.x_test[:200], fashion.y_test[:200],
                   fashion.source)
    for name, model in (("capsnet", ModelConfig(conv_filters=32, primary_channels=4, decoder_units=(64, 128))),
                        ("cnn", CNNConfig())):
        run = RunDir(tmp_path / name)
        train(TrainConfig(dataset="fashion_mnist", epochs=3, batch_size=50, model=model), run.path, data=data,
              verbose=0)
        assert run.read_config()["dataset"] == "fashion_mnist" and run.read_status()["state"] == "finished"
        net = load_network(run.final_model)
        assert isinstance(net, BaselineCNN) == (name == "cnn")
        accuracy = accuracy_report(class_scores(net, data.x_test), data.y_test)["accuracy"]
        assert accuracy > 0.3, (name, accuracy)  # ten classes: chance is 0.1 (measured: 0.385 for the narrow CapsNet)
