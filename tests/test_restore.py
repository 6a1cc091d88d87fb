"""A run directory lost with its machine is rebuilt from the interim model it shipped (`capsnet.tools.restore`), and
training goes on from there: the next epoch, the run's own schedule, and a card that counts everything."""

import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest

from capsnet.config import ModelConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.inference import load_network
from capsnet.losses import compile_for_training
from capsnet.model import build_network
from capsnet.rundir import RunDir
from capsnet.tools.publish import publish
from capsnet.tools.restore import restore_run
from capsnet.train import restore_training_state, train

pytestmark = pytest.mark.slow  # three short trainings and two publications


class StopInSecondEpoch(keras.callbacks.Callback):
    """SIGTERM after the first step of the second epoch, as a session's end or the Train page's Stop sends it."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_lost_run_continues_from_its_shipped_interim_model(mnist, tmp_path):
    data = Dataset(mnist.x_train[:200], mnist.y_train[:200], mnist.x_test, mnist.y_test, mnist.source)
    config = TrainConfig(epochs=3, batch_size=50, model=ModelConfig(conv_filters=16, primary_channels=4,
                                                                    decoder_units=(32, 64)))
    lost = tmp_path / "lost"
    train(config, lost, data=data, verbose=0, callbacks=[StopInSecondEpoch()])
    assert RunDir(lost).read_raw_status()["state"] == "stopped"
    model, card_path = tmp_path / "assets" / "capsnet.keras", tmp_path / "assets" / "model_card.json"
    shipped = publish(lost, model, card_path, sweep_digits=20, unfinished=True)
    assert shipped["interim"]["checkpoint_epoch"] == 1
    shutil.rmtree(lost)  # the machine is gone; the repository kept the model and its card

    run = restore_run(model, card_path, tmp_path / "again")
    status = run.read_raw_status()
    assert status["state"] == "stopped" and "end of epoch 1" in status["message"]
    assert run.checkpoint_state()["epochs_completed"] == 1 and run.checkpoint_position() == "the end of epoch 1"
    assert [r["val_accuracy"] for r in run.read_log_csv()] == [pytest.approx(shipped["best_val_accuracy"])]
    with pytest.raises(FileExistsError, match="already holds a run"):
        restore_run(model, card_path, run.path)

    # The checkpoint --resume loads holds the shipped weights (and an optimizer ready for them).
    restored = build_network(config.model, "float32")
    compile_for_training(restored.train, config.lr, config.lam_recon, config.model.input_shape, 1)
    restore_training_state(restored.train, run.last_checkpoint)
    for kept, loaded in zip(load_network(model).eval.get_weights(), restored.eval.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, loaded)

    train(TrainConfig.load(run.config_file), run.path, resume=True, data=data, verbose=0)
    epochs = run.epoch_records()
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and epochs[0].get("restored")
    assert [round(r["lr"], 8) for r in epochs] == [round(config.lr * config.lr_decay ** e, 8) for e in range(3)]
    assert run.read_raw_status()["state"] == "finished"

    card = publish(run.path, tmp_path / "final.keras", tmp_path / "final_card.json", sweep_digits=20)
    # The command that makes the run again, in the folder it now lives in.
    assert card["command"] == shipped["command"].replace("--save_dir lost", "--save_dir again")
    assert "--epochs 3 --batch_size 50" in card["command"] and "interim" not in card
    assert card["epochs_trained"] == 3 and card["training"]["sessions"] == shipped["training"]["sessions"] + 1
    # Its time: the lost run's, as its card gave it, and the epochs trained since.
    since = sum(r["seconds"] for r in epochs if not r.get("restored"))
    assert card["training"]["seconds"] == pytest.approx(shipped["training"]["seconds"] + since, abs=0.2)
    assert card["training"]["restored_from"]["epochs"] == 1
    assert json.loads(card_path.read_text())["interim"]["checkpoint_epoch"] == 1


def test_a_finished_model_has_nothing_to_restore(tmp_path):
    card = {"config": json.loads(TrainConfig().to_json())}  # no "interim": the card of a finished run
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="finished run"):
        restore_run(tmp_path / "model.keras", tmp_path / "card.json", tmp_path / "run")
    assert not (tmp_path / "run").exists()
