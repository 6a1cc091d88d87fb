"""The Attack page's pieces: the active network as the attacks see it (a CapsNet, or the baseline CNN), one digit
attacked and examined, the detection threshold, the attack curves (from the model cards, or measured once per model
on request), and `send_to_attack`, the way another page (the Map) hands a test digit over.

Heavy objects (gradient functions, curves) live behind `st.cache_resource` / `st.cache_data`, one per model file and
process, as the Robustness page's sweeps do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import streamlit as st

from capsnet import attack
from capsnet.assets import BASELINE_CARD, BASELINE_MODEL, CARDS
from capsnet.attack import Attack, AttackModel, detection_threshold, reconstruction_distances
from capsnet.config import DATASET_TITLES, class_names
from capsnet.explorer import catalog, picker, resources, state, views
from capsnet.explorer.catalog import ModelChoice
from capsnet.explorer.navigation import PAGES
from capsnet.imaging import to_float
from capsnet.inference import ModelLoadError, Predictor
from capsnet.model import CapsNet

TEST, DRAWING = "Test digit", "Last drawing"
UNTARGETED = -1
EPSILON_RANGE = (0.0, 0.3)  # MNIST's usual L-inf budgets; at 0.3 most digits of either network fall to PGD
STEPS_RANGE = (1, 40)
DEFAULTS = {state.ATTACK_SOURCE: TEST, state.ATTACK_CLASS: 0, state.ATTACK_POSITION: 0, state.ATTACK_METHOD: "fgsm",
            state.ATTACK_EPSILON: 0.1, state.ATTACK_STEPS: 10, state.ATTACK_TARGET: UNTARGETED}
SHARED = list(DEFAULTS)  # the page's choices, in its URL
CURVE_DIGITS = attack.ATTACK_DIGITS  # a name tests can lower


@dataclass
class AttackedNetwork:
    """The active model as this page sees it: a CapsNet (with its compiled single-image functions) or the baseline
    CNN (predictor None). Quacks like `picker.ActiveModel` where the pages' shared helpers need it."""

    choice: ModelChoice
    net: keras.Model
    version: float
    predictor: Predictor | None

    @property
    def cache_key(self) -> tuple[str, float]:
        return str(self.choice.path), self.version

    @property
    def dataset(self) -> str:
        return self.net.config.dataset

    @property
    def classes(self) -> tuple[str, ...]:
        return class_names(self.net.config)

    @property
    def capsnet(self) -> bool:
        return self.predictor is not None


def require_network() -> AttackedNetwork:
    """The sidebar's model, loaded; the page stops with the reason where there is none, it does not load, or it
    reads something the attacks here do not fit (a MultiMNIST model's pairs of digits)."""
    choice = picker.model_picker()
    if choice is None:
        views.no_model_hint()
        st.stop()
    version = catalog.file_version(choice.path)
    try:
        net = resources.network(str(choice.path), version)
    except ModelLoadError as error:
        st.error(f"Cannot load the model: {error}")
        views.no_model_hint()
        st.stop()
    if not attack.applies_to(net):
        title = DATASET_TITLES.get(net.config.dataset, net.config.dataset)
        st.info(f"The active model reads {title}: images of {net.config.input_shape[0]}×{net.config.input_shape[1]} "
                "pixels that hold two overlapping digits. This page attacks one digit at a time: an untargeted attack "
                "makes the one digit read wrong, and detection compares the input with the one reconstruction from "
                "the winning capsule; neither is defined for a pair yet. Pick a one-digit model in the sidebar (the "
                "MNIST or Fashion-MNIST CapsNet, or a run trained on them) to attack it.")
        st.stop()
    predictor = resources.load_predictor(str(choice.path), version) if isinstance(net, CapsNet) else None
    return AttackedNetwork(choice, net, version, predictor)


def send_to_attack(position: int) -> None:
    """For other pages (the Map): open the Attack page on test image `position` of the active model's dataset (its
    place in `resources.test_digits(dataset)`). A shared link does the same with `/attack?class=C&example=E`."""
    st.session_state[state.ATTACK_PICK] = int(position)
    st.switch_page(PAGES["attack"])


def link_parameters(labels: np.ndarray, position: int) -> dict[str, str]:
    """The query parameters of a link to the Attack page on test image `position`: its class and which example of
    that class it is, as every page that picks a test digit names it."""
    label = int(labels[position])
    example = int(np.searchsorted(np.flatnonzero(np.asarray(labels) == label), position))
    return {"class": str(label), "example": str(example)}


def take_sent_digit(digits) -> None:
    """A digit another page sent (`send_to_attack`): select it in the widgets, which do not exist yet."""
    sent = st.session_state.pop(state.ATTACK_PICK, None)
    if sent is None or not 0 <= sent < len(digits.labels):
        return
    parameters = link_parameters(digits.labels, sent)
    st.session_state[state.ATTACK_SOURCE] = TEST
    st.session_state[state.ATTACK_CLASS] = int(parameters["class"])
    st.session_state[state.ATTACK_POSITION] = int(parameters["example"])


def choose_digit(network: AttackedNetwork, digits) -> tuple[np.ndarray, int, str]:
    """The digit to attack from the widgets at the top (a test digit or the last drawing): (image, the class the
    untargeted attack pushes away from, caption). A drawing has no true class: the model's own reading stands in."""
    classes = network.classes
    sources = [TEST, DRAWING] if state.DRAWING in st.session_state else [TEST]
    take_sent_digit(digits)
    allowed = {state.ATTACK_SOURCE: lambda v: v in sources, state.ATTACK_CLASS: lambda v: 0 <= v < len(classes),
               state.ATTACK_POSITION: lambda v: v >= 0, state.ATTACK_METHOD: lambda v: v in attack.METHODS,
               state.ATTACK_EPSILON: lambda v: EPSILON_RANGE[0] <= v <= EPSILON_RANGE[1],
               state.ATTACK_STEPS: lambda v: STEPS_RANGE[0] <= v <= STEPS_RANGE[1],
               state.ATTACK_TARGET: lambda v: UNTARGETED <= v < len(classes)}
    state.from_url(SHARED, allowed)
    pick = st.columns([1.2, 1, 1])
    if pick[0].radio("Digit", sources, key=state.ATTACK_SOURCE, horizontal=True) == DRAWING:
        image = np.asarray(st.session_state[state.DRAWING], np.float32)
        return image, int(np.argmax(scores_of(network, image))), "your last drawing"
    index = views.pick_test_digit(digits, classes, state.ATTACK_CLASS, state.ATTACK_POSITION, pick[1], pick[2])
    return to_float(digits.images[index]), int(digits.labels[index]), views.test_digit_caption(digits, index, classes)


def choose_attack(classes: tuple[str, ...]) -> Attack:
    """The attack from the second row of widgets: method, epsilon, PGD's steps and an optional target class."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    columns = st.columns([1, 1.6, 1.2, 1.2])
    method = columns[0].radio("Attack", attack.METHODS, format_func=str.upper, key=state.ATTACK_METHOD,
                              horizontal=True, help="FGSM: one step of ε along the gradient's sign. PGD: several "
                                                    "smaller steps, each kept within ε of the digit.")
    epsilon = columns[1].slider("ε: the most any pixel may change", *EPSILON_RANGE, step=0.01,
                                key=state.ATTACK_EPSILON, format="%.2f")
    steps = 1
    if method == "pgd":
        steps = columns[2].slider("PGD steps", *STEPS_RANGE, key=state.ATTACK_STEPS)
    target = columns[3].selectbox("Target", [UNTARGETED, *range(len(classes))], key=state.ATTACK_TARGET,
                                  format_func=lambda c: "none (untargeted)" if c == UNTARGETED else classes[c],
                                  help="Untargeted: any wrong class will do. A target: the attack pulls towards it.")
    state.to_url(SHARED, DEFAULTS)
    return Attack(method, float(epsilon), int(steps), None if target == UNTARGETED else int(target))


# --- one digit -----------------------------------------------------------------------------------------------------

@st.cache_resource(max_entries=6, show_spinner="Preparing the model's gradients…")
def attack_model(path: str, version: float) -> AttackModel:
    """The network's scores and input gradients (`capsnet.attack.AttackModel`), one per model file and process."""
    return AttackModel.of(resources.network(path, version))


@st.cache_data(max_entries=256, show_spinner=False)
def adversarial(path: str, version: float, image: bytes, shape: tuple[int, ...], label: int, method: str,
                epsilon: float, steps: int, target: int | None) -> np.ndarray:
    """One digit's adversarial version (`image`: the float32 array's bytes)."""
    digit = np.frombuffer(image, np.float32).reshape(shape)
    return Attack(method, epsilon, steps, target).run(attack_model(path, version), digit[None], [label])[0]


@dataclass
class Examined:
    """What the network makes of one image."""

    scores: np.ndarray  # capsule lengths (CapsNet) or class probabilities (CNN), [classes]
    reconstruction: np.ndarray | None  # from the winning capsule (CapsNet)
    distance: float | None  # input to reconstruction, Euclidean

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.scores))


def scores_of(network: AttackedNetwork, image: np.ndarray) -> np.ndarray:
    return examine(network, image).scores


def examine(network: AttackedNetwork, image: np.ndarray) -> Examined:
    if network.predictor is not None:
        prediction = network.predictor.predict(image)
        distance = float(reconstruction_distances(image[None], prediction.reconstruction[None])[0])
        return Examined(prediction.lengths, prediction.reconstruction, distance)
    logits = attack_model(*network.cache_key).scores(image[None])[0]
    probabilities = np.exp(logits - logits.max())
    return Examined(probabilities / probabilities.sum(), None, None)


def verdict(before: int, after: int, label: int, target: int | None, classes: tuple[str, ...]) -> str:
    """One sentence on how the attack went, from the classes read before and after."""
    if before != label:
        return f"The model already reads this digit as {classes[before]}: there is nothing to attack."
    if target == label:
        return "The target is the digit's own class: pick another class to pull it towards."
    if after != before and target in (None, after):
        return "The attack succeeded."
    if after == before:
        return "The attack failed: the model's reading did not change."
    return f"The attack failed: the model's reading changed, but not to {classes[target]}."


def attack_digit(network: AttackedNetwork, image: np.ndarray, label: int, settings: Attack) -> np.ndarray:
    image = np.ascontiguousarray(image, np.float32)
    return adversarial(*network.cache_key, image.tobytes(), image.shape, label, settings.method, settings.epsilon,
                       settings.steps, settings.target)


# --- detection threshold and curves -------------------------------------------------------------------------------

def card_path(choice: ModelChoice) -> Path | None:
    """The model card of a shipped model, however it was picked (the picker's entry, or $CAPSNET_WEIGHTS naming the
    same file)."""
    if choice.card is not None:
        return choice.card
    resolved = choice.path.resolve()
    return next((card for model, card in CARDS.items() if model.resolve() == resolved), None)


def stored_curves(choice: ModelChoice) -> dict | None:
    card = card_path(choice)
    return catalog.read_json(card).get("attack_curves") if card is not None else None


@st.cache_data(max_entries=8, show_spinner="Measuring reconstruction distances on clean test digits…")
def measured_threshold(path: str, version: float, count: int) -> float:
    net = resources.load_predictor(path, version).net
    digits = resources.test_digits(net.config.dataset)
    evaluation = resources.evaluate(path, version, count)
    return detection_threshold(reconstruction_distances(to_float(digits.images[:count]),
                                                        evaluation.reconstructions))


def threshold(network: AttackedNetwork) -> tuple[float, str]:
    """DARCCC's threshold for the active CapsNet, and where it comes from: its card's attack curves, or measured
    here on the first clean test digits."""
    stored = stored_curves(network.choice)
    if stored and stored.get("detection"):
        return float(stored["detection"]["threshold"]), f"its model card, {stored['test_digits']:,} test digits"
    count = min(CURVE_DIGITS, len(resources.test_digits(network.dataset).labels))
    return measured_threshold(*network.cache_key, count), f"the first {count:,} test digits"


@st.cache_data(max_entries=8, show_spinner="Attacking the test digits with FGSM and PGD at every ε (once per model; "
                                            "a CapsNet takes tens of minutes on a CPU)…")
def measured_curves(path: str, version: float, count: int) -> dict:
    """`capsnet.attack.measure` of the model at `path` on the first `count` test images of its dataset."""
    net = resources.network(path, version)
    digits = resources.test_digits(net.config.dataset)
    return attack.measure(net, digits.images[:count], digits.labels[:count])


def curves_to_show(network: AttackedNetwork) -> dict[str, dict] | None:
    """{label: curves} for the figure: the active model's and the shipped CNN's beside it, from the cards, or
    measured where this session asked; None while a model without stored curves waits for that request."""
    own = stored_curves(network.choice)
    compare = catalog.baseline_beside(network.choice, network.dataset)
    baseline = catalog.read_json(BASELINE_CARD).get("attack_curves") if compare else None
    measured = st.session_state.setdefault(state.ATTACK_MEASURED, set())
    if (own is None or compare and baseline is None) and network.choice.key not in measured:
        return None
    count = min(CURVE_DIGITS, len(resources.test_digits(network.dataset).labels))
    curves = {network.choice.label: own or measured_curves(*network.cache_key, count)}
    if compare:
        curves["Baseline CNN (shipped)"] = baseline or measured_curves(str(BASELINE_MODEL),
                                                                       catalog.file_version(BASELINE_MODEL), count)
    return curves


def request_measurement(network: AttackedNetwork) -> None:
    st.session_state.setdefault(state.ATTACK_MEASURED, set()).add(network.choice.key)
