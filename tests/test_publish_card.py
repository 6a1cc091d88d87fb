"""What a model card says of its training: the command that makes the run again, and for an interim model the
epochs up to its checkpoint, not the run's later ones."""

import json

import numpy as np

from capsnet.config import CNNConfig, TrainConfig
from capsnet.data import Dataset
from capsnet.rundir import RunDir
from capsnet.tools.publish import best_epoch, model_card, schedule_commands, train_command, weights_in


def test_the_best_epoch_is_the_first_of_equals():
    assert best_epoch([{"val_accuracy": 0.5}, {"val_accuracy": 0.7}, {"val_accuracy": 0.6}]) == 1
    assert best_epoch([{"val_accuracy": 0.7}, {}, {"val_accuracy": 0.7}]) == 0


def test_an_interim_card_counts_the_epochs_and_seconds_of_its_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config_file.write_text(json.dumps({"dataset": "mnist", "epochs": 50, "lr": 0.001, "lr_decay": 0.9}))
    run.write_status("running", sessions=[{"initial_epoch": 0, "git_commit": "abc"}])
    for epoch, (accuracy, seconds) in enumerate([(0.5, 10.0), (0.7, 20.0), (0.6, 40.0)]):
        run.append_metrics({"kind": "epoch", "epoch": epoch, "val_accuracy": accuracy, "seconds": seconds})
    epochs = run.epoch_records()
    data = Dataset(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64), np.zeros((2, 28, 28), np.uint8),
                   np.zeros(2, np.int64), "test")
    report = {"accuracy": 0.7, "error": 0.3, "errors": 3, "count": 10, "per_class_accuracy": {}}

    card = model_card(run, report, data, "m.keras", 1, {}, epochs[:best_epoch(epochs) + 1])
    assert (card["epochs_trained"], card["training"]["seconds"], card["best_val_accuracy"]) == (2, 30.0, 0.7)
    whole = model_card(run, report, data, "m.keras", 1, {})  # a finished run's: all of it
    assert (whole["epochs_trained"], whole["training"]["seconds"]) == (3, 70.0)


def test_the_command_names_what_differs_from_the_datasets_defaults():
    config = json.loads(TrainConfig(dataset="multimnist", lr_decay=0.9, epochs=20, log_every=5).to_json())
    assert train_command(config, "mm", "assets/capsnet.keras") == (
        "python -m capsnet train --dataset multimnist -w assets/capsnet.keras --epochs 20 --lr_decay 0.9 "
        "--save_dir mm")
    assert train_command(json.loads(TrainConfig().to_json()), "r") == "python -m capsnet train --save_dir r"
    cnn = json.loads(TrainConfig(model=CNNConfig(), lam_recon=0.0).to_json())
    assert train_command(cnn, "c") == "python -m capsnet train --model cnn --lam_recon 0 --save_dir c"
    changed = json.loads(TrainConfig().with_lr_change(11, lr_decay=0.99).to_json())
    assert schedule_commands(changed, "r") == [
        "after epoch 11: python -m capsnet train --resume --lr 0.000313811 --lr_decay 0.99 --save_dir r"]
    assert weights_in("python -m capsnet train -w 'a b.keras' --save_dir x") == "a b.keras"
    assert weights_in("python -m capsnet train --save_dir x") is None
