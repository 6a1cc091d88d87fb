"""The Overlap page's pieces: choosing a pair of digits (a MultiMNIST test pair, two test digits placed by hand, or a
drawing), reading it with the model, and showing each digit's reconstruction in its own colour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from capsnet import multimnist
from capsnet.config import digits_per_image
from capsnet.explorer import state
from capsnet.explorer.navigation import PAGES
from capsnet.imaging import to_float
from capsnet.inference import Predictor
from capsnet.preprocess import PreprocessError, grayscale
from capsnet.sample import TestDigits

TEST_PAIR, COMPOSE, DRAW = "Test pair", "Compose", "Draw"
SOURCES = (TEST_PAIR, COMPOSE, DRAW)
COLOURS = ("#ff4b4b", "#2ecc40")  # the longest capsule's reconstruction in red, the second's in green
RGB = ((1.0, 0.29, 0.29), (0.18, 0.8, 0.25))
DISPLAY_SCALE = 6  # 36 px shown at 216 px
SMALL_SCALE = 4
CANVAS_SIDE = 288  # 8x the 36 px frame
CANVAS_INK = 16
DEFAULTS = {state.OVERLAP_SOURCE: TEST_PAIR, state.OVERLAP_PAIR: 0, state.OVERLAP_AS_CLASS: 0,
            state.OVERLAP_EDITED: 0,
            state.OVERLAP_CLASS[0]: 3, state.OVERLAP_CLASS[1]: 7, state.OVERLAP_POSITION[0]: 0,
            state.OVERLAP_POSITION[1]: 0, state.OVERLAP_SHIFT_Y[0]: -2, state.OVERLAP_SHIFT_X[0]: -2,
            state.OVERLAP_SHIFT_Y[1]: 2, state.OVERLAP_SHIFT_X[1]: 2}
URL_KEYS = list(DEFAULTS)


@dataclass
class Pair:
    image: np.ndarray  # [36, 36] float32 in [0, 1]
    caption: str
    identity: str  # names the input: slider keys include it, so a new pair starts with fresh sliders
    labels: tuple[int, int] | None  # the true classes, where known


@dataclass
class PairReading:
    lengths: np.ndarray  # [classes]
    capsules: np.ndarray  # [classes, 16]
    top: np.ndarray  # [2] the two longest capsules' classes, longest first
    reconstructions: np.ndarray  # [2, 36, 36] each from its own capsule alone


def reads_pairs(model) -> bool:
    return digits_per_image(model.dataset) > 1


def needs_pair_model(model) -> None:
    """What the page says to a single-digit model."""
    st.info(f"The active model, {model.choice.label}, was trained on one {model.dataset.replace('_', '-')} image at a "
            "time: this page needs a CapsNet trained on MultiMNIST, pairs of overlapping digits. Pick one in the "
            "sidebar, or train one: `python -m capsnet train --dataset multimnist -w assets/capsnet.keras`.")
    st.page_link(PAGES["train"], label="Train a model", icon=":material/model_training:")


@st.cache_resource(show_spinner="Making the test pairs…")
def test_pairs(dataset: str, source: str, _digits: TestDigits) -> multimnist.Pairs:
    """The fixed MultiMNIST test pairs of these test digits (the full test set: the model card's; the shipped sample:
    pairs of its digits, by the same rule and seed)."""
    return multimnist.test_pairs(_digits.images, _digits.labels)


def choose_pair(digits: TestDigits, classes: tuple[str, ...]) -> Pair | None:
    """The widgets at the top of the page; the pair they describe (None while the canvas is empty)."""
    pairs = test_pairs("multimnist", digits.source, digits)
    counts = [int(np.sum(digits.labels == c)) for c in range(len(classes))]
    state.from_url(URL_KEYS, {
        state.OVERLAP_SOURCE: lambda v: v in SOURCES, state.OVERLAP_PAIR: lambda v: 0 <= v < len(pairs),
        state.OVERLAP_AS_CLASS: lambda v: 0 <= v < len(classes), state.OVERLAP_EDITED: lambda v: v in (0, 1),
        **{key: (lambda v: 0 <= v < len(classes)) for key in state.OVERLAP_CLASS},
        **{key: (lambda v: v >= 0) for key in state.OVERLAP_POSITION},
        **{key: (lambda v: abs(v) <= multimnist.MAX_SHIFT) for key in (*state.OVERLAP_SHIFT_Y, *state.OVERLAP_SHIFT_X)},
    })
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    source = st.radio("Digits", SOURCES, key=state.OVERLAP_SOURCE, horizontal=True)
    if source == TEST_PAIR:
        return test_pair(pairs, digits, classes)
    if source == COMPOSE:
        return composed_pair(digits, classes, counts)
    return drawn_pair()


def test_pair(pairs: multimnist.Pairs, digits: TestDigits, classes: tuple[str, ...]) -> Pair:
    columns = st.columns([1, 1, 3])
    index = columns[0].number_input(f"Test pair (of {len(pairs)})", 0, len(pairs) - 1, key=state.OVERLAP_PAIR)
    columns[1].button("Random pair", on_click=random_pair, args=(len(pairs),), icon=":material/shuffle:")
    a, b = (int(label) for label in pairs.labels[index])
    first, second = (int(digits.indices[s]) for s in pairs.sources[index])
    caption = f"test pair #{index}: {classes[a]} (test image #{first}) and {classes[b]} (#{second})"
    return Pair(to_float(pairs.images[index]), caption, f"pair-{digits.source}-{index}", (a, b))


def random_pair(count: int) -> None:
    st.session_state[state.OVERLAP_PAIR] = int(np.random.default_rng().integers(count))


def composed_pair(digits: TestDigits, classes: tuple[str, ...], counts: list[int]) -> Pair:
    chosen, shifts, names = [], [], []
    for k, column in enumerate(st.columns(2)):
        top = column.columns(2)
        label = top[0].selectbox(f"Digit {'AB'[k]}: class", range(len(classes)), format_func=classes.__getitem__,
                                 key=state.OVERLAP_CLASS[k])
        if st.session_state[state.OVERLAP_POSITION[k]] >= counts[label]:
            st.session_state[state.OVERLAP_POSITION[k]] = 0
        position = top[1].number_input(f"Example (of {counts[label]})", 0, counts[label] - 1,
                                       key=state.OVERLAP_POSITION[k])
        index = int(np.flatnonzero(digits.labels == label)[position])
        bottom = column.columns(2)
        limit = multimnist.MAX_SHIFT
        dy = bottom[0].slider("Shift down", -limit, limit, key=state.OVERLAP_SHIFT_Y[k])
        dx = bottom[1].slider("Shift right", -limit, limit, key=state.OVERLAP_SHIFT_X[k])
        chosen.append(index)
        shifts.append((dy, dx))
        names.append(f"{classes[label]} (test image #{digits.indices[index]}, moved {dy:+d}, {dx:+d})")
    image, _ = multimnist.compose_pair(digits.images[chosen[0]], digits.images[chosen[1]], shifts[0], shifts[1])
    labels = (int(digits.labels[chosen[0]]), int(digits.labels[chosen[1]]))
    if labels[0] == labels[1]:
        st.caption("Both digits are of one class: the network was trained on pairs of different classes only, and "
                   "one capsule cannot say \"two of me\".")
    identity = f"compose-{digits.source}-{chosen[0]}-{chosen[1]}-{shifts}"
    return Pair(to_float(image), " over ".join(names), identity, labels)


def drawn_pair() -> Pair | None:
    st.caption("Draw two digits over each other, as large as the canvas allows.")
    result = st_canvas(stroke_width=CANVAS_INK, stroke_color="#ffffff", background_color="#000000",
                       width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw", return_image_data=True,
                       key=state.OVERLAP_CANVAS)
    if result.image_data is None or not (result.json_data or {}).get("objects"):
        return None
    try:
        image = multimnist.from_drawing(grayscale(result.image_data, background=0.0))
    except PreprocessError as error:
        st.warning(f"Cannot read the drawing: {error}.")
        return None
    return Pair(image, "your drawing", f"drawing-{hash(image.tobytes())}", None)


def read_pair(predictor: Predictor, image: np.ndarray) -> PairReading:
    """The model on one pair: its two longest capsules, each decoded alone."""
    prediction = predictor.predict(image)
    top = multimnist.top_classes(prediction.lengths[None])[0]
    second = predictor.decode(prediction.capsules, int(top[1]))
    return PairReading(prediction.lengths, prediction.capsules, top, np.stack([prediction.reconstruction, second]))


def coloured(reconstruction: np.ndarray, k: int) -> np.ndarray:
    """A reconstruction [h, w] in its digit's colour, RGB."""
    return np.clip(reconstruction[..., None] * np.array(RGB[k], np.float32), 0.0, 1.0)


def figure5(image: np.ndarray, reading: PairReading, replace: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The paper's figure 5: the input dimmed, each reconstruction in its colour over it. `replace` swaps in other
    reconstructions (an edited capsule's)."""
    recon = [(replace or {}).get(k, reading.reconstructions[k]) for k in range(2)]
    return multimnist.coloured_overlay(image, recon[0], recon[1])


def verdict(reading: PairReading, pair: Pair, classes: tuple[str, ...]) -> str:
    named = " and ".join(f"**{classes[c]}**" for c in reading.top)
    if pair.labels is None:
        return f"Reads {named}."
    right = len(set(int(c) for c in reading.top) & set(pair.labels))
    truth = " and ".join(classes[c] for c in pair.labels)
    outcome = {2: "both right ✓", 1: "one of two right", 0: "neither right"}[min(right, 2)]
    return f"Reads {named} — the digits are {truth}: {outcome}."


def capsule_sliders(reading: PairReading, identity: str, classes: tuple[str, ...],
                    offsets: np.ndarray) -> tuple[int, np.ndarray]:
    """Which of the two capsules to edit, and its 16 offsets from the sliders (the paper's figure 4 range)."""
    top = st.columns([2, 1])
    edited = top[0].radio("Edit", (0, 1), key=state.OVERLAP_EDITED, horizontal=True,
                          format_func=lambda k: f"{('red', 'green')[k]}: capsule {classes[reading.top[k]]}")
    if top[1].button("Reset sliders", icon=":material/restart_alt:"):
        st.session_state[state.OVERLAP_GENERATION] = st.session_state.get(state.OVERLAP_GENERATION, 0) + 1
    generation = st.session_state.get(state.OVERLAP_GENERATION, 0)
    dims = reading.capsules.shape[-1]
    columns = st.columns(4)
    values = [columns[d % 4].slider(f"dim {d + 1}", float(offsets[0]), float(offsets[-1]), 0.0, 0.01,
                                    key=state.overlap_slider(identity, edited, generation, d)) for d in range(dims)]
    return edited, np.array(values, np.float32)


def keep_in_url() -> None:
    state.to_url(URL_KEYS, DEFAULTS)
