"""Continue a shipped interim model's training when its run directory is gone:
`python -m capsnet.tools.restore multimnist RUN_DIR`, then `python -m capsnet train --resume --save_dir RUN_DIR`.

A long training lives in a run directory outside the repository, across sessions; a machine that is replaced loses
it, and with it every epoch since the last `publish --unfinished`. What that publication shipped is enough to go on:
the model (weights and architecture) and its card (the run's config, the epochs it covers, their validation
figures, the time and sessions they took). This rebuilds a run directory from the two, as `capsnet.rundir` lays it
out, so that `--resume` continues at the next epoch with the run's own learning-rate schedule and data order, and a
later publication's card counts every epoch and second from the start.

What the card does not hold is the optimizer's state: Adam starts again with zero moments and a zero step count
(its bias correction makes that a clean restart, not a jump), which the run's status and every later card say.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from capsnet.assets import SHIPPED
from capsnet.config import TrainConfig, digits_per_image
from capsnet.files import write_text
from capsnet.inference import ModelLoadError, load_network
from capsnet.losses import compile_for_training
from capsnet.model import CapsNet, build_network
from capsnet.rundir import RunDir
from capsnet.transfer import initial_weights


def epoch_records(card: dict, epochs: int) -> list[dict]:
    """The epoch records of metrics.jsonl as far as the card knows them: each epoch's validation accuracy where it
    has an error-vs-pairs curve (MultiMNIST), the checkpoint's own for its last epoch in any case, and the learning
    rate the schedule gave it. Losses and per-epoch times were not published, so they stay out."""
    config = TrainConfig.from_dict(card["config"])
    errors = [error for _, error in card.get("error_vs_pairs_seen", [])][:epochs]
    records = []
    for epoch in range(epochs):
        record = {"kind": "epoch", "epoch": epoch, "lr": config.learning_rate(epoch), "restored": True}
        if epoch < len(errors):
            record["val_accuracy"] = round(1 - errors[epoch], 6)
        records.append(record)
    records[-1]["val_accuracy"] = card["best_val_accuracy"]
    return records


def restore_run(model_path: Path, card_path: Path, run_dir: str | Path) -> RunDir:
    """Rebuild `run_dir` from a model shipped with `publish --unfinished` and its card; see the module's docstring."""
    card = json.loads(Path(card_path).read_text())
    interim = card.get("interim")
    if not interim:
        raise ValueError(f"{card_path} is the card of a finished run: there is nothing to continue")
    run = RunDir(run_dir)
    if run.exists():
        raise FileExistsError(f"{run.path} already holds a run: resume it, or restore into another folder")
    epochs = interim["checkpoint_epoch"]
    config = TrainConfig.from_dict(card["config"])
    net = load_network(model_path)
    if not isinstance(net, CapsNet) or net.config.input_shape != config.model.input_shape:
        raise ValueError(f"{model_path} is not the model its card {card_path} describes")

    run.path.mkdir(parents=True)
    write_text(run.config_file, json.dumps(card["config"], indent=2))
    # The training network with a freshly built optimizer: the checkpoint then holds every slot --resume fills.
    trainee = build_network(config.model, "float32")
    compile_for_training(trainee.train, config.lr, config.lam_recon, config.model.input_shape,
                         digits_per_image(config.dataset))
    initial_weights(trainee, net)
    trainee.train.optimizer.build(trainee.train.trainable_variables)
    run.checkpoint_dir.mkdir()
    run.save_checkpoint(trainee.train.save_weights, epochs, card["best_val_accuracy"])
    shutil.copyfile(model_path, run.best_checkpoint)
    write_text(run.metrics_file, "".join(json.dumps(r) + "\n" for r in epoch_records(card, epochs)))
    run.write_epoch_log()

    training = card.get("training", {})
    restored = {"model": Path(model_path).name, "card_date": card.get("date"), "epochs": epochs,
                "training_seconds": training.get("seconds", 0.0), "command": card.get("command"),
                "restored": time.time(), "optimizer": "restarted: Adam's moments and step count from zero"}
    sessions = [{**session, "restored": True} for session in training.get("per_session", [])]
    run.write_status("stopped", sessions=sessions, restored_from=restored,
                     device=training.get("device"), precision=training.get("precision"),
                     message=f"restored from {restored['model']}; resume continues from "
                             f"{run.checkpoint_position()} with a fresh optimizer state")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild a run directory from a shipped interim model and its "
                                                 "card, to continue its training with --resume.")
    parser.add_argument("target", choices=SHIPPED, help="which shipped model")
    parser.add_argument("run_dir", type=Path, help="the run directory to create")
    args = parser.parse_args()
    try:
        run = restore_run(*SHIPPED[args.target], args.run_dir)
    except (OSError, ValueError, KeyError, ModelLoadError) as error:  # no model or card, a finished one, a run
        parser.exit(2, f"error: {error}\n")
    print(f"{run.path}: {run.read_raw_status()['message']}; continue with\n"
          f"  python -m capsnet train --resume --save_dir {run.path}")


if __name__ == "__main__":
    main()
