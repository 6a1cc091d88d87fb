"""Latent: move through the dimensions (16 in the paper) of a digit's winning capsule and watch the reconstruction
follow."""

import zlib

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import enter_page

enter_page("Latent", "🎚️")
st.title("Inside a capsule")

# After the title: these start TensorFlow.
from capsnet.evaluate import MANIPULATION_OFFSETS
from capsnet.explorer import picker, resources, state, views
from capsnet.explorer.explore import edit_capsule
from capsnet.imaging import enlarge, to_float, to_uint8

model = picker.require_model()
digits = picker.require_test_images(model)
classes = model.classes
TEST, DRAWING = "Test image", "Last drawing"
OFFSET_RANGE = (float(MANIPULATION_OFFSETS[0]), float(MANIPULATION_OFFSETS[-1]))  # the paper's figure 4

# A digit sent from the Reconstruct page: select it in the widgets below (allowed, since they do not exist yet).
if (sent := st.session_state.pop(state.LATENT_PICK, None)) is not None:
    label = int(digits.labels[sent])
    st.session_state[state.LATENT_SOURCE] = TEST
    st.session_state[state.LATENT_CLASS] = label
    st.session_state[state.LATENT_POSITION] = int(np.searchsorted(np.flatnonzero(digits.labels == label), sent))

sources = [TEST, DRAWING] if state.DRAWING in st.session_state else [TEST]
SHARED = [state.LATENT_SOURCE, state.LATENT_CLASS, state.LATENT_POSITION, state.LATENT_ABSOLUTE]
state.from_url([*SHARED, state.LATENT_LINKED], {
    state.LATENT_SOURCE: lambda v: v in sources, state.LATENT_CLASS: lambda v: 0 <= v < len(classes),
    state.LATENT_POSITION: lambda v: v >= 0})
pick = st.columns([1.2, 1, 1, 2])
source = pick[0].radio("Digit", sources, key=state.LATENT_SOURCE, horizontal=True)
if source == DRAWING:
    image = st.session_state[state.DRAWING]
    identity, caption = f"drawing-{zlib.crc32(image.tobytes())}", "your last drawing"
else:
    index = views.pick_test_digit(digits, classes, state.LATENT_CLASS, state.LATENT_POSITION, pick[1], pick[2])
    image = to_float(digits.images[index])
    identity, caption = f"test-{model.dataset}-{index}", views.test_digit_caption(digits, index, classes)
absolute = pick[3].toggle("Absolute values", key=state.LATENT_ABSOLUTE,
                          help=f"Off: each slider adds an offset ({OFFSET_RANGE[0]:+.2f}…{OFFSET_RANGE[1]:+.2f}, as "
                               "in the paper). On: each slider is the dimension's value itself.")

state.to_url(SHARED, {state.LATENT_SOURCE: TEST, state.LATENT_CLASS: 0, state.LATENT_POSITION: 0,
                     state.LATENT_ABSOLUTE: False})
prediction = model.predictor.predict(image)
digit = prediction.digit
capsules = prediction.capsules


def linked_values(count: int) -> np.ndarray | None:
    """The slider values a link carried (`dims=`), once: None when there are none, or not `count` numbers."""
    text = st.session_state.get(state.LATENT_LINKED)
    st.session_state[state.LATENT_LINKED] = ""  # applied: later runs, and a reset, start from the capsule
    try:
        values = np.array([float(v) for v in text.split(",")], np.float32) if text else None
    except ValueError:
        return None
    return values if values is not None and len(values) == count and np.isfinite(values).all() else None


def reset_sliders() -> None:
    st.session_state[state.LATENT_GENERATION] = st.session_state.get(state.LATENT_GENERATION, 0) + 1


# Only this part reruns when a slider moves: one compiled decoder call and one image.
@st.fragment
def sliders_and_reconstruction() -> None:
    generation = st.session_state.get(state.LATENT_GENERATION, 0)
    winning = capsules[digit]
    controls, view = st.columns([2, 1], gap="large")
    with controls:
        st.markdown(f"**Capsule {classes[digit]}**: {len(winning)} dimensions")
        halves = st.columns(2)
        values = np.zeros(len(winning), np.float32)
        starts = np.round(winning, 2) if absolute else np.zeros(len(winning))
        keys = [state.latent_slider(identity, absolute, generation, d) for d in range(len(winning))]
        linked = linked_values(len(winning))  # a link's slider values, applied once
        for d, key in enumerate(keys):
            low, high = (-1.0, 1.0) if absolute else OFFSET_RANGE
            st.session_state.setdefault(key, float(np.clip(linked[d] if linked is not None else starts[d], low, high)))
            values[d] = halves[2 * d // len(winning)].slider(f"dimension {d}", low, high, step=0.01, key=key)
        st.button("Reset sliders", on_click=reset_sliders, icon=":material/restart_alt:")
    moved = not np.allclose(values, starts, atol=1e-6)
    state.set_url(state.LATENT_LINKED, ",".join(f"{v:g}" for v in values) if moved else None)
    edited = edit_capsule(capsules, digit, values, absolute)
    with view:
        views.show_digit(model.predictor.decode(edited, digit), "edited reconstruction")  # alt text: the same
        st.caption(f"edited capsule length {np.linalg.norm(edited[digit]):.3f}")


left, right = st.columns([1, 3], gap="large")
with left:
    st.markdown(f"## Prediction: {classes[digit]}")
    st.caption(f"capsule length {prediction.lengths[digit]:.3f}")
    views.show_digit(image, caption, scale=5)
    views.show_digit(prediction.reconstruction, "reconstruction", scale=5)
with right:
    sliders_and_reconstruction()

st.subheader("Every dimension, one at a time")
st.caption(f"Row d: dimension d of capsule {classes[digit]} shifted by {OFFSET_RANGE[0]:+.2f} … {OFFSET_RANGE[1]:+.2f} "
           "(columns), everything else unchanged.")
grid, png = resources.manipulation(*model.cache_key, np.ascontiguousarray(capsules, np.float32).tobytes(), digit)
st.image(to_uint8(enlarge(grid, 2)), output_format="PNG",
         caption=f"{model.predictor.net.config.digit_dim}×{len(MANIPULATION_OFFSETS)} manipulation grid")
st.download_button("Download the grid (PNG)", png, file_name=f"manipulate-{digit}.png", mime="image/png",
                   on_click="ignore", icon=":material/download:")
