"""Ship a finished run as the pretrained model: `python -m capsnet.publish RUN_DIR`.

Saves the run's final model as `assets/capsnet.keras` and writes `assets/model_card.json`: the command,
config, epochs, test accuracy and error on all 10,000 MNIST test images (measured here, through the same loading
path the app uses), per-class accuracy, the data's source and fingerprint, training time, device, sessions and the
git commit of the training code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from capsnet.data import Dataset, load_dataset
from capsnet.evaluate import accuracy_report, predict_all
from capsnet.inference import PRETRAINED_CARD, PRETRAINED_MODEL, load_capsnet
from capsnet.model import save_model
from capsnet.rundir import RunDir


def data_fingerprint(data: Dataset) -> str:
    """sha256 over the four arrays' bytes: the same for every source that yields the same images."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train.astype(np.uint8), data.x_test, data.y_test.astype(np.uint8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def model_card(run: RunDir, report: dict, data: Dataset, model_name: str) -> dict:
    config = run.read_config()
    status = run.read_raw_status()
    epochs = run.epoch_records()
    sessions = status.get("sessions", [])
    commits = sorted({s["git_commit"] for s in sessions if s.get("git_commit")})
    return {
        "model": model_name,
        "command": f"python -m capsnet train --save_dir {run.name}",
        # Each later session continued the same run where the previous one was stopped.
        "resume_command": f"python -m capsnet train --resume --save_dir {run.name}" if len(sessions) > 1 else None,
        "config": config,
        "epochs_trained": len(epochs),
        "test_accuracy": report["accuracy"],
        "test_error_percent": round(100 * report["error"], 4),
        "test_errors": report["errors"],
        "test_images": report["count"],
        "per_class_accuracy": report["per_class_accuracy"],
        # As in the reference, the validation set during training is the MNIST test set.
        "best_val_accuracy": max((e.get("val_accuracy", 0) for e in epochs), default=None),
        "data": {"dataset": config.get("dataset", "mnist"), "source": data.source,
                 "sha256_of_arrays": data_fingerprint(data)},
        "training": {
            "seconds": round(sum(e.get("seconds", 0) for e in epochs), 1),
            "device": status.get("device"),
            "sessions": len(sessions),
            "git_commits": commits,
            "per_session": [{key: s.get(key) for key in ("initial_epoch", "git_commit", "device")} for s in sessions],
        },
        "date": time.strftime("%Y-%m-%d"),
    }


def publish(run_dir: str | Path, model_path: Path = PRETRAINED_MODEL, card_path: Path = PRETRAINED_CARD) -> dict:
    run = RunDir(run_dir)
    final = run.best_model() if run.read_raw_status().get("state") == "finished" else None
    if final is None:
        raise FileNotFoundError(f"{run.path} holds no final model: the run has not finished")
    config = run.read_config()
    data = load_dataset(config.get("dataset", "mnist"))
    net = load_capsnet(final)
    lengths, _, _ = predict_all(net, data.x_test)
    report = accuracy_report(lengths, data.y_test)
    save_model(net, model_path)
    card = model_card(run, report, data, model_path.name)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description="Ship a finished run as the pretrained model in assets/.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    card = publish(args.run_dir)
    print(f"test error {card['test_error_percent']:.2f}% ({card['test_errors']} of {card['test_images']}) "
          f"after {card['epochs_trained']} epochs -> {PRETRAINED_MODEL}")


if __name__ == "__main__":
    main()
