"""Hyperparameters in dataclasses: the network (`ModelConfig` for a CapsNet, `CNNConfig` for the baseline CNN) and
how it is trained (`TrainConfig`).

The defaults are the paper's MNIST CapsNet and the reference implementation's training recipe.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

DATASETS = ("mnist", "fashion_mnist", "multimnist")
# As people write them:
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "multimnist": "MultiMNIST"}
# What each class of a dataset is called, in label order: what every page and the CLI show for a prediction.
CLASS_NAMES = {
    "mnist": tuple("0123456789"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "multimnist": tuple("0123456789"),
}
# MultiMNIST (capsnet.multimnist) is made of MNIST's digits: two to an image, each shifted within a 36x36 frame.
SOURCE_DATASET = {"multimnist": "mnist"}
IMAGE_SIZE = {"multimnist": 36}  # others: 28
DIGITS_PER_IMAGE = {"multimnist": 2}  # others: 1


def image_shape(dataset: str) -> tuple[int, int, int]:
    """The input shape of a network trained on `dataset`."""
    size = IMAGE_SIZE.get(dataset, 28)
    return (size, size, 1)


def digits_per_image(dataset: str) -> int:
    """How many objects each image of `dataset` holds: what the training view's labels and reconstructions hold."""
    return DIGITS_PER_IMAGE.get(dataset, 1)
# Compute precisions: mixed_bfloat16 runs convolutions and dense layers in bfloat16 (the capsule math stays float32).
PRECISIONS = ("mixed_bfloat16", "float32")


@dataclass
class ModelConfig:
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_filters: int = 256
    conv_kernel: int = 9
    primary_channels: int = 32  # capsule types in the primary layer
    primary_dim: int = 8
    primary_kernel: int = 9
    primary_strides: int = 2
    digit_dim: int = 16
    routings: int = 3
    decoder_units: tuple[int, ...] = (512, 1024)
    w_init_stddev: float = 0.05
    dataset: str = "mnist"  # what the classes are (CLASS_NAMES); set from TrainConfig.dataset by training

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)


@dataclass
class CNNConfig:
    """The baseline CNN (`capsnet.baseline`): convolution blocks (5x5, ReLU, 2x2 max-pooling), a dense layer with
    dropout, and a softmax."""

    kind: str = "cnn"  # what tells a CNN's config from a CapsNet's in config.json and in model files
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_filters: tuple[int, ...] = (32, 64)
    conv_kernel: int = 5
    dense_units: int = 256
    dropout: float = 0.5
    dataset: str = "mnist"  # as ModelConfig.dataset

    @classmethod
    def from_dict(cls, values: dict) -> CNNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


def class_names(config: ModelConfig | CNNConfig) -> tuple[str, ...]:
    """The names of a network's classes: its dataset's, or the class numbers for a dataset this version does not
    know (a model file from elsewhere)."""
    return CLASS_NAMES.get(config.dataset) or tuple(str(c) for c in range(config.num_classes))


NETWORKS = ("capsnet", "cnn")  # the kinds of network `python -m capsnet train --model` builds


def network_config(values: dict) -> ModelConfig | CNNConfig:
    """A network's config from its dict (config.json, a model file): a CNN's says so, anything else is a CapsNet."""
    return CNNConfig.from_dict(values) if values.get("kind") == "cnn" else ModelConfig.from_dict(values)


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    epochs: int = 50
    batch_size: int = 100
    lr: float = 0.001
    lr_decay: float = 0.9  # learning rate multiplied by this after every epoch
    # 0.0005 * 784: the paper's SSE weight expressed for the MSE of one 28x28 image (larger images and several
    # digits scale it by their pixel count, capsnet.losses.reconstruction_weight, so it stays 0.0005 * SSE).
    lam_recon: float = 0.392
    shift_fraction: float = 0.1  # random shifts of up to int(0.1 * 28) = 2 pixels
    subset: int | None = None  # first N training images only, for quick runs
    precision: str = "auto"  # "auto" (mixed_bfloat16 where the hardware computes bfloat16 natively) or a PRECISION
    seed: int = 0
    log_every: int = 20  # steps between metrics.jsonl records
    debug: bool = False  # TensorBoard logs
    model: ModelConfig | CNNConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        # The network records its dataset, so that a model file names its classes wherever it goes, and takes the
        # dataset's image size.
        self.model = dataclasses.replace(self.model, dataset=self.dataset, input_shape=image_shape(self.dataset))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"model"}
        return cls(**{k: v for k, v in values.items() if k in known}, model=network_config(values.get("model", {})))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
