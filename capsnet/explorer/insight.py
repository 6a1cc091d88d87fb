"""The Routing page's section "What the primary capsules see": each capsule type's lengths over the grid, conv1's
feature maps on request, and saliency (gradient x input) for the CapsNet and the shipped CNN side by side.

Everything is drawn as images, not charts: 32 small maps (or 256) are one picture, and the page stays light."""

from __future__ import annotations

import numpy as np
import streamlit as st

from capsnet import saliency
from capsnet.assets import BASELINE_CARD, BASELINE_MODEL
from capsnet.explorer import attacking, catalog, resources, state, views
from capsnet.explorer.picker import ActiveModel
from capsnet.inference import RoutingTrace

TYPE_COLUMNS = 8  # 32 capsule types as 4 rows of 8
CONV1_COLUMNS = 16  # 256 conv1 maps as 16 rows of 16


@st.cache_resource(max_entries=4, show_spinner="Preparing conv1's feature maps…")
def conv1(path: str, version: float):
    return saliency.conv1_function(resources.load_predictor(path, version).net)


@st.cache_data(max_entries=128, show_spinner=False)
def saliency_map(path: str, version: float, image: bytes, shape: tuple[int, ...], target: int) -> np.ndarray:
    """`saliency.saliency` of the model at `path` (`image`: the float32 array's bytes). Cached: stepping through the
    routing rounds reruns the page, not the gradients."""
    digit = np.frombuffer(image, np.float32).reshape(shape)
    return saliency.saliency(attacking.attack_model(path, version), digit, target)


def baseline_cnn(dataset: str):
    """The shipped CNN (for its saliency beside the CapsNet's), or None where it is absent or knows another dataset."""
    if not BASELINE_MODEL.is_file() or catalog.read_json(BASELINE_CARD).get("data", {}).get("dataset",
                                                                                           "mnist") != dataset:
        return None
    return str(BASELINE_MODEL), catalog.file_version(BASELINE_MODEL)


def primary_capsules_section(model: ActiveModel, image: np.ndarray, trace: RoutingTrace) -> None:
    config = model.predictor.net.config
    classes = model.classes
    winner = int(np.argmax(trace.lengths[-1]))
    st.subheader("What the primary capsules see")
    lengths = saliency.primary_lengths(trace.primary, config.primary_channels)
    grid_column, table_column = st.columns([2.2, 1], gap="large")
    with grid_column:
        views.show_digit(saliency.sequential_rgb(saliency.mosaic(lengths, TYPE_COLUMNS), high=1.0),
                         f"primary-capsule lengths: {len(lengths)} types (0–{len(lengths) - 1}, row by row), each "
                         f"over the {lengths.shape[1]}×{lengths.shape[2]} grid; black 0, yellow 1", scale=9,
                         alt="primary capsule lengths")
    with table_column:
        st.caption("Each type is one feature detector, applied at every position of the grid; a capsule's length is "
                   "how sure it is that its feature is there. The types that fire most on this digit:")
        st.dataframe(saliency.strongest_types(lengths), hide_index=True,
                     column_config={"longest": st.column_config.NumberColumn(format="%.3f")})

    state.from_url([state.ROUTING_CONV1])
    if st.toggle("Show conv1's feature maps", key=state.ROUTING_CONV1,
                 help="The first layer's 256 filters (9×9) over the image: what the primary capsules read."):
        maps = conv1(*model.cache_key)(image)  # [rows, columns, filters]
        tiles = saliency.mosaic(np.moveaxis(maps, -1, 0), CONV1_COLUMNS)
        views.show_digit(saliency.sequential_rgb(tiles), f"conv1: {maps.shape[-1]} feature maps of "
                         f"{maps.shape[0]}×{maps.shape[1]}, one colour scale (black: 0)", scale=2, alt="conv1 maps")
    state.to_url([state.ROUTING_CONV1], {state.ROUTING_CONV1: False})

    st.markdown(f"**Which pixels the decision depends on**: gradient × input of class {classes[winner]}'s score")
    columns = st.columns(3)
    image = np.ascontiguousarray(image, np.float32)
    capsnet_map = saliency_map(*model.cache_key, image.tobytes(), image.shape, winner)
    views.show_digit(saliency.diverging_rgb(capsnet_map), f"CapsNet: the length of capsule {classes[winner]}",
                     scale=5, where=columns[0], alt="capsnet saliency")
    cnn = baseline_cnn(model.dataset)
    if cnn is None:
        columns[1].caption("No baseline CNN for this dataset: the shipped CNN was trained on MNIST only.")
    else:
        cnn_map = saliency_map(*cnn, image.tobytes(), image.shape, winner)
        reads = classes[int(np.argmax(attacking.attack_model(*cnn).scores(image[None])[0]))]
        views.show_digit(saliency.diverging_rgb(cnn_map), f"baseline CNN: its logit for {classes[winner]} (it reads "
                         f"{reads})", scale=5, where=columns[1], alt="cnn saliency")
    columns[2].caption("Red: ink there raises the score; blue: it lowers it; white: no effect. Each map uses its own "
                       "scale (the networks' scores are not comparable in size, their layouts are). A capsule's "
                       "length depends on its class alone, like a CNN's logit (a probability would also fall when "
                       "another class rose).")
