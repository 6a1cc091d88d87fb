"""Ship a finished run as a model in assets/: `python -m capsnet.tools.publish RUN_DIR`.

Saves the run's final model where the app and the CLI look for its kind (SHIPPED: an MNIST CapsNet as
`assets/capsnet.keras`, a Fashion-MNIST CapsNet as `assets/capsnet_fashion.keras`, the baseline CNN as
`assets/cnn.keras`) and writes its card beside it: the command, config, parameter count, epochs, test accuracy and
error on all 10,000 test images (measured here, through the same loading path the app uses), per-class accuracy,
accuracy under affine transformations (`capsnet.affine`: what the Robustness page shows), the data's source and
fingerprint, training time, device, sessions and the git commit of the training code.
`python -m capsnet.tools.publish --sweeps-only --target capsnet|fashion|cnn` measures the affine sweeps of a shipped
model again and writes them into its card, leaving the rest of the card as it is; `--attacks-only` does the same for the
attack curves (`capsnet.attack`: FGSM and PGD over epsilon, and detection by reconstruction, for the Attack page);
`--routings-only` the test error at 1 and 3 routing iterations at inference.
`python -m capsnet.tools.publish --variant v1 RUN_DIR` publishes one of the routing x reconstruction variants
(`capsnet.variants`): its card (with the errors at 1 and 3 routings and the affine sweeps), `log.csv` and `log.png`
go to `docs/results/variants/v1/`; the model is not shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from capsnet import multimnist
from capsnet.affine import SWEEP_DIGITS, accuracy_sweeps
from capsnet.assets import PRETRAINED_CARD, PRETRAINED_MODEL, SHIPPED
from capsnet.attack import attack_card_entries
from capsnet.config import TrainConfig, digits_per_image, train_parameters
from capsnet.data import Dataset, load_dataset
from capsnet.evaluate import accuracy_report, class_scores
from capsnet.imaging import to_uint8
from capsnet.inference import load_network, rerouted
from capsnet.model import save_model
from capsnet.rundir import RunDir
from capsnet.variants import BY_NAME, Variant


def target_of(config: dict) -> str:
    """Which shipped model a run's config.json makes it: the baseline CNN, or a CapsNet by its dataset."""
    if config.get("model", {}).get("kind") == "cnn":
        return "cnn"
    return {"fashion_mnist": "fashion", "multimnist": "multimnist"}.get(config.get("dataset"), "capsnet")


def data_fingerprint(data: Dataset) -> str:
    """sha256 over the four arrays' bytes: the same for every source that yields the same images."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train.astype(np.uint8), data.x_test, data.y_test.astype(np.uint8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def affine_card_entries(net, data: Dataset, digits: int = SWEEP_DIGITS) -> dict:
    """The card's accuracy under each affine sweep (capsnet.affine) on the first `digits` test digits."""
    sweeps = accuracy_sweeps(lambda batch: class_scores(net, to_uint8(batch)), data.x_test[:digits],
                             data.y_test[:digits])
    return {"affine_sweeps": sweeps, "affine_sweeps_test_digits": digits}


def routing_card_entries(net, data: Dataset, routings: tuple[int, ...] = (1, 3)) -> dict:
    """The card's test error on all test images with the network re-routed at inference (`-r`): what routing
    iterations buy once the weights are trained."""
    errors = {}
    for count in routings:
        routed = net if count == net.config.routings else rerouted(net, count)
        errors[str(count)] = round(100 * accuracy_report(class_scores(routed, data.x_test), data.y_test)["error"], 4)
    return {"test_error_percent_by_routings": errors}


def pair_card_entries(config: dict, epochs: list[dict], covered: int, net, data: Dataset) -> tuple[dict, dict]:
    """A MultiMNIST model, trained in the first `covered` of its run's `epochs`, on the fixed test pairs
    (capsnet.multimnist): the report the card's accuracy fields come from, and the card's own entries: the test set's
    identity, at-least-one accuracy, pairs seen, and the run's error against pairs seen (all its epochs)."""
    pairs = multimnist.test_pairs(data.x_test, data.y_test)
    report = multimnist.pair_report(class_scores(net, pairs.images), pairs.labels)
    pairs_per_epoch = len(data.x_train[:config.get("subset") or None]) // config.get("batch_size", 100) * \
        config.get("batch_size", 100)
    curve = [[(r["epoch"] + 1) * pairs_per_epoch, round(1 - r["val_accuracy"], 6)] for r in epochs
             if r.get("val_accuracy") is not None]
    return report, {
        "test_error": report["error"],
        "at_least_one_accuracy": report["at_least_one_accuracy"],
        "test_set": {"pairs": len(pairs), "seed": multimnist.TEST_SEED, "sha256": pairs.checksum(),
                     "rule": "two MNIST test digits of different classes, each shifted by up to 4 px in a 36x36 "
                             "frame, min(a + b, 255)"},
        "pairs_seen": covered * pairs_per_epoch,
        "error_vs_pairs_seen": curve,
    }


OPERATIONAL = ("log_every", "checkpoint_minutes", "debug")  # flags that leave the trained model as it is


def train_command(config: dict, run_name: str, weights: str | None = None) -> str:
    """The `python -m capsnet train` that makes a run of `config` again: the dataset, the model kind, the starting
    weights and every parameter that differs from the CLI's default for that dataset."""
    defaults = TrainConfig(dataset=config.get("dataset", "mnist"))
    cnn = config.get("model", {}).get("kind") == "cnn"
    flags = ["--model cnn"] if cnn else []
    flags += [f"--dataset {defaults.dataset}"] if defaults.dataset != "mnist" else []
    flags += [f"-w {weights}"] if weights else []
    for name in train_parameters():
        if name in ("dataset", *OPERATIONAL) or (name == "routings" and cnn):
            continue
        value = config.get("model", {}).get(name) if name == "routings" else config.get(name)
        default = defaults.model.routings if name == "routings" else getattr(defaults, name)
        if value is not None and value != default:
            flags.append(f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}")
    return " ".join(["python -m capsnet train", *flags, f"--save_dir {run_name}"])


def schedule_commands(config: dict, run_name: str) -> list[str]:
    """How each change of the learning-rate schedule (`TrainConfig.with_lr_change`) was made."""
    return [f"after epoch {change['epoch']}: python -m capsnet train --resume --lr {change['lr']:.6g} "
            f"--lr_decay {change['lr_decay']:g} --save_dir {run_name}" for change in config.get("lr_changes", [])]


def weights_in(command: str | None) -> str | None:
    """The `-w` of a command line, if it has one."""
    words = shlex.split(command or "")
    return words[words.index("-w") + 1] if "-w" in words[:-1] else None


def model_card(run: RunDir, report: dict, data: Dataset, model_name: str, parameters: int, robustness: dict,
               epochs: list[dict] | None = None) -> dict:
    """The card of the model `run` trained in `epochs` (default: all of the run's epoch records)."""
    config = run.read_config()
    status = run.read_raw_status()
    epochs = run.epoch_records() if epochs is None else epochs
    sessions = status.get("sessions", [])
    commits = sorted({s["git_commit"] for s in sessions if s.get("git_commit")})
    # A run rebuilt from an earlier card (capsnet.tools.restore) carries that run's start and training time.
    restored = status.get("restored_from") or {}
    start = next((s.get("initial_weights") for s in sessions if s.get("initial_weights")), None)
    start = start or weights_in(restored.get("command"))  # started from a trained model (capsnet.transfer)
    return {
        "model": model_name,
        "command": train_command(config, run.name, start),
        # Each later session continued the same run where the previous one was stopped.
        "resume_command": f"python -m capsnet train --resume --save_dir {run.name}" if len(sessions) > 1 else None,
        **({"schedule_commands": schedule_commands(config, run.name)} if config.get("lr_changes") else {}),
        "config": config,
        "parameters": parameters,
        "epochs_trained": len(epochs),
        "test_accuracy": report["accuracy"],
        "test_error_percent": round(100 * report["error"], 4),
        "test_errors": report["errors"],
        "test_images": report["count"],
        "per_class_accuracy": report["per_class_accuracy"],
        # As in the reference, the validation set during training is the dataset's test set.
        "best_val_accuracy": max((e.get("val_accuracy", 0) for e in epochs), default=None),
        **robustness,
        "data": {"dataset": config.get("dataset", "mnist"), "source": data.source,
                 "sha256_of_arrays": data_fingerprint(data)},
        "training": {
            "seconds": round(sum(e.get("seconds") or 0 for e in epochs) + restored.get("training_seconds", 0), 1),
            "device": status.get("device"),
            "sessions": len(sessions),
            "git_commits": commits,
            "precision": status.get("precision"),  # what the last session computed in, and why
            "per_session": [{key: s.get(key) for key in ("initial_epoch", "git_commit", "device", "precision")}
                            for s in sessions],
            **({"restored_from": restored} if restored else {}),
        },
        "date": time.strftime("%Y-%m-%d"),
    }


def publish(run_dir: str | Path, model_path: Path = PRETRAINED_MODEL, card_path: Path = PRETRAINED_CARD,
            sweep_digits: int = SWEEP_DIGITS, unfinished: bool = False) -> dict:
    """Ship the run's final model, or with `unfinished` the best checkpoint of a run that is still training or was
    stopped: its card then says so (`interim`: the checkpoint's epoch of those planned), and the test figure is
    checked against that epoch's validation, which ran on the same test set."""
    run = RunDir(run_dir)
    state = run.read_raw_status().get("state")
    epochs = run.epoch_records()  # before the model: a live run may finish another epoch while this one measures
    final = run.best_model() if state == "finished" or (unfinished and epochs) else None
    if final is None:
        raise FileNotFoundError(f"{run.path} holds no final model: the run has not finished"
                                + ("" if unfinished else " (--unfinished ships its best checkpoint so far)"))
    written = final.stat().st_mtime_ns  # a live run may replace its best checkpoint while this one measures
    config = run.read_config()
    data = load_dataset(config.get("dataset", "mnist"))
    net = load_network(final)
    # The shipped file names its dataset even where the run's own model file predates that.
    net.model_config = dataclasses.replace(net.config, dataset=config.get("dataset", "mnist"))
    # What the shipped file was trained in: all of a finished run's epochs, up to the best one of an unfinished run.
    covered = epochs if state == "finished" else epochs[:best_epoch(epochs) + 1]
    if digits_per_image(net.config.dataset) > 1:  # MultiMNIST: pairs, the paper's metric, no single-digit sweeps
        report, extra = pair_card_entries(config, epochs, len(covered), net, data)
    else:
        report = accuracy_report(class_scores(net, data.x_test), data.y_test)
        # The attack curves on as many digits as the affine sweeps (a test publishes a tiny run on a few).
        extra = affine_card_entries(net, data, sweep_digits) | attack_card_entries(net, data, sweep_digits)
    if state != "finished":
        extra["interim"] = interim_entry(run, epochs, final.stat().st_mtime_ns != written, config, state)
    save_model(net, model_path)
    card = model_card(run, report, data, model_path.name, net.eval.count_params(), extra, covered)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def interim_entry(run: RunDir, epochs: list[dict], replaced: bool, config: dict, state: str | None) -> dict:
    """What an unfinished run's card says of itself: the best checkpoint is the epoch of the best validation, unless
    the run finished another epoch, or `replaced` its best checkpoint, while it was measured. (Validation ran on the
    same test set, but in the run's own precision: under mixed bfloat16 its figure differs a little from the float32
    one measured here.)"""
    if replaced or len(run.epoch_records()) != len(epochs):
        raise RuntimeError(f"{run.path}'s best checkpoint changed while it was measured: publish again")
    return {"checkpoint_epoch": best_epoch(epochs) + 1, "epochs_planned": config.get("epochs"), "run_state": state,
            "run_epochs": len(epochs)}


def best_epoch(epochs: list[dict]) -> int:
    """The position in `epochs` of the best validation accuracy: the epoch `checkpoints/best.keras` holds (the
    first of equals, as the checkpoint is replaced only by a better one)."""
    accuracies = [record.get("val_accuracy") or 0 for record in epochs]
    return accuracies.index(max(accuracies))


def publish_variant(run_dir: str | Path, variant: Variant, folder: Path | None = None,
                    sweep_digits: int = SWEEP_DIGITS) -> dict:
    """A finished MNIST run of `variant` into `folder` (default: the variant's own under docs/results/variants):
    its card, log.csv and log.png. The run must be the variant: its routings and reconstruction weight are checked,
    so that no table row holds another variant's figure."""
    run = RunDir(run_dir)
    final = run.best_model() if run.read_raw_status().get("state") == "finished" else None
    if final is None:
        raise FileNotFoundError(f"{run.path} holds no final model: the run has not finished")
    config = run.read_config()
    made = {"routings": config.get("model", {}).get("routings"), "lam_recon": config.get("lam_recon")}
    if config.get("dataset", "mnist") != "mnist" or config.get("model", {}).get("kind") == "cnn" or \
            made != variant.parameters:
        raise ValueError(f"{run.path} is not {variant.title} ({variant.flags} on MNIST): it was trained with "
                         f"dataset {config.get('dataset', 'mnist')}, routings {made['routings']}, "
                         f"lam_recon {made['lam_recon']}")
    data = load_dataset("mnist")
    net = load_network(final)
    report = accuracy_report(class_scores(net, data.x_test), data.y_test)
    extra = routing_card_entries(net, data) | affine_card_entries(net, data, sweep_digits)
    card = {"variant": variant.name, **model_card(run, report, data, None, net.eval.count_params(), extra)}
    folder = folder or variant.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    for name in ("log.csv", "log.png"):
        if (run.path / name).is_file():
            shutil.copyfile(run.path / name, folder / name)
    return card


def remeasure(model_path: Path, card_path: Path, entries: Callable[..., dict]) -> dict:
    """Measure a shipped model's `entries` (`affine_card_entries` or `attack_card_entries`) again, into its card."""
    card = json.loads(card_path.read_text())
    data = load_dataset(card.get("config", {}).get("dataset", "mnist"))
    card.update(entries(load_network(model_path), data))
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description="Ship a finished run as a model in assets/.")
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--target", choices=SHIPPED,
                        help="which shipped model to write (default: the run's kind: a CNN run is the baseline, a "
                             "CapsNet run the MNIST or the Fashion-MNIST model by its dataset)")
    parser.add_argument("--sweeps-only", action="store_true",
                        help="re-measure the affine sweeps of the shipped model --target (default capsnet)")
    parser.add_argument("--variant", choices=[name for name in BY_NAME],
                        help="publish RUN_DIR as this routing x reconstruction variant: its card and logs into "
                             "docs/results/variants/<variant>/, no model shipped")
    parser.add_argument("--routings-only", action="store_true",
                        help="re-measure the test error at 1 and 3 routing iterations of the shipped model --target "
                             "(default capsnet)")
    parser.add_argument("--unfinished", action="store_true",
                        help="ship the best checkpoint of RUN_DIR though it has not finished (still training or "
                             "stopped); its card says which epoch of how many")
    parser.add_argument("--attacks-only", action="store_true",
                        help="re-measure the attack curves (FGSM, PGD, detection by reconstruction) of the shipped "
                             "model --target (default capsnet)")
    args = parser.parse_args()
    if args.sweeps_only:
        card = remeasure(*SHIPPED[args.target or "capsnet"], affine_card_entries)
        print(json.dumps(card["affine_sweeps"]))
        return
    if args.attacks_only:
        card = remeasure(*SHIPPED[args.target or "capsnet"], attack_card_entries)
        print(json.dumps(card.get("attack_curves")))
        return
    if args.routings_only:
        card = remeasure(*SHIPPED[args.target or "capsnet"], routing_card_entries)
        print(json.dumps(card["test_error_percent_by_routings"]))
        return
    if args.run_dir is None:
        parser.error("give the run directory to publish (or --sweeps-only)")
    if args.variant:
        card = publish_variant(args.run_dir, BY_NAME[args.variant])
        print(f"{BY_NAME[args.variant].title}: test error {card['test_error_percent']:.2f}% after "
              f"{card['epochs_trained']} epochs, {card['test_error_percent_by_routings']} by routing iterations")
        return
    model_path, card_path = SHIPPED[args.target or target_of(RunDir(args.run_dir).read_config())]
    card = publish(args.run_dir, model_path, card_path, unfinished=args.unfinished)
    print(f"test error {card['test_error_percent']:.2f}% ({card['test_errors']} of {card['test_images']}) "
          f"after {card['epochs_trained']} epochs -> {model_path}")


if __name__ == "__main__":
    main()
