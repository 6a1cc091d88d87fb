"""Where the repository keeps what it ships: the trained models and their cards, the test-digit samples (for a
machine without the datasets) and the capsule-space maps of the shipped models. Every module finds them here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"

PRETRAINED_MODEL = ASSETS / "capsnet.keras"  # the MNIST CapsNet, the default model everywhere
PRETRAINED_CARD = ASSETS / "model_card.json"
FASHION_MODEL = ASSETS / "capsnet_fashion.keras"  # a CapsNet trained on Fashion-MNIST with the CLI's defaults
FASHION_CARD = ASSETS / "capsnet_fashion_card.json"
# Two overlapping digits per 36x36 image (capsnet.multimnist), trained with `--dataset multimnist`.
MULTIMNIST_MODEL = ASSETS / "capsnet_multimnist.keras"
MULTIMNIST_CARD = ASSETS / "capsnet_multimnist_card.json"
BASELINE_MODEL = ASSETS / "cnn.keras"  # the baseline CNN the Robustness and Attack pages compare with
BASELINE_CARD = ASSETS / "cnn_card.json"
# Each shipped model by the name `python -m capsnet.tools.publish --target` gives it: (model file, card).
SHIPPED = {"capsnet": (PRETRAINED_MODEL, PRETRAINED_CARD), "fashion": (FASHION_MODEL, FASHION_CARD),
           "multimnist": (MULTIMNIST_MODEL, MULTIMNIST_CARD), "cnn": (BASELINE_MODEL, BASELINE_CARD)}
CARDS = dict(SHIPPED.values())  # model file -> its card

# The first 100 test images of each class (`python -m capsnet.sample`); MultiMNIST's pairs are made of MNIST's.
SAMPLES = {"mnist": ASSETS / "test_digits.npz", "fashion_mnist": ASSETS / "fashion_mnist_test_sample.npz",
           "multimnist": ASSETS / "test_digits.npz"}
SHIPPED_MAPS = ASSETS / "maps"  # `python -m capsnet.projection --ship`
