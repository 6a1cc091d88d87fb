"""Robustness: rotate, scale, shear and shift a digit and watch the capsules follow; accuracy sweeps per model."""

import dataclasses

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import enter_page

enter_page("Robustness", "🌀")
st.title("Robustness to viewpoint")

# After the title: these start TensorFlow.
from capsnet.affine import Affine, describe, transform
from capsnet.assets import BASELINE_CARD, BASELINE_MODEL
from capsnet.explorer import catalog, figures, picker, resources, state, views
from capsnet.imaging import to_float

model = picker.require_model()
digits = picker.require_test_images(model)
classes = model.classes
TEST, DRAWING = "Test digit", "Last drawing"
# slider: (label, lowest, highest, step, format); the untransformed value is Affine()'s
SLIDERS = {
    "rotation": ("rotation (degrees)", -90.0, 90.0, 1.0, "%g°"),
    "scale": ("scale", 0.5, 1.6, 0.05, "%.2f×"),
    "shear": ("shear (degrees)", -45.0, 45.0, 1.0, "%g°"),
    "shift_x": ("shift right (pixels)", -10.0, 10.0, 0.5, "%g px"),
    "shift_y": ("shift down (pixels)", -10.0, 10.0, 0.5, "%g px"),
}

st.caption("The paper's claim: capsules encode pose, so a CapsNet trained on digits shifted by at most 2 pixels "
           "copes better with other viewpoints than a CNN (affNIST: 79% against 66%). Move the sliders, and compare "
           "the models' accuracy under each transformation below.")


TRANSFORM_KEYS = [state.ROBUST_TRANSFORM + name for name in SLIDERS]
SHARED = [state.ROBUST_SOURCE, state.ROBUST_CLASS, state.ROBUST_POSITION, *TRANSFORM_KEYS]


def choose_image() -> tuple[np.ndarray, str]:
    sources = [TEST, DRAWING] if state.DRAWING in st.session_state else [TEST]
    within = {state.ROBUST_TRANSFORM + name: (lambda v, low=low, high=high: low <= v <= high)
              for name, (_, low, high, _, _) in SLIDERS.items()}
    state.from_url(SHARED, {state.ROBUST_SOURCE: lambda v: v in sources,
                            state.ROBUST_CLASS: lambda v: 0 <= v < len(classes),
                            state.ROBUST_POSITION: lambda v: v >= 0, **within})
    pick = st.columns([1.2, 1, 1])
    if pick[0].radio("Digit", sources, key=state.ROBUST_SOURCE, horizontal=True) == DRAWING:
        return st.session_state[state.DRAWING], "your last drawing"
    index = views.pick_test_digit(digits, classes, state.ROBUST_CLASS, state.ROBUST_POSITION, pick[1], pick[2])
    return to_float(digits.images[index]), views.test_digit_caption(digits, index, classes)


def reset() -> None:
    for field in dataclasses.fields(Affine):
        st.session_state[state.ROBUST_TRANSFORM + field.name] = float(field.default)


image, caption = choose_image()


# Only this part reruns when a slider moves: one transform and one compiled forward pass.
@st.fragment
def transform_and_predict() -> None:
    controls, view = st.columns([1, 2], gap="large")
    with controls:
        for name in SLIDERS:
            st.session_state.setdefault(state.ROBUST_TRANSFORM + name, float(getattr(Affine(), name)))
        values = {name: st.slider(label, low, high, step=step, format=fmt, key=state.ROBUST_TRANSFORM + name)
                  for name, (label, low, high, step, fmt) in SLIDERS.items()}
        st.button("Reset", on_click=reset, icon=":material/restart_alt:")
    state.to_url(SHARED, {state.ROBUST_SOURCE: TEST, state.ROBUST_CLASS: 0, state.ROBUST_POSITION: 0,
                          **{state.ROBUST_TRANSFORM + name: float(getattr(Affine(), name)) for name in SLIDERS}})
    affine = Affine(**values)
    moved = transform(image, affine)
    prediction = model.predictor.predict(moved)
    with view:
        st.markdown(f"## Prediction: {classes[prediction.digit]}")
        st.caption(f"capsule length {prediction.lengths[prediction.digit]:.3f} · {describe(affine)}")
        columns = st.columns(3)
        views.show_digit(image, caption, scale=5, where=columns[0], alt="original")
        views.show_digit(moved, "transformed: what the model sees", scale=5, where=columns[1], alt="transformed")
        views.show_digit(prediction.reconstruction, f"reconstruction from capsule {classes[prediction.digit]}", scale=5,
                         where=columns[2], alt="reconstruction")
        st.plotly_chart(figures.lengths_figure(prediction.lengths, highlight=prediction.digit, classes=classes),
                        config={"displayModeBar": False}, key="robustness.lengths")


transform_and_predict()

st.subheader("Accuracy under each transformation")
st.caption(f"Test accuracy on the first {resources.SWEEP_DIGITS:,} test images under each transformation on its own "
           "(translations in a random direction per digit).")
stored = catalog.model_card(model.choice, model.predictor.net.config)["details"].get("affine_sweeps")
baseline_card = catalog.read_json(BASELINE_CARD)
baseline_stored = baseline_card.get("affine_sweeps")
compare = catalog.baseline_beside(model.choice, model.dataset)
measured = st.session_state.setdefault(state.ROBUST_MEASURED, set())
if (stored is None or compare and baseline_stored is None) and model.choice.key not in measured:
    st.button("Measure (about a minute per model on a CPU)", icon=":material/speed:",
              on_click=lambda: measured.add(model.choice.key))
    st.stop()
sweeps = {model.choice.label: stored or resources.affine_sweeps(*model.cache_key, resources.SWEEP_DIGITS)}
if compare:
    sweeps["Baseline CNN (shipped)"] = baseline_stored or resources.affine_sweeps(
        str(BASELINE_MODEL), catalog.file_version(BASELINE_MODEL), resources.SWEEP_DIGITS)
st.plotly_chart(figures.sweeps_figure(sweeps), config={"displayModeBar": False}, key="robustness.sweeps")
if compare:
    st.caption("The baseline CNN (`assets/cnn.keras`, see the README) was trained with CapsNet's recipe: the same "
               "data, the same 2-pixel shifts, the same epochs.")
