"""Hyperparameters in dataclasses: the network (`ModelConfig` for a CapsNet, `CNNConfig` for the baseline CNN) and
how it is trained (`TrainConfig`).

The defaults are the paper's MNIST CapsNet and the reference implementation's training recipe.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
DIGIT_SIZE = 28  # MNIST's and Fashion-MNIST's images: what every data source yields, and what the pages draw
IMAGE_SIZE = {"multimnist": 36}  # others: DIGIT_SIZE
DIGITS_PER_IMAGE = {"multimnist": 2}  # others: 1


def image_shape(dataset: str) -> tuple[int, int, int]:
    """The input shape of a network trained on `dataset`."""
    size = IMAGE_SIZE.get(dataset, DIGIT_SIZE)
    return (size, size, 1)


def digits_per_image(dataset: str) -> int:
    """How many objects each image of `dataset` holds: what the training view's labels and reconstructions hold."""
    return DIGITS_PER_IMAGE.get(dataset, 1)


# The learning-rate decay per epoch a dataset trains with unless told otherwise. MNIST and Fashion-MNIST: the
# reference's 0.9. MultiMNIST, which the reference never trained: the paper's authors' code (TensorFlow models,
# research/capsules: 0.96 every 2,000 steps of 128), which is 0.96 ** (60,000 / 256,000) = 0.990 per epoch of 60,000
# pairs. At 0.9 a 50-epoch MultiMNIST run would end at a rate of 6e-6, having seen 5% of the paper's 60M pairs.
DEFAULT_LR_DECAY = 0.9
LR_DECAY = {"multimnist": 0.99}

# Compute precisions: mixed_bfloat16 runs convolutions and dense layers in bfloat16 (the capsule math stays float32).
PRECISIONS = ("mixed_bfloat16", "float32")
# "auto": mixed_bfloat16 where the hardware computes bfloat16 natively, else float32 (capsnet.precision decides).
AUTO_PRECISION = "auto"
PRECISION_CHOICES = (AUTO_PRECISION, *PRECISIONS)


# --- training parameters ------------------------------------------------------------------------------------------
# Each is defined once, on its dataclass field: the CLI's flags, the Train page's inputs and the launcher's check are
# all made from `train_parameters()`, so none of them accepts a value another refuses.

@dataclass(frozen=True)
class Param:
    """What one training parameter may be, and how it is explained."""

    label: str  # as the Train page names it
    help: str
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    integer: bool = False
    choices: tuple[str, ...] = ()
    unset: str = ""  # where None is allowed: what it means
    step: float | None = None  # one click of the Train page's input

    @property
    def switch(self) -> bool:
        """On or off (a bool), rather than a number or a choice."""
        return self.low is None and not self.choices

    def describe(self) -> str:
        if self.switch:
            return "true or false"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        kind = "an integer" if self.integer else "a number"
        span = f"of at least {self.low:.10g}" if self.high is None else f"in [{self.low:.10g}, {self.high:.10g}]"
        return f"{kind} {span}"

    def check(self, value: Any) -> Any:
        """`value` if it is allowed, else ValueError saying what is (a NaN, a bool for a number and 1.5 for an
        integer are refused)."""
        if value is None and self.unset:
            return value
        if self.switch:
            allowed = isinstance(value, bool)
        elif self.choices:
            allowed = value in self.choices
        else:
            allowed = (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                       and (not self.integer or float(value).is_integer())
                       and self.low <= value and (self.high is None or value <= self.high))
        if not allowed:
            raise ValueError(f"must be {self.describe()}, got {value!r}")
        return int(value) if self.integer else value

    def parse(self, text: str) -> Any:
        """A command-line value, checked."""
        if self.choices:
            return self.check(text)
        try:
            return self.check(float(text))
        except ValueError:
            raise ValueError(f"must be {self.describe()}, got {text!r}") from None


def parameter(default: Any, label: str, help: str, **limits: Any) -> Any:
    """A dataclass field with its `Param`."""
    return field(default=default, metadata={"param": Param(label, help, **limits)})


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
    routings: int = parameter(3, "Routings", "routing iterations between the primary and digit capsules",
                              low=1, high=10, integer=True)
    decoder_units: tuple[int, ...] = (512, 1024)
    w_init_stddev: float = 0.05
    dataset: str = "mnist"  # what the classes are (CLASS_NAMES); set from TrainConfig.dataset by training

    # The primary capsules' layout, which the pages describe: for 28x28 images a 6x6 grid of 32 types, 1,152 capsules,
    # each seeing 17x17 pixels (conv1 reads 9x9 pixels, the primary convolution 9x9 of conv1's outputs).
    @property
    def primary_grid(self) -> int:
        """Side of the square grid of primary-capsule positions."""
        conv1 = self.input_shape[0] - self.conv_kernel + 1
        return (conv1 - self.primary_kernel) // self.primary_strides + 1

    @property
    def primary_capsules(self) -> int:
        return self.primary_grid ** 2 * self.primary_channels

    @property
    def receptive_field(self) -> int:
        """Side of the square of input pixels one primary capsule sees."""
        return self.conv_kernel + self.primary_kernel - 1

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
    dataset: str = parameter("mnist", "Dataset", "what to train on", choices=DATASETS)
    epochs: int = parameter(50, "Epochs", "passes over the training set", low=1, high=1000, integer=True)
    batch_size: int = parameter(100, "Batch size", "images per training step (split across GPUs)", low=1,
                                high=8192, integer=True)
    lr: float = parameter(0.001, "Learning rate", "Adam's initial learning rate", low=1e-6, high=1.0, step=1e-4)
    lr_decay: float | None = parameter(None, "LR decay per epoch", "the learning rate is multiplied by this after "
                                       "every epoch (1 keeps it)", low=0.01, high=1.0, step=0.01,
                                       unset="the dataset's: 0.9, MultiMNIST 0.99")
    # 0.0005 * 784: the paper's SSE weight expressed for the MSE of one 28x28 image (larger images and several
    # digits scale it by their pixel count, capsnet.losses.reconstruction_weight, so it stays 0.0005 * SSE).
    lam_recon: float = parameter(0.392, "lam_recon", "weight of the reconstruction loss (0.392 = the paper's "
                                 "0.0005 × 784)", low=0.0, high=100.0, step=0.001)
    shift_fraction: float = parameter(0.1, "Shift fraction", "random shifts of up to this fraction of the image "
                                      "size (0.1 = 2 pixels; MultiMNIST shifts each digit by up to 4 pixels instead)",
                                      low=0.0, high=0.5, step=0.01)
    subset: int | None = parameter(None, "Subset", "train on the first N training images only: quick trials",
                                   low=1, integer=True, unset="all images", step=100)
    precision: str = parameter(AUTO_PRECISION, "Precision", "auto: mixed bfloat16 where the device computes "
                               "bfloat16 natively (GPUs of compute capability 8.0+, CPUs with AVX512_BF16, AMX or "
                               "arm64 BF16), float32 elsewhere, where bfloat16 is emulated and slow",
                               choices=PRECISION_CHOICES)
    seed: int = parameter(0, "Seed", "seeds Python, NumPy and the backend (NumPy takes up to 2**32 - 1)", low=0,
                          high=2**32 - 1, integer=True)
    log_every: int = parameter(20, "Log every N steps", "steps between metrics.jsonl records", low=1,
                               high=100_000, integer=True)
    checkpoint_minutes: float = parameter(10.0, "Checkpoint every N minutes", "also write a checkpoint this often "
                                          "within an epoch, so that a killed run resumes from there (0: at the end "
                                          "of each epoch only)", low=0.0, high=1440.0, step=1.0)
    debug: bool = parameter(False, "Write TensorBoard logs", "TensorBoard logs in the run directory")
    model: ModelConfig | CNNConfig = field(default_factory=ModelConfig)
    # Where a resumed run was given a new schedule (`with_lr_change`): from each {"epoch", "lr", "lr_decay"} on,
    # the learning rate is lr * lr_decay ** (epoch - that epoch). Empty for a run that kept lr and lr_decay.
    lr_changes: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.lr_decay is None:
            self.lr_decay = LR_DECAY.get(self.dataset, DEFAULT_LR_DECAY)
        # The network records its dataset, so that a model file names its classes wherever it goes, and takes the
        # dataset's image size.
        self.model = dataclasses.replace(self.model, dataset=self.dataset, input_shape=image_shape(self.dataset))

    def schedule_at(self, epoch: int) -> dict[str, float]:
        """The schedule in force at `epoch` (from 0): {"epoch": where it starts, "lr": its rate there, "lr_decay"}."""
        start = {"epoch": 0, "lr": self.lr, "lr_decay": self.lr_decay}
        for change in self.lr_changes:
            if change["epoch"] <= epoch:
                start = change
        return start

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of `epoch` (from 0): lr * lr_decay ** epoch, or the latest change's schedule."""
        start = self.schedule_at(epoch)
        return start["lr"] * start["lr_decay"] ** (epoch - start["epoch"])

    def with_lr_change(self, epoch: int, lr: float | None = None, lr_decay: float | None = None) -> TrainConfig:
        """This config with a new schedule from `epoch` on: `lr` there (default: what the schedule gave it, so the
        rate goes on smoothly) decaying by `lr_decay` per epoch (default: the decay in force). Changes at `epoch`
        or later are replaced; earlier epochs keep the rates they were trained with."""
        change = {"epoch": epoch, "lr": self.learning_rate(epoch) if lr is None else lr,
                  "lr_decay": self.schedule_at(epoch)["lr_decay"] if lr_decay is None else lr_decay}
        return dataclasses.replace(self, lr_changes=[*(c for c in self.lr_changes if c["epoch"] < epoch), change])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"model"}
        return cls(**{k: v for k, v in values.items() if k in known}, model=network_config(values.get("model", {})))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def train_parameters() -> dict[str, tuple[Param, Any]]:
    """Every parameter `python -m capsnet train` takes from TrainConfig, with its default: TrainConfig's fields and
    the model's routing iterations (the flag `--routings`), in the order the CLI lists them."""
    routings = next(f for f in dataclasses.fields(ModelConfig) if f.name == "routings")
    fields = [*dataclasses.fields(TrainConfig), routings]
    return {f.name: (f.metadata["param"], f.default) for f in fields if "param" in f.metadata}


def check_train_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (names of `train_parameters()`) checked against their `Param`s: ValueError naming the first bad one,
    as its flag."""
    parameters = train_parameters()
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = parameters[name][0].check(value)
        except ValueError as error:
            raise ValueError(f"--{name}: {error}") from None
    return checked
