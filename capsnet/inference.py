"""Loading a trained CapsNet and fast single-image inference for interactive use.

`load_capsnet` is the one way to turn a weights file into a model (CLI and app alike). `Predictor` wraps the
model in compiled `tf.function`s with fixed input shapes: `model.predict` spends ~35 ms per call on setup, these
take a few milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from capsnet.config import ModelConfig
from capsnet.model import CapsNet, build_capsnet

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRETRAINED_WEIGHTS = ASSETS / "capsnet.weights.h5"
PRETRAINED_CARD = ASSETS / "model_card.json"


class ModelLoadError(RuntimeError):
    """A weights file that is missing, corrupt or from another architecture."""


def model_config_for(weights: Path) -> ModelConfig:
    """The architecture a weights file was trained with: from its model card or its run's config.json."""
    for candidate in (weights.parent / "model_card.json", weights.parent / "config.json",
                      weights.parent.parent / "config.json"):
        if candidate.is_file():
            try:
                saved = json.loads(candidate.read_text())
            except json.JSONDecodeError:
                continue
            model = saved.get("config", saved).get("model")
            if isinstance(model, dict):
                return ModelConfig.from_dict(model)
    return ModelConfig()


def default_weights() -> Path | None:
    return PRETRAINED_WEIGHTS if PRETRAINED_WEIGHTS.is_file() else None


def load_capsnet(weights: str | Path | None = None, config: ModelConfig | None = None,
                 precision: str = "float32") -> CapsNet:
    """Build the network and load `weights` (default: the shipped pretrained model)."""
    path = Path(weights) if weights else default_weights()
    if path is None:
        raise ModelLoadError(f"no weights given and no pretrained model at {PRETRAINED_WEIGHTS}; "
                             "train one with `python -m capsnet train` or pass -w PATH")
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    keras.mixed_precision.set_dtype_policy(precision)
    net = build_capsnet(config or model_config_for(path))
    try:
        net.load_weights(path)
    except Exception as error:  # h5py, Keras and ValueError all signal a bad file differently
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path} is not a readable CapsNet weights file ({reason})") from None
    return net


@dataclass
class Prediction:
    lengths: np.ndarray  # [10] capsule lengths, the class probabilities
    capsules: np.ndarray  # [10, 16] digit capsules
    reconstruction: np.ndarray  # [28, 28] from the winning capsule, in [0, 1]

    @property
    def digit(self) -> int:
        return int(np.argmax(self.lengths))


class Predictor:
    """Compiled single-image inference over a loaded CapsNet."""

    def __init__(self, net: CapsNet, jit_compile: bool = True):
        self.net = net
        self.num_classes = net.config.num_classes
        height, width, channels = net.config.input_shape
        # XLA is ruinous for training on CPU (~30x slower) but fuses the single-image forward pass well:
        # 3.5 ms instead of 5.6 ms per classification on the 2-core development machine.
        self._classify = tf.function(
            lambda image: net.eval(image, training=False), jit_compile=jit_compile,
            input_signature=[tf.TensorSpec((1, height, width, channels), tf.float32)],
        )
        self._decode = tf.function(
            lambda capsules, one_hot: net.decoder([capsules, one_hot], training=False), jit_compile=jit_compile,
            input_signature=[tf.TensorSpec((1, self.num_classes, net.config.digit_dim), tf.float32),
                             tf.TensorSpec((1, self.num_classes), tf.float32)],
        )
        # Eager, the routing model took ~15 ms per image; compiled like the others, ~6 ms (it runs on every stroke).
        self._couplings = tf.function(
            lambda image: net.routing(image, training=False), jit_compile=jit_compile,
            input_signature=[tf.TensorSpec((1, height, width, channels), tf.float32)],
        )

    def predict(self, image: np.ndarray) -> Prediction:
        """`image`: [28, 28] float in [0, 1] (white digit on black, MNIST-style)."""
        batch = np.asarray(image, np.float32).reshape((1, *self.net.config.input_shape))
        lengths, reconstruction, capsules = self._classify(batch)
        return Prediction(lengths.numpy()[0], capsules.numpy()[0], reconstruction.numpy()[0, ..., 0])

    def decode(self, capsules: np.ndarray, digit: int) -> np.ndarray:
        """Reconstruct from digit capsules [10, 16] (possibly edited), reading only capsule `digit`."""
        one_hot = np.zeros((1, self.num_classes), np.float32)
        one_hot[0, digit] = 1.0
        image = self._decode(np.asarray(capsules, np.float32)[None], one_hot)
        return image.numpy()[0, ..., 0]

    def couplings(self, image: np.ndarray) -> np.ndarray:
        """Coupling coefficients of every routing round for one image: [routings, classes, primary capsules]."""
        batch = np.asarray(image, np.float32).reshape((1, *self.net.config.input_shape))
        return self._couplings(batch).numpy()[0]
