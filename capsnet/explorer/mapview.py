"""The Map page's pieces: which model it can map, the cached capsule space of a model's test set, the scatter plot,
and what a selection on it shows. The maths is `capsnet.projection`'s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from capsnet import projection
from capsnet.config import DIGIT_SIZE, ModelConfig, digits_per_image
from capsnet.data import local_version
from capsnet.explorer import catalog, picker, resources, state, views
from capsnet.explorer.navigation import PAGES
from capsnet.imaging import real_over_reconstruction, to_float
from capsnet.inference import ModelLoadError
from capsnet.model import CapsNet
from capsnet.projection import CapsuleSpace, MapStore

SMALL_MAP = 1000  # the smaller map on offer, computed without asking (a name tests can lower)
MAX_SELECTED = 100  # selected digits kept (and carried by a link)
MAX_SHOWN = 20  # of which shown as images with their reconstructions
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}
# Plotly's (D3's) ten categorical colours: one per class
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def kind_names(config: ModelConfig) -> dict[str, str]:
    """What each kind of point is, for the model at hand: its winning capsule, or all its class capsules."""
    return {"winning": f"winning capsule ({config.digit_dim}-D)",
            "all": f"all capsules ({config.num_classes}×{config.digit_dim})"}


def require_capsule_model() -> picker.ActiveModel:
    """The active model, if the Map can show it; otherwise the page stops saying what the model is and where it can
    be explored. (The baseline CNN has no capsules; a MultiMNIST model reads two digits an image.)"""
    model = picker.active_model(show_errors=False)
    if model is None:
        key = picker.chosen_key()
        choice = next((c for c in catalog.available_models() if c.key == key), None)
        if choice is not None:
            try:
                net = resources.network(str(choice.path), catalog.file_version(choice.path))
            except ModelLoadError as error:
                st.error(f"Cannot load the model: {error}")
            else:
                if not isinstance(net, CapsNet):
                    st.info(f"The active model, {choice.label}, is the baseline CNN: it has no capsules, so there is "
                            "no capsule space to map. The Robustness page compares it with CapsNet; pick a CapsNet "
                            "in the sidebar for this page.")
                    st.page_link(PAGES["robustness"], label="Robustness: CapsNet against the CNN",
                                 icon=":material/rotate_right:")
                    st.stop()
        views.no_model_hint()
        st.stop()
    height, width = model.predictor.net.config.input_shape[:2]
    if digits_per_image(model.dataset) > 1 or (height, width) != (DIGIT_SIZE, DIGIT_SIZE):
        st.info(f"The active model, {model.choice.label}, reads two overlapping digits in each 36×36 image "
                "(MultiMNIST), so an image is not one point of one class: the Map places single digits. Pick the "
                "MNIST or Fashion-MNIST CapsNet in the sidebar to map capsule space"
                + ("; the Overlap page shows what this model sees." if "overlap" in PAGES else "."))
        if "overlap" in PAGES:
            st.page_link(PAGES["overlap"], label="Overlap: two digits at once", icon=":material/join:")
        st.stop()
    return model


@st.cache_resource(max_entries=8, show_spinner=False)
def model_digest(path: str, version: float) -> str:
    return projection.file_digest(path)


@st.cache_resource(max_entries=8, show_spinner=False)
def capsule_space(path: str, version: float, size: int, cache_root: str, data_version: str) -> CapsuleSpace:
    """The capsule space of the first `size` test images of the model at `path`, one per process and version of the
    local data (`data_version`: only a key); on disk under `cache_root` (or shipped). Its capsules, when they are
    needed at all, come from `resources.evaluate`."""
    net = resources.load_predictor(path, version).net
    digits = resources.test_digits(net.config.dataset)
    key = projection.map_key(model_digest(path, version), digits.images[:size], digits.labels[:size])
    return CapsuleSpace(MapStore(key, root=Path(cache_root)),
                        lambda: resources.evaluate(path, version, size).capsules)


def space_of(model: picker.ActiveModel, size: int) -> CapsuleSpace:
    return capsule_space(*model.cache_key, size, str(projection.cache_root()), local_version(model.dataset))


def points_of(space: CapsuleSpace, method: str, kind: str) -> np.ndarray:
    """The map's points; where t-SNE cannot run (scikit-learn missing from an old install), the page says so and
    stops instead of showing a traceback. A cache folder that cannot be written is worth a note."""
    try:
        points = space.points(method, kind)
    except ImportError as error:
        st.warning(f"t-SNE needs scikit-learn ({error}): `pip install -r requirements.txt` installs it. PCA works "
                   "without it.")
        st.stop()
    if space.store.unwritable:
        st.caption(f"This map could not be kept on disk ({space.store.unwritable}): it will be computed again after "
                   "a restart. `$CAPSNET_CACHE_DIR` chooses another folder.")
    return points


# --- selections ----------------------------------------------------------------------------------------------------

def selected_positions(selection: Mapping | None) -> list[int]:
    """Test-image positions of the points a Plotly selection event names (each point carries its position as
    customdata[0]), in order, without repeats."""
    positions: list[int] = []
    for point in (selection or {}).get("points", []):
        data = point.get("customdata")
        # A list, or (customdata sent as a typed array, as Plotly does for numpy arrays) an object keyed "0", "1"...
        if isinstance(data, dict):
            data = data.get("0")
        value = data[0] if isinstance(data, (list, tuple)) and data else data
        if isinstance(value, (int, float)) and int(value) not in positions:
            positions.append(int(value))
    return positions


def parse_selected(text: str | None, count: int) -> list[int]:
    """The positions a link's `selected=` carries: comma-separated integers below `count`; anything else is left
    out (a hand-edited link is never an error)."""
    positions: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count and int(part) not in positions:
            positions.append(int(part))
    return positions[:MAX_SELECTED]


def keep(positions: Sequence[int], count: int = MAX_SELECTED) -> list[int]:
    """At most `count` of `positions`, in test-set order: all of them, or an even sample across them (a box over a
    whole island should not keep only the first class' points that Plotly happens to list first)."""
    ordered = sorted(set(int(p) for p in positions))
    if len(ordered) <= count:
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, count).round().astype(int)]


def remember_selection() -> None:
    """on_select of the map: the selected points become the page's selection (kept in the URL: up to MAX_SELECTED
    of them); an empty event (a double click on the background) clears it."""
    event = st.session_state.get(state.MAP_CHART) or {}
    positions = selected_positions(event.get("selection"))
    st.session_state[state.MAP_SELECTED] = ",".join(str(p) for p in keep(positions))
    st.session_state[state.MAP_SELECTION_NOTE] = (
        f"{len(positions):,} digits selected: an even sample of {MAX_SELECTED} is kept. "
        if len(positions) > MAX_SELECTED else "")


def clear_selection() -> None:
    st.session_state[state.MAP_SELECTED] = ""
    st.session_state[state.MAP_SELECTION_NOTE] = ""


def describe_selection(positions: Sequence[int], labels: np.ndarray, predicted: np.ndarray,
                       classes: tuple[str, ...]) -> str:
    """One line about a selection: how many, of which classes, how many misread."""
    positions = np.asarray(positions, np.int64)
    counts = np.bincount(labels[positions], minlength=len(classes))
    parts = [f"{count} × {classes[c]}" for c in np.argsort(-counts, kind="stable") if (count := counts[c])]
    wrong = int(np.sum(labels[positions] != predicted[positions]))
    return (f"{len(positions)} selected: {', '.join(parts)}"
            + (f"; {wrong} misclassified" if wrong else "; all classified correctly"))


# --- the figure ----------------------------------------------------------------------------------------------------

def rgba(colour: str, alpha: float) -> str:
    """"#rrggbb" -> "rgba(r, g, b, alpha)": per-point transparency, which WebGL markers take only as colours."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def map_figure(points: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
               indices: np.ndarray, classes: tuple[str, ...], title: str, picked: int | None = None,
               selected: Sequence[int] = (), drawing: tuple[np.ndarray, str] | None = None) -> go.Figure:
    """Every test digit as a point coloured by its true class; misclassified ones as crosses (in their true class'
    colour); `picked` (a class) dims the others; `selected` positions ringed; `drawing`: (its place, its label) as a
    star. Each point's customdata is [position, test-set index, capsule length]: what a selection returns."""
    wrong = predicted != labels
    customdata = np.stack([np.arange(len(labels)), indices, confidence], axis=1).astype(np.float32)
    figure = go.Figure()
    for c, name in enumerate(classes):
        members = np.flatnonzero((labels == c) & ~wrong)
        dim = picked is not None and c != picked
        figure.add_trace(go.Scattergl(
            x=points[members, 0], y=points[members, 1], mode="markers", name=name, customdata=customdata[members],
            marker=dict(size=4, color=PALETTE[c % len(PALETTE)], opacity=0.1 if dim else 0.7),
            hovertemplate=f"test image #%{{customdata[1]:.0f}}: {name}, capsule length %{{customdata[2]:.2f}}"
                          "<extra></extra>"))
    members = np.flatnonzero(wrong)
    # With a class picked out, the crosses that do not involve it (as truth or as reading) fade like the points.
    faded = [picked is not None and picked not in (labels[i], predicted[i]) for i in members]
    figure.add_trace(go.Scattergl(
        x=points[members, 0], y=points[members, 1], mode="markers", name=f"misclassified ({len(members)})",
        customdata=customdata[members], text=[f"{classes[labels[i]]} read as {classes[predicted[i]]}" for i in members],
        marker=dict(symbol="x", size=9, color=[rgba(PALETTE[labels[i] % len(PALETTE)], 0.1 if fade else 1.0)
                                               for i, fade in zip(members, faded, strict=True)],
                    line=dict(width=1, color=[rgba("#111111", 0.1 if fade else 1.0) for fade in faded])),
        hovertemplate="test image #%{customdata[1]:.0f}: %{text}<extra></extra>"))
    if len(selected):
        chosen = np.asarray(selected, np.int64)
        figure.add_trace(go.Scattergl(
            x=points[chosen, 0], y=points[chosen, 1], mode="markers", name=f"selected ({len(chosen)})",
            customdata=customdata[chosen], hoverinfo="skip",
            marker=dict(symbol="circle-open", size=12, color="#111111", line=dict(width=2))))
    if drawing is not None:
        place, label = drawing
        figure.add_trace(go.Scatter(
            x=[place[0]], y=[place[1]], mode="markers", name=label,
            marker=dict(symbol="star", size=20, color="#ff4b4b", line=dict(width=1.5, color="#111111")),
            hovertemplate=f"{label}<extra></extra>"))
    axis = dict(showticklabels=False, zeroline=False, showgrid=False)
    figure.update_layout(height=620, margin=dict(l=10, r=10, t=40, b=10), title=title, dragmode="select",
                         legend=dict(itemsizing="constant", title="true class"), xaxis=axis,
                         yaxis=dict(**axis, scaleanchor="x"))
    return figure


# --- what a selection shows ----------------------------------------------------------------------------------------

@st.cache_data(max_entries=32, show_spinner=False)
def reconstructions(path: str, version: float, positions: tuple[int, ...]) -> np.ndarray:
    """[len(positions), 28, 28]: test images `positions` of the model's dataset reconstructed from their winning
    capsule (the map keeps none; a few ms each, and kept while the same digits stay selected)."""
    predictor = resources.load_predictor(path, version)
    digits = resources.test_digits(predictor.net.config.dataset)
    return np.stack([predictor.predict(to_float(digits.images[p])).reconstruction for p in positions])


def show_selected(model: picker.ActiveModel, digits, positions: Sequence[int], predicted: np.ndarray) -> None:
    """The first MAX_SHOWN selected test images over their reconstructions from the winning capsule."""
    classes = model.classes
    shown = [int(p) for p in positions[:MAX_SHOWN]]
    rebuilt = dict(zip(shown, reconstructions(*model.cache_key, tuple(shown)), strict=True))
    columns = 10
    for start in range(0, len(shown), columns):
        for column, position in zip(st.columns(columns), shown[start:start + columns], strict=False):
            image = to_float(digits.images[position])
            reconstruction = rebuilt[position]
            label, read = int(digits.labels[position]), int(predicted[position])
            mark = "" if label == read else " ✗"
            views.show_digit(real_over_reconstruction(image, reconstruction, gap=1),
                             f"#{digits.indices[position]}: {classes[label]}→{classes[read]}{mark}", scale=3,
                             where=column)


def link_parameters(labels: np.ndarray, position: int) -> dict[str, str]:
    """How the Latent, Routing and Attack pages name test image `position` in a link: its class and which example
    of that class it is."""
    label = int(labels[position])
    example = int(np.searchsorted(np.flatnonzero(np.asarray(labels) == label), position))
    return {"class": str(label), "example": str(example)}


# The pages a selected digit can be sent to: (page, the value of their `digit` parameter for a test image, the
# session key that hands them a test-image position, if they read one)
DESTINATIONS = {
    "Latent": ("latent", "Test image", state.LATENT_PICK),
    "Routing": ("routing", "Test digit", None),
    "Attack": ("attack", "Test digit", getattr(state, "ATTACK_PICK", None)),
}


def send_buttons(model: picker.ActiveModel, digits, positions: Sequence[int], predicted: np.ndarray) -> None:
    """Pick one selected digit and open it on another page: the same link a user could share, plus the page's own
    hand-over key where it has one (a page visited earlier in the session keeps its widgets' state otherwise)."""
    classes = model.classes
    if st.session_state.get(state.MAP_SEND) not in positions:
        st.session_state[state.MAP_SEND] = positions[0]
    left, *buttons = st.columns([2.2] + [1] * len(DESTINATIONS))
    position = left.selectbox(
        "Send a selected digit to", positions, key=state.MAP_SEND,
        format_func=lambda p: f"#{digits.indices[p]}: {classes[digits.labels[p]]}→{classes[predicted[p]]}")
    for column, (name, (page, source, pick)) in zip(buttons, DESTINATIONS.items(), strict=True):
        if page not in PAGES:
            continue
        if column.button(name, key=f"{state.MAP_SEND}.{page}", icon=":material/arrow_forward:",
                         help=f"Open this digit on the {name} page"):
            if pick is not None:
                st.session_state[pick] = int(position)
            st.switch_page(PAGES[page], query_params={"digit": source, **link_parameters(digits.labels, position),
                                                      "model": model.choice.key})
