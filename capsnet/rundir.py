"""The run directory: everything one training run writes, and the one reader the CLI and the app share.

    <run>/config.json                   every hyperparameter (TrainConfig)
    <run>/status.json                   state, pid, epoch, message; replaced atomically (temp file + rename)
    <run>/metrics.jsonl                 one JSON object per `log_every` steps ("kind": "step") and per epoch ("epoch")
    <run>/log.csv, log.png              per-epoch losses, accuracies and learning rate, regenerated from metrics.jsonl
    <run>/checkpoints/last.weights.h5   training state at the last epoch's end, graceful stop or `checkpoint_minutes`
                                        mark: weights, optimizer and, in the same file, the epochs and steps it
                                        covers; what --resume loads (the architecture is config.json's)
    <run>/checkpoints/best.keras        the model with the best validation accuracy so far
    <run>/trained_model.keras           the final model (architecture and weights; `capsnet.inference.load_capsnet`)
    <run>/stdout.log                    the process's output, when launched by the app
    <run>/tensorboard/                  TensorBoard logs (with --debug)

Files are replaced whole (written aside, then renamed) and metrics.jsonl grows by appended lines (readers skip a torn
last one), so a process killed at any moment leaves a run that `--resume` continues from the step of its last
checkpoint, losing at most `checkpoint_minutes` of training (or the epoch, where that is shorter).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from capsnet.assets import REPO
from capsnet.files import remove_partial_writes, write_text, written_whole

STATES = ("queued", "running", "stopping", "finished", "stopped", "failed", "interrupted")
ACTIVE_STATES = ("queued", "running", "stopping")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The metrics a run records (metrics.jsonl, log.csv), with what charts call them; validation ones are "val_" + name.
LOSSES = {"loss": "total", "margin_loss": "margin", "recon_loss": "reconstruction"}
ACCURACIES = {"accuracy": "train", "val_accuracy": "validation"}
EPOCH_COLUMNS = ("epoch", *LOSSES, "accuracy", *(f"val_{name}" for name in LOSSES), "val_accuracy", "lr", "seconds")
# Keras names each output's logs after its layer (and the metric); a run records them under the names above.
KERAS_LOG_NAMES = {
    "length_loss": "margin_loss",
    "reconstruction_loss": "recon_loss",
    "length_categorical_accuracy": "accuracy",
    "categorical_accuracy": "accuracy",  # the baseline CNN's single output
    "length_set_accuracy": "accuracy",  # MultiMNIST: both digits right
    "learning_rate": "lr",
}


def run_metrics(logs: dict) -> dict[str, float]:
    """Keras' logs of a step or an epoch under the names a run records."""
    renamed = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        base = key[len(prefix):]
        renamed[prefix + KERAS_LOG_NAMES.get(base, base)] = float(value)
    return renamed
CHECKPOINT_STATE = "capsnet_training_state"  # the attribute of last.weights.h5 that says what it covers


def runs_root() -> Path:
    """Where runs live: $CAPSNET_RUNS_DIR, else runs/ in the repository. The one definition: the CLI's default
    run directory, the Train page's launches and the explorer's model picker all use it."""
    return Path(os.environ.get("CAPSNET_RUNS_DIR") or REPO / "runs").resolve()


def validate_run_name(name: str) -> str:
    """Run names become folder names: letters, digits, '_', '-', '.'; no separators, no '..', no line break (which
    `$` would let through at the end: hence fullmatch)."""
    if not RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid run name {name!r}: use letters, digits, '_', '-' or '.' (at most 80), no '..'")
    return name


def new_run_name(label: str = "") -> str:
    """`<timestamp>-<label>`, the label made a safe part of one folder name whatever was typed: accents dropped
    ("ü" -> "u"), every run of other characters (separators, dots, NUL, line breaks, other scripts) one '-', at
    most 40 characters; a label with nothing left is just the timestamp."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", label) if not unicodedata.combining(c))
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", plain).strip("-")[:40]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return validate_run_name(f"{stamp}-{slug}" if slug else stamp)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a half-written last line (the writer is mid-flush) is skipped."""
    if not path.is_file():
        return []
    records = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    # files
    config_file = property(lambda self: self.path / "config.json")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    log_csv = property(lambda self: self.path / "log.csv")
    log_png = property(lambda self: self.path / "log.png")
    stdout_file = property(lambda self: self.path / "stdout.log")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.weights.h5")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.keras")
    final_model = property(lambda self: self.path / "trained_model.keras")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")

    def exists(self) -> bool:
        # A run launched by the app has a status (queued, with its pid) seconds before training writes its config.
        return self.config_file.is_file() or self.status_file.is_file()

    # config ------------------------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        return json.loads(self.config_file.read_text()) if self.config_file.is_file() else {}

    # status ------------------------------------------------------------------------------------------------
    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        status = {**self.read_raw_status(), **fields, "state": state, "updated": time.time()}
        write_text(self.status_file, json.dumps(status, indent=2))
        return status

    def read_raw_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def read_status(self) -> dict[str, Any]:
        """The status, corrected for a process that died without saying so: an active state whose pid is gone
        reads as `interrupted` (`failed` if it never began training, `stopped` if a stop was asked for)."""
        status = self.read_raw_status()
        if not status:
            return {"state": "interrupted" if self.exists() else "missing"}
        state, pid = status.get("state"), status.get("pid")
        if state not in ACTIVE_STATES or (state == "queued" and not pid) or pid_alive(pid):
            # The trainer rewrites `running` every step; a stop the launcher asked for still reads as `stopping`.
            if state == "running" and status.get("stop_requested"):
                status = {**status, "state": "stopping"}
            return status
        if status.get("stop_requested"):  # SIGTERM before training began ends the process without a word
            return {**status, "state": "stopped", "message": "stopped by request"}
        if state == "queued":
            return {**status, "state": "failed", "message": "the training process exited before training began"}
        return {**status, "state": "interrupted",
                "message": "the training process ended without writing a final status"}

    # metrics -----------------------------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_file)

    def epoch_records(self) -> list[dict[str, Any]]:
        return [r for r in self.read_metrics() if r.get("kind") == "epoch"]

    def step_records(self) -> list[dict[str, Any]]:
        return [r for r in self.read_metrics() if r.get("kind") == "step"]

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_metrics(self, epochs_completed: int, steps_completed: int = 0) -> None:
        """Drop records of the steps and epochs the checkpoint does not cover (and a torn last line), so a resumed
        run logs them once; log.csv follows when it loses an epoch."""
        def covered(record: dict[str, Any]) -> bool:
            epoch = record.get("epoch", 0)
            return epoch < epochs_completed or (
                epoch == epochs_completed and record.get("kind") == "step" and record.get("step", 0) <= steps_completed)

        records = self.read_metrics()
        write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in records if covered(r)))
        if any(r.get("kind") == "epoch" and not covered(r) for r in records):
            self.write_epoch_log()

    def write_epoch_log(self) -> None:
        """log.csv (and log.png, if matplotlib is installed) from the epoch records."""
        epochs = self.epoch_records()
        buffer = [",".join(EPOCH_COLUMNS)]
        for record in epochs:
            buffer.append(",".join("" if record.get(c) is None else f"{record[c]:.6g}" for c in EPOCH_COLUMNS))
        write_text(self.log_csv, "\n".join(buffer) + "\n")
        if epochs:
            from capsnet.runplot import plot_epoch_log  # Matplotlib, only where a run writes its plot

            plot_epoch_log(epochs, self.log_png, [*LOSSES, "val_loss"], list(ACCURACIES))
        else:  # a run that starts over
            self.log_png.unlink(missing_ok=True)

    def read_log_csv(self) -> list[dict[str, float]]:
        if not self.log_csv.is_file():
            return []
        with open(self.log_csv) as f:
            return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]

    def stdout_tail(self, lines: int = 20) -> str:
        """The last lines of stdout.log as a terminal would show them: a progress bar redrawn with \\r or \\b
        keeps only its final state, colour codes are dropped."""
        if not self.stdout_file.is_file():
            return ""
        with open(self.stdout_file, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
            text = ANSI_ESCAPE.sub("", f.read().decode("utf-8", errors="replace"))
        shown = [re.sub(r".*[\r\b]", "", line) for line in text.split("\n")]
        return "\n".join([line for line in shown if line.strip()][-lines:])

    # checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self, save_weights: Callable[[Path], Any], epochs_completed: int,
                        best_val_accuracy: float, steps_completed: int = 0, epoch_seconds: float = 0.0) -> None:
        """Write last.weights.h5 (`save_weights`, the model's own) with what it covers inside it, as an attribute:
        one file, written aside and then renamed, so that a process killed at any moment leaves the old checkpoint
        or the new one, never new weights with an old count. `steps_completed` and `epoch_seconds`: how far into
        the next epoch the weights are, and the training time that part took (0 at an epoch's end)."""
        state = {"epochs_completed": epochs_completed, "best_val_accuracy": best_val_accuracy}
        if steps_completed:
            state |= {"steps_completed": steps_completed, "epoch_seconds": epoch_seconds}
        with written_whole(self.last_checkpoint) as partial:
            save_weights(partial)
            with h5py.File(partial, "r+") as f:
                f.attrs[CHECKPOINT_STATE] = json.dumps(state)

    def checkpoint_state(self) -> dict[str, Any]:
        """{"epochs_completed", "best_val_accuracy"} of the last checkpoint, and "steps_completed",
        "epoch_seconds" for one written in the middle of an epoch; {} without one. (Earlier versions kept them
        beside the weights, in state.json.)"""
        try:
            with h5py.File(self.last_checkpoint, "r") as f:
                return json.loads(f.attrs[CHECKPOINT_STATE])
        except (OSError, KeyError):
            pass
        try:
            return json.loads((self.checkpoint_dir / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def checkpoint_position(self) -> str | None:
        """Where the last checkpoint is, as people count epochs ("the end of epoch 3", "epoch 4, step 150");
        None without one."""
        state = self.checkpoint_state()
        if not state:
            return None
        epochs, steps = state.get("epochs_completed", 0), state.get("steps_completed", 0)
        return f"epoch {epochs + 1}, step {steps}" if steps else f"the end of epoch {epochs}"

    def remove_partial_checkpoints(self) -> None:
        """Delete what a process killed while writing a checkpoint left (`capsnet.files.partial_writes`)."""
        remove_partial_writes(self.checkpoint_dir)

    def best_model(self) -> Path | None:
        """The model a user would pick from this run: the final one, else the best checkpoint so far (runs of
        earlier versions saved bare weights under the same names; their config.json says what they fit)."""
        for path in (self.final_model, self.best_checkpoint, self.path / "trained_model.weights.h5",
                     self.checkpoint_dir / "best.weights.h5"):
            if path.is_file():
                return path
        return None

    def summary(self) -> dict[str, Any]:
        status = self.read_status()
        epochs = self.epoch_records()
        val = [r["val_accuracy"] for r in epochs if r.get("val_accuracy") is not None]
        return {
            "name": self.name,
            "state": status.get("state"),
            "epochs_done": len(epochs),
            "best_val_accuracy": max(val) if val else None,
            "started": status.get("started"),
            "updated": status.get("updated"),
            "device": status.get("device"),
            "message": status.get("message"),
        }


def list_runs(root: str | Path | None = None) -> list[RunDir]:
    root = Path(root or runs_root())
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and RUN_NAME.fullmatch(p.name)]
    return sorted((r for r in runs if r.exists()), key=lambda r: r.name, reverse=True)
