"""Which trained models the explorer can offer, and what is known about each (its "model card").

Three kinds of weights file, in the order the picker lists them:

- `$CAPSNET_WEIGHTS`, when set: an explicit choice (tests and deployments use it) that becomes the default;
- the shipped pretrained model, `assets/capsnet.weights.h5` with `assets/model_card.json`;
- every training run under `capsnet.launch.runs_root()` (the Train page's runs) that is no longer training and has
  weights.

A `.weights.h5` uploaded in the app is copied to a cache folder under a name made from its content, so the same file
uploaded twice (or by two sessions) is one model, and the in-process model cache keeps working.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capsnet.inference import PRETRAINED_CARD, PRETRAINED_WEIGHTS, model_config_for
from capsnet.launch import runs_root
from capsnet.rundir import ACTIVE_STATES, RunDir, list_runs

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # a CapsNet is ~33 MB of float32 weights; more is not one of ours


@dataclass(frozen=True)
class ModelChoice:
    key: str  # stable across reruns and processes: what the app stores as the user's choice
    label: str  # what the picker shows
    weights: Path
    source: str  # "environment", "pretrained", "run" or "upload"
    run: RunDir | None = field(default=None, compare=False)


def run_key(name: str) -> str:
    """The ModelChoice.key of the training run `name`: how the Train page hands a run to the explorer."""
    return f"run:{name}"


def upload_dir() -> Path:
    return Path(os.environ.get("CAPSNET_UPLOAD_DIR", Path(tempfile.gettempdir()) / "capsnet-explorer" / "uploads"))


def available_models(runs: str | Path | None = None) -> list[ModelChoice]:
    """Every model on offer, the default first (see the module docstring for the order)."""
    choices = []
    if env := os.environ.get("CAPSNET_WEIGHTS"):
        path = Path(env).expanduser()
        choices.append(ModelChoice("env", f"$CAPSNET_WEIGHTS ({path.name})", path, "environment"))
    if PRETRAINED_WEIGHTS.is_file():
        choices.append(ModelChoice("pretrained", "Pretrained model (shipped)", PRETRAINED_WEIGHTS, "pretrained"))
    for run in list_runs(runs if runs is not None else runs_root()):
        state = run.read_status().get("state")
        weights = run.best_weights()
        if state in ACTIVE_STATES or weights is None:  # a running job rewrites its checkpoints under our feet
            continue
        choices.append(ModelChoice(run_key(run.name), f"Run {run.name} ({state})", weights, "run", run))
    choices.extend(uploaded_models())
    return choices


def uploaded_models() -> list[ModelChoice]:
    folder = upload_dir()
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.weights.h5"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [upload_choice(path) for path in files]


def upload_choice(path: Path) -> ModelChoice:
    digest, _, original = path.name.removesuffix(".weights.h5").partition("-")
    return ModelChoice(f"upload:{digest}", f"Uploaded {original or digest}.weights.h5", path, "upload")


def save_uploaded_weights(data: bytes, filename: str) -> ModelChoice:
    """Keep an uploaded weights file under a content-derived name; raises ValueError if it is clearly not one."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{filename} is {len(data) / 2**20:.0f} MB, larger than any CapsNet weights file")
    if not data.startswith(HDF5_SIGNATURE):
        raise ValueError(f"{filename} is not a Keras .weights.h5 file (no HDF5 signature)")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).name.removesuffix(".h5").removesuffix(".weights"))[:60]
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem or 'model'}.weights.h5"
    if not path.is_file():
        partial = path.with_name(f".{path.name}.part")  # never expose a half-written file to another session
        partial.write_bytes(data)
        os.replace(partial, path)
    return upload_choice(path)


def weights_version(path: Path) -> float:
    """The file's modification time: part of every cache key, so a retrained file at the same path is reloaded."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def model_card(choice: ModelChoice) -> dict[str, Any]:
    """What the Home page shows: source, routings, test accuracy, training date, plus whatever the card adds."""
    card: dict[str, Any] = {"source": choice.label, "weights": str(choice.weights)}
    extra: dict[str, Any] = {}
    if choice.source == "pretrained" and PRETRAINED_CARD.is_file():
        extra = read_json(PRETRAINED_CARD)
        card["test_accuracy"] = first_of(extra, "test_accuracy", "accuracy", ("metrics", "test_accuracy"))
        card["trained"] = first_of(extra, "trained", "trained_at", "date", "created")
        card["epochs"] = first_of(extra, "epochs_trained", "epochs", ("config", "epochs"))
    elif choice.run is not None:
        summary = choice.run.summary()
        config = choice.run.read_config()
        # validation during training runs on the MNIST test set, as in the reference implementation
        card["test_accuracy"] = summary.get("best_val_accuracy")
        card["trained"] = format_time(summary.get("updated") or summary.get("started"))
        card["epochs"] = summary.get("epochs_done")
        card["dataset"] = config.get("dataset")
    if card.get("trained") is None and choice.weights.is_file():
        card["trained"] = format_time(weights_version(choice.weights))
    try:
        card["routings"] = first_of(extra, "routings", ("model", "routings"), ("config", "model", "routings")) or \
            model_config_for(choice.weights).routings
    except (OSError, TypeError, ValueError):
        card["routings"] = None
    card["details"] = extra
    return card


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def first_of(values: dict[str, Any], *keys: str | tuple[str, ...]) -> Any:
    """The first present key; a tuple is a path into nested dicts. The card's exact layout is not fixed yet."""
    for key in keys:
        value: Any = values
        for part in key if isinstance(key, tuple) else (key,):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def format_time(value: Any) -> str | None:
    if isinstance(value, (int, float)) and value > 0:
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")
    return str(value) if value else None
