"""Heavy objects behind `st.cache_resource` / `st.cache_data`: one copy per process, shared by every session.

Importing this module starts TensorFlow (pages import it after showing their title) and sizes its thread pools
(`runtime.configure_threads`), which TensorFlow allows until its first operation runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import streamlit as st

from capsnet import affine, launch, multimnist
from capsnet.config import class_names, digits_per_image
from capsnet.data import local_version
from capsnet.evaluate import accuracy_report, class_scores, manipulation_grid, predict_all
from capsnet.explorer import runtime
from capsnet.explorer.explore import one_per_class
from capsnet.imaging import png_bytes, real_over_reconstruction, to_float, to_uint8
from capsnet.inference import Predictor, as_capsnet, load_network
from capsnet.precision import auto_for
from capsnet.sample import TestDigits, load_test_digits

runtime.configure_threads()


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def network(path: str, version: float) -> keras.Model:
    """The one model-loading path (`load_network`): a CapsNet or the baseline CNN, one copy per file and process.
    `version` (the file's mtime) is only a cache key: a file rewritten in place is loaded again."""
    return load_network(path)


@st.cache_resource(max_entries=4, show_spinner="Compiling the model…")
def load_predictor(path: str, version: float) -> Predictor:
    """A CapsNet's compiled single-image functions, warmed up so that the first interaction is not the slow one."""
    predictor = Predictor(as_capsnet(network(path, version), Path(path)))
    predictor.warm_up()
    return predictor


def test_digits(dataset: str = "mnist") -> TestDigits:
    """The test set (or the shipped sample) as it is now: fetching the full set while the app runs replaces the
    sample at the next rerun, without a restart."""
    return _test_digits(dataset, local_version(dataset))


@st.cache_resource(max_entries=4, show_spinner="Loading the test digits…")
def _test_digits(dataset: str, data_version: str) -> TestDigits:
    # `data_version` (`capsnet.data.local_version`) is only part of the cache key, here and in the functions below.
    return load_test_digits(dataset)


@dataclass
class Evaluation:
    lengths: np.ndarray  # [n, classes]
    reconstructions: np.ndarray  # [n, 28, 28]
    capsules: np.ndarray  # [n, classes, 16]
    report: dict  # capsnet.evaluate.accuracy_report over the first n test digits

    @property
    def predicted(self) -> np.ndarray:
        return np.argmax(self.lengths, axis=1)


def evaluate(path: str, version: float, count: int) -> Evaluation:
    """Batch predictions for the first `count` test images of the model's dataset (read-only arrays:
    cache_resource does not copy)."""
    return _evaluate(path, version, count, local_version(load_predictor(path, version).net.config.dataset))


@st.cache_resource(max_entries=6, show_spinner="Classifying the test digits…")
def _evaluate(path: str, version: float, count: int, data_version: str) -> Evaluation:
    net = load_predictor(path, version).net
    digits = test_digits(net.config.dataset)
    lengths, reconstructions, capsules = predict_all(net, digits.images[:count])
    return Evaluation(lengths, reconstructions, capsules, accuracy_report(lengths, digits.labels[:count]))


@st.cache_data(max_entries=64, show_spinner=False)
def manipulation(path: str, version: float, capsules: bytes, digit: int) -> tuple[np.ndarray, bytes]:
    """The 16x11 manipulation grid of capsule `digit` (`capsules`: the [10, 16] float32 array's bytes) and its PNG."""
    net = load_predictor(path, version).net
    grid = manipulation_grid(net, np.frombuffer(capsules, np.float32).reshape(net.config.num_classes, -1), digit)
    return grid, png_bytes(grid, scale=2)


@st.cache_data(show_spinner="Looking for GPUs…")
def devices() -> list[launch.Device]:
    return launch.list_devices()


def run_reconstructions(path: str, version: float, dataset: str) -> tuple[np.ndarray, list[str]]:
    """One fixed test image of each class over its reconstruction by the model at `path` (a run's checkpoint),
    as a uint8 strip, and the names of the predicted classes."""
    return _run_reconstructions(path, version, dataset, local_version(dataset))


@st.cache_data(max_entries=8, show_spinner="Reconstructing test digits from the latest checkpoint…")
def _run_reconstructions(path: str, version: float, dataset: str, data_version: str) -> tuple[np.ndarray, list[str]]:
    digits = test_digits(dataset)
    predictor = load_predictor(path, version)
    if digits_per_image(dataset) > 1:  # MultiMNIST: fixed test pairs over both digits' reconstructions, coloured
        pairs = multimnist.test_pairs(digits.images, digits.labels)
        chosen = one_per_class(pairs.labels[:, 0])
        lengths, top, reconstructions = multimnist.predict_pairs(predictor.net, pairs.images[chosen])
        classes = class_names(predictor.net.config)
        strip = multimnist.real_and_recon(pairs.images[chosen], reconstructions)
        return png_bytes(strip, scale=3), ["+".join(classes[c] for c in pair) for pair in top]
    images = to_float(digits.images[one_per_class(digits.labels)])
    predictions = [predictor.predict(image) for image in images]
    strip = real_over_reconstruction(images, np.stack([p.reconstruction for p in predictions]), gap=2)
    classes = class_names(predictor.net.config)
    return png_bytes(strip, scale=3), [classes[p.digit] for p in predictions]


SWEEP_DIGITS = affine.SWEEP_DIGITS  # a name tests can lower


def affine_sweeps(path: str, version: float, count: int) -> dict[str, dict]:
    """`capsnet.affine.accuracy_sweeps` of the model at `path` (a CapsNet or the baseline CNN) on the first `count`
    test images of its dataset."""
    return _affine_sweeps(path, version, count, local_version(network(path, version).config.dataset))


@st.cache_data(max_entries=8, show_spinner="Measuring accuracy under rotation, scale, shear and translation "
                                            "(once per model: about a minute)…")
def _affine_sweeps(path: str, version: float, count: int, data_version: str) -> dict[str, dict]:
    net = network(path, version)
    digits = test_digits(net.config.dataset)
    return affine.accuracy_sweeps(lambda batch: class_scores(net, to_uint8(batch)), digits.images[:count],
                                  digits.labels[:count])


@st.cache_resource(show_spinner=False)
def auto_precision(on_gpu: bool) -> str:
    """What `--precision auto` picks on this server's GPU or CPU, and why (the hardware does not change)."""
    return auto_for(on_gpu).describe()
