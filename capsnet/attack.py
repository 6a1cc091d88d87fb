"""Adversarial digits, and catching them by their reconstruction.

Attacks (L-infinity, pixels in [0, 1]):

- FGSM (Goodfellow et al. 2015): one step of size epsilon along the sign of the loss gradient;
- PGD (Madry et al. 2018): `steps` signed steps of `step_size` (default 2.5 epsilon / steps, Madry's rule), each
  projected back into the epsilon-ball around the digit and into [0, 1]. It starts at the digit itself, not at a
  random point of the ball, so that a run is repeatable; one PGD step is FGSM.

Both are untargeted (push the true class down) or targeted (pull a chosen class up). The loss is the margin between
the best other class's score and the chosen class's score, max_{k != c} s_k - s_c, where the scores are a CapsNet's
capsule lengths and the baseline CNN's logits. Why not each network's training loss: a CapsNet's margin loss is
exactly zero for a digit it reads confidently (its capsule longer than 0.9, the others shorter than 0.1), and a
saturated softmax's cross-entropy rounds to zero in float32, so both would hand a sign attack a zero gradient; the
score margin never vanishes, and it is the same quantity for both networks.

Gradients with respect to the input come from the active Keras backend (`input_gradient`: `tf.GradientTape`,
`jax.grad` or `torch.autograd`); no other framework is involved.

Detection by reconstruction (Frosst, Sabour & Hinton 2018, "DARCCC"): a CapsNet's reconstruction from its winning
capsule resembles a real digit, but a successful adversarial digit's winning capsule is of the wrong class and its
reconstruction does not match what is shown. The Euclidean distance between input and reconstruction is measured on
clean test digits; the threshold is their 95th percentile (5% of clean digits are flagged by construction); an
adversarial digit is flagged when its distance is above it. `attack_sweeps` reports, for each attack and epsilon,
the attack success rate, the share of successful attacks flagged and the ROC AUC of distance as a detector (clean
digits against successful adversarial ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from capsnet.config import DIGIT_SIZE
from capsnet.imaging import to_float

ATTACK_DIGITS = 1000  # the first test digits the curves are measured on (model cards, the Attack page, the CLI)
EPSILONS = (0.05, 0.1, 0.2, 0.3)  # the curves' epsilons: MNIST's usual L-inf budgets reach 0.3
PGD_STEPS = 5  # the curves' PGD: a few steps, so that 1,000 digits take minutes, not hours, on a CPU
PERCENTILE = 95.0  # DARCCC's threshold: this percentile of the clean digits' reconstruction distances
METHODS = ("fgsm", "pgd")

Gradient = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (inputs, one-hot classes) -> d objective / d inputs


def input_gradient(objective: Callable, input_shape: Sequence[int], num_classes: int) -> Gradient:
    """d objective(x, one_hot) / dx, computed by the active Keras backend; `objective` maps backend tensors
    ([n, *input_shape], [n, num_classes]) to a scalar (a sum over the batch, so that each input's gradient is its
    own). Returns a function of NumPy arrays that returns a NumPy array."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # No XLA: on a CPU it makes these gradients far slower, as it does training. Any batch size: the sweeps go
        # by hundreds, the page by one.
        @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32),
                                      tf.TensorSpec((None, num_classes), tf.float32)])
        def gradient(x, one_hot):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = objective(x, one_hot)
            return tape.gradient(value, x)
    elif backend == "jax":
        import jax

        gradient = jax.jit(jax.grad(objective))
    elif backend == "torch":
        def gradient(x, one_hot):
            x = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
            objective(x, keras.ops.convert_to_tensor(one_hot)).backward()
            return x.grad
    else:
        raise NotImplementedError(f"input gradients on the {backend} backend")

    def call(x: np.ndarray, one_hot: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(gradient(np.asarray(x, np.float32), np.asarray(one_hot, np.float32)))

    return call


def score_margin(scores, one_hot):
    """max_{k != c} s_k - s_c for the class c each row of `one_hot` marks, summed over the batch (backend tensors)."""
    ops = keras.ops
    others = ops.where(one_hot > 0.5, ops.full_like(scores, -1e9), scores)
    return ops.sum(ops.max(others, axis=-1) - ops.sum(scores * one_hot, axis=-1))


def score_function(net: keras.Model) -> Callable:
    """What the attacks differentiate: a CapsNet's capsule lengths, the baseline CNN's logits (its last Dense layer
    before the softmax: the probabilities saturate), any other Keras model's own output."""
    from capsnet.baseline import BaselineCNN
    from capsnet.model import CapsNet

    if isinstance(net, CapsNet):
        return lambda x: net.eval(x, training=False)[0]
    if isinstance(net, BaselineCNN):
        output = net.eval.get_layer("probabilities")  # Dense(classes, activation="softmax"): logits = x W + b
        hidden = keras.Model(net.eval.inputs, output.input)
        return lambda x: keras.ops.matmul(hidden(x, training=False), output.kernel) + output.bias
    return lambda x: net(x, training=False)


class AttackModel:
    """A classifier as the attacks and the saliency maps see it: its scores for a batch, and input gradients of the
    score margin (attacks) and of one class's score (saliency). Images are [n, height, width] floats in [0, 1]."""

    def __init__(self, scores: Callable, input_shape: Sequence[int], num_classes: int):
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self._scores = scores
        self._margin = input_gradient(lambda x, one_hot: score_margin(scores(x), one_hot), input_shape, num_classes)
        self._score = input_gradient(lambda x, one_hot: keras.ops.sum(scores(x) * one_hot), input_shape,
                                     num_classes)

    @classmethod
    def of(cls, net: keras.Model) -> AttackModel:
        """For a CapsNet, the baseline CNN, or any Keras model whose output is class scores."""
        shape = tuple(net.config.input_shape) if hasattr(net, "config") else tuple(net.input_shape[1:])
        classes = net.config.num_classes if hasattr(net, "config") else int(net.output_shape[-1])
        return cls(score_function(net), shape, classes)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(self._scores(keras.ops.convert_to_tensor(self._inputs(images))))

    def margin_gradient(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """d (max_{k != c} s_k - s_c) / d image for each image's class c: [n, height, width]."""
        return self._margin(self._inputs(images), self._one_hot(classes)).reshape(np.shape(images))

    def score_gradient(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """d s_c / d image for each image's class c: [n, height, width]."""
        return self._score(self._inputs(images), self._one_hot(classes)).reshape(np.shape(images))

    def _inputs(self, images: np.ndarray) -> np.ndarray:
        return to_float(images).reshape((-1, *self.input_shape))

    def _one_hot(self, classes: np.ndarray) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[np.asarray(classes, np.int64).reshape(-1)]


def fgsm(model: AttackModel, images: np.ndarray, classes: np.ndarray, epsilon: float,
         targeted: bool = False) -> np.ndarray:
    """One signed step of size `epsilon`: away from `classes` (the true ones), or with `targeted` towards them."""
    images = to_float(images)
    direction = -1.0 if targeted else 1.0
    step = np.sign(model.margin_gradient(images, classes))
    return np.clip(images + direction * epsilon * step, 0.0, 1.0).astype(np.float32)


def pgd(model: AttackModel, images: np.ndarray, classes: np.ndarray, epsilon: float, steps: int = 10,
        step_size: float | None = None, targeted: bool = False) -> np.ndarray:
    """`steps` signed steps of `step_size` (default 2.5 epsilon / steps), each projected into the L-inf ball of
    radius `epsilon` around `images` and into [0, 1]. Untargeted: away from `classes`; targeted: towards them."""
    images = to_float(images)
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    direction = -1.0 if targeted else 1.0
    low, high = np.clip(images - epsilon, 0.0, 1.0), np.clip(images + epsilon, 0.0, 1.0)
    adversarial = images.copy()
    for _ in range(steps):
        step = np.sign(model.margin_gradient(adversarial, classes))
        adversarial = np.clip(adversarial + direction * step_size * step, low, high)
    return adversarial.astype(np.float32)


@dataclass(frozen=True)
class Attack:
    """One attack as the Attack page and the sweeps name it."""

    method: str = "fgsm"  # one of METHODS
    epsilon: float = 0.1
    steps: int = 10  # PGD only
    target: int | None = None  # None: untargeted

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown attack {self.method!r}; use one of {', '.join(METHODS)}")
        if not 0.0 <= self.epsilon <= 1.0 or self.steps < 1:
            raise ValueError(f"epsilon must be in [0, 1] and steps at least 1, got {self.epsilon}, {self.steps}")

    def run(self, model: AttackModel, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Adversarial versions of `images` ([n, h, w]); `labels` are the true classes (unused when targeted)."""
        targeted = self.target is not None
        classes = np.full(len(images), self.target) if targeted else np.asarray(labels)
        if self.method == "fgsm":
            return fgsm(model, images, classes, self.epsilon, targeted)
        return pgd(model, images, classes, self.epsilon, self.steps, targeted=targeted)

    def describe(self) -> str:
        name = "FGSM" if self.method == "fgsm" else f"PGD, {self.steps} step{'s' * (self.steps != 1)}"
        return f"{name}, ε = {self.epsilon:g}" + ("" if self.target is None else f", targeted at class {self.target}")


# --- detection by reconstruction (DARCCC) -------------------------------------------------------------------------

def reconstruction_distances(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """The Euclidean distance between each image and its reconstruction, over all pixels: [n]."""
    images = to_float(images)
    difference = images.reshape(len(images), -1) - to_float(reconstructions).reshape(len(images), -1)
    return np.linalg.norm(difference, axis=1)


def detection_threshold(clean_distances: np.ndarray, percentile: float = PERCENTILE) -> float:
    """DARCCC's threshold: the `percentile`th percentile of clean digits' reconstruction distances."""
    return float(np.percentile(np.asarray(clean_distances, np.float64), percentile))


def flagged_share(distances: np.ndarray, threshold: float) -> float | None:
    """The share of `distances` above `threshold`; None for none at all."""
    distances = np.asarray(distances)
    return float(np.mean(distances > threshold)) if distances.size else None


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """The area under the ROC curve of a detector that flags large values: the probability that a random positive
    scores above a random negative, ties counting half (the Mann-Whitney U statistic). None when a side is empty."""
    negatives, positives = np.asarray(negatives, np.float64).ravel(), np.asarray(positives, np.float64).ravel()
    if not negatives.size or not positives.size:
        return None
    values, inverse, counts = np.unique(np.concatenate([negatives, positives]), return_inverse=True,
                                        return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # 1-based ranks, tied values sharing their mean rank
    wins = ranks[negatives.size:].sum() - positives.size * (positives.size + 1) / 2
    return float(wins / (negatives.size * positives.size))


# --- sweeps over epsilon ------------------------------------------------------------------------------------------

Examine = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]  # images -> (predicted, distances or None)


def capsnet_examiner(net: keras.Model, batch_size: int = 250) -> Examine:
    """A CapsNet's predictions and reconstruction distances (from its winning capsule) for a batch of images."""
    from capsnet.evaluate import predict_all

    def examine(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths, reconstructions, _ = predict_all(net, images, batch_size)
        return np.argmax(lengths, axis=1), reconstruction_distances(images, reconstructions)

    return examine


def examiner(net: keras.Model) -> Examine:
    """`capsnet_examiner` for a CapsNet; for other networks predictions alone (no reconstruction: distances None)."""
    from capsnet.evaluate import class_scores
    from capsnet.model import CapsNet

    if isinstance(net, CapsNet):
        return capsnet_examiner(net)
    return lambda images: (np.argmax(class_scores(net, images), axis=1), None)


def in_batches(function: Callable[[np.ndarray, np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
               batch_size: int) -> np.ndarray:
    return np.concatenate([function(images[i:i + batch_size], labels[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def attack_sweeps(model: AttackModel, examine: Examine, images: np.ndarray, labels: np.ndarray,
                  epsilons: Sequence[float] = EPSILONS, pgd_steps: int = PGD_STEPS, batch_size: int = 100,
                  percentile: float = PERCENTILE, progress: Callable[[str], None] | None = None) -> dict:
    """Untargeted FGSM and PGD at each epsilon on `images` ([n, h, w], uint8 or [0, 1]) with their true `labels`.
    Per attack and epsilon: the attack success rate (the share of the digits read right that the attack makes read
    wrong), and where `examine` gives reconstruction distances, the share of successful attacks flagged (distance
    above the clean digits' `percentile`th percentile) and the ROC AUC of distance, clean digits against successful
    adversarial ones."""
    images, labels = to_float(images), np.asarray(labels, np.int64)
    predicted, clean = examine(images)
    correct = predicted == labels
    threshold = detection_threshold(clean, percentile) if clean is not None else None
    gradient_signs = None  # FGSM's gradient is the clean digits', whatever epsilon: computed once
    results: dict[str, dict] = {}
    for method in METHODS:
        curve: dict[str, list] = {"success_rate": [], "successes": [], "flagged": [], "auc": [],
                                  "flagged_failed": [], "median_distance": []}
        for epsilon in epsilons:
            if progress:
                progress(f"{method} eps={epsilon:g}")
            if method == "fgsm":
                if gradient_signs is None:
                    gradient_signs = np.sign(in_batches(model.margin_gradient, images, labels, batch_size))
                adversarial = np.clip(images + epsilon * gradient_signs, 0.0, 1.0).astype(np.float32)
            else:
                adversarial = in_batches(lambda x, y, e=epsilon: pgd(model, x, y, e, pgd_steps), images, labels,
                                         batch_size)
            fooled, distances = examine(adversarial)
            success = correct & (fooled != labels)
            curve["success_rate"].append(round(float(success.sum() / max(correct.sum(), 1)), 4))
            curve["successes"].append(int(success.sum()))
            if distances is not None:
                flagged = flagged_share(distances[success], threshold)
                auc = roc_auc(clean, distances[success])
                curve["flagged"].append(None if flagged is None else round(flagged, 4))
                curve["auc"].append(None if auc is None else round(auc, 4))
                # The perturbation alone moves the input away from any clean reconstruction: how often a digit the
                # attack did not turn is flagged too.
                failed = flagged_share(distances[correct & ~success], threshold)
                curve["flagged_failed"].append(None if failed is None else round(failed, 4))
                curve["median_distance"].append(round(float(np.median(distances[success])), 4)
                                                if success.any() else None)
        results[method] = {key: values for key, values in curve.items() if values}
    return {
        "test_digits": int(len(labels)),
        "epsilons": [float(e) for e in epsilons],
        "pgd_steps": pgd_steps,
        "pgd_step_size": "2.5 epsilon / steps",
        "loss": "score margin: max over other classes of their score minus the true class's (CapsNet: capsule "
                "lengths; CNN: logits)",
        "clean_accuracy": round(float(correct.mean()), 4),
        "clean_correct": int(correct.sum()),
        "detection": None if clean is None else {
            "distance": "Euclidean, input to reconstruction from the winning capsule (pixels in [0, 1])",
            "percentile": percentile, "threshold": round(threshold, 4),
            "clean_flagged": round(float(np.mean(clean > threshold)), 4),
            "clean_median_distance": round(float(np.median(clean)), 4)},
        "attacks": results,
    }


def measure(net: keras.Model, images: np.ndarray, labels: np.ndarray, epsilons: Sequence[float] = EPSILONS,
            pgd_steps: int = PGD_STEPS, progress: Callable[[str], None] | None = None) -> dict:
    """`attack_sweeps` of a CapsNet or the baseline CNN, with the date and the seconds they took."""
    import time

    started = time.monotonic()
    curves = attack_sweeps(AttackModel.of(net), examiner(net), images, labels, epsilons, pgd_steps,
                           progress=progress)
    return {**curves, "date": time.strftime("%Y-%m-%d"), "seconds": round(time.monotonic() - started, 1)}


def applies_to(net: keras.Model) -> bool:
    """Whether these attacks and curves fit `net`: one object per image, MNIST-sized (not a MultiMNIST model)."""
    config = getattr(net, "config", None)
    return config is None or (getattr(config, "dataset", "mnist") != "multimnist"
                              and tuple(config.input_shape[:2]) == (DIGIT_SIZE, DIGIT_SIZE))


def attack_card_entries(net: keras.Model, data, digits: int = ATTACK_DIGITS) -> dict:
    """The model card's attack curves on the first `digits` test images of `data` (a `capsnet.data.Dataset`);
    nothing for a network they do not fit."""
    if not applies_to(net):
        return {}
    return {"attack_curves": measure(net, data.x_test[:digits], data.y_test[:digits])}


def cli_report(net: keras.Model, dataset: str | None, model_name: str, digits: int = ATTACK_DIGITS) -> dict:
    """`python -m capsnet test --attack`: the attack curves of `net` on the first `digits` test images of `dataset`
    (default: its own), with progress on stderr (a CapsNet takes tens of minutes on a CPU)."""
    import sys

    from capsnet.data import load_dataset

    if not applies_to(net):
        raise ValueError("--attack crafts adversarial single digits; a MultiMNIST model reads pairs of digits")
    data = load_dataset(dataset or net.config.dataset)
    curves = measure(net, data.x_test[:digits], data.y_test[:digits],
                     progress=lambda step: print(f"attack: {step}", file=sys.stderr, flush=True))
    return {"model": model_name, "dataset": dataset or net.config.dataset, "attack_curves": curves}
