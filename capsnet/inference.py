"""Loading a trained network, and fast single-image inference for interactive use.

`load_network` is the one way to turn a model file into a network (CLI and app alike): a CapsNet, or the baseline
CNN (`capsnet.baseline`); `load_capsnet` is the same for the places that need capsules. It reads three kinds:

- `.keras`: this project's model files (architecture and weights in one), loaded with Keras' safe mode: a file
  that would run code of its own (a Lambda layer) is refused;
- `.weights.h5`: bare weights, from runs of earlier versions; only where the `config.json` of the run they belong
  to says which architecture they fit;
- `.h5` weights of the CapsNet-Keras reference implementation (`capsnet.reference`).

`Predictor` wraps a model in functions compiled for the active backend (`capsnet.compiled`) with fixed input
shapes: `model.predict` spends ~35 ms per call on setup, these take a few milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from capsnet import reference
from capsnet.assets import PRETRAINED_MODEL
from capsnet.baseline import BaselineCNN
from capsnet.compiled import compile_function
from capsnet.config import CNNConfig, ModelConfig, TrainConfig, network_config
from capsnet.imaging import to_float
from capsnet.model import CapsNet, build_network

MODEL_SUFFIXES = (".keras", ".h5")  # .weights.h5 ends in .h5 too


class ModelLoadError(RuntimeError):
    """A model file that is missing, corrupt, unsafe or of another architecture; the message is for the user."""


def saved_architecture(weights: Path) -> ModelConfig | CNNConfig | None:
    """The architecture a bare weights file was trained with, from the `config.json` of its run (the file sits in
    the run directory or in its checkpoints/ folder); None when nothing says."""
    for candidate in (weights.parent / "config.json", weights.parent.parent / "config.json"):
        try:
            values = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(values, dict) and isinstance(values.get("model"), dict):
            try:
                return TrainConfig.from_dict(values).model  # with the run's dataset, even from older runs
            except (TypeError, ValueError):
                return network_config(values["model"])
    return None


def load_capsnet(path: str | Path | None = None, routings: int | None = None) -> CapsNet:
    """The CapsNet in `path` (default: the shipped pretrained model), in float32; with `routings`, the same weights
    routed that many times instead of the file's own number."""
    return as_capsnet(load_network(path, routings), Path(path or PRETRAINED_MODEL))


def as_capsnet(net: keras.Model, path: Path) -> CapsNet:
    """`net` itself where it is a CapsNet; for the baseline CNN, a ModelLoadError that says what it is good for."""
    if not isinstance(net, CapsNet):
        raise ModelLoadError(f"{path.name} holds the baseline CNN, which has no capsules: it can be tested "
                             "(`python -m capsnet test`) and compared on the Robustness page")
    return net


def load_network(path: str | Path | None = None, routings: int | None = None) -> CapsNet | BaselineCNN:
    """The network in `path` (default: the shipped pretrained CapsNet), a CapsNet or the baseline CNN, in float32;
    `routings` re-routes a CapsNet (see `load_capsnet`)."""
    path = Path(path) if path else PRETRAINED_MODEL
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}"
                             + ("; train one with `python -m capsnet train` or pass -w PATH"
                                if path == PRETRAINED_MODEL else ""))
    try:
        if path.name.endswith(".keras"):
            net = keras.saving.load_model(path, safe_mode=True, compile=False)
            if isinstance(net, BaselineCNN):
                return net
            if not isinstance(net, CapsNet):
                raise ModelLoadError(f"{path.name} holds a Keras model of another kind ({type(net).__name__} "
                                     f"'{net.name}'), not a CapsNet saved by this project")
            return net if routings in (None, net.config.routings) else rerouted(net, routings)
        with h5py.File(path, "r"):  # an unreadable file is that, whatever else could be said of it
            pass
        if reference.is_reference_weights(path):
            net = CapsNet(_with_routings(reference.reference_model_config(path), routings))
            reference.load_reference_weights(net, path)
            return net
        config = saved_architecture(path)
        if config is None:
            raise ModelLoadError(
                f"{path.name} holds bare weights, and nothing says which architecture they belong to (no config.json "
                "of its run beside it). Use the run's .keras model file: it carries its architecture.")
        net = build_network(_with_routings(config, routings) if isinstance(config, ModelConfig) else config)
        net.load_weights(path)
        return net
    except ModelLoadError:
        raise
    except Exception as error:  # h5py, zipfile, Keras and ValueError all signal a bad file differently
        reason = str(error).strip().splitlines()[0][:240] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path.name} is not a readable CapsNet model file ({reason})") from None


def _with_routings(config: ModelConfig, routings: int | None) -> ModelConfig:
    return config if routings is None else dataclasses.replace(config, routings=routings)


def rerouted(net: CapsNet, routings: int) -> CapsNet:
    """Routing iterations have no weights of their own: the same weights fit a network that routes more or less."""
    rerouted = CapsNet(_with_routings(net.config, routings))
    rerouted.eval.set_weights(net.eval.get_weights())
    return rerouted


@dataclass
class Prediction:
    lengths: np.ndarray  # [10] capsule lengths, the class probabilities
    capsules: np.ndarray  # [10, 16] digit capsules
    reconstruction: np.ndarray  # [28, 28] from the winning capsule, in [0, 1]

    @property
    def digit(self) -> int:
        return int(np.argmax(self.lengths))


@dataclass
class RoutingTrace:
    """What routing did for one image, from the model's own routing pass."""

    primary: np.ndarray  # [1152, 8] primary capsules u_i
    predictions: np.ndarray  # [classes, 1152, 16] their votes u_hat j|i for every class
    couplings: np.ndarray  # [routings, classes, 1152] coupling coefficients c_ij of each round
    capsules: np.ndarray  # [routings, classes, 16] digit capsules v_j after each round

    @property
    def lengths(self) -> np.ndarray:
        """[routings, classes]: the class probabilities after each round."""
        return np.linalg.norm(self.capsules, axis=-1)


class Predictor:
    """Compiled single-image inference over a loaded CapsNet."""

    def __init__(self, net: CapsNet, jit_compile: bool = True):
        self.net = net
        self.num_classes = net.config.num_classes
        image = (1, *net.config.input_shape)
        # XLA is ruinous for training on a CPU but fuses the single-image forward pass well (README, "Interactive
        # latency": `python -m capsnet bench` times both).
        self._classify = compile_function(lambda x: net.eval(x, training=False), [image], jit_compile)
        self._decode = compile_function(
            lambda capsules, one_hot: net.decoder([capsules, one_hot], training=False),
            [(1, self.num_classes, net.config.digit_dim), (1, self.num_classes)], jit_compile)
        # Compiled like the others: the routing pass runs on every stroke, and eager it is several times slower.
        self._route = compile_function(lambda x: net.routing(x, training=False), [image], jit_compile)

    def predict(self, image: np.ndarray) -> Prediction:
        """`image`: one [28, 28] image (the model's input size; [28, 28, 1] too), white digit on black, MNIST-style:
        uint8 pixels (0-255) or floats in [0, 1]. Anything else raises a ValueError that says what came."""
        lengths, reconstruction, capsules = self._classify(self._batch(image))
        return Prediction(lengths[0], capsules[0], reconstruction[0, ..., 0])

    def decode(self, capsules: np.ndarray, digit: int) -> np.ndarray:
        """Reconstruct from digit capsules [10, 16] (possibly edited), reading only capsule `digit`."""
        expected = (self.num_classes, self.net.config.digit_dim)
        capsules = np.asarray(capsules)
        if capsules.shape != expected or not np.issubdtype(capsules.dtype, np.number) \
                or not np.all(np.isfinite(capsules)):
            raise ValueError(f"expected finite digit capsules of shape {expected}, got {capsules.dtype} "
                             f"{capsules.shape}")
        if not (np.issubdtype(type(digit), np.integer) and 0 <= digit < self.num_classes):
            raise ValueError(f"expected a class index from 0 to {self.num_classes - 1}, got {digit!r}")
        one_hot = np.zeros((1, self.num_classes), np.float32)
        one_hot[0, digit] = 1.0
        return self._decode(capsules.astype(np.float32)[None], one_hot)[0, ..., 0]

    def couplings(self, image: np.ndarray) -> np.ndarray:
        """Coupling coefficients of every routing round for one image: [routings, classes, primary capsules]."""
        return self.route(image).couplings

    def route(self, image: np.ndarray) -> RoutingTrace:
        """Routing-by-agreement for one image, round by round (see `RoutingTrace`)."""
        return RoutingTrace(**{name: value[0] for name, value in self._route(self._batch(image)).items()})

    def warm_up(self) -> None:
        """Trace and compile every function once, so that a user's first interaction is not the slow one."""
        blank = np.zeros(self.net.config.input_shape[:2], np.float32)
        warm = self.predict(blank)
        self.decode(warm.capsules, warm.digit)
        self.couplings(blank)

    def _batch(self, image: np.ndarray) -> np.ndarray:
        """One image as the compiled functions take it: converted by `imaging.to_float` (uint8 is divided by 255
        there and nowhere else), its shape checked rather than reshaped blindly."""
        shape = tuple(self.net.config.input_shape)
        x = to_float(image)
        accepted = (shape, shape[:2]) if shape[-1] == 1 else (shape,)
        one_of_a_batch = x.ndim > 0 and x.shape[0] == 1 and x.shape[1:] in accepted
        if x.shape not in accepted and not one_of_a_batch:
            raise ValueError(f"expected one image of shape {accepted[-1]}, got an array of shape {x.shape}")
        return x.reshape((1, *shape))
