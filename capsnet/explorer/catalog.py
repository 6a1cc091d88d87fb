"""Which trained models the explorer can offer, and what is known about each (its "model card").

Four kinds of model file, in the order the picker lists them:

- `$CAPSNET_WEIGHTS`, when set: an explicit choice (tests and deployments use it) that becomes the default;
- the shipped pretrained models: `assets/capsnet.keras` (MNIST) with `assets/model_card.json`,
  `assets/capsnet_fashion.keras` (Fashion-MNIST) with `assets/capsnet_fashion_card.json`, and
  `assets/capsnet_multimnist.keras` (MultiMNIST, two overlapping digits) with its card (an interim checkpoint);
- every training run under `capsnet.rundir.runs_root()` (the Train page's runs) that is no longer training and has
  a model file;
- files uploaded on the Home page: our `.keras` files, or `.h5` weights of the CapsNet-Keras reference.

An upload is copied to a cache folder under a name made from its content, so the same file uploaded twice (or by two
sessions) is one model, and the in-process model cache keeps working.
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

from capsnet.assets import (
    BASELINE_CARD,
    BASELINE_MODEL,
    FASHION_CARD,
    FASHION_MODEL,
    MULTIMNIST_CARD,
    MULTIMNIST_MODEL,
    PRETRAINED_CARD,
    PRETRAINED_MODEL,
)
from capsnet.config import CNNConfig, ModelConfig
from capsnet.files import write_bytes
from capsnet.inference import MODEL_SUFFIXES
from capsnet.rundir import ACTIVE_STATES, RunDir, list_runs, runs_root

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"  # a .keras file is a zip archive
MAX_UPLOAD_MB = 100  # a CapsNet is ~33 MB of float32 weights; three times that is not one of ours
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 2**20


@dataclass(frozen=True)
class ModelChoice:
    key: str  # stable across reruns and processes: what the app stores as the user's choice
    label: str  # what the picker shows
    path: Path
    source: str  # "environment", "pretrained", "run" or "upload"
    run: RunDir | None = field(default=None, compare=False)
    card: Path | None = field(default=None, compare=False)  # a shipped model's card


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
    if PRETRAINED_MODEL.is_file():
        choices.append(ModelChoice("pretrained", "Pretrained MNIST model (shipped)", PRETRAINED_MODEL, "pretrained",
                                   card=PRETRAINED_CARD))
    if FASHION_MODEL.is_file():
        choices.append(ModelChoice("fashion", "Pretrained Fashion-MNIST model (shipped)", FASHION_MODEL, "pretrained",
                                   card=FASHION_CARD))
    if MULTIMNIST_MODEL.is_file():
        choices.append(ModelChoice("multimnist", "Pretrained MultiMNIST model (shipped: two overlapping digits)",
                                   MULTIMNIST_MODEL, "pretrained", card=MULTIMNIST_CARD))
    for run in list_runs(runs if runs is not None else runs_root()):
        state = run.read_status().get("state")
        model = run.best_model()
        if state in ACTIVE_STATES or model is None:  # a running job rewrites its checkpoints under our feet
            continue
        choices.append(ModelChoice(run_key(run.name), f"Run {run.name} ({state})", model, "run", run))
    choices.extend(uploaded_models())
    return choices


def uploaded_models() -> list[ModelChoice]:
    folder = upload_dir()
    if not folder.is_dir():
        return []
    files = [path for path in folder.iterdir() if path.name.endswith(MODEL_SUFFIXES) and path.is_file()]
    return [upload_choice(path) for path in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)]


def upload_choice(path: Path) -> ModelChoice:
    digest, _, original = path.name.partition("-")
    return ModelChoice(f"upload:{digest}", f"Uploaded {original or path.name}", path, "upload")


def save_upload(data: bytes, filename: str) -> ModelChoice:
    """Keep an uploaded model file under a content-derived name; raises ValueError if it clearly is not one."""
    name = Path(filename).name
    suffix = next((s for s in MODEL_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{name}: a model file ends in {' or '.join(MODEL_SUFFIXES)}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {len(data):,} bytes, over the {MAX_UPLOAD_BYTES // 2**20} MB limit for model "
                         "files (a CapsNet file is about 33 MB)")
    signature = ZIP_SIGNATURE if suffix == ".keras" else HDF5_SIGNATURE
    if not data.startswith(signature):
        kind = "a Keras .keras archive" if suffix == ".keras" else "an HDF5 file"
        raise ValueError(f"{name} is not {kind}: its first bytes are not that format's signature")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name[:-len(suffix)])[:60] or "model"
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem}{suffix}"
    if not path.is_file():
        write_bytes(path, data)  # never a half-written file for another session to load
    return upload_choice(path)


def discard_upload(choice: ModelChoice) -> None:
    """Remove an upload that turned out not to load: the picker offers only files that loaded once."""
    choice.path.unlink(missing_ok=True)


def file_version(path: Path) -> float:
    """The file's modification time: part of every cache key, so a retrained file at the same path is reloaded."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def model_card(choice: ModelChoice, config: ModelConfig | CNNConfig) -> dict[str, Any]:
    """What the Home page shows: source, dataset, routings, test accuracy, training date, plus whatever the card
    adds. `config` is the loaded model's own, so the routings shown are those the model runs with."""
    card: dict[str, Any] = {"source": choice.label, "path": str(choice.path), "dataset": config.dataset,
                            "routings": getattr(config, "routings", None)}
    extra: dict[str, Any] = {}
    if choice.card is not None:
        extra = read_json(choice.card)
        card["test_accuracy"] = extra.get("test_accuracy")
        card["trained"] = extra.get("date")
        card["epochs"] = extra.get("epochs_trained")
        card["interim"] = extra.get("interim")  # shipped from a run still training (publish --unfinished)
    elif choice.run is not None:
        summary = choice.run.summary()
        # validation during training runs on the MNIST test set, as in the reference implementation
        card["test_accuracy"] = summary.get("best_val_accuracy")
        card["trained"] = format_time(summary.get("updated") or summary.get("started"))
        card["epochs"] = summary.get("epochs_done")
    if card.get("trained") is None and choice.path.is_file():
        card["trained"] = format_time(file_version(choice.path))
    card["details"] = extra
    return card


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def format_time(value: Any) -> str | None:
    if isinstance(value, (int, float)) and value > 0:
        return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")
    return str(value) if value else None


def baseline_beside(choice: ModelChoice, dataset: str) -> bool:
    """Whether the shipped baseline CNN belongs beside this model on a comparison: it exists, is another file, and
    was trained on the model's dataset (it knows MNIST only)."""
    card = read_json(BASELINE_CARD)
    return (BASELINE_MODEL.is_file() and choice.path.resolve() != BASELINE_MODEL.resolve()
            and card.get("data", {}).get("dataset", "mnist") == dataset)
